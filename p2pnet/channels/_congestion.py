"""
Congestion control behind a small interface, with a BBR-style model.

We chose BBR (Cardwell, Cheng, Gunn, Hassas Yeganeh, Jacobson, "BBR:
Congestion-Based Congestion Control", ACM Queue 14(5), 2016, and
draft-cardwell-iccrg-bbr-congestion-control-00) over CUBIC (RFC 9438)
because games care about two things CUBIC gives up: CUBIC treats every
lost packet as congestion (so 2-20% random loss on a wireless or
long-distance path collapses its window), and it fills the bottleneck
queue before it backs off (so a real-time channel sitting beside a bulk
transfer waits behind a full buffer).  BBR instead measures the two
numbers that define the path, the bottleneck bandwidth (the largest
delivery rate seen over the last 10 round trips) and the round-trip
propagation time (the smallest RTT seen over 10 s), paces at that rate,
and keeps about one bandwidth-delay product in flight, with a
1.25/0.75 gain cycle to notice more bandwidth.

Start-up also ends, as HyStart++ (RFC 9406) ends slow start, when the
smallest RTT of a round (over at least 8 samples) is at least
C{clamp(previous round's / 8, 4 ms, 16 ms)} above the previous round's:
the bottleneck's queue is growing, so the bandwidth is found; waiting for
BBR's three flat rounds would fill a shallow buffer and drop packets, and
delay a real-time channel behind it.  Random loss does not raise the RTT,
so it does not end start-up early.

The window is never below the draft's quantization budget (its
C{BBRQuantizationBudget}: three send quanta, a send quantum being a
millisecond at the pacing rate, between two packets and 64 KiB).  On a
path whose round trip (~0.1 ms on a LAN) is shorter than the owner's
timer granularity (~1 ms for a reactor) one BDP is less than what a
single wake-up must send, so without it the window sat at its 4-packet
floor and every lost packet stalled the transfer until its loss timer
(1.7 MB/s through 10% loss in the kernel lab, against 24 MB/s
estimated).

What we left out of the draft: PROBE_RTT (our min-RTT window simply
expires and restarts from the newest samples) and BBR v2's loss and ECN
reactions.  Delivery-rate samples follow
draft-cheng-iccrg-delivery-rate-estimation.

The interface a controller offers the machine: L{on_sent}, L{on_acked},
L{on_lost}, and the attributes C{window} (bytes allowed in flight),
C{pacing_rate} (bytes per second) and C{bandwidth} (the estimate, bytes per
second, 0 before the first sample).
"""

from __future__ import annotations

from typing import Protocol

