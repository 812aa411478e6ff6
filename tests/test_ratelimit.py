"""
Tests for L{p2pnet._ratelimit.RateLimiter} and
L{p2pnet._ratelimit.SourceLimiter}: per-source token buckets.
"""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pnet._ratelimit import LogBudget, RateLimiter, SourceLimiter


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


# A reference token bucket in exact arithmetic, written from the documented
# behaviour: a bucket starts full, refills at the rate up to its burst
# whenever time moves, and a call is allowed when the bucket holds its cost.
# The hypothesis runs below use quarters of seconds, whole rates and whole
# costs, so the limiters' floats are exact and their decisions must equal
# the model's: a limiter that allows too little fails as surely as one that
# allows too much.


class _Bucket:
    def __init__(self, rate, burst):
        self.rate, self.burst = Fraction(rate), Fraction(burst)
        self.tokens = self.burst
        self.last = None

    def refill(self, now):
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (Fraction(now) - self.last) * self.rate)
        self.last = Fraction(now)


quarters = st.integers(0, 12).map(lambda n: n / 4)


class ModelTests(SynchronousTestCase):
    """
    The limiters decide exactly as the reference bucket does.
    """

    @given(
        st.integers(1, 50),
        st.integers(1, 40),
        st.lists(st.tuples(quarters, st.sampled_from("abc"), st.integers(0, 45)), max_size=150),
    )
    def test_rate_limiter(self, rate, burst, calls):
        """
        L{RateLimiter.allow} allows exactly what the model allows, call by
        call, for several sources.
        """
        limiter = RateLimiter(rate, burst)
        models = {}
        now = 0.0
        for step, source, cost in calls:
            now += step
            model = models.setdefault(source, _Bucket(rate, burst))
            model.refill(now)
            expected = model.tokens >= cost
            if expected:
                model.tokens -= cost
            self.assertEqual(limiter.allow(source, now, cost), expected, (now, source, cost))

    @given(
        st.integers(1, 20),
        st.integers(1, 400),
        st.integers(1, 3),
        st.lists(st.tuples(quarters, st.sampled_from("ab"), st.integers(0, 900)), max_size=150),
    )
    def test_source_limiter(self, packet_rate, byte_rate, burst_seconds, calls):
        """
        L{SourceLimiter.refused} refuses exactly what the model refuses and
        names the same budget; a refused datagram spends nothing.
        """
        limiter = SourceLimiter(packet_rate, byte_rate, burst_seconds)
        models = {}
        now = 0.0
        for step, source, size in calls:
            now += step
            packets, octets = models.setdefault(
                source,
                (_Bucket(packet_rate, packet_rate * burst_seconds), _Bucket(byte_rate, byte_rate * burst_seconds)),
            )
            packets.refill(now)
            octets.refill(now)
            if packets.tokens < 1:
                expected = SourceLimiter.PACKETS
            elif octets.tokens < size:
                expected = SourceLimiter.BYTES
            else:
                expected = None
                packets.tokens -= 1
                octets.tokens -= size
            self.assertEqual(limiter.refused(source, now, size), expected, (now, source, size))


