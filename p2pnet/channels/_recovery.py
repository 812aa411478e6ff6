"""
Acknowledgements, RTT estimation and loss detection as RFC 9002 describes
them for QUIC: packet numbers that never repeat, acknowledged in ranges
with the receiver's ack delay, a packet declared lost when a packet sent
3 later is acknowledged (packet threshold) or 9/8 of an RTT has passed
since it was sent and a later one is acknowledged (time threshold), and a
probe timeout (PTO) of C{srtt + max(4 rttvar, 1 ms) + max_ack_delay},
doubled on each consecutive expiry, when nothing is acknowledged.

Pure bookkeeping: every method takes C{now}; nothing here sends.
"""

from __future__ import annotations

from typing import Optional

#: RFC 9002 section 6.1.1 and 6.1.2.
PACKET_THRESHOLD = 3
TIME_THRESHOLD = 9 / 8
GRANULARITY = 0.001
#: RFC 9002 section 6.2.2.
INITIAL_RTT = 0.333
#: Our receiver's promise: an ack-eliciting packet is acknowledged within
#: this long (RFC 9000's default).
MAX_ACK_DELAY = 0.025
#: Ack decimation (as Chromium's QUIC does it): the first
#: L{DECIMATION_AFTER} packets are acknowledged every 2nd ack-eliciting
#: packet (RFC 9000 section 13.2.2), later ones every
#: L{DECIMATED_THRESHOLD}th, still within the max ack delay, and at once
#: when one arrives out of order.
DECIMATION_AFTER = 100
DECIMATED_THRESHOLD = 10
#: The probe timeout stops doubling after this many consecutive expiries
#: (about 17 minutes with the initial RTT); whether the peer is gone is
#: the connection's heartbeat's business.
MAX_PTO_BACKOFF = 10
#: How many ranges the receiver remembers (older ones are forgotten; the
#: peer then retransmits a little more than needed, never less).
MAX_RECEIVED_RANGES = 64


class RttEstimator:
    """
    Smoothed RTT and RTT variation (RFC 9002 section 5).

    @ivar latest: the last sample.
    @ivar smoothed: the smoothed RTT.
    @ivar variation: the RTT variation (RTTVAR).
    @ivar minimum: the smallest sample seen.
    """

    def __init__(self, initial: float = INITIAL_RTT) -> None:
        self.latest = 0.0
        self.smoothed = initial
        self.variation = initial / 2
        self.minimum = float("inf")
        self.has_sample = False

    def update(self, sample: float, ack_delay: float, max_ack_delay: float) -> None:
        """
        Take one RTT sample, C{ack_delay} being what the peer said it held
        the ack (capped at C{max_ack_delay}).
        """
        self.latest = sample
        if sample < self.minimum:
            self.minimum = sample
        if not self.has_sample:
            self.has_sample = True
            self.smoothed = sample
            self.variation = sample / 2
            return
        ack_delay = min(ack_delay, max_ack_delay)
        adjusted = sample
        if sample >= self.minimum + ack_delay:
            adjusted = sample - ack_delay
        self.variation = 0.75 * self.variation + 0.25 * abs(self.smoothed - adjusted)
        self.smoothed = 0.875 * self.smoothed + 0.125 * adjusted

    def pto_base(self, max_ack_delay: float) -> float:
        """
        The probe timeout before backoff (RFC 9002 section 6.2.1).
        """
        return self.smoothed + max(4 * self.variation, GRANULARITY) + max_ack_delay


class SentPacket:
    """
    What recovery remembers of one sent packet.

    @ivar chunks: the retransmittable pieces of messages it carried.
    @ivar ack_largest: the largest packet number its ACK frame covered, or
        -1: once this packet is acknowledged the receiver may stop
        reporting packets up to that number (RFC 9000 section 13.2.4).
    @ivar delivered: bytes acknowledged, connection-wide, when it was sent
        (for delivery-rate samples).
    """

    __slots__ = (
        "number",
        "time_sent",
        "size",
        "ack_eliciting",
        "in_flight",
        "chunks",
        "ack_largest",
        "delivered",
        "delivered_time",
        "first_sent_time",
        "app_limited",
        "mtu_probe",
    )

    def __init__(
        self,
        number: int,
        time_sent: float,
        size: int,
        ack_eliciting: bool,
        in_flight: bool,
        chunks: list,
        ack_largest: int = -1,
        mtu_probe: bool = False,
    ) -> None:
        self.number = number
        self.time_sent = time_sent
        self.size = size
        self.ack_eliciting = ack_eliciting
        self.in_flight = in_flight
        self.chunks = chunks
        self.ack_largest = ack_largest
        self.delivered = 0
        self.delivered_time = time_sent
        self.first_sent_time = time_sent
        self.app_limited = False
        self.mtu_probe = mtu_probe


