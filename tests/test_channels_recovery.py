"""
Tests for L{p2pnet.channels._recovery}: RTT estimation, loss detection and
the probe timeout as RFC 9002 defines them, and the receiver's ranges.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pnet.channels._recovery import (
    ReceivedPackets,
    RttEstimator,
    SentPacket,
    SentPackets,
)


def sent(numbers, every=0.01):
    recovery = SentPackets(max_ack_delay=0.025)
    for number in numbers:
        recovery.on_sent(SentPacket(number, number * every, 1000, True, True, []))
    return recovery


class RttTests(SynchronousTestCase):
    def test_first_sample(self):
        """
        The first sample sets SRTT to itself and RTTVAR to half of it.
        """
        rtt = RttEstimator()
        rtt.update(0.1, 0.0, 0.025)
        self.assertEqual((rtt.smoothed, rtt.variation, rtt.minimum), (0.1, 0.05, 0.1))

    def test_later_samples(self):
        """
        Later samples are blended 1/8 into SRTT and 1/4 into RTTVAR, after
        subtracting the ack delay when that does not go below min RTT.
        """
        rtt = RttEstimator()
        rtt.update(0.1, 0.0, 0.025)
        rtt.update(0.2, 0.02, 0.025)
        # adjusted = 0.18: rttvar = 0.75 * 0.05 + 0.25 * 0.08 = 0.0575,
        # srtt = 0.875 * 0.1 + 0.125 * 0.18 = 0.11
        self.assertAlmostEqual(rtt.variation, 0.0575)
        self.assertAlmostEqual(rtt.smoothed, 0.11)

    def test_ack_delay_capped(self):
        """
        An ack delay over the max ack delay counts as the max.
        """
        rtt = RttEstimator()
        rtt.update(0.1, 0.0, 0.025)
        rtt.update(0.3, 0.5, 0.025)
        # adjusted = 0.275: srtt = 0.0875 + 0.034375
        self.assertAlmostEqual(rtt.smoothed, 0.121875)

    def test_initial_pto(self):
        """
        Before any sample the PTO is 333 ms + 4 * 166.5 ms + max ack delay.
        """
        self.assertAlmostEqual(RttEstimator().pto_base(0.025), 1.024)


class LossTests(SynchronousTestCase):
    def test_packet_threshold(self):
        """
        A packet 3 or more below the largest acknowledged is lost at once;
        the others get the time threshold's timer.
        """
        recovery = sent(range(5), every=0.001)
        acked, lost = recovery.on_ack([(4, 4)], 0.0, 0.104)
        self.assertEqual([p.number for p in acked], [4])
        self.assertEqual([p.number for p in lost], [0, 1])
        # 9/8 of the 100 ms RTT after packet 2 was sent.
        self.assertAlmostEqual(recovery.loss_time, 0.002 + 0.1125)
        self.assertEqual(recovery.bytes_in_flight, 2000)

    def test_time_threshold(self):
        """
        When the loss timer fires, the packets it waited for are lost.
        """
        recovery = sent(range(5), every=0.001)
        recovery.on_ack([(4, 4)], 0.0, 0.104)
        lost, probe = recovery.on_timeout(recovery.loss_time)
        self.assertEqual([p.number for p in lost], [2])
        self.assertFalse(probe)
        self.assertAlmostEqual(recovery.loss_time, 0.003 + 0.1125)
        lost, probe = recovery.on_timeout(recovery.loss_time)
        self.assertEqual([p.number for p in lost], [3])

    def test_pto(self):
        """
        With nothing acknowledged, the probe timer fires at the PTO after
        the last ack-eliciting packet, and doubles each time.
        """
        recovery = sent([0])
        self.assertAlmostEqual(recovery.get_timer(), 1.024)
        self.assertEqual(recovery.on_timeout(1.0), ([], False))
        self.assertEqual(recovery.on_timeout(1.024), ([], True))
        self.assertAlmostEqual(recovery.get_timer(), 2.048)
        self.assertEqual(recovery.pto_count, 1)

    def test_pto_backoff_capped(self):
        """
        The probe timeout stops doubling after 10 expiries.
        """
        recovery = sent([0])
        for _ in range(12):
            recovery.on_timeout(recovery.get_timer())
        self.assertAlmostEqual(recovery.get_timer(), 1.024 * 1024)

    def test_no_timer_when_idle(self):
        recovery = sent([0])
        recovery.on_ack([(0, 0)], 0.0, 0.1)
        self.assertIsNone(recovery.get_timer())
        self.assertEqual(recovery.bytes_in_flight, 0)

    def test_rtt_only_from_largest(self):
        """
        Only an ACK that newly acknowledges its largest packet gives an RTT
        sample.
        """
        recovery = sent(range(3))
        recovery.on_ack([(0, 2)], 0.0, 0.5)
        self.assertAlmostEqual(recovery.rtt.latest, 0.48)
        recovery.on_sent(SentPacket(3, 0.6, 1000, True, True, []))
        recovery.on_ack([(0, 2)], 0.0, 5.0)
        self.assertAlmostEqual(recovery.rtt.latest, 0.48)


class ReceivedTests(SynchronousTestCase):
    @given(st.lists(st.integers(0, 200), max_size=100))
    def test_ranges(self, numbers):
        """
        The ranges hold exactly the distinct numbers received, disjoint,
        not adjacent, oldest first; a repeat is reported as a duplicate.
        """
        received = ReceivedPackets()
        seen = set()
        for number in numbers:
            self.assertEqual(received.on_received(number, True, 0.0), number not in seen)
            seen.add(number)
        covered = set()
        previous = None
        for low, high in received.ranges:
            self.assertLessEqual(low, high)
            if previous is not None:
                self.assertGreater(low, previous + 1)
            previous = high
            covered.update(range(low, high + 1))
        self.assertEqual(covered, seen)

    def test_ack_delay_and_immediate(self):
        """
        One ack-eliciting packet in order waits up to the max ack delay; a
        second, or one out of order, makes the ack due now.
        """
        received = ReceivedPackets(max_ack_delay=0.025)
        received.on_received(0, True, 1.0)
        self.assertEqual(received.ack_deadline, 1.025)
        received.on_received(1, True, 1.01)
        self.assertEqual(received.ack_deadline, 1.01)
        received.on_ack_sent()
        received.on_received(3, True, 1.02)
        self.assertEqual(received.ack_deadline, 1.02)

    def test_floor(self):
        """
        Once an ACK covering up to N reached the peer, packets up to N are
        no longer reported and count as duplicates.
        """
        received = ReceivedPackets()
        for number in (0, 1, 2, 5, 6):
            received.on_received(number, True, 0.0)
        received.on_ack_acked(5)
        self.assertEqual(received.ranges, [[6, 6]])
        self.assertFalse(received.on_received(4, True, 0.0))