class CapAndRefillTests(SynchronousTestCase):
    """
    Literal cases for the two survivors of the mutation audit: refills are
    capped at the burst, and a refused call keeps its refill.
    """

    def test_rate_limiter_capped(self):
        """
        However long a source was idle, it gets one burst at once.
        """
        limiter = RateLimiter(rate=10.0, burst=3.0)
        self.assertTrue(limiter.allow("a", 0.0, 3))
        self.assertEqual([limiter.allow("a", 1000.0) for _ in range(4)], [True, True, True, False])

    def test_rate_limiter_refusal_keeps_refill(self):
        """
        A call refused after a refill keeps the refill: a cheaper call at
        the same instant is allowed.
        """
        limiter = RateLimiter(rate=10.0, burst=10.0)
        self.assertTrue(limiter.allow("a", 0.0, 10))
        self.assertFalse(limiter.allow("a", 0.5, 6))
        self.assertTrue(limiter.allow("a", 0.5, 5))
        self.assertFalse(limiter.allow("a", 0.5, 1))

    def test_byte_bucket_capped(self):
        """
        After a long idle time the byte budget holds one burst
        (C{byte_rate * burst_seconds}), not what the idle time would give.
        """
        limiter = SourceLimiter(packet_rate=100.0, byte_rate=100.0, burst_seconds=2.0)
        self.assertIsNone(limiter.refused("a", 0.0, 200))
        self.assertIsNone(limiter.refused("a", 3600.0, 150))
        self.assertEqual(limiter.refused("a", 3600.0, 51), SourceLimiter.BYTES)
        self.assertIsNone(limiter.refused("a", 3600.0, 50))

    def test_packet_bucket_capped(self):
        """
        After a long idle time the packet budget holds one burst.
        """
        limiter = SourceLimiter(packet_rate=2.0, byte_rate=1e6, burst_seconds=1.5)
        self.assertEqual([limiter.refused("a", 0.0, 1) for _ in range(4)], [None] * 3 + [SourceLimiter.PACKETS])
        self.assertEqual([limiter.refused("a", 500.0, 1) for _ in range(4)], [None] * 3 + [SourceLimiter.PACKETS])

    def test_refusal_keeps_refill(self):
        """
        A datagram refused for its size after a refill keeps the refill of
        both budgets.
        """
        limiter = SourceLimiter(packet_rate=1.0, byte_rate=100.0, burst_seconds=1.0)
        self.assertIsNone(limiter.refused("a", 0.0, 100))
        self.assertEqual(limiter.refused("a", 0.5, 60), SourceLimiter.PACKETS)
        self.assertEqual(limiter.refused("a", 1.0, 101), SourceLimiter.BYTES)
        self.assertIsNone(limiter.refused("a", 1.0, 100))
        self.assertEqual(limiter.refused("a", 1.0, 0), SourceLimiter.PACKETS)

    def test_refill_since_last_call(self):
        """
        A refill counts only the time since the source's last call, not
        since time 0: 0.25 s at 4 per second after a late call is one
        token.
        """
        limiter = RateLimiter(rate=4.0, burst=8.0)
        self.assertTrue(limiter.allow("a", 100.0, 8))
        self.assertTrue(limiter.allow("a", 100.25, 1))
        self.assertFalse(limiter.allow("a", 100.25, 1))
        sources = SourceLimiter(packet_rate=4.0, byte_rate=400.0, burst_seconds=2.0)
        self.assertIsNone(sources.refused("a", 100.0, 800))
        self.assertEqual(sources.refused("a", 100.25, 101), SourceLimiter.BYTES)
        self.assertIsNone(sources.refused("a", 100.25, 100))
        # 8 packets - 2 + 1 refilled = 7: spend them, then 0.25 s gives one.
        self.assertEqual([sources.refused("a", 100.25, 0) for _ in range(8)], [None] * 7 + [SourceLimiter.PACKETS])
        self.assertEqual([sources.refused("a", 100.5, 0) for _ in range(2)], [None, SourceLimiter.PACKETS])

    def test_messages(self):
        """
        Refused settings say which.
        """
        self.assertIn("burst", str(self.assertRaises(ValueError, RateLimiter, 1.0, 0.5)))
        self.assertIn("rate", str(self.assertRaises(ValueError, RateLimiter, 0.0, 5.0)))
        self.assertIn("burst_seconds", str(self.assertRaises(ValueError, SourceLimiter, 1.0, 5.0, 0.0)))
        self.assertIn("packet burst", str(self.assertRaises(ValueError, SourceLimiter, 1.0, 5.0, 0.5)))

    def test_default_table_size(self):
        """
        By default the tables hold 65536 sources.
        """
        limiter = RateLimiter(rate=1.0, burst=1.0)
        sources = SourceLimiter(1.0, 1.0, 1.0)
        for n in range(65537):
            limiter.allow(n, 0.0)
            sources.refused(n, 0.0, 0)
        self.assertEqual((len(limiter), len(sources)), (65536, 65536))
        # Source 0 went first: it has a full bucket again.
        self.assertTrue(limiter.allow(0, 0.0))
        self.assertIsNone(sources.refused(0, 0.0, 0))

    def test_defaults(self):
        """
        By default a source's burst is two seconds' worth.
        """
        sources = SourceLimiter(packet_rate=2.0, byte_rate=100.0)
        self.assertEqual([sources.refused("a", 0.0, 1) for _ in range(5)], [None] * 4 + [SourceLimiter.PACKETS])
        self.assertEqual(sources.refused("b", 0.0, 201), SourceLimiter.BYTES)

    def test_first_call_over_burst(self):
        """
        A new source whose first cost is above the burst is refused and
        leaves no bucket behind; one at the burst is allowed.
        """
        limiter = RateLimiter(rate=1.0, burst=5.0)
        self.assertFalse(limiter.allow("a", 0.0, 5.5))
        self.assertEqual(len(limiter), 0)
        self.assertTrue(limiter.allow("a", 0.0, 5.0))
        self.assertFalse(limiter.allow("a", 0.0, 0.5))

    def test_settings_at_the_limit(self):
        """
        A burst of exactly one, and a packet burst of exactly one, are
        accepted.
        """
        self.assertTrue(RateLimiter(0.1, 1.0).allow("a", 0.0))
        self.assertIsNone(SourceLimiter(0.5, 10.0, 2.0).refused("a", 0.0, 10))
        self.assertRaises(ValueError, RateLimiter, -1.0, 5.0)
        self.assertRaises(ValueError, SourceLimiter, -1.0, 5.0)
        self.assertRaises(ValueError, SourceLimiter, 1.0, -5.0)
        self.assertRaises(ValueError, SourceLimiter, 1.0, 5.0, -1.0)
        self.assertRaises(ValueError, SourceLimiter, 0.0, 5.0, 2.0)

    def test_table_size(self):
        """
        The table never holds more than C{max_sources} sources.
        """
        limiter = RateLimiter(rate=1.0, burst=1.0, max_sources=3)
        sources = SourceLimiter(1.0, 1.0, 1.0, max_sources=3)
        for n in range(10):
            limiter.allow(n, 0.0)
            sources.refused(n, 0.0, 1)
            self.assertEqual(len(limiter), min(n + 1, 3))
            self.assertEqual(len(sources), min(n + 1, 3))


