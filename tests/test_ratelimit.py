"""
Tests for L{p2pnet._ratelimit.RateLimiter} and
L{p2pnet._ratelimit.SourceLimiter}: per-source token buckets.
"""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pnet._ratelimit import RateLimiter, SourceLimiter


class RateLimiterTests(SynchronousTestCase):
    def test_burst_then_rate(self):
        """
        A source may spend its burst at once, then C{rate} per second;
        other sources have buckets of their own.
        """
        limiter = RateLimiter(rate=10.0, burst=5.0)
        self.assertEqual([limiter.allow("a", 0.0) for _ in range(6)], [True] * 5 + [False])
        self.assertTrue(limiter.allow("b", 0.0))
        self.assertEqual([limiter.allow("a", 0.25) for _ in range(3)], [True, True, False])
        self.assertEqual([limiter.allow("a", 100.0) for _ in range(6)], [True] * 5 + [False])

    def test_costs(self):
        """
        A cost spends that many tokens (a datagram's bytes); a first cost
        above the burst is refused.
        """
        limiter = RateLimiter(rate=100.0, burst=200.0)
        self.assertFalse(limiter.allow("a", 0.0, 201))
        self.assertEqual([limiter.allow("b", 0.0, 59) for _ in range(4)], [True, True, True, False])
        self.assertTrue(limiter.allow("b", 0.4, 59))

    def test_same_instant(self):
        """
        Calls at the same C{now} (a batch of datagrams) refill nothing
        between them: a batch cannot spend more than the bucket holds.
        """
        limiter = RateLimiter(rate=1000.0, burst=3.0)
        self.assertEqual([limiter.allow("a", 7.0) for _ in range(5)], [True] * 3 + [False] * 2)
        self.assertTrue(limiter.allow("a", 7.001))

    def test_least_recently_seen_goes(self):
        """
        A full table forgets the source seen longest ago (which then
        starts again with a full bucket).
        """
        limiter = RateLimiter(rate=1.0, burst=2.0, max_sources=2)
        for source in ("a", "b"):
            limiter.allow(source, 0.0)
            limiter.allow(source, 0.0)
        self.assertFalse(limiter.allow("a", 0.5))  # a is now the most recent
        self.assertTrue(limiter.allow("c", 0.5))  # evicts b
        self.assertEqual(len(limiter), 2)
        self.assertEqual([limiter.allow("b", 0.5) for _ in range(3)], [True, True, False])  # fresh bucket, evicts a
        self.assertEqual([limiter.allow("a", 0.5) for _ in range(3)], [True, True, False])

    @given(
        st.floats(0.5, 1000.0),
        st.floats(1.0, 100.0),
        st.lists(st.tuples(st.floats(0.0, 0.5), st.floats(0.0, 20.0)), max_size=200),
    )
    def test_never_over_budget(self, rate, burst, calls):
        """
        Over any run, what one source is allowed costs at most the burst
        plus the rate times the time that passed.
        """
        limiter = RateLimiter(rate, burst)
        now = spent = 0.0
        for step, cost in calls:
            now += step
            if limiter.allow("a", now, cost):
                spent += cost
        self.assertLessEqual(spent, burst + rate * now + 1e-6)

    def test_bad_settings(self):
        """
        A rate of zero or a burst under one token is refused.
        """
        self.assertRaises(ValueError, RateLimiter, 0.0, 5.0)
        self.assertRaises(ValueError, RateLimiter, 1.0, 0.5)


class SourceLimiterTests(SynchronousTestCase):
    def test_packets_and_bytes(self):
        """
        A source may send C{burst_seconds} worth of packets and of bytes
        at once; whichever runs out first refuses, named by its counter.
        """
        limiter = SourceLimiter(packet_rate=2.0, byte_rate=100.0, burst_seconds=2.0)
        self.assertEqual(
            [limiter.refused("a", 0.0, 10) for _ in range(5)], [None] * 4 + [SourceLimiter.PACKETS]
        )
        self.assertEqual(
            [limiter.refused("b", 0.0, 90) for _ in range(3)], [None, None, SourceLimiter.BYTES]
        )

    def test_refusal_spends_nothing(self):
        """
        A datagram one budget refuses spends nothing of the other: a
        smaller one that fits still goes.
        """
        limiter = SourceLimiter(packet_rate=10.0, byte_rate=100.0, burst_seconds=1.0)
        self.assertIsNone(limiter.refused("a", 0.0, 60))
        self.assertEqual(limiter.refused("a", 0.0, 60), SourceLimiter.BYTES)
        self.assertIsNone(limiter.refused("a", 0.0, 40))
        self.assertEqual(limiter.refused("a", 0.0, 1), SourceLimiter.BYTES)

    def test_refill(self):
        """
        Both budgets refill at their rates, up to their bursts; calls at
        the same C{now} refill nothing.
        """
        limiter = SourceLimiter(packet_rate=2.0, byte_rate=1000.0, burst_seconds=1.0)
        self.assertEqual([limiter.refused("a", 5.0, 1) for _ in range(3)], [None, None, SourceLimiter.PACKETS])
        self.assertEqual([limiter.refused("a", 5.5, 1) for _ in range(2)], [None, SourceLimiter.PACKETS])
        self.assertEqual([limiter.refused("a", 99.0, 1) for _ in range(3)], [None, None, SourceLimiter.PACKETS])

    def test_least_recently_seen_goes(self):
        """
        A full table forgets the source seen longest ago.
        """
        limiter = SourceLimiter(packet_rate=1.0, byte_rate=1e6, burst_seconds=1.0, max_sources=2)
        limiter.refused("a", 0.0, 1)
        limiter.refused("b", 0.0, 1)
        self.assertEqual(limiter.refused("a", 0.5, 1), SourceLimiter.PACKETS)  # a is now the most recent
        self.assertIsNone(limiter.refused("c", 0.5, 1))  # evicts b
        self.assertEqual(len(limiter), 2)
        self.assertIsNone(limiter.refused("b", 0.5, 1))  # a fresh bucket; evicts a
        self.assertIsNone(limiter.refused("a", 0.5, 1))

    @given(
        st.floats(1.0, 1000.0),
        st.floats(10.0, 10000.0),
        st.floats(1.0, 10.0),
        st.lists(st.tuples(st.floats(0.0, 0.5), st.integers(0, 1500)), max_size=200),
    )
    def test_never_over_budget(self, packet_rate, byte_rate, burst_seconds, calls):
        """
        Over any run, a source gets at most a burst plus the rate times the
        time that passed, of packets and of bytes.
        """
        limiter = SourceLimiter(packet_rate, byte_rate, burst_seconds)
        now = packets = octets = 0.0
        for step, size in calls:
            now += step
            if limiter.refused("a", now, size) is None:
                packets += 1
                octets += size
        self.assertLessEqual(packets, limiter.packet_burst + packet_rate * now + 1e-6)
        self.assertLessEqual(octets, limiter.byte_burst + byte_rate * now + 1e-6)

    def test_bad_settings(self):
        """
        Rates or bursts of zero, or a packet burst under one, are refused.
        """
        self.assertRaises(ValueError, SourceLimiter, 0.0, 5.0)
        self.assertRaises(ValueError, SourceLimiter, 1.0, 0.0)
        self.assertRaises(ValueError, SourceLimiter, 1.0, 5.0, 0.0)
        self.assertRaises(ValueError, SourceLimiter, 1.0, 5.0, 0.5)
