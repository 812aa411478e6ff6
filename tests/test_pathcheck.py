"""
Tests for L{p2pnet.secure._pathcheck}, path validation before a connection
moves.
"""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pnet.address import Address
from p2pnet.secure._pathcheck import PathValidator

HOME = Address("192.0.2.1", 4000)
REBOUND = Address("192.0.2.1", 4001)
ATTACKER = Address("203.0.113.66", 5555)


class CountingBytes:
    """
    A predictable random source: the n-th call returns 8 bytes all equal
    to n (1, 2, 3...).
    """

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, n: int) -> bytes:
        self.calls += 1
        return bytes([self.calls]) * n


def validator(**kwargs) -> PathValidator:
    return PathValidator(CountingBytes(), **kwargs)


class PathValidatorTests(SynchronousTestCase):
    def test_challenge_data(self) -> None:
        """
        A challenge is 8 bytes from the random source.
        """
        v = validator()
        self.assertEqual(v.challenge(REBOUND, 0.0), b"\x01" * 8)
        self.assertEqual(v.challenge(HOME, 0.0), b"\x02" * 8)

    def test_response_validates_once(self) -> None:
        """
        The echo from the challenged address validates it; the same echo
        again (a replay) validates nothing.
        """
        v = validator()
        data = v.challenge(REBOUND, 0.0)
        self.assertTrue(v.response(REBOUND, data, 0.1))
        self.assertFalse(v.is_pending(REBOUND, 0.1))
        self.assertFalse(v.response(REBOUND, data, 0.2))

    def test_response_from_other_address(self) -> None:
        """
        The right data from another address validates nothing and does not
        spoil the pending challenge: the real answer still validates.
        """
        v = validator()
        data = v.challenge(REBOUND, 0.0)
        self.assertFalse(v.response(ATTACKER, data, 0.1))
        self.assertFalse(v.response(HOME, data, 0.1))
        self.assertTrue(v.is_pending(REBOUND, 0.1))
        self.assertTrue(v.response(REBOUND, data, 0.2))

    def test_wrong_data(self) -> None:
        """
        A response with other data, or with data sent to another address,
        validates nothing and leaves the challenge pending.
        """
        v = validator()
        data = v.challenge(REBOUND, 0.0)
        other = v.challenge(ATTACKER, 0.0)
        for wrong in (bytes(8), other, data[:7], data + b"\x01", b""):
            self.assertFalse(v.response(REBOUND, wrong, 0.1))
        self.assertFalse(v.response(ATTACKER, data, 0.1))
        self.assertTrue(v.response(REBOUND, data, 0.1))

    def test_unsolicited_response(self) -> None:
        """
        A response when nothing was challenged validates nothing.
        """
        v = validator()
        self.assertFalse(v.response(REBOUND, b"\x01" * 8, 0.0))

    def test_one_challenge_per_address(self) -> None:
        """
        While an address is being challenged, asking again gives nothing
        to send (the retransmissions do that).
        """
        v = validator()
        self.assertIsNotNone(v.challenge(REBOUND, 0.0))
        self.assertIsNone(v.challenge(REBOUND, 0.5))

    def test_pending_cap(self) -> None:
        """
        At most four addresses are challenged at once; a fifth gets no
        challenge until one of the four is settled.
        """
        v = validator()
        addresses = [Address("198.51.100.1", 1000 + i) for i in range(5)]
        sent = [v.challenge(a, 0.0) for a in addresses]
        self.assertEqual(sent[4], None)
        self.assertTrue(all(sent[:4]))
        self.assertTrue(v.response(addresses[0], sent[0], 0.1))
        self.assertIsNotNone(v.challenge(addresses[4], 0.2))
        self.assertIsNone(v.challenge(Address("198.51.100.1", 2000), 0.2))

    def test_flood_costs_twelve_challenges(self) -> None:
        """
        Authenticated packets from 100 new addresses at once cost 4
        challenges now and 8 retransmissions over the next 3 seconds: 12
        in all, then nothing.
        """
        v = validator()
        flood = [Address("203.0.113.7", port) for port in range(100)]
        now_sent = [v.challenge(a, 0.0) for a in flood]
        self.assertEqual(len([d for d in now_sent if d is not None]), 4)
        later = []
        for tick in range(1, 30):
            now = tick * 0.1
            later += v.retransmit_due(now)
            self.assertEqual([v.challenge(a, now) for a in flood], [None] * 100)
        self.assertEqual(len(later), 8)
        self.assertEqual(v.retransmit_due(3.0), [])
        self.assertEqual(v.next_deadline(), None)

    def test_retransmission_schedule(self) -> None:
        """
        With the defaults (3 attempts, 1 s): challenges at 0, 1 and 2 s,
        each with new data, and the entry lapses at 3 s.
        """
        v = validator()
        self.assertEqual(v.challenge(REBOUND, 10.0), b"\x01" * 8)
        self.assertEqual(v.next_deadline(), 11.0)
        self.assertEqual(v.retransmit_due(10.9), [])
        self.assertEqual(v.retransmit_due(11.0), [(REBOUND, b"\x02" * 8)])
        self.assertEqual(v.retransmit_due(11.5), [])
        self.assertEqual(v.next_deadline(), 12.0)
        self.assertEqual(v.retransmit_due(12.0), [(REBOUND, b"\x03" * 8)])
        self.assertEqual(v.next_deadline(), 13.0)
        self.assertEqual(v.retransmit_due(12.99), [])
        self.assertTrue(v.is_pending(REBOUND, 12.99))
        self.assertEqual(v.retransmit_due(13.0), [])
        self.assertFalse(v.is_pending(REBOUND, 13.0))
        self.assertEqual(v.next_deadline(), None)
        self.assertEqual(v.expired, 1)

    def test_any_sent_value_answers(self) -> None:
        """
        After a retransmission, the answer to the first challenge still
        validates (the first one may have been delayed, not lost).
        """
        v = validator()
        first = v.challenge(REBOUND, 0.0)
        [(_, second)] = v.retransmit_due(1.0)
        self.assertNotEqual(first, second)
        self.assertTrue(v.response(REBOUND, first, 1.5))

    def test_expired_answer(self) -> None:
        """
        An answer after the entry's lifetime validates nothing, even if the
        owner's timer has not run.
        """
        v = validator()
        data = v.challenge(REBOUND, 0.0)
        self.assertFalse(v.response(REBOUND, data, 3.0))
        # And a new challenge to it may start.
        self.assertEqual(v.challenge(REBOUND, 3.0), b"\x02" * 8)
        self.assertFalse(v.response(REBOUND, data, 3.1))

    def test_expiry_frees_slots(self) -> None:
        """
        Lapsed entries free their place in the table.
        """
        v = validator(max_pending=1, attempts=1, timeout=2.0)
        self.assertIsNotNone(v.challenge(REBOUND, 0.0))
        self.assertEqual(v.next_deadline(), 2.0)
        self.assertIsNone(v.challenge(ATTACKER, 1.9))
        self.assertIsNotNone(v.challenge(ATTACKER, 2.0))

    def test_single_attempt(self) -> None:
        """
        With one attempt nothing is retransmitted.
        """
        v = validator(attempts=1)
        v.challenge(REBOUND, 0.0)
        self.assertEqual(v.retransmit_due(0.99), [])
        self.assertEqual(v.retransmit_due(1.0), [])
        self.assertFalse(v.is_pending(REBOUND, 1.0))

    def test_two_attempts(self) -> None:
        """
        With two attempts one challenge is sent again, after the timeout,
        with new data; then the entry lapses a timeout later.
        """
        v = validator(attempts=2)
        first = v.challenge(REBOUND, 0.0)
        self.assertEqual(v.next_deadline(), 1.0)
        self.assertEqual(v.retransmit_due(0.99), [])
        again = v.retransmit_due(1.0)
        self.assertEqual([a for a, _ in again], [REBOUND])
        self.assertNotEqual(again[0][1], first)
        self.assertEqual(v.next_deadline(), 2.0)
        self.assertEqual(v.retransmit_due(1.99), [])
        self.assertTrue(v.is_pending(REBOUND, 1.99))
        self.assertFalse(v.is_pending(REBOUND, 2.0))

    def test_expired_counted(self) -> None:
        """
        Each address that lapses unanswered counts one in C{expired}.
        """
        v = validator(attempts=1)
        v.challenge(REBOUND, 0.0)
        v.challenge(ATTACKER, 0.0)
        self.assertEqual(v.expired, 0)
        self.assertFalse(v.is_pending(REBOUND, 1.0))
        self.assertEqual(v.expired, 2)
        v.challenge(REBOUND, 1.0)
        v.retransmit_due(2.0)
        self.assertEqual(v.expired, 3)

    # Equivalent: with one attempt, a retransmission time set anyway
    # ('>= 1' or 'or True' for '> 1' in challenge()) equals the expiry
    # time, which drops the entry first; likewise '<=' for '<' in
    # retransmit_due() gives the last challenge a next time equal to its
    # expiry.

    def test_cancel(self) -> None:
        """
        A cancelled challenge validates nothing.
        """
        v = validator()
        data = v.challenge(REBOUND, 0.0)
        v.cancel(REBOUND)
        v.cancel(ATTACKER)
        self.assertFalse(v.response(REBOUND, data, 0.1))
        self.assertEqual(v.next_deadline(), None)

    def test_bad_random_source(self) -> None:
        """
        A random source that does not give 8 bytes is refused rather than
        sending short challenges.
        """
        v = PathValidator(lambda n: b"short")
        error = self.assertRaises(ValueError, v.challenge, REBOUND, 0.0)
        self.assertEqual(str(error), "random_bytes(8) must return 8 bytes")

    def test_arguments_validated(self) -> None:
        """
        Zero attempts, slots or timeout make no sense.
        """
        for kwargs in (dict(attempts=0), dict(max_pending=0), dict(timeout=0)):
            error = self.assertRaises(ValueError, PathValidator, CountingBytes(), **kwargs)
            self.assertEqual(str(error), "attempts, max_pending and timeout must be positive")

    @given(st.lists(st.tuples(st.integers(0, 999), st.floats(0, 0.7)), max_size=200))
    def test_flood_bounded(self, arrivals: list) -> None:
        """
        Packets from any number of new addresses, at any pace, with the
        owner's timer running: no more than 4 addresses are ever pending,
        and at most 3 challenges go to each address per entry, so in any 3
        seconds at most 4 * 3 * 2 challenges leave (entries that overlap
        the interval's start and end).
        """
        v = validator()
        now = 0.0
        sent: list[tuple[float, Address]] = []
        for port, gap in arrivals:
            now += gap
            for address, _ in v.retransmit_due(now):
                sent.append((now, address))
            address = Address("203.0.113.9", port)
            if v.challenge(address, now) is not None:
                sent.append((now, address))
            self.assertLessEqual(len(v._pending), 4)
        for start, _ in sent:
            self.assertLessEqual(len([t for t, _ in sent if start <= t < start + 3.0]), 24)