class LogBudgetTests(SynchronousTestCase):
    """
    L{LogBudget}: log lines per second, with what is held back counted.
    """

    def test_burst_rate_and_held(self):
        """
        The default burst is five seconds' worth; lines beyond it are held
        and counted by kind until L{LogBudget.take_held}.
        """
        budget = LogBudget(rate=2.0)
        self.assertEqual([budget.allow("x", 0.0) for _ in range(11)], [True] * 10 + [False])
        self.assertFalse(budget.allow("y", 0.0))
        self.assertFalse(budget.allow("y", 0.25))
        self.assertTrue(budget.allow("y", 0.5))
        self.assertEqual(budget.take_held(), {"x": 1, "y": 2})
        self.assertEqual(budget.take_held(), {})
        self.assertEqual([budget.allow("x", 1000.0) for _ in range(11)], [True] * 10 + [False])

    def test_small_rate(self):
        """
        Under one line per five seconds the burst is still one line.
        """
        budget = LogBudget(rate=0.1)
        self.assertEqual(budget.burst, 1.0)
        self.assertEqual([budget.allow("x", 0.0), budget.allow("x", 9.0), budget.allow("x", 10.0)], [True, False, True])

    def test_explicit_burst_and_off(self):
        """
        An explicit burst is used as is; a rate of 0 logs everything; a
        negative rate is refused.
        """
        budget = LogBudget(rate=1.0, burst=2.0)
        self.assertEqual([budget.allow("x", 0.0) for _ in range(3)], [True, True, False])
        off = LogBudget(rate=0.0)
        self.assertTrue(all(off.allow("x", 0.0) for _ in range(100)))
        self.assertEqual(off.take_held(), {})
        self.assertIn("rate", str(self.assertRaises(ValueError, LogBudget, -1.0)))
        self.assertEqual(LogBudget(rate=0.0, burst=None).burst, 1.0)
