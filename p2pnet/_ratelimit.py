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

    def report_held(self, log, about: str = "") -> None:
        """
        If lines were held back, log one summary of them with C{log} (a
        L{twisted.logger.Logger}) and start counting again.

        @param about: what the lines were about (e.g. C{"about
            introductions"}), for the summary.
        """
        held = self.take_held()
        if held:
            log.info(
                "held back {count} log lines{about} ({kinds}) to stay under {rate:g} per second; "
                "the statistics counters still count every event",
                count=sum(held.values()),
                about=f" {about}" if about else "",
                kinds=", ".join(f"{kind}: {n}" for kind, n in sorted(held.items())),
                rate=self.rate,
            )


class SourceLimiter:
    """
    Per-source packets and bytes per second, in one LRU table: a relayed
    datagram checks both budgets with one lookup.

    Each source may send C{packet_rate} packets and C{byte_rate} bytes a
    second, with bursts of C{burst_seconds} times those.  A datagram that
    either budget refuses spends neither.

    @param max_sources: the table's size (the least recently seen source
        goes first; it then starts again with full buckets).
    """

    PACKETS = "dropped-rate-limited"
    BYTES = "dropped-byte-limited"

    def __init__(
        self, packet_rate: float, byte_rate: float, burst_seconds: float = 2.0, max_sources: int = 65536
    ) -> None:
        if packet_rate <= 0 or byte_rate <= 0 or burst_seconds <= 0:
            raise ValueError("rates and burst_seconds must be > 0")
        if packet_rate * burst_seconds < 1:
            raise ValueError("the packet burst (packet_rate * burst_seconds) must be at least 1")
        self.packet_rate = packet_rate
        self.byte_rate = byte_rate
        self.packet_burst = packet_rate * burst_seconds
        self.byte_burst = byte_rate * burst_seconds
        self._max_sources = max_sources
        # source -> [packet tokens, byte tokens, time of the last refill]
        self._buckets: OrderedDict[object, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def refused(self, source: object, now: float, size: int) -> str | None:
        """
        Spend one packet and C{size} bytes of C{source}'s budgets, or
        name the budget that is short (L{PACKETS} or L{BYTES}, the
        relay's counter names) and spend nothing.

        As with L{RateLimiter.allow}, the buckets refill (and the source
        moves to the LRU's recent end) only when C{now} has moved.
        """
        buckets = self._buckets
        bucket = buckets.get(source)
        if bucket is None:
            if len(buckets) >= self._max_sources:
                buckets.popitem(last=False)
            bucket = buckets[source] = [self.packet_burst, self.byte_burst, now]
        elif now != bucket[2]:
            elapsed = now - bucket[2]
            packets = bucket[0] + elapsed * self.packet_rate
            octets = bucket[1] + elapsed * self.byte_rate
            bucket[0] = packets if packets < self.packet_burst else self.packet_burst
            bucket[1] = octets if octets < self.byte_burst else self.byte_burst
            bucket[2] = now
            buckets.move_to_end(source)
        if bucket[0] < 1:
            return self.PACKETS
        if bucket[1] < size:
            return self.BYTES
        bucket[0] -= 1
        bucket[1] -= size
        return None
