"""
Tests for L{p2pnet._registry}, the introducer's pure bookkeeping.
"""

from twisted.trial.unittest import SynchronousTestCase

from p2pnet._registry import ChallengeNeeded, Registry, RegistryError
from p2pnet.address import Address
from p2pnet.wire import ErrorCode, proof_tag

from .helpers import seeded_bytes

A_PUBLIC = Address("203.0.113.5", 40000)
A_LOCAL = (Address("10.0.0.5", 5000),)
B_PUBLIC = Address("198.51.100.7", 41000)


class RegistrationTests(SynchronousTestCase):
    def setUp(self):
        self.registry = Registry(30.0, seeded_bytes())

    def test_register_records_public_and_local(self):
        """
        A registration keeps the public address it came from and the local
        addresses it listed, and hands out an 8-byte cookie.
        """
        registration = self.registry.register("a", A_PUBLIC, A_LOCAL, None, 0.0)
        self.assertEqual(registration.public, A_PUBLIC)
        self.assertEqual(registration.local, A_LOCAL)
        self.assertEqual(len(registration.cookie), 8)
        self.assertIs(self.registry.lookup("a", 1.0), registration)

    def test_expiry(self):
        """
        A registration not refreshed within its lifetime expires; a
        heartbeat pushes expiry back.
        """
        a = self.registry.register("a", A_PUBLIC, A_LOCAL, None, 0.0)
        self.registry.register("b", B_PUBLIC, (), None, 0.0)
        self.registry.heartbeat("a", a.cookie, A_PUBLIC, 20.0)
        self.assertEqual(self.registry.expire(29.9), [])
        expired = self.registry.expire(30.0)
        self.assertEqual([r.peer_id for r in expired], ["b"])
        self.assertIsNotNone(self.registry.lookup("a", 49.0))
        self.assertEqual([r.peer_id for r in self.registry.expire(50.0)], ["a"])
        self.assertEqual(len(self.registry), 0)

    def test_lookup_ignores_expired_before_sweep(self):
        """
        An expired registration is gone even if no sweep ran yet.
        """
        self.registry.register("a", A_PUBLIC, A_LOCAL, None, 0.0)
        self.assertIsNone(self.registry.lookup("a", 30.0))

    def test_restarted_client_same_address_without_cookie(self):
        """
        A client without a key restarted at the same address re-registers
        without its cookie: the same registration, refreshed, with the same
        cookie (its answer goes to that address); nothing moves.
        """
        a = self.registry.register("a", A_PUBLIC, A_LOCAL, None, 0.0)
        self.registry.heartbeat("a", a.cookie, A_PUBLIC, 0.5)
        again = self.registry.register("a", A_PUBLIC, (), None, 20.0)
        self.assertIs(again, a)
        self.assertEqual(again.cookie, a.cookie)
        self.assertEqual(again.local, ())
        self.assertIsNotNone(self.registry.lookup("a", 49.0))

    def test_taken_peer_id(self):
        """
        Another address cannot take a live, confirmed peer id without its
        cookie.
        """
        a = self.registry.register("a", A_PUBLIC, A_LOCAL, None, 0.0)
        self.registry.heartbeat("a", a.cookie, A_PUBLIC, 0.5)
        error = self.assertRaises(
            RegistryError, self.registry.register, "a", B_PUBLIC, (), None, 1.0
        )
        self.assertEqual(error.code, ErrorCode.PEER_ID_TAKEN)
        error = self.assertRaises(
            RegistryError, self.registry.register, "a", B_PUBLIC, (), b"x" * 8, 1.0
        )
        self.assertEqual(error.code, ErrorCode.PEER_ID_TAKEN)

    def test_rebinding_keeps_sessions(self):
        """
        Re-registering with the cookie from a new public address (the NAT
        rebound) moves nothing until the challenge is answered from there;
        then the address is updated and the peer's sessions are kept.
        """
        a = self.registry.register("a", A_PUBLIC, A_LOCAL, None, 0.0)
        session = self.registry.host_session(a, "Keith's Server", "g", 4, False, ())
        moved = Address("203.0.113.5", 40001)
        needed = self.assertRaises(ChallengeNeeded, self.registry.register, "a", moved, A_LOCAL, a.cookie, 5.0)
        self.assertEqual(needed.kind, "move")
        self.assertEqual(a.public, A_PUBLIC)
        challenge = self.registry.challenge(needed, moved, 5.0)
        proof = proof_tag(a.cookie, challenge, "a", moved)
        again, kind = self.registry.prove("a", challenge, proof, moved, 5.1, None)
        self.assertIs(again, a)
        self.assertEqual(kind, "move")
        self.assertEqual(a.public, moved)
        self.assertEqual(list(self.registry.sessions()), [session])

    def test_heartbeat_from_new_address_moves_nothing(self):
        """
        A heartbeat with the right cookie from a new source (a replay, or a
        NAT rebinding) changes nothing by itself: it needs a challenge.
        """
        a = self.registry.register("a", A_PUBLIC, A_LOCAL, None, 0.0)
        self.registry.heartbeat("a", a.cookie, A_PUBLIC, 0.5)
        moved = Address("203.0.113.5", 40002)
        needed = self.assertRaises(ChallengeNeeded, self.registry.heartbeat, "a", a.cookie, moved, 1.0)
        self.assertIs(needed.registration, a)
        self.assertEqual(a.public, A_PUBLIC)
        self.assertEqual(a.refreshed, 0.5)

    def test_wrong_cookie(self):
        """
        A heartbeat with a wrong cookie is refused and changes nothing.
        """
        a = self.registry.register("a", A_PUBLIC, A_LOCAL, None, 0.0)
        error = self.assertRaises(
            RegistryError, self.registry.heartbeat, "a", b"\0" * 8, B_PUBLIC, 1.0
        )
        self.assertEqual(error.code, ErrorCode.NOT_AUTHORISED)
        self.assertEqual(a.public, A_PUBLIC)
        self.assertEqual(a.refreshed, 0.0)

    def test_unknown_peer_heartbeat(self):
        """
        A heartbeat for an unknown peer says it is not registered (so the
        client re-registers, e.g. after an introducer restart).
        """
        error = self.assertRaises(
            RegistryError, self.registry.heartbeat, "a", b"\0" * 8, A_PUBLIC, 1.0
        )
        self.assertEqual(error.code, ErrorCode.NOT_REGISTERED)

    def test_bad_registrations(self):
        """
        Empty or overlong peer ids and too many local addresses are refused.
        """
        for peer_id, local in [("", ()), ("x" * 65, ()), ("a", A_LOCAL * 9)]:
            error = self.assertRaises(
                RegistryError, self.registry.register, peer_id, A_PUBLIC, local, None, 0.0
            )
            self.assertEqual(error.code, ErrorCode.BAD_REQUEST)


