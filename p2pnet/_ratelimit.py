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

    def allow(self, source: object, now: float) -> bool:
        """
        Spend one token of C{source}'s bucket; False when it is empty.
        """
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self._max_sources:
                self._buckets.popitem(last=False)
            self._buckets[source] = [self.burst - 1.0, now]
            return True
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        self._buckets.move_to_end(source)
        return True

    def __len__(self) -> int:
        return len(self._buckets)
