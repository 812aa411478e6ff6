"""
Packetization-layer path MTU discovery in the style of RFC 8899
(DPLPMTUD): start at a size every path carries, send padded probe packets
of larger sizes that are acknowledged like any other packet, move up when
one is acknowledged, give a size up after L{MAX_PROBES} losses, and fall
back to the base size when full-size packets stop getting through (a
black hole) while smaller ones do.  A lost probe is not congestion and
never retransmitted: the connection never depends on a probe.

Sizes are UDP payload sizes (what the socket writes), like QUIC's
1200-byte minimum.
"""

from __future__ import annotations

from typing import Optional

#: RFC 8899's BASE_PLPMTU for UDP and QUIC's minimum datagram size.
BASE_SIZE = 1200
#: A 1500-byte Ethernet MTU minus an IPv6 and a UDP header: the largest
#: size worth probing by default.
MAX_SIZE = 1452
#: RFC 8899 section 5.1.2: probes sent at one size before it is given up.
MAX_PROBES = 3
#: Stop searching when the interval is this narrow.
SEARCH_GRANULARITY = 16
#: RFC 8899 section 5.1.1: how long a completed search stands before the
#: next attempt to go higher, and how long after a black hole.
RAISE_INTERVAL = 600.0
BLACK_HOLE_PAUSE = 60.0
#: Consecutive full-size packets lost (with no acknowledged one between)
#: that we take for a black hole.  At 20% random loss six in a row happen
#: with probability 0.2**6 = 6.4e-5 per run.
BLACK_HOLE_LOSSES = 6

SEARCHING = "searching"
SEARCH_COMPLETE = "search_complete"
DISABLED = "disabled"


class PathMtu:
    """
    The search state.

    @ivar size: the largest UDP payload confirmed to cross the path.
    @ivar low: the largest size known to work.
    @ivar high: the largest size not yet known to fail.
    @ivar probe_size: the size of the probe in flight, or C{None}.
    """

    def __init__(
        self, base: int = BASE_SIZE, maximum: int = MAX_SIZE, enabled: bool = True
    ) -> None:
        self.base = base
        self.maximum = max(base, maximum)
        self.size = base
        self.low = base
        self.high = self.maximum
        self.state = SEARCHING if enabled and self.maximum > base else DISABLED
        self.probe_size: Optional[int] = None
        self.probe_count = 0
        self.target: Optional[int] = None
        self.tried_maximum = False
        self.next_probe_time = 0.0
        self.large_losses = 0
        self.black_holes = 0

    def probe_due(self, now: float) -> Optional[int]:
        """
        The size of the probe to send now, or C{None}.
        """
        if self.state != SEARCHING or self.probe_size is not None:
            return None
        if now < self.next_probe_time:
            return None
        if self.high - self.low < SEARCH_GRANULARITY:
            self._complete(now)
            return None
        if self.target is None:
            if self.high == self.maximum and not self.tried_maximum:
                self.tried_maximum = True
                self.target = self.maximum
            else:
                self.target = (self.low + self.high + 1) // 2
        return self.target

    def on_probe_sent(self, size: int) -> None:
        self.probe_size = size

    def on_probe_acked(self, size: int, now: float) -> bool:
        """
        @return: whether L{size} grew.
        """
        self.probe_size = None
        self.probe_count = 0
        self.target = None
        if size <= self.size:
            return False
        self.size = self.low = size
        if self.high - self.low < SEARCH_GRANULARITY:
            self._complete(now)
        return True

    def on_probe_lost(self, size: int, now: float) -> None:
        self.probe_size = None
        self.probe_count += 1
        if self.probe_count >= MAX_PROBES:
            self.probe_count = 0
            self.target = None
            self.high = size - 1
            if self.high - self.low < SEARCH_GRANULARITY:
                self._complete(now)

    def _complete(self, now: float) -> None:
        self.state = SEARCH_COMPLETE
        self.next_probe_time = now + RAISE_INTERVAL

    def on_timer(self, now: float) -> None:
        """
        Start searching again once the raise interval has passed.
        """
        if self.state == SEARCH_COMPLETE and now >= self.next_probe_time:
            self.state = SEARCHING
            self.low = self.size
            self.high = self.maximum
            self.probe_count = 0
            self.target = None
            self.tried_maximum = False

    def timer(self) -> Optional[float]:
        if self.state == SEARCH_COMPLETE:
            return self.next_probe_time
        return None

    def on_packet_acked(self, size: int) -> None:
        if size > self.base:
            self.large_losses = 0

    def on_packet_lost(self, size: int, now: float) -> bool:
        """
        A packet that was not a probe was declared lost.

        @return: whether we took it for a black hole and fell back to the
            base size.
        """
        if size <= self.base or self.size == self.base:
            return False
        self.large_losses += 1
        if self.large_losses < BLACK_HOLE_LOSSES:
            return False
        self.fall_back(now)
        return True

    def fall_back(self, now: float) -> None:
        """
        Full-size packets stopped getting through: use the base size, and
        search again after L{BLACK_HOLE_PAUSE}.
        """
        self.large_losses = 0
        self.black_holes += 1
        self.size = self.low = self.base
        self.high = self.maximum
        self.state = SEARCHING
        self.probe_count = 0
        self.probe_size = None
        self.target = None
        self.tried_maximum = False
        self.next_probe_time = now + BLACK_HOLE_PAUSE