class RoundTripTests(SynchronousTestCase):
    def setUp(self):
        self.registry = Registry(30.0, seeded_bytes())

    def test_confirmation_measures_round_trip(self):
        """
        The heartbeat that confirms a registration measures the host's
        round trip (registration to confirmation), on the generic and the
        fast path; later heartbeats do not change it.
        """
        a = self.registry.register("a", A_PUBLIC, A_LOCAL, None, 10.0)
        self.assertIsNone(a.rtt)
        self.registry.heartbeat("a", a.cookie, A_PUBLIC, 10.025)
        self.assertAlmostEqual(a.rtt, 0.025)
        self.registry.heartbeat("a", a.cookie, A_PUBLIC, 20.0)
        self.assertAlmostEqual(a.rtt, 0.025)
        b = self.registry.register("b", B_PUBLIC, (), None, 40.0)
        self.assertIs(self.registry.refresh("b", b.cookie, B_PUBLIC.host, B_PUBLIC.port, 40.1), b)
        self.assertAlmostEqual(b.rtt, 0.1)
        self.registry.refresh("b", b.cookie, B_PUBLIC.host, B_PUBLIC.port, 45.0)
        self.assertAlmostEqual(b.rtt, 0.1)

    def test_implausible_round_trip_dropped(self):
        """
        A confirmation that came more than 2 s after the registration (a
        lost and retransmitted heartbeat) leaves the round trip unknown; 2 s
        exactly is kept.
        """
        a = self.registry.register("a", A_PUBLIC, A_LOCAL, None, 0.0)
        self.registry.heartbeat("a", a.cookie, A_PUBLIC, 2.001)
        self.assertTrue(a.verified)
        self.assertIsNone(a.rtt)
        b = self.registry.register("b", B_PUBLIC, (), None, 10.0)
        self.registry.heartbeat("b", b.cookie, B_PUBLIC, 12.0)
        self.assertEqual(b.rtt, 2.0)