#: 2/ln(2): the smallest gain that doubles the delivery rate each round.
HIGH_GAIN = 2.885
PROBE_GAINS = (1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
BANDWIDTH_WINDOW_ROUNDS = 10
MIN_RTT_WINDOW = 10.0
INITIAL_WINDOW_PACKETS = 10
MIN_WINDOW_PACKETS = 4
#: The draft's send quantum: this long at the pacing rate, within
#: [2 packets, MAX_SEND_QUANTUM]; the window holds at least 3 of them.
SEND_QUANTUM_TIME = 0.001
MAX_SEND_QUANTUM = 64 * 1024
#: RFC 9406 section 4.2's constants.
N_RTT_SAMPLE = 8
MIN_RTT_THRESH = 0.004
MAX_RTT_THRESH = 0.016
MIN_RTT_DIVISOR = 8

STARTUP = "startup"
DRAIN = "drain"
PROBE_BW = "probe_bw"


class CongestionController(Protocol):
    window: int
    pacing_rate: float
    bandwidth: float

    def on_sent(self, packet, bytes_in_flight: int, now: float) -> None:
        ...

    def on_acked(self, packets: list, bytes_in_flight: int, rtt: float, now: float) -> None:
        ...

    def on_lost(self, packets: list, now: float) -> None:
        ...


class _MaxFilter:
    """
    The largest value seen in the last C{span} rounds (a three-sample
    windowed max in Kathleen Nichols' style, simplified to per-round
    maxima kept in a short list).
    """

    def __init__(self, span: int) -> None:
        self.span = span
        self.samples: list[tuple[int, float]] = []

    def update(self, round_count: int, value: float) -> None:
        samples = self.samples
        while samples and samples[-1][1] <= value:
            samples.pop()
        samples.append((round_count, value))
        while samples[0][0] <= round_count - self.span:
            samples.pop(0)

    def best(self) -> float:
        return self.samples[0][1] if self.samples else 0.0


class Bbr:
    """
    A BBR-style congestion controller (see the module docstring).

    @ivar max_datagram: the current largest packet, in bytes (the machine
        updates it when the path MTU changes).
    @ivar state: L{STARTUP}, L{DRAIN} or L{PROBE_BW}.
    """

    def __init__(self, max_datagram: int, initial_rtt: float = 0.1) -> None:
        self.max_datagram = max_datagram
        self.initial_rtt = initial_rtt
        self.state = STARTUP
        self.pacing_gain = HIGH_GAIN
        self.window_gain = HIGH_GAIN
        self.bandwidth_filter = _MaxFilter(BANDWIDTH_WINDOW_ROUNDS)
        self.bandwidth = 0.0
        self.min_rtt = float("inf")
        self.min_rtt_stamp = 0.0
        self.round_count = 0
        self.next_round_delivered = 0
        self.full_bandwidth = 0.0
        self.full_bandwidth_count = 0
        self.cycle_index = 0
        self.cycle_stamp = 0.0
        # Delivery-rate sampling (draft-cheng-iccrg-delivery-rate-estimation).
        self.delivered = 0
        self.delivered_time = 0.0
        self.first_sent_time = 0.0
        self.window = INITIAL_WINDOW_PACKETS * max_datagram
        self.pacing_rate = HIGH_GAIN * self.window / initial_rtt
        self.app_limited_until = 0
        self.round_min_rtt = float("inf")
        self.last_round_min_rtt = float("inf")
        self.round_samples = 0
        self.delay_exit = False

    def on_sent(self, packet, bytes_in_flight: int, now: float) -> None:
        if bytes_in_flight == 0:
            self.first_sent_time = now
            self.delivered_time = now
        packet.delivered = self.delivered
        packet.delivered_time = self.delivered_time
        packet.first_sent_time = self.first_sent_time
        packet.app_limited = self.app_limited_until > self.delivered

    def on_app_limited(self, bytes_in_flight: int) -> None:
        """
        The sender had nothing to send while the window allowed more: rate
        samples until what is in flight is delivered say less than the
        path can do.
        """
        self.app_limited_until = self.delivered + max(bytes_in_flight, 1)

    def on_acked(self, packets: list, bytes_in_flight: int, rtt: float, now: float) -> None:
        newest = None
        for packet in packets:
            if not packet.in_flight:
                continue
            self.delivered += packet.size
            newest = packet
        if newest is None:
            return
        self.delivered_time = now
        send_elapsed = newest.time_sent - newest.first_sent_time
        ack_elapsed = now - newest.delivered_time
        interval = max(send_elapsed, ack_elapsed)
        self.first_sent_time = newest.time_sent
        round_start = False
        if newest.delivered >= self.next_round_delivered:
            self.next_round_delivered = self.delivered
            self.round_count += 1
            round_start = True
        if interval > 0:
            rate = (self.delivered - newest.delivered) / interval
            if not newest.app_limited or rate >= self.bandwidth:
                self.bandwidth_filter.update(self.round_count, rate)
                self.bandwidth = self.bandwidth_filter.best()
        if rtt > 0 and (rtt <= self.min_rtt or now - self.min_rtt_stamp > MIN_RTT_WINDOW):
            self.min_rtt = rtt
            self.min_rtt_stamp = now
        if self.state == STARTUP and rtt > 0:
            self._check_delay(round_start, rtt)
        self._update_state(round_start, bytes_in_flight, now)
        self._update_controls()

    def _check_delay(self, round_start: bool, rtt: float) -> None:
        """
        HyStart++'s delay increase test (RFC 9406 section 4.2).
        """
        if round_start:
            if self.round_samples >= N_RTT_SAMPLE:
                self.last_round_min_rtt = self.round_min_rtt
            self.round_min_rtt = float("inf")
            self.round_samples = 0
        self.round_samples += 1
        if rtt < self.round_min_rtt:
            self.round_min_rtt = rtt
        last = self.last_round_min_rtt
        if self.round_samples >= N_RTT_SAMPLE and last != float("inf"):
            threshold = min(max(last / MIN_RTT_DIVISOR, MIN_RTT_THRESH), MAX_RTT_THRESH)
            if self.round_min_rtt >= last + threshold:
                self.delay_exit = True

    def on_lost(self, packets: list, now: float) -> None:
        # BBR v1 does not treat loss as a congestion signal; the delivery
        # rate already falls if the path really is full.
        return

    def bdp(self) -> float:
        if not self.bandwidth or self.min_rtt == float("inf"):
            return INITIAL_WINDOW_PACKETS * self.max_datagram
        return self.bandwidth * self.min_rtt

    def _update_state(self, round_start: bool, bytes_in_flight: int, now: float) -> None:
        if self.state == STARTUP and self.delay_exit:
            self.state = DRAIN
            self.pacing_gain = 1 / HIGH_GAIN
            self.window_gain = HIGH_GAIN
        if self.state == STARTUP and round_start:
            if self.bandwidth >= self.full_bandwidth * 1.25:
                self.full_bandwidth = self.bandwidth
                self.full_bandwidth_count = 0
            else:
                self.full_bandwidth_count += 1
                if self.full_bandwidth_count >= 3:
                    self.state = DRAIN
                    self.pacing_gain = 1 / HIGH_GAIN
                    self.window_gain = HIGH_GAIN
        if self.state == DRAIN and bytes_in_flight <= self.bdp():
            self.state = PROBE_BW
            self.window_gain = 2.0
            self.cycle_index = 0
            self.cycle_stamp = now
            self.pacing_gain = PROBE_GAINS[0]
        if self.state == PROBE_BW and now - self.cycle_stamp > self.min_rtt:
            self.cycle_index = (self.cycle_index + 1) % len(PROBE_GAINS)
            self.cycle_stamp = now
            self.pacing_gain = PROBE_GAINS[self.cycle_index]

    def _update_controls(self) -> None:
        floor = MIN_WINDOW_PACKETS * self.max_datagram
        quantum = max(min(self.pacing_rate * SEND_QUANTUM_TIME, MAX_SEND_QUANTUM), 2 * self.max_datagram)
        self.window = int(max(self.window_gain * self.bdp(), 3 * quantum, floor))
        if self.bandwidth:
            rate = self.pacing_gain * self.bandwidth
            if self.state == STARTUP:
                rate = max(rate, self.pacing_rate)
            self.pacing_rate = rate


class Pacer:
    """
    Spreads packets at the controller's pacing rate, allowing a burst of
    up to C{burst} packets' worth of time after an idle period, or of
    C{slack} seconds' worth if that is more.

    The slack is the owner's timer granularity: a reactor's timers fire a
    millisecond or more late (epoll counts in milliseconds), and a pacer
    that forgot the time it was owed would send no more than C{burst}
    packets per wake-up, capping a fast path at a few megabytes a second
    whatever the estimate (and the estimate, being measured from what was
    sent, would never rise above it).  Linux paces the same way: a
    burst of about a millisecond of data (C{tcp_tso_autosize}).

    @ivar next_time: when the next packet may leave.
    """

    def __init__(self, burst: int = 4, slack: float = 0.002) -> None:
        self.burst = burst
        self.slack = slack
        self.next_time = float("-inf")

    def delay(self, now: float, size: int, rate: float) -> float:
        """
        How long the next packet must wait: 0 if it may leave now.
        """
        if self.next_time <= now:
            return 0.0
        return self.next_time - now

    def on_sent(self, now: float, size: int, rate: float) -> None:
        interval = size / rate if rate > 0 else 0.0
        earliest = now - max((self.burst - 1) * interval, self.slack)
        if self.next_time < earliest:
            self.next_time = earliest
        self.next_time += interval
