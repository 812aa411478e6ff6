"""
Tests for L{p2pnet._ratelimit.RateLimiter}: per-source token buckets.
"""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pnet._ratelimit import RateLimiter


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
