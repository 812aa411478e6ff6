"""
Tests for L{p2pnet._relaytable.AllocationTable}: the relay's allocations,
their caps, eviction and expiry, through the table's public methods.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from p2pnet import wire
from p2pnet._relaytable import AllocationTable

MAC = wire.DatagramMac(b"k" * 16)
A1 = ("192.0.2.1", 1000)
A2 = ("192.0.2.1", 2000)
B1 = ("198.51.100.2", 1000)
C1 = ("203.0.113.3", 1000)


def table(**kwargs) -> AllocationTable:
    args = dict(max_allocations=4, max_per_source=1, idle_timeout=60.0, unbound_timeout=10.0)
    args.update(kwargs)
    return AllocationTable(**args)


class BindTests(SynchronousTestCase):
    def test_outcomes(self) -> None:
        """
        The first binding allocates, the other side's binds (and
        establishes), a move rebinds, the same address again binds.
        """
        t = table(max_per_source=4)
        entry, outcome = t.bind(b"a" * 8, MAC, 0, A1, 1, 0.0)
        self.assertEqual(outcome, "allocated")
        self.assertFalse(entry.established)
        self.assertEqual(t.bind(b"a" * 8, MAC, 1, B1, 1, 0.0)[1], "bound")
        self.assertTrue(entry.established)
        self.assertEqual(t.bind(b"a" * 8, MAC, 1, C1, 2, 0.0)[1], "rebound")
        self.assertEqual(t.bind(b"a" * 8, MAC, 1, C1, 3, 0.0)[1], "bound")
        self.assertEqual(entry.members, [A1, C1])
        self.assertEqual(entry.proven, [1, 3])

    def test_per_source_cap(self) -> None:
        """
        One binding per source IP here: a second allocation from the same
        IP is refused, whatever the port; a member may move to another port
        of its own IP, or to a free IP, but not to an IP at its cap.
        """
        t = table()
        self.assertEqual(t.bind(b"a" * 8, MAC, 0, A1, 1, 0.0)[1], "allocated")
        self.assertEqual(t.bindings_from("192.0.2.1"), 1)
        self.assertEqual(t.bind(b"b" * 8, MAC, 0, A2, 1, 0.0), (None, "dropped-source-full"))
        self.assertEqual(t.bind(b"a" * 8, MAC, 1, A2, 1, 0.0), (None, "dropped-source-full"))
        self.assertEqual(t.bind(b"a" * 8, MAC, 0, A2, 2, 0.0)[1], "rebound")
        self.assertEqual(t.bindings_from("192.0.2.1"), 1)
        self.assertEqual(t.bind(b"c" * 8, MAC, 0, B1, 1, 0.0)[1], "allocated")
        self.assertEqual(t.bind(b"a" * 8, MAC, 0, B1, 3, 0.0), (None, "dropped-source-full"))
        self.assertEqual(t.bind(b"a" * 8, MAC, 0, C1, 3, 0.0)[1], "rebound")
        self.assertEqual(t.bindings_from("192.0.2.1"), 0)
        self.assertEqual(t.bindings_from("203.0.113.3"), 1)

    def test_full_table(self) -> None:
        """
        Beyond max_allocations a new allocation evicts the oldest pending
        one, or is refused when all are established.
        """
        t = table(max_allocations=2, max_per_source=8)
        t.bind(b"a" * 8, MAC, 0, A1, 1, 0.0)
        t.bind(b"b" * 8, MAC, 0, B1, 1, 1.0)
        self.assertEqual(t.bind(b"c" * 8, MAC, 0, C1, 1, 2.0)[1], "evicted")
        self.assertNotIn(b"a" * 8, t.entries)
        self.assertEqual(t.bindings_from("192.0.2.1"), 0)
        t.bind(b"b" * 8, MAC, 1, A1, 1, 2.0)
        t.bind(b"c" * 8, MAC, 1, A2, 1, 2.0)
        self.assertEqual(t.bind(b"d" * 8, MAC, 0, A1, 1, 3.0), (None, "dropped-full"))
        self.assertEqual(len(t), 2)

    def test_one_allocation_table(self) -> None:
        """
        A table of one allocation and one binding per source is valid.
        """
        t = table(max_allocations=1)
        self.assertEqual(t.bind(b"a" * 8, MAC, 0, A1, 1, 0.0)[1], "allocated")
        self.assertEqual(t.bind(b"b" * 8, MAC, 0, B1, 1, 0.0)[1], "evicted")

    def test_arguments(self) -> None:
        for kwargs in (dict(max_allocations=0), dict(max_per_source=0)):
            error = self.assertRaises(ValueError, table, **kwargs)
            self.assertEqual(str(error), "max_allocations and max_per_source must be at least 1")


class ExpiryTests(SynchronousTestCase):
    def test_pending_expires_unbound(self) -> None:
        """
        A pending allocation goes unbound_timeout after its first binding
        (10 s: kept at 9.9 s, gone at 10 s), freeing its source's slot.
        """
        t = table()
        t.bind(b"a" * 8, MAC, 0, A1, 1, 0.0)
        self.assertEqual(t.expire(9.9), [])
        self.assertEqual(t.expire(10.0), [(b"a" * 8, "unbound")])
        self.assertEqual(t.bindings_from("192.0.2.1"), 0)
        self.assertEqual(len(t), 0)

    def test_established_expires_idle(self) -> None:
        """
        An established allocation outlives unbound_timeout and goes only
        idle_timeout (60 s) after its last binding or datagram.
        """
        t = table()
        entry, _ = t.bind(b"a" * 8, MAC, 0, A1, 1, 0.0)
        t.bind(b"a" * 8, MAC, 1, B1, 1, 5.0)
        self.assertEqual(t.expire(20.0), [])
        self.assertEqual(t.expire(64.9), [])
        self.assertEqual(t.expire(65.0), [(b"a" * 8, "idle")])
        self.assertEqual((t.bindings_from("192.0.2.1"), t.bindings_from("198.51.100.2")), (0, 0))

    def test_idle_pending_forgotten_everywhere(self) -> None:
        """
        A pending allocation that goes idle (idle timeout shorter than the
        unbound one) leaves no trace: a later eviction picks a live
        pending allocation.
        """
        t = table(max_allocations=1, idle_timeout=5.0, unbound_timeout=10.0)
        t.bind(b"a" * 8, MAC, 0, A1, 1, 0.0)
        self.assertEqual(t.expire(5.0), [(b"a" * 8, "idle")])
        self.assertEqual(t.bind(b"b" * 8, MAC, 0, B1, 1, 6.0)[1], "allocated")
        self.assertEqual(t.bind(b"c" * 8, MAC, 0, C1, 1, 7.0)[1], "evicted")
        self.assertEqual(list(t.entries), [b"c" * 8])
        self.assertEqual(t.bindings_from("198.51.100.2"), 0)

    # Equivalent: an allocation's initial proven stamps other than -1
    # (stamps are milliseconds, never negative), its initial 'last' and
    # 'established' (set by the binding that creates it; None is false),
    # popitem(last=None) for last=False, and releasing then counting
    # again the same IP when a member moves to another port of it.