class SessionTests(SynchronousTestCase):
    def setUp(self):
        self.registry = Registry(30.0, seeded_bytes())
        self.host = self.registry.register("host", A_PUBLIC, A_LOCAL, None, 0.0)

    def _peer(self, name, port):
        return self.registry.register(name, Address("198.51.100.1", port), (), None, 0.0)

    def test_list_filter(self):
        """
        Sessions list in creation order, filtered by game.
        """
        one = self.registry.host_session(self.host, "one", "chess", 2, False, ())
        two = self.registry.host_session(self.host, "two", "go", 2, False, ())
        self.assertEqual(list(self.registry.sessions()), [one, two])
        self.assertEqual(list(self.registry.sessions("go")), [two])

    def test_join_client_server(self):
        """
        Joining a plain session introduces the joiner to the host only.
        """
        session = self.registry.host_session(self.host, "s", "g", 4, False, ())
        b, c = self._peer("b", 1), self._peer("c", 2)
        self.assertEqual(self.registry.join(b, session.session_id, 0.0)[1], [self.host])
        self.assertEqual(self.registry.join(c, session.session_id, 0.0)[1], [self.host])
        self.assertEqual(session.players, 1)
        self.assertTrue(self.registry.confirm_join(session.session_id, "b", 0.5))
        self.assertTrue(self.registry.confirm_join(session.session_id, "c", 0.5))
        self.assertFalse(self.registry.confirm_join(session.session_id, "c", 0.5))
        self.assertEqual(session.players, 3)

    def test_join_mesh(self):
        """
        Joining a mesh session introduces the joiner to the host and to
        every member already there.
        """
        session = self.registry.host_session(self.host, "s", "g", 4, True, ())
        b, c, d = self._peer("b", 1), self._peer("c", 2), self._peer("d", 3)
        self.registry.join(b, session.session_id, 0.0)
        self.registry.join(c, session.session_id, 0.0)
        _, targets = self.registry.join(d, session.session_id, 0.0)
        self.assertEqual([t.peer_id for t in targets], ["host", "b", "c"])

    def test_full(self):
        """
        Joining a full session is refused with SESSION_FULL; rejoining as a
        member does not count twice.
        """
        session = self.registry.host_session(self.host, "s", "g", 2, False, ())
        b, c = self._peer("b", 1), self._peer("c", 2)
        self.registry.join(b, session.session_id, 0.0)
        self.registry.join(b, session.session_id, 0.0)
        error = self.assertRaises(RegistryError, self.registry.join, c, session.session_id, 0.0)
        self.assertEqual(error.code, ErrorCode.SESSION_FULL)
        self.assertIn("2/2", error.reason)

    def test_member_expiry_frees_a_slot(self):
        """
        When a member expires its slot is free again.
        """
        session = self.registry.host_session(self.host, "s", "g", 2, False, ())
        b = self._peer("b", 1)
        self.registry.join(b, session.session_id, 0.0)
        self.registry.confirm_join(session.session_id, "b", 0.0)
        self.registry.heartbeat("host", self.host.cookie, A_PUBLIC, 20.0)
        self.registry.expire(31.0)
        self.assertEqual(session.members, [])
        c = self.registry.register("c", B_PUBLIC, (), None, 31.0)
        self.registry.join(c, session.session_id, 31.0)
        self.registry.confirm_join(session.session_id, "c", 31.0)
        self.assertEqual(session.members, ["c"])

    def test_join_after_host_expired(self):
        """
        Joining a session whose host's registration expired (no sweep ran
        yet) is refused UNKNOWN_SESSION, and the session is gone.
        """
        session = self.registry.host_session(self.host, "s", "g", 4, False, ())
        b = self.registry.register("b", B_PUBLIC, (), None, 29.0)
        error = self.assertRaises(RegistryError, self.registry.join, b, session.session_id, 30.0)
        self.assertEqual(error.code, ErrorCode.UNKNOWN_SESSION)
        self.assertEqual(list(self.registry.sessions()), [])

    def test_mesh_join_skips_expired_members(self):
        """
        A mesh join names only live members: one whose registration expired
        is neither a target nor counted.
        """
        session = self.registry.host_session(self.host, "s", "g", 3, True, ())
        b, c = self._peer("b", 1), self._peer("c", 2)
        self.registry.join(b, session.session_id, 0.0)
        self.registry.confirm_join(session.session_id, "b", 0.0)
        self.registry.join(c, session.session_id, 0.0)
        self.registry.confirm_join(session.session_id, "c", 0.0)
        self.registry.heartbeat("host", self.host.cookie, A_PUBLIC, 20.0)
        self.registry.heartbeat("c", c.cookie, c.public, 20.0)
        d = self.registry.register("d", Address("192.0.2.50", 1), (), None, 31.0)
        _, targets = self.registry.join(d, session.session_id, 31.0)
        self.assertEqual([t.peer_id for t in targets], ["host", "c"])
        self.assertNotIn(None, targets)
        self.assertEqual(session.members, ["c"])

    def test_unhost_frees_the_slot(self):
        """
        Unhosting gives the host's session slot back: hosting and unhosting
        five times in a row (more than the cap of 4) works.
        """
        for n in range(5):
            session = self.registry.host_session(self.host, f"s{n}", "g", 4, False, ())
            self.registry.unhost(self.host, session.session_id)
        self.assertEqual(list(self.registry.sessions()), [])
        for n in range(4):
            self.registry.host_session(self.host, f"t{n}", "g", 4, False, ())
        error = self.assertRaises(RegistryError, self.registry.host_session, self.host, "u", "g", 4, False, ())
        self.assertEqual(error.code, ErrorCode.TOO_MANY_SESSIONS)

    def test_host_expiry_removes_sessions(self):
        """
        Sessions go away with their host's registration.
        """
        self.registry.host_session(self.host, "s", "g", 2, False, ())
        self.registry.expire(30.0)
        self.assertEqual(list(self.registry.sessions()), [])

    def test_unhost(self):
        """
        The host can withdraw its session; others cannot.
        """
        session = self.registry.host_session(self.host, "s", "g", 2, False, ())
        b = self._peer("b", 1)
        error = self.assertRaises(RegistryError, self.registry.unhost, b, session.session_id)
        self.assertEqual(error.code, ErrorCode.UNKNOWN_SESSION)
        self.registry.unhost(self.host, session.session_id)
        self.assertEqual(list(self.registry.sessions()), [])
        error = self.assertRaises(RegistryError, self.registry.join, b, session.session_id, 0.0)
        self.assertEqual(error.code, ErrorCode.UNKNOWN_SESSION)

    def test_bad_sessions(self):
        """
        Nameless sessions, absurd sizes and too many sessions are refused.
        """
        for name, players in [("", 4), ("x", 1), ("x", 5000)]:
            error = self.assertRaises(
                RegistryError, self.registry.host_session, self.host, name, "g", players, False, ()
            )
            self.assertEqual(error.code, ErrorCode.BAD_REQUEST)
        for i in range(4):
            self.registry.host_session(self.host, f"s{i}", "g", 2, False, ())
        error = self.assertRaises(
            RegistryError, self.registry.host_session, self.host, "s5", "g", 2, False, ()
        )
        self.assertEqual(error.code, ErrorCode.TOO_MANY_SESSIONS)


