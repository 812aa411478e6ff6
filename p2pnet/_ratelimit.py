"""
Per-source token buckets: a pure rate limiter with time passed in.
"""

from __future__ import annotations

from collections import OrderedDict


class RateLimiter:
    """
    Allow each source C{rate} packets per second with bursts of C{burst}.

    Buckets live in an LRU table of at most C{max_sources} entries, so a
    flood from many spoofed sources costs bounded memory (an evicted source
    simply starts again with a full bucket).

    @param rate: sustained packets per second per source.
    @param burst: bucket size.
    """

    def __init__(self, rate: float, burst: float, max_sources: int = 65536) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._max_sources = max_sources
        self._buckets: OrderedDict[object, list[float]] = OrderedDict()

    def allow(self, source: object, now: float, cost: float = 1.0) -> bool:
        """
        Spend C{cost} tokens (one packet, or a packet's bytes) of
        C{source}'s bucket; False when it has too few.

        The bucket refills, and the source counts as recently seen for
        the LRU table, when C{now} has moved since its last call: the
        servers read the clock once per batch of datagrams, so a batch's
        later datagrams from one source skip both.
        """
        buckets = self._buckets
        bucket = buckets.get(source)
        if bucket is None:
            if len(buckets) >= self._max_sources:
                buckets.popitem(last=False)
            if cost > self.burst:
                return False
            buckets[source] = [self.burst - cost, now]
            return True
        tokens = bucket[0]
        if now != bucket[1]:
            tokens += (now - bucket[1]) * self.rate
            if tokens > self.burst:
                tokens = self.burst
            bucket[1] = now
            buckets.move_to_end(source)
        if tokens < cost:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - cost
        return True

    def __len__(self) -> int:
        return len(self._buckets)


class LogBudget:
    """
    A token bucket for log lines that come one per peer or per datagram:
    at most C{rate} per second with bursts of C{burst}, so that a busy or
    flooded server spends its time answering rather than formatting log
    lines.  What is held back is counted by kind, for a summary line.

    @param rate: lines per second; 0 means every line is logged.
    @param burst: bucket size (default: five seconds' worth, at least 1).
    @ivar held: lines held back since the last L{take_held}, by kind.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, 5 * rate)
        self._tokens = self.burst
        self._stamp: float | None = None
        self.held: dict[str, int] = {}

    def allow(self, kind: str, now: float) -> bool:
        """
        Whether a line of C{kind} may be logged at C{now}; if not, it is
        counted in L{held}.
        """
        if not self.rate:
            return True
        tokens = self._tokens
        if self._stamp is not None:
            tokens = min(self.burst, tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        self.held[kind] = self.held.get(kind, 0) + 1
        return False

    def take_held(self) -> dict[str, int]:
        """
        The counts of held-back lines since the last call, and reset them.
        """
        held, self.held = self.held, {}
        return held