class SentPackets:
    """
    The sender's side: packets in flight, what an ACK frame acknowledges,
    which packets are lost, and the loss and probe timers.

    @ivar bytes_in_flight: the sizes of unacknowledged in-flight packets.
    @ivar pto_count: consecutive probe timeouts since the last ack.
    """

    def __init__(self, max_ack_delay: float = MAX_ACK_DELAY) -> None:
        self.rtt = RttEstimator()
        self.max_ack_delay = max_ack_delay
        self.packets: dict[int, SentPacket] = {}
        self.largest_acked = -1
        self.bytes_in_flight = 0
        self.pto_count = 0
        self.loss_time: Optional[float] = None
        self.last_ack_eliciting_time: Optional[float] = None
        self.lost_count = 0
        self.acked_count = 0
        self.eliciting = 0

    def on_sent(self, packet: SentPacket) -> None:
        self.packets[packet.number] = packet
        if packet.in_flight:
            self.bytes_in_flight += packet.size
        if packet.ack_eliciting:
            self.last_ack_eliciting_time = packet.time_sent
            self.eliciting += 1

    def on_ack(
        self, ranges: list[tuple[int, int]], ack_delay: float, now: float
    ) -> tuple[list[SentPacket], list[SentPacket]]:
        """
        Process the (smallest, largest) ranges of one ACK frame, newest
        first.

        @return: the packets newly acknowledged (oldest first) and the
            packets now declared lost.
        """
        packets = self.packets
        acked = []
        largest = ranges[0][1]
        for low, high in ranges:
            if high - low < len(packets):
                for number in range(low, high + 1):
                    packet = packets.pop(number, None)
                    if packet is not None:
                        acked.append(packet)
            else:
                for number in [n for n in packets if low <= n <= high]:
                    acked.append(packets.pop(number))
        if not acked:
            return acked, []
        acked.sort(key=_number)
        newest = acked[-1]
        if largest > self.largest_acked:
            self.largest_acked = largest
        if newest.number == largest and any(p.ack_eliciting for p in acked):
            self.rtt.update(now - newest.time_sent, ack_delay, self.max_ack_delay)
        for packet in acked:
            if packet.in_flight:
                self.bytes_in_flight -= packet.size
            if packet.ack_eliciting:
                self.eliciting -= 1
        self.acked_count += len(acked)
        self.pto_count = 0
        lost = self.detect_lost(now)
        return acked, lost

    def detect_lost(self, now: float) -> list[SentPacket]:
        """
        Declare lost the packets below the largest acknowledged that the
        packet or time threshold condemns (RFC 9002 section 6.1), and set
        the loss timer for the next one that might be.
        """
        self.loss_time = None
        rtt = self.rtt
        delay = max(
            TIME_THRESHOLD * max(rtt.latest, rtt.smoothed), GRANULARITY
        )
        largest = self.largest_acked
        lost = []
        for number, packet in self.packets.items():
            if number > largest:
                break
            when = packet.time_sent + delay
            if when <= now or largest - number >= PACKET_THRESHOLD:
                lost.append(packet)
            elif self.loss_time is None or when < self.loss_time:
                self.loss_time = when
        for packet in lost:
            del self.packets[packet.number]
            if packet.in_flight:
                self.bytes_in_flight -= packet.size
            if packet.ack_eliciting:
                self.eliciting -= 1
        self.lost_count += len(lost)
        return lost

    def pto_deadline(self) -> Optional[float]:
        """
        When the probe timer expires, or C{None} if nothing ack-eliciting
        is outstanding.
        """
        if not self.eliciting:
            return None
        return self.last_ack_eliciting_time + self.rtt.pto_base(
            self.max_ack_delay
        ) * (1 << min(self.pto_count, MAX_PTO_BACKOFF))

    def get_timer(self) -> Optional[float]:
        if self.loss_time is not None:
            return self.loss_time
        return self.pto_deadline()

    def on_timeout(self, now: float) -> tuple[list[SentPacket], bool]:
        """
        The timer from L{get_timer} expired.

        @return: the packets declared lost and whether a probe is due.
        """
        if self.loss_time is not None and now >= self.loss_time:
            return self.detect_lost(now), False
        deadline = self.pto_deadline()
        if deadline is not None and now >= deadline:
            self.pto_count += 1
            return [], True
        return [], False

    def oldest_unacked(self, count: int) -> list[SentPacket]:
        """
        Up to C{count} of the oldest ack-eliciting packets still
        outstanding: what a probe retransmits.
        """
        result = []
        for packet in self.packets.values():
            if packet.ack_eliciting:
                result.append(packet)
                if len(result) == count:
                    break
        return result