class ReasonTests(SynchronousTestCase):
    def test_reasons_cut_to_the_wire_limit(self):
        """
        A refusal reason longer than 255 bytes of UTF-8 is cut at the
        source (on a character boundary) and marked with an ellipsis.
        """
        error = RegistryError(ErrorCode.UNKNOWN_PEER, "é" * 200)
        raw = error.reason.encode("utf-8")
        self.assertEqual(len(raw), 255)
        self.assertEqual(error.reason, "é" * 126 + "...")
        self.assertEqual(RegistryError(ErrorCode.UNKNOWN_PEER, "short").reason, "short")


class CapTests(SynchronousTestCase):
    """
    #14.6: registrations are capped in all and per source IP; at a cap
    unconfirmed registrations make room, confirmed ones never do.
    """

    def confirmed(self, registry, name, public, now=0.0):
        registration = registry.register(name, public, (), None, now)
        registry.heartbeat(name, registration.cookie, public, now)
        return registration

    def test_global_cap_evicts_unconfirmed_first(self):
        """
        At the global cap, unconfirmed registrations make room for new
        ones; when all are confirmed, new ones are refused RATE_LIMITED.
        """
        registry = Registry(30.0, seeded_bytes(), max_registrations=10)
        for n in range(5):
            self.confirmed(registry, f"c{n}", Address("192.0.2.1", 1000 + n))
        for n in range(5):
            registry.register(f"u{n}", Address("198.51.100.1", 1000 + n), (), None, 0.0)
        for n in range(5):
            self.confirmed(registry, f"late{n}", Address("203.0.113.9", 1000 + n))
        self.assertEqual(len(registry), 10)
        for n in range(5):
            self.assertIsNone(registry.lookup(f"u{n}", 0.0))
            self.assertIsNotNone(registry.lookup(f"late{n}", 0.0))
        error = self.assertRaises(
            RegistryError, registry.register, "more", Address("203.0.113.10", 1), (), None, 1.0
        )
        self.assertEqual(error.code, ErrorCode.RATE_LIMITED)
        for n in range(5):
            self.assertIsNotNone(registry.lookup(f"c{n}", 1.0))

    def test_oldest_unconfirmed_goes(self):
        """
        The oldest unconfirmed registration is the one evicted.
        """
        registry = Registry(30.0, seeded_bytes(), max_registrations=3)
        for n in range(3):
            registry.register(f"u{n}", Address("198.51.100.1", 1000 + n), (), None, float(n))
        registry.register("new", Address("198.51.100.2", 1), (), None, 5.0)
        self.assertIsNone(registry.lookup("u0", 5.0))
        self.assertIsNotNone(registry.lookup("u1", 5.0))

    def test_per_ip_cap(self):
        """
        One source IP holds at most C{max_per_ip} registrations: its own
        unconfirmed ones make room, then it is refused; other IPs are not
        affected, and expiry frees its slots.
        """
        registry = Registry(30.0, seeded_bytes(), max_per_ip=3)
        crowded = "198.51.100.1"
        for n in range(3):
            registry.register(f"u{n}", Address(crowded, 1000 + n), (), None, 0.0)
        # a fourth from the same IP evicts that IP's oldest unconfirmed one
        self.confirmed(registry, "c0", Address(crowded, 2000))
        self.assertIsNone(registry.lookup("u0", 0.0))
        self.confirmed(registry, "c1", Address(crowded, 2001))
        self.confirmed(registry, "c2", Address(crowded, 2002))
        error = self.assertRaises(RegistryError, registry.register, "c3", Address(crowded, 2003), (), None, 0.0)
        self.assertEqual(error.code, ErrorCode.RATE_LIMITED)
        # another IP is not affected; expiry gives the IP's slots back
        registry.register("other", Address("198.51.100.2", 1), (), None, 0.0)
        registry.expire(30.0)
        self.confirmed(registry, "c3", Address(crowded, 2003), now=31.0)

    def test_spoofed_flood_leaves_legitimate_peers(self):
        """
        50,000 spoofed registrations from random sources against a cap of
        10,000: every confirmed peer stays, and a new peer still registers.
        """
        import random

        rng = random.Random(14)
        registry = Registry(60.0, seeded_bytes(), max_registrations=10_000, max_per_ip=64)
        legit = [self.confirmed(registry, f"player{n}", Address("192.0.2.7", 3000 + n)) for n in range(50)]
        for n in range(50_000):
            host = f"198.18.{rng.randrange(256)}.{rng.randrange(256)}"
            try:
                registry.register(f"spoof{n}", Address(host, rng.randrange(1, 65536)), (), None, n / 5000)
            except RegistryError:
                pass
        self.assertLessEqual(len(registry), 10_000)
        for registration in legit:
            self.assertIs(registry.lookup(registration.peer_id, 10.0), registration)
        self.confirmed(registry, "newcomer", Address("192.0.2.8", 1), now=10.0)

    def test_memory_returns_after_expiry(self):
        """
        The memory 20,000 registrations took is given back once they
        expire (the tables are rebuilt at their new size).
        """
        import gc
        import tracemalloc

        registry = Registry(30.0, seeded_bytes(), max_per_ip=100_000)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(20_000):
                registry.register(f"p{n}", Address("198.18.0.1", 1 + n % 60000), (), None, 0.0)
            full = tracemalloc.get_traced_memory()[0] - before
            self.assertEqual(len(registry.expire(30.0)), 20_000)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        self.assertGreater(full, 2_000_000)
        self.assertLess(after, 100_000)