def _number(packet: SentPacket) -> int:
    return packet.number


class ReceivedPackets:
    """
    The receiver's side: which packet numbers arrived (disjoint ranges,
    newest last) and when an ACK is due.

    @ivar floor: packets at or below this number are no longer reported and
        are treated as duplicates.
    """

    def __init__(self, max_ack_delay: float = MAX_ACK_DELAY) -> None:
        self.ranges: list[list[int]] = []
        self.floor = -1
        self.max_ack_delay = max_ack_delay
        self.largest_time = 0.0
        self.unacked_eliciting = 0
        self.ack_deadline: Optional[float] = None
        self.changed = False
        self.largest = -1
        self.count = 0
        self.threshold = 2

    def on_received(self, number: int, ack_eliciting: bool, now: float) -> bool:
        """
        Record packet C{number}.

        @return: C{False} if it is a duplicate (its frames must be
            ignored).
        """
        if number <= self.floor:
            return False
        ranges = self.ranges
        reordered = self.largest >= 0 and number != self.largest + 1
        if not ranges or number > ranges[-1][1] + 1:
            ranges.append([number, number])
        elif number == ranges[-1][1] + 1:
            ranges[-1][1] = number
        elif not self._insert(number):
            return False
        if number > self.largest:
            self.largest = number
            self.largest_time = now
        if len(ranges) > MAX_RECEIVED_RANGES:
            # Forget the oldest range; anything at or below it now counts
            # as a duplicate (a reliable frame in it is retransmitted).
            self.floor = max(self.floor, ranges[0][1])
            del ranges[0]
        self.changed = True
        if ack_eliciting:
            self.unacked_eliciting += 1
            self.count += 1
            if self.count == DECIMATION_AFTER:
                self.threshold = DECIMATED_THRESHOLD
            if reordered or self.unacked_eliciting >= self.threshold:
                self.ack_deadline = now
            elif self.ack_deadline is None:
                self.ack_deadline = now + self.max_ack_delay
        return True

    def _insert(self, number: int) -> bool:
        ranges = self.ranges
        for index in range(len(ranges) - 1, -1, -1):
            low, high = ranges[index]
            if low <= number <= high:
                return False
            if number == high + 1:
                ranges[index][1] = number
                if index + 1 < len(ranges) and ranges[index + 1][0] == number + 1:
                    ranges[index][1] = ranges[index + 1][1]
                    del ranges[index + 1]
                return True
            if number == low - 1:
                ranges[index][0] = number
                if index > 0 and ranges[index - 1][1] == number - 1:
                    ranges[index - 1][1] = ranges[index][1]
                    del ranges[index]
                return True
            if number > high:
                ranges.insert(index + 1, [number, number])
                return True
        ranges.insert(0, [number, number])
        return True

    def contains(self, number: int) -> bool:
        for low, high in reversed(self.ranges):
            if number > high:
                return False
            if number >= low:
                return True
        return False

    def ack_due(self, now: float) -> bool:
        return self.ack_deadline is not None and now >= self.ack_deadline

    def ack_ranges(self) -> list[tuple[int, int]]:
        """
        The ranges to report, newest first.
        """
        return [(low, high) for low, high in reversed(self.ranges)]

    def on_ack_sent(self) -> None:
        self.unacked_eliciting = 0
        self.ack_deadline = None
        self.changed = False

    def on_ack_acked(self, largest: int) -> None:
        """
        An ACK frame that covered up to C{largest} reached the peer: stop
        reporting those packets.
        """
        if largest <= self.floor:
            return
        self.floor = largest
        ranges = self.ranges
        while ranges and ranges[0][1] <= largest:
            del ranges[0]
        if ranges and ranges[0][0] <= largest:
            ranges[0][0] = largest + 1
