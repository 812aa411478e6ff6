"""
Tests for L{p2pnet.introducer.IntroducerProtocol} on a Clock with a fake
transport.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from p2pnet import wire
from p2pnet._lobby import LobbyQuery
from p2pnet._ratelimit import RateLimiter
from p2pnet._registry import Registry, RegistryError
from p2pnet.address import Address
from p2pnet.introducer import IntroducerProtocol
from p2pnet.wire import ErrorCode

from .helpers import FakeDatagramTransport, seeded_bytes, txid

A = ("203.0.113.5", 40000)
B = ("198.51.100.7", 41000)
C = ("198.51.100.8", 42000)
SECRET = b"correct horse battery staple"
IDENTITY = X25519PrivateKey.from_private_bytes(bytes(range(32)))


class IntroducerTestCase(SynchronousTestCase):
    secret: bytes | None = None

    def setUp(self):
        self.clock = Clock()
        self.transport = FakeDatagramTransport()
        self.protocol = IntroducerProtocol(
            self.clock,
            Registry(30.0, seeded_bytes(1)),
            seeded_bytes(2),
            secret=self.secret,
            rate_limiter=RateLimiter(100.0, 200.0),
            identity=IDENTITY,
        )
        self.protocol.makeConnection(self.transport)
        self.cookies = {}
        self._txid = 0

    def tearDown(self):
        self.protocol.doStop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def send(self, message, source, pad=True, key=None):
        if pad:
            message = wire.padded(message)
        raw = wire.encode(message, key if key is not None else self.secret)
        self.protocol.datagramReceived(raw, source)
        return raw

    def next_txid(self):
        self._txid += 1
        return txid(self._txid)

    def register(self, name, source, local=(), rtt=0.0):
        self.send(wire.Register(self.next_txid(), name, local), source)
        [(answer, to)] = self.transport.clear()
        self.assertEqual(to, source)
        self.assertIsInstance(answer, wire.Registered)
        self.cookies[name] = answer.cookie
        # confirm the address, as the peer endpoint does, one round trip on
        self.clock.advance(rtt)
        self.send(wire.Heartbeat(self.next_txid(), name, answer.cookie), source)
        self.transport.clear()
        return answer

    def host(self, name, source, session_name="s", max_players=4, mesh=False):
        self.send(
            wire.HostSession(
                self.next_txid(), name, self.cookies[name], session_name, "game",
                max_players, wire.FLAG_MESH if mesh else 0, (("map", "dust"),),
            ),
            source,
        )
        [(answer, _)] = self.transport.clear()
        return answer.session_id


class RegistrationTests(IntroducerTestCase):
    def test_registered_reports_public_address(self):
        """
        The answer to a registration carries the public address seen in the
        UDP header and the configured lifetime.
        """
        answer = self.register("a", A, (Address("10.0.0.2", 5000),))
        self.assertEqual(answer.public, Address(*A))
        self.assertEqual(answer.lifetime, 30)
        registration = self.protocol.registry.lookup("a", 0)
        self.assertEqual(registration.local, (Address("10.0.0.2", 5000),))

    def test_expiry_by_sweep(self):
        """
        The periodic sweep expires registrations whose heartbeats stopped,
        and counts them.
        """
        self.register("a", A)
        self.clock.advance(29)
        self.register("b", B)
        self.clock.pump([1] * 10)
        self.assertIsNone(self.protocol.registry.lookup("a", self.clock.seconds()))
        self.assertIsNotNone(self.protocol.registry.lookup("b", self.clock.seconds()))
        self.assertEqual(self.protocol.stats["expired"], 1)

    def test_heartbeat_answers_with_current_address(self):
        """
        A heartbeat from a rebound NAT port is answered with a challenge
        (no larger than the heartbeat) naming the new address; the proof
        from there re-binds and the answer says so.
        """
        self.register("a", A)
        moved = (A[0], A[1] + 1)
        raw = self.send(wire.Heartbeat(self.next_txid(), "a", self.cookies["a"]), moved)
        [(challenge, to)] = self.transport.clear()
        self.assertEqual(to, moved)
        self.assertIsInstance(challenge, wire.Challenge)
        self.assertEqual(challenge.public, Address(*moved))
        self.assertLessEqual(len(wire.encode(challenge, self.secret)), len(raw))
        self.assertEqual(self.protocol.registry.lookup("a", 0).public, Address(*A))
        proof = wire.proof_tag(self.cookies["a"], challenge.challenge, "a", Address(*moved))
        self.send(wire.Proof(self.next_txid(), "a", challenge.challenge, proof), moved)
        [(answer, to)] = self.transport.clear()
        self.assertEqual(to, moved)
        self.assertIsInstance(answer, wire.HeartbeatAck)
        self.assertEqual(answer.public, Address(*moved))

    def test_heartbeat_unknown(self):
        """
        A heartbeat for an unknown registration is answered NOT_REGISTERED.
        """
        self.send(wire.Heartbeat(self.next_txid(), "ghost", bytes(8)), A)
        [(answer, _)] = self.transport.clear()
        self.assertEqual(answer.code, ErrorCode.NOT_REGISTERED)

    def test_unregister(self):
        """
        Unregistering removes the registration and its sessions, unanswered.
        """
        self.register("a", A)
        self.host("a", A)
        self.send(wire.Unregister(self.next_txid(), "a", self.cookies["a"]), A)
        self.assertEqual(self.transport.written, [])
        self.assertEqual(len(self.protocol.registry), 0)
        self.assertEqual(self.protocol.registry.session_count, 0)


class SessionTests(IntroducerTestCase):
    def test_list_paging_fits(self):
        """
        Listing pages through many sessions; every answer fits in 1200
        bytes and the pages together hold every session once.
        """
        for i in range(12):
            self.register(f"h{i}", ("203.0.113.9", 1000 + i))
            for j in range(3):
                self.host(f"h{i}", ("203.0.113.9", 1000 + i), f"session {i}-{j} " + "x" * 40)
        seen = []
        cursor = None
        pages = 0
        while True:
            self.send(wire.ListSessions(self.next_txid(), "game", cursor), C)
            [(answer, to)] = self.transport.clear()
            self.assertEqual(to, C)
            self.assertLessEqual(len(wire.encode(answer)), 1200)
            self.assertEqual(answer.total, 36)
            seen.extend(s.name for s in answer.sessions)
            cursor = answer.cursor
            pages += 1
            if cursor is None:
                break
        self.assertEqual(len(seen), 36)
        self.assertEqual(len(set(seen)), 36)
        self.assertGreater(pages, 1)

    def test_list_filters_by_game(self):
        """
        A game filter lists only that game's sessions, with properties.
        """
        self.register("a", A)
        self.host("a", A, "mine")
        self.send(wire.ListSessions(self.next_txid(), "other"), C)
        [(answer, _)] = self.transport.clear()
        self.assertEqual(answer.sessions, ())
        self.send(wire.ListSessions(self.next_txid(), "game"), C)
        [(answer, _)] = self.transport.clear()
        [info] = answer.sessions
        self.assertEqual((info.name, info.host, info.players, info.max_players), ("mine", "a", 1, 4))
        self.assertEqual(info.properties, {"map": "dust"})

    def test_join_full(self):
        """
        Joining a full session is refused with SESSION_FULL.
        """
        self.register("a", A)
        session_id = self.host("a", A, max_players=2)
        self.register("b", B)
        self.register("c", C)
        self.send(wire.Introduce(self.next_txid(), "b", self.cookies["b"], None, session_id), B)
        self.transport.clear()
        request = self.next_txid()
        self.send(wire.Introduce(request, "c", self.cookies["c"], None, session_id), C)
        [(answer, to)] = self.transport.clear()
        self.assertEqual((answer.txid, answer.code, to), (request, ErrorCode.SESSION_FULL, C))
        self.assertIn("full", answer.reason)


class IntroductionTests(IntroducerTestCase):
    def test_introduce_by_peer_id(self):
        """
        Both sides get an introduction in the same turn: same id and key,
        the other's public and local candidates; the requester's copy echoes
        its transaction id and is marked initiator.
        """
        self.register("a", A, (Address("10.0.0.2", 5000),))
        self.register("b", B, (Address("10.1.0.3", 6000),))
        request = self.next_txid()
        self.send(wire.Introduce(request, "a", self.cookies["a"], "b"), A)
        [(to_a, addr_a), (to_b, addr_b)] = self.transport.clear()
        self.assertEqual((addr_a, addr_b), (A, B))
        self.assertEqual(to_a.txid, request)
        self.assertTrue(to_a.initiator)
        self.assertFalse(to_b.initiator)
        self.assertEqual(to_a.intro_id, to_b.intro_id)
        self.assertEqual(to_a.key, to_b.key)
        self.assertEqual((to_a.peer_id, to_a.public, to_a.local), ("b", Address(*B), (Address("10.1.0.3", 6000),)))
        self.assertEqual((to_b.peer_id, to_b.public, to_b.local), ("a", Address(*A), (Address("10.0.0.2", 5000),)))

    def test_lag(self):
        """
        Each side's copy carries how many milliseconds longer the other
        side's round trip to the introducer is (rounded up, 0 if shorter);
        neither carries a lag unless both round trips were measured.
        """
        self.register("a", A, rtt=0.010)
        self.register("b", B, rtt=0.0305)
        # more than 2 s: a lost and retransmitted confirmation, not a path
        self.register("c", C, rtt=3.0)
        self.send(wire.Introduce(self.next_txid(), "a", self.cookies["a"], "b"), A)
        [(to_a, _), (to_b, _)] = self.transport.clear()
        self.assertEqual((to_a.lag, to_b.lag), (21, 0))
        self.send(wire.Introduce(self.next_txid(), "a", self.cookies["a"], "c"), A)
        [(to_a, _), (to_c, _)] = self.transport.clear()
        self.assertEqual((to_a.lag, to_c.lag), (None, None))

    def test_fresh_keys(self):
        """
        Every introduction has its own id and key.
        """
        self.register("a", A)
        self.register("b", B)
        self.send(wire.Introduce(self.next_txid(), "a", self.cookies["a"], "b"), A)
        self.send(wire.Introduce(self.next_txid(), "a", self.cookies["a"], "b"), A)
        first, _, second, _ = [m for m, _ in self.transport.clear()]
        self.assertNotEqual(first.key, second.key)
        self.assertNotEqual(first.intro_id, second.intro_id)

    def test_unknown_target(self):
        """
        Asking for an unknown peer is answered UNKNOWN_PEER.
        """
        self.register("a", A)
        self.send(wire.Introduce(self.next_txid(), "a", self.cookies["a"], "nobody"), A)
        [(answer, _)] = self.transport.clear()
        self.assertEqual(answer.code, ErrorCode.UNKNOWN_PEER)

    def test_mesh_join(self):
        """
        In a mesh session a joiner is introduced to the host and every
        member, and each of them to the joiner.
        """
        self.register("h", A)
        session_id = self.host("h", A, mesh=True)
        self.register("b", B)
        self.send(wire.Introduce(self.next_txid(), "b", self.cookies["b"], None, session_id), B)
        self.transport.clear()
        self.register("c", C)
        self.send(wire.Introduce(self.next_txid(), "c", self.cookies["c"], None, session_id), C)
        sent = [(m.peer_id, to) for m, to in self.transport.clear()]
        self.assertEqual(sorted(sent), sorted([("h", C), ("c", A), ("b", C), ("c", B)]))

    def test_reversal(self):
        """
        A reverse request makes the introducer tell the target to send
        first, naming the requester and its public address.
        """
        self.register("a", A)
        self.register("b", B)
        self.send(wire.ReverseRequest(self.next_txid(), "a", self.cookies["a"], "b", b"i" * 8), A)
        [(message, to)] = self.transport.clear()
        self.assertEqual(to, B)
        self.assertEqual((message.peer_id, message.intro_id, message.public), ("a", b"i" * 8, Address(*A)))

    def test_requires_cookie(self):
        """
        An introduction request with a wrong cookie is refused and nobody
        is introduced.
        """
        self.register("a", A)
        self.register("b", B)
        self.send(wire.Introduce(self.next_txid(), "a", bytes(8), "b"), A)
        [(answer, to)] = self.transport.clear()
        self.assertEqual((answer.code, to), (ErrorCode.NOT_AUTHORISED, A))


class HostileInputTests(IntroducerTestCase):
    def test_garbage_counted_and_dropped(self):
        """
        Malformed datagrams are counted and dropped without an answer, and
        do not disturb registrations.
        """
        self.register("a", A)
        for junk in [b"", b"\xd1", b"\xd1\x01" + bytes(8) + b"\x01\xff\xff", b"hello", bytes(40)]:
            self.protocol.datagramReceived(junk, B)
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.protocol.stats["dropped-malformed"], 2)
        self.assertEqual(self.protocol.stats["dropped-not-p2pnet"], 2)
        # An empty datagram is an endpoint checking that our port is open.
        self.assertEqual(self.protocol.stats["dropped-empty"], 1)
        self.assertIsNotNone(self.protocol.registry.lookup("a", 0))

    def test_unexpected_types_dropped(self):
        """
        Messages only an introducer sends (or peers exchange) are dropped.
        """
        self.send(wire.Registered(self.next_txid(), Address(*A), 1, bytes(8)), B, pad=False)
        self.send(wire.Hello(self.next_txid(), bytes(8), "x", 1), B, pad=False)
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.protocol.stats["dropped-unexpected-type"], 2)

    def test_no_amplification(self):
        """
        An unpadded request whose answer would be larger than it is not
        answered at all; padded, it is.
        """
        raw = self.send(wire.Register(self.next_txid(), "a"), A, pad=False)
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.protocol.stats["dropped-amplification"], 1)
        raw = self.send(wire.Register(self.next_txid(), "a"), A)
        [(data, _)] = self.transport.written
        self.assertLessEqual(len(data), len(raw))

    def test_error_truncated_to_request_size(self):
        """
        Error answers to small unauthenticated requests are cut to fit.
        """
        raw = self.send(wire.Heartbeat(self.next_txid(), "ghost-with-a-long-name", bytes(8)), A, pad=False)
        [(data, _)] = self.transport.written
        self.assertLessEqual(len(data), len(raw))
        self.assertEqual(wire.decode(data).code, ErrorCode.NOT_REGISTERED)

    def test_rate_limit(self):
        """
        A source over its rate is dropped (after one RATE_LIMITED notice);
        other sources are still served.
        """
        self.protocol._rate_limiter = RateLimiter(1.0, 3.0)
        for i in range(10):
            self.send(wire.Heartbeat(self.next_txid(), "ghost", bytes(8)), A)
        answers = [m for m, _ in self.transport.clear()]
        self.assertEqual([m.code for m in answers], [ErrorCode.NOT_REGISTERED] * 3 + [ErrorCode.RATE_LIMITED])
        self.assertEqual(self.protocol.stats["dropped-rate-limited"], 7)
        self.send(wire.Heartbeat(self.next_txid(), "ghost", bytes(8)), B)
        self.assertEqual(len(self.transport.clear()), 1)
        self.clock.advance(1.0)
        self.send(wire.Heartbeat(self.next_txid(), "ghost", bytes(8)), A)
        self.assertEqual(len(self.transport.clear()), 1)

    def test_unverified_target_not_introduced(self):
        """
        Without a secret, a peer that never confirmed its address (a
        registration that could come from a spoofed source) is not sent
        introductions.
        """
        self.register("a", A)
        self.send(wire.Register(self.next_txid(), "spoofed"), B)
        self.transport.clear()
        self.send(wire.Introduce(self.next_txid(), "a", self.cookies["a"], "spoofed"), A)
        [(answer, to)] = self.transport.clear()
        self.assertEqual((answer.code, to), (ErrorCode.UNKNOWN_PEER, A))


class SecretTests(IntroducerTestCase):
    secret = SECRET

    def test_unsigned_dropped_silently(self):
        """
        With a secret, unsigned or wrongly signed requests get no answer.
        """
        self.send(wire.Register(self.next_txid(), "a"), A, key=b"")
        self.protocol.datagramReceived(wire.encode(wire.padded(wire.Register(txid(9), "a"))), A)
        self.send(wire.Register(self.next_txid(), "a"), A, key=b"wrong")
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.protocol.stats["dropped-unauthenticated"], 3)
        self.assertEqual(len(self.protocol.registry), 0)

    def test_signed_answers(self):
        """
        Signed requests are served, and answers are signed with the secret.
        """
        self.send(wire.Register(self.next_txid(), "a"), A, pad=False)
        [(raw, _)] = self.transport.written
        self.assertTrue(wire.verify(raw, SECRET))
        self.assertIsInstance(wire.decode(raw), wire.Registered)


class ReliableIntroductionTests(IntroducerTestCase):
    def introduce(self):
        self.register("a", A)
        self.register("b", B)
        request = self.next_txid()
        self.send(wire.Introduce(request, "a", self.cookies["a"], "b"), A)
        [(to_a, _), (to_b, _)] = self.transport.clear()
        return request, to_a, to_b

    def test_retransmitted_until_acknowledged(self):
        """
        Each side's copy of an introduction is sent again on a schedule
        until that side acknowledges it; then it stops.
        """
        request, to_a, to_b = self.introduce()
        self.clock.advance(0.25)
        self.assertEqual(sorted(to for _, to in self.transport.clear()), sorted([A, B]))
        self.send(wire.IntroAck(self.next_txid(), to_b.intro_id), B)
        self.clock.advance(0.5)
        self.assertEqual([to for _, to in self.transport.clear()], [A])
        self.send(wire.IntroAck(self.next_txid(), to_a.intro_id), A)
        self.clock.advance(5)
        self.assertEqual(self.transport.clear(), [])

    def test_ack_from_elsewhere_ignored(self):
        """
        An acknowledgement only counts from the side it was sent to.
        """
        request, to_a, to_b = self.introduce()
        self.send(wire.IntroAck(self.next_txid(), to_b.intro_id), C)
        self.clock.advance(0.25)
        self.assertIn(B, [to for _, to in self.transport.clear()])

    def test_gives_up(self):
        """
        Unacknowledged introductions stop after the schedule and are counted.
        """
        self.introduce()
        self.clock.pump([0.25] * 40)
        self.transport.clear()
        self.clock.advance(10)
        self.assertEqual(self.transport.clear(), [])
        self.assertEqual(self.protocol.stats["introductions-unacknowledged"], 2)

    def test_repeated_request_same_introduction(self):
        """
        A retransmitted request (same transaction id) gets the same
        introduction again, not a new one for the other side.
        """
        request, to_a, to_b = self.introduce()
        self.send(wire.Introduce(request, "a", self.cookies["a"], "b"), A)
        [(again, to)] = self.transport.clear()
        self.assertEqual((again, to), (to_a, A))
        self.assertEqual(self.protocol.stats["introductions"], 1)


class RepeatedRefusalTests(IntroducerTestCase):
    def test_refusal_answered_again(self):
        """
        A repeated request that was refused is refused again (the first
        error answer may have been lost), not left unanswered.
        """
        self.register("a", A)
        request = self.next_txid()
        for _ in range(2):
            self.send(wire.Introduce(request, "a", self.cookies["a"], "nobody"), A)
            [(answer, _)] = self.transport.clear()
            self.assertEqual(answer.code, ErrorCode.UNKNOWN_PEER)

    def test_largest_introduction_fits_padding(self):
        """
        The largest possible introduction (64-byte peer id, IPv6 public
        address, eight IPv6 local addresses) fits in a padded request.
        """
        v6 = [Address(f"2001:db8::{i}", 65535) for i in range(9)]
        longest = "é" * 32
        intro = wire.Introduction(
            bytes(8), bytes(8), longest, v6[0], tuple(v6[1:]), bytes(16), 0xFF, bytes(8), 0xFF, 0xFFFF, bytes(32)
        )
        request = wire.padded(wire.Introduce(bytes(8), longest, bytes(8), target=longest))
        self.assertLessEqual(len(wire.encode(intro)), len(wire.encode(request)))


class QuickHeartbeatTests(SynchronousTestCase):
    """
    The heartbeat fast path answers exactly as the generic path does.
    """

    def replay(self, actions, secret, quick, protocol_class=IntroducerProtocol):
        clock = Clock()
        transport = FakeDatagramTransport()
        protocol = protocol_class(
            clock, Registry(30.0, seeded_bytes(1)), seeded_bytes(2), secret=secret, identity=IDENTITY
        )
        protocol.quick_heartbeats = quick
        protocol.makeConnection(transport)
        cookies = {}
        for n, (kind, peer, source, pad, advance) in enumerate(actions):
            clock.advance(advance)
            name = f"peer{peer}"
            if kind == "register":
                message = wire.Register(txid(n), name, (), cookies.get(name))
            else:
                cookie = cookies.get(name, b"\0" * 8)
                if kind == "wrong-cookie":
                    cookie = bytes(b ^ 1 for b in cookie)
                message = wire.Heartbeat(txid(n), name, cookie)
            if pad:
                message = wire.padded(message)
            protocol.datagramReceived(wire.encode(message, secret), source)
            for raw, _ in transport.written[-1:]:
                answer = wire.decode(raw)
                if isinstance(answer, wire.Registered):
                    cookies[name] = answer.cookie
                elif isinstance(answer, wire.Challenge):
                    # the peer answers from where the challenge came
                    proof = wire.proof_tag(cookies[name], answer.challenge, name, answer.public)
                    reply = wire.padded(wire.Proof(txid(1000 + n), name, answer.challenge, proof))
                    protocol.datagramReceived(wire.encode(reply, secret), source)
        state = sorted(
            (r.peer_id, r.public, r.refreshed, r.verified, r.cookie) for r in protocol.registry._peers.values()
        )
        protocol.doStop()
        return transport.written, state, dict(protocol.stats)

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["register", "heartbeat", "heartbeat", "wrong-cookie"]),
                st.integers(0, 3),
                st.sampled_from([A, B, C, ("203.0.113.5", 40001)]),
                st.booleans(),
                st.sampled_from([0.0, 0.0, 5.0, 31.0]),
            ),
            max_size=30,
        ),
        st.none() | st.just(SECRET),
    )
    def test_same_as_generic(self, actions, secret):
        """
        Random sequences of registrations and heartbeats (right and wrong
        cookies, moved sources, expired registrations, unpadded requests,
        with and without a shared secret) leave the same answers, registry
        state and counters with the fast path on and off.
        """
        self.assertEqual(self.replay(actions, secret, True), self.replay(actions, secret, False))

    def test_fast_path_taken(self):
        """
        A plain padded heartbeat is answered without the generic handler
        (so the comparison above compares two different paths); a moved
        one, or any with the fast path off, goes the generic way.
        """
        generic = []

        class Counting(IntroducerProtocol):
            def _on_heartbeat(self, message, *args):
                generic.append(message.peer_id)
                return super()._on_heartbeat(message, *args)

        actions = [("register", 0, A, True, 0.0), ("heartbeat", 0, A, True, 1.0)]
        written, _, stats = self.replay(actions, None, True, Counting)
        self.assertEqual(generic, [])
        self.assertEqual(stats["heartbeats"], 1)
        self.assertIsInstance(wire.decode(written[-1][0]), wire.HeartbeatAck)
        self.replay(actions + [("heartbeat", 0, B, True, 1.0)], None, True, Counting)
        self.assertEqual(generic, ["peer0"])
        self.replay(actions, None, False, Counting)
        self.assertEqual(generic, ["peer0", "peer0"])


    def test_moved_peer_answered_with_new_address(self):
        """
        The fast path keeps each registration's answer; after the peer's
        public address moves (a heartbeat or a registration from the new
        one), fast answers carry the new address, not the kept one.
        """
        for mover in ("heartbeat", "register"):
            actions = [
                ("register", 0, A, True, 0.0),
                ("heartbeat", 0, A, True, 1.0),
                (mover, 0, B, True, 1.0),
                ("heartbeat", 0, B, True, 1.0),
            ]
            written, _, _ = self.replay(actions, None, True)
            answer = wire.decode(written[-1][0])
            self.assertIsInstance(answer, wire.HeartbeatAck)
            self.assertEqual(answer.public, Address(*B))


class LogBudgetTests(IntroducerTestCase):
    """
    Per-peer and per-datagram log lines are capped (C{log_rate}); what is
    held back is summarised by the sweep, and the counters still count
    every event.
    """

    def setUp(self):
        super().setUp()
        from twisted.logger import Logger, formatEvent

        from p2pnet._ratelimit import LogBudget

        self.lines = []
        self.protocol.log = Logger(observer=lambda event: self.lines.append(formatEvent(event)))
        self.protocol._log_budget = LogBudget(1.0, burst=3)

    def test_registrations_capped_and_summarised(self):
        """
        Ten registrations in the same instant with a budget of 3 lines log
        three C{registered} lines; the sweep then says that seven lines
        (of kind C{registered}) were held back; the counter says ten.
        """
        for n in range(10):
            self.send(wire.Register(self.next_txid(), f"p{n}", ()), ("203.0.113.9", 1000 + n))
        registered = [line for line in self.lines if line.startswith("registered ")]
        self.assertEqual(len(registered), 3)
        self.assertEqual(self.protocol.stats["registered"], 10)
        self.clock.advance(self.protocol._sweep_interval)
        self.assertIn("held back 7 log lines (registered: 7) to stay under 1 per second; "
                      "the statistics counters still count every event", self.lines)
        self.lines.clear()
        self.clock.advance(self.protocol._sweep_interval)
        self.assertFalse([line for line in self.lines if line.startswith("held back")])

    def test_budget_refills(self):
        """
        After the burst, one more line is allowed per second of the rate.
        """
        for n in range(5):
            self.send(wire.Register(self.next_txid(), f"p{n}", ()), ("203.0.113.9", 1000 + n))
        self.clock.advance(1.0)
        self.send(wire.Register(self.next_txid(), "late", ()), ("203.0.113.9", 2000))
        self.assertIn("registered late: public 203.0.113.9:2000, local none", self.lines)

    def test_dropped_datagrams_share_the_budget(self):
        """
        Garbage from many sources is dropped and counted, but logs no more
        than the budget allows.
        """
        for n in range(50):
            self.protocol.datagramReceived(b"\xd1\xee" + bytes(20), ("198.51.100.%d" % n, 9))
        self.assertEqual(self.protocol.stats["dropped-malformed"], 50)
        self.assertEqual(len([line for line in self.lines if line.startswith("dropped")]), 3)


class LogBudgetUnitTests(SynchronousTestCase):
    def test_unlimited(self):
        """
        A rate of 0 allows every line.
        """
        from p2pnet._ratelimit import LogBudget

        budget = LogBudget(0)
        self.assertTrue(all(budget.allow("x", 0.0) for _ in range(1000)))
        self.assertEqual(budget.take_held(), {})

    def test_counts_by_kind(self):
        """
        Held-back lines are counted by kind, and C{take_held} resets them.
        """
        from p2pnet._ratelimit import LogBudget

        budget = LogBudget(2.0, burst=1)
        self.assertEqual([budget.allow(k, 0.0) for k in "abab"], [True, False, False, False])
        self.assertEqual(budget.take_held(), {"a": 1, "b": 2})
        self.assertEqual(budget.take_held(), {})
        self.assertTrue(budget.allow("a", 0.5))
        self.assertRaises(ValueError, LogBudget, -1)


class Identity:
    """
    A static X25519 key pair with the interface the client side expects
    (C{.public}, C{.exchange(peer_public)}).
    """

    def __init__(self, seed: int) -> None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self._key = X25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
        self._public_class = X25519PublicKey
        self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def exchange(self, peer_public: bytes) -> bytes:
        return self._key.exchange(self._public_class.from_public_bytes(peer_public))


D = ("192.0.2.99", 43000)


class KeyBoundTests(IntroducerTestCase):
    """
    Registrations bound to the peer's static key: nothing moves without a
    fresh proof of the key from the new address.
    """

    def setUp(self):
        super().setUp()
        self.alice = Identity(7)
        self.exchanges = 0
        exchange = self.protocol._exchange

        def counting(peer_key):
            self.exchanges += 1
            return exchange(peer_key)

        self.protocol._exchange = counting

    def register_keyed(self, name, source, identity):
        self.send(wire.Register(self.next_txid(), name, (), peer_key=identity.public), source)
        [(answer, to)] = self.transport.clear()
        self.assertIsInstance(answer, wire.Registered)
        self.assertEqual(answer.introducer_key, self.protocol.public_key)
        self.cookies[name] = answer.cookie
        self.send(wire.Heartbeat(self.next_txid(), name, answer.cookie), source)
        self.transport.clear()
        return answer

    def prove(self, name, challenge, identity, source, key=None):
        if key is None:
            key = identity.exchange(self.protocol.public_key)
        proof = wire.proof_tag(key, challenge.challenge, name, Address(*source))
        return self.send(wire.Proof(self.next_txid(), name, challenge.challenge, proof), source)

    def where(self, name):
        return self.protocol.registry.lookup(name, self.clock.seconds()).public

    def test_replayed_heartbeat_moves_nothing(self):
        """
        A heartbeat captured on the wire and replayed from another address
        is answered with a challenge at that address and moves nothing;
        proofs made with the captured cookie or by guessing are refused;
        introductions to the peer still go to its real address.
        """
        self.register_keyed("a", A, self.alice)
        captured = wire.encode(wire.padded(wire.Heartbeat(self.next_txid(), "a", self.cookies["a"])))
        self.protocol.datagramReceived(captured, C)
        [(challenge, to)] = self.transport.clear()
        self.assertIsInstance(challenge, wire.Challenge)
        self.assertEqual(to, C)
        self.assertLessEqual(len(wire.encode(challenge)), len(captured))
        self.assertEqual(self.where("a"), Address(*A))
        # the attacker tries the cookie as the key, and a made-up proof
        self.prove("a", challenge, None, C, key=self.cookies["a"])
        [(refused, _)] = self.transport.clear()
        self.assertEqual(refused.code, ErrorCode.NOT_AUTHORISED)
        self.send(wire.Proof(self.next_txid(), "a", challenge.challenge, bytes(16)), C)
        self.transport.clear()
        self.assertEqual(self.where("a"), Address(*A))
        self.register("b", B)
        self.send(wire.Introduce(self.next_txid(), "b", self.cookies["b"], "a"), B)
        sent = dict((type(m).__name__ + str(to), to) for m, to in self.transport.clear())
        self.assertIn(A, sent.values())
        self.assertNotIn(C, sent.values())

    def test_key_proof_moves(self):
        """
        The key holder's proof from the new address moves the registration
        (cookie and sessions kept); the shared secret is computed once per
        registration, never for heartbeats.
        """
        self.register_keyed("a", A, self.alice)
        session_id = self.host("a", A)
        for _ in range(5):
            self.send(wire.Heartbeat(self.next_txid(), "a", self.cookies["a"]), A)
        for moved in (D, A):
            self.transport.clear()
            self.send(wire.Heartbeat(self.next_txid(), "a", self.cookies["a"]), moved)
            [(challenge, _)] = self.transport.clear()
            self.prove("a", challenge, self.alice, moved)
            [(answer, to)] = self.transport.clear()
            self.assertIsInstance(answer, wire.HeartbeatAck)
            self.assertEqual((to, answer.public), (moved, Address(*moved)))
            self.assertEqual(self.where("a"), Address(*moved))
        self.assertEqual(self.exchanges, 1)
        self.assertEqual([s.session_id for s in self.protocol.registry.sessions()], [session_id])

    def test_register_sent_again_before_confirming(self):
        """
        A keyed Register sent again from the same address before the
        registration is confirmed (our answer was lost) gets the same
        answer again, with the same cookie, and no challenge; once
        confirmed, a Register without the cookie is a restart: challenged.
        """
        first_txid = self.next_txid()
        self.send(wire.Register(first_txid, "a", (), peer_key=self.alice.public), A)
        [(first, _)] = self.transport.clear()
        self.send(wire.Register(self.next_txid(), "a", (), peer_key=self.alice.public), A)
        [(again, _)] = self.transport.clear()
        self.assertIsInstance(again, wire.Registered)
        self.assertEqual(again.cookie, first.cookie)
        self.send(wire.Heartbeat(self.next_txid(), "a", first.cookie), A)
        self.transport.clear()
        self.send(wire.Register(self.next_txid(), "a", (), peer_key=self.alice.public), A)
        [(challenged, _)] = self.transport.clear()
        self.assertIsInstance(challenged, wire.Challenge)

    def test_proof_single_use_and_bound_to_address(self):
        """
        A proof works once, only from the challenged address, and not after
        the challenge expired (10 s).
        """
        self.register_keyed("a", A, self.alice)
        self.send(wire.Heartbeat(self.next_txid(), "a", self.cookies["a"]), D)
        [(challenge, _)] = self.transport.clear()
        key = self.alice.exchange(self.protocol.public_key)
        proof = wire.proof_tag(key, challenge.challenge, "a", Address(*D))
        # the right proof sent from elsewhere
        self.send(wire.Proof(self.next_txid(), "a", challenge.challenge, proof), C)
        [(refused, _)] = self.transport.clear()
        self.assertEqual(refused.code, ErrorCode.NOT_AUTHORISED)
        self.assertEqual(self.where("a"), Address(*A))
        self.assertEqual(self.exchanges, 0, "no shared secret is computed for a misdirected proof")
        self.send(wire.Proof(self.next_txid(), "a", challenge.challenge, proof), D)
        self.assertEqual(self.where("a"), Address(*D))
        self.transport.clear()
        # the same proof again from D (its answer was lost): the same answer,
        # nothing changes
        self.send(wire.Proof(self.next_txid(), "a", challenge.challenge, proof), D)
        [(again, _)] = self.transport.clear()
        self.assertNotIsInstance(again, wire.Error)
        self.assertEqual(self.where("a"), Address(*D))
        # back at A (a new challenge answered there), the old proof from D
        # moves nothing back
        self.send(wire.Heartbeat(self.next_txid(), "a", self.cookies["a"]), A)
        [(back, _)] = self.transport.clear()
        self.prove("a", back, self.alice, A)
        self.assertEqual(self.where("a"), Address(*A))
        self.transport.clear()
        self.send(wire.Proof(self.next_txid(), "a", challenge.challenge, proof), D)
        [(refused, _)] = self.transport.clear()
        self.assertEqual(refused.code, ErrorCode.NOT_AUTHORISED)
        self.assertEqual(self.where("a"), Address(*A))
        # an expired challenge
        self.send(wire.Heartbeat(self.next_txid(), "a", self.cookies["a"]), D)
        [(late, _)] = self.transport.clear()
        self.clock.advance(10.5)
        self.send(wire.Heartbeat(self.next_txid(), "a", self.cookies["a"]), A)
        self.transport.clear()
        self.prove("a", late, self.alice, D)
        [(refused, _)] = self.transport.clear()
        self.assertEqual(refused.code, ErrorCode.NOT_AUTHORISED)
        self.assertEqual(self.where("a"), Address(*A))

    def test_restarted_host_takes_its_name_back_at_once(self):
        """
        A host restarted with the same key (no cookie), from the same or a
        new address, gets its name back at once through a challenge (which
        carries the introducer's key); its old cookie stops working.
        """
        for restarted_at in (A, D):
            first = self.register_keyed("a", A, self.alice)
            self.clock.advance(1)
            raw = self.send(wire.Register(self.next_txid(), "a", (), peer_key=self.alice.public), restarted_at)
            [(challenge, to)] = self.transport.clear()
            self.assertIsInstance(challenge, wire.Challenge)
            self.assertEqual(challenge.introducer_key, self.protocol.public_key)
            self.assertEqual(to, restarted_at)
            self.assertLessEqual(len(wire.encode(challenge)), len(raw))
            self.prove("a", challenge, self.alice, restarted_at)
            [(answer, to)] = self.transport.clear()
            self.assertIsInstance(answer, wire.Registered)
            self.assertNotEqual(answer.cookie, first.cookie)
            self.assertEqual(self.where("a"), Address(*restarted_at))
            self.send(wire.Heartbeat(self.next_txid(), "a", first.cookie), restarted_at)
            [(refused, _)] = self.transport.clear()
            self.assertEqual(refused.code, ErrorCode.NOT_AUTHORISED)
            self.send(wire.Heartbeat(self.next_txid(), "a", answer.cookie), restarted_at)
            [(ack, _)] = self.transport.clear()
            self.assertIsInstance(ack, wire.HeartbeatAck)
            self.send(wire.Unregister(self.next_txid(), "a", answer.cookie), restarted_at)

    def test_challenge_for_a_replaced_registration(self):
        """
        A challenge outlives nothing: once the registration it was for is
        replaced (here by a restart's reclaim), its proof is refused.
        """
        self.register_keyed("a", A, self.alice)
        self.send(wire.Heartbeat(self.next_txid(), "a", self.cookies["a"]), D)
        [(stale, _)] = self.transport.clear()
        self.send(wire.Register(self.next_txid(), "a", (), peer_key=self.alice.public), A)
        [(challenge, _)] = self.transport.clear()
        self.prove("a", challenge, self.alice, A)
        [(answer, _)] = self.transport.clear()
        self.assertIsInstance(answer, wire.Registered)
        self.prove("a", stale, self.alice, D)
        [(refused, _)] = self.transport.clear()
        self.assertEqual(refused.code, ErrorCode.NOT_AUTHORISED)
        self.assertEqual(self.where("a"), Address(*A))

    def test_other_key_refused(self):
        """
        A Register for a confirmed name bound to another key (or to a key,
        without one) is refused PEER_ID_TAKEN, from any address.
        """
        self.register_keyed("a", A, self.alice)
        for source in (A, C):
            for key in (Identity(8).public, None):
                self.send(wire.Register(self.next_txid(), "a", (), peer_key=key), source)
                [(refused, _)] = self.transport.clear()
                self.assertEqual(refused.code, ErrorCode.PEER_ID_TAKEN)
        self.assertEqual(self.where("a"), Address(*A))

    def test_spoofed_register_cannot_block_owner(self):
        """
        A spoofed Register for a name (never confirmed: its answers went to
        the spoofed address) gives way to the owner's registration.
        """
        self.send(wire.Register(self.next_txid(), "a", (), peer_key=Identity(9).public), C)
        self.transport.clear()
        self.register_keyed("a", A, self.alice)
        self.assertEqual(self.where("a"), Address(*A))

    def test_introductions_carry_keys(self):
        """
        Each side's introduction carries the other side's key.
        """
        bob = Identity(8)
        self.register_keyed("a", A, self.alice)
        self.register_keyed("b", B, bob)
        self.send(wire.Introduce(self.next_txid(), "a", self.cookies["a"], "b"), A)
        sent = {to: m for m, to in self.transport.clear()}
        self.assertEqual(sent[A].peer_key, bob.public)
        self.assertEqual(sent[B].peer_key, self.alice.public)

    def test_challenges_capped(self):
        """
        Heartbeats replayed from many addresses leave at most 4 challenges
        per peer id and 4096 in all waiting.
        """
        self.register_keyed("a", A, self.alice)
        captured = wire.encode(wire.padded(wire.Heartbeat(self.next_txid(), "a", self.cookies["a"])))
        for port in range(1, 101):
            self.protocol.datagramReceived(captured, ("198.18.0.1", port))
        self.assertEqual(self.protocol.registry.challenge_count, 4)
        registry = self.protocol.registry
        for n in range(5000):
            r = registry.register(f"p{n}", Address("198.18.1.1", 1000 + n % 60000), (), None, 0.0)
            try:
                registry.heartbeat(r.peer_id, r.cookie, Address("198.18.2.2", 1), 0.0)
            except RegistryError as needed:
                registry.challenge(needed, Address("198.18.2.2", 1), 0.0)
        self.assertEqual(registry.challenge_count, 4096)


class ClientProofTests(IntroducerTestCase):
    """
    L{IntroducerClient} with a L{Prover} answers challenges by itself: a
    restarted host gets its name back in one exchange, a rebound one keeps
    heartbeating.
    """

    def client(self, source, identity, name="a"):
        from p2pnet._introclient import IntroducerClient, Prover

        outbox = []

        def write(raw, to):
            outbox.append(raw)
            if len(outbox) == 1:
                self.clock.callLater(0, deliver)

        def deliver():
            # one reactor turn later, as a real socket would
            while outbox:
                self.protocol.datagramReceived(outbox.pop(0), source)
                for answer, _ in self.transport.clear():
                    client.answer(answer)

        client = IntroducerClient(self.clock, write, Address("192.0.2.1", 3478), seeded_bytes(source[1]))
        client.prover = Prover(name, identity)
        return client

    def result(self, d):
        for _ in range(5):
            self.clock.advance(0)
        return d

    def test_restart_and_rebinding(self):
        """
        Register, restart elsewhere (name back at once), NAT rebinding
        (heartbeat proved and answered), impostor refused.
        """
        alice = Identity(7)
        first = self.client(A, alice)
        registered = self.successResultOf(self.result(first.request(wire.Register(first.new_txid(), "a", (), peer_key=alice.public))))
        self.assertEqual(first.prover.introducer_key, self.protocol.public_key)
        # the host restarts at another address: its name comes back at once
        second = self.client(D, alice)
        again = self.successResultOf(self.result(second.request(wire.Register(second.new_txid(), "a", (), peer_key=alice.public))))
        self.assertIsInstance(again, wire.Registered)
        self.assertNotEqual(again.cookie, registered.cookie)
        self.assertEqual(self.protocol.registry.lookup("a", self.clock.seconds()).public, Address(*D))
        # its NAT rebinds: the heartbeat is challenged, proved, answered
        rebound = self.client(C, alice)
        rebound.prover.cookie, rebound.prover.introducer_key = again.cookie, self.protocol.public_key
        ack = self.successResultOf(self.result(rebound.request(wire.Heartbeat(rebound.new_txid(), "a", again.cookie))))
        self.assertIsInstance(ack, wire.HeartbeatAck)
        self.assertEqual(ack.public, Address(*C))
        # an impostor without the key gets a refusal, not the name
        impostor = self.client(B, Identity(9))
        failure = self.failureResultOf(
            self.result(impostor.request(wire.Register(impostor.new_txid(), "a", (), peer_key=alice.public)))
        )
        self.assertEqual(failure.value.code, ErrorCode.NOT_AUTHORISED)
        self.assertEqual(self.protocol.registry.lookup("a", self.clock.seconds()).public, Address(*C))


class ClientResendTests(ClientProofTests):
    def test_restart_and_rebinding(self):
        pass

    def test_other_request_sent_again_after_the_proof(self):
        """
        A HostSession from a rebound address is challenged; the client
        proves its key and sends the HostSession again, which is answered;
        without a prover the request fails NOT_AUTHORISED and nothing
        moves.
        """
        alice = Identity(7)
        first = self.client(A, alice)
        registered = self.successResultOf(
            self.result(first.request(wire.Register(first.new_txid(), "a", (), peer_key=alice.public)))
        )
        unproven = self.client(D, None)
        unproven.prover = None
        failure = self.failureResultOf(
            self.result(unproven.request(wire.HostSession(unproven.new_txid(), "a", registered.cookie, "s", "g", 4)))
        )
        self.assertEqual(failure.value.code, ErrorCode.NOT_AUTHORISED)
        self.assertEqual(self.protocol.registry.lookup("a", 0).public, Address(*A))
        rebound = self.client(C, alice)
        rebound.prover.cookie, rebound.prover.introducer_key = registered.cookie, self.protocol.public_key
        hosted = self.successResultOf(
            self.result(rebound.request(wire.HostSession(rebound.new_txid(), "a", registered.cookie, "s", "g", 4)))
        )
        self.assertIsInstance(hosted, wire.SessionHosted)
        self.assertEqual(self.protocol.registry.lookup("a", 0).public, Address(*C))


class IdentityFileTests(SynchronousTestCase):
    def test_created_private_and_reloaded(self):
        """
        C{--identity-file} is created with mode 0600 on first use and gives
        the same key afterwards; a file of the wrong size is a usage error.
        """
        import os
        import stat

        from twisted.python import usage

        from p2pnet.introducer_tap import Options

        path = self.mktemp()
        first = Options()
        first.parseOptions(["--identity-file", path])
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        second = Options()
        second.parseOptions(["--identity-file", path])
        public = [
            IntroducerProtocol(Clock(), Registry(30.0, bytes), identity=o["identity"]).public_key
            for o in (first, second)
        ]
        self.assertEqual(public[0], public[1])
        with open(path, "wb") as f:
            f.write(b"short")
        self.assertRaises(usage.UsageError, Options().parseOptions, ["--identity-file", path])


class MeshJoinAmplificationTests(IntroducerTestCase):
    """
    #14.2: one Introduce into a big mesh session cannot be turned into a
    flood, at the requester or at a spoofed third party.
    """

    def setUp(self):
        super().setUp()
        self.protocol._rate_limiter = None
        self.register("host", A)
        self.session = self.host("host", A, max_players=200, mesh=True)
        for n in range(150):
            member = f"m{n}"
            source = ("198.18.0.1", 2000 + n)
            self.register(member, source)
            self.send(wire.Introduce(self.next_txid(), member, self.cookies[member], session_id=self.session), source)
            self.ack_all(skip=())
        self.register("joiner", B)

    def ack_all(self, skip):
        for _ in range(1000):
            written = self.transport.clear()
            if not written:
                return
            for message, to in written:
                if isinstance(message, wire.Introduction) and to not in skip:
                    self.send(wire.IntroAck(self.next_txid(), message.intro_id), to)

    def bytes_to(self, address, seconds=30):
        total = packets = 0
        ids = set()
        for _ in range(seconds * 4):
            for raw, to in self.transport.written:
                if to == address:
                    total += len(raw)
                    packets += 1
                    if raw[1] == wire.MessageType.INTRODUCTION:
                        ids.add(wire.decode(raw).intro_id)
            self.ack_all(skip=(address,))
            self.clock.advance(0.25)
        return total, packets, len(ids)

    def test_silent_requester_gets_a_window(self):
        """
        A requester that never acknowledges gets at most 16 of its 151
        introductions, each sent at most 8 times (128 packets), not
        151 x 8; without the secret, only the retransmits its request pays
        for.
        """
        self.send(wire.Introduce(self.next_txid(), "joiner", self.cookies["joiner"], session_id=self.session), B)
        total, packets, distinct = self.bytes_to(B)
        self.assertEqual(distinct, 16)
        self.assertLessEqual(packets, 128 if self.secret else 16 + 4)

    def test_acknowledging_requester_gets_everything(self):
        """
        A requester that acknowledges gets all 151 introductions (host and
        150 members), paced by its acknowledgements.
        """
        self.send(wire.Introduce(self.next_txid(), "joiner", self.cookies["joiner"], session_id=self.session), B)
        got = set()
        for _ in range(200):
            written = self.transport.clear()
            if not written:
                break
            for message, to in written:
                if isinstance(message, wire.Introduction):
                    if to == B:
                        got.add(message.peer_id)
                    self.send(wire.IntroAck(self.next_txid(), message.intro_id), to)
        self.assertEqual(len(got), 151)

    def test_spoofed_victim_gets_no_more_than_was_sent(self):
        """
        An attacker who captured the joiner's cookie and spoofs its
        heartbeat and Introduce from a victim's address moves nothing: the
        victim gets challenges only, no larger than the spoofed packets.
        """
        victim = ("192.0.2.200", 9999)
        sent = 0
        sent += len(self.send(wire.Heartbeat(self.next_txid(), "joiner", self.cookies["joiner"]), victim))
        sent += len(
            self.send(wire.Introduce(self.next_txid(), "joiner", self.cookies["joiner"], session_id=self.session), victim)
        )
        total, packets, _ = self.bytes_to(victim)
        self.assertLessEqual(total, sent)
        self.assertEqual(packets, 2)


class RelayRequestTests(IntroducerTestCase):
    """
    #14.3: relay allocations only for real introductions of the requester.
    """

    def setUp(self):
        super().setUp()
        from p2pnet._relaypool import RelayPool, RelaySettings

        self.protocol.relays = RelayPool([RelaySettings(b"relay secret", Address("192.0.2.3", 3479))])
        self.protocol._rate_limiter = None
        for name, source in (("a", A), ("b", B), ("c", C)):
            self.register(name, source)

    def introduce(self, requester, source, target):
        self.send(wire.Introduce(self.next_txid(), requester, self.cookies[requester], target), source)
        intro = [m for m, to in self.transport.clear() if to == source][0]
        return intro.intro_id

    def relay(self, requester, source, target, intro_id):
        self.send(wire.RelayRequest(self.next_txid(), requester, self.cookies[requester], target, intro_id), source)
        return [m for m, to in self.transport.clear() if to == source]

    def test_made_up_intro_id_refused(self):
        """
        A made-up introduction id, or one of an introduction between two
        others, is refused and allocates nothing.
        """
        [refused] = self.relay("a", A, "b", b"madeup!!")
        self.assertEqual(refused.code, ErrorCode.UNKNOWN_PEER)
        theirs = self.introduce("b", B, "c")
        [refused] = self.relay("a", A, "b", theirs)
        self.assertEqual(refused.code, ErrorCode.UNKNOWN_PEER)
        self.assertEqual(self.protocol.stats["relay-allocations"], 0)
        ours = self.introduce("a", A, "b")
        [offer] = self.relay("a", A, "b", ours)
        self.assertIsInstance(offer, wire.RelayOffer)
        self.assertEqual(self.protocol.stats["relay-allocations"], 1)

    def test_allocations_per_registration_capped(self):
        """
        One registration gets at most 16 allocations; then RATE_LIMITED.
        """
        answers = []
        for _ in range(20):
            intro_id = self.introduce("a", A, "b")
            self.send(wire.IntroAck(self.next_txid(), intro_id), A)
            [answer] = self.relay("a", A, "b", intro_id)
            answers.append(type(answer).__name__)
        self.assertEqual(answers.count("RelayOffer"), 16)
        self.assertEqual(self.protocol.stats["relay-allocations"], 16)
        for _ in range(500):
            self.clock.advance(1)
            self.transport.clear()
        # remembered introductions age out (300 s) and free the allocations
        self.register("a", A)
        self.register("b", B)
        intro_id = self.introduce("a", A, "b")
        [answer] = self.relay("a", A, "b", intro_id)
        self.assertIsInstance(answer, wire.RelayOffer)


class LongReasonTests(IntroducerTestCase):
    """
    #14.10: refusal reasons built from long ids fit the wire's 255 bytes.
    """

    secret = SECRET

    def test_long_target_refused_with_a_short_reason(self):
        """
        An Introduce naming an unknown 254-byte target (its repr is longer
        than 255 bytes) is answered UNKNOWN_PEER with a reason cut to at
        most 255 bytes, and nothing is logged as an error.
        """
        self.register("a", A)
        target = "é" * 127
        self.send(wire.Introduce(self.next_txid(), "a", self.cookies["a"], target), A)
        [(answer, _)] = self.transport.clear()
        self.assertEqual(answer.code, ErrorCode.UNKNOWN_PEER)
        self.assertLessEqual(len(answer.reason.encode("utf-8")), 255)
        self.assertTrue(answer.reason.startswith("no peer 'éé"))
        self.assertEqual(self.protocol.stats["internal-error"], 0)

    def test_unencodable_answer_counted_not_raised(self):
        """
        An answer that cannot be encoded is counted and logged once per
        budget, never raised into the reactor.
        """
        from twisted.logger import Logger

        lines = []
        self.protocol.log = Logger(observer=lines.append)
        sent = self.protocol._send(wire.Error(txid(1), 1, "x" * 300), Address(*A))
        self.assertFalse(sent)
        self.assertEqual(self.protocol.stats["unencodable"], 1)
        self.assertEqual(self.protocol.stats["internal-error"], 0)
        self.assertEqual(len(lines), 1)


class SecretMeshJoinAmplificationTests(MeshJoinAmplificationTests):
    secret = SECRET


class RequestBudgetTests(IntroducerTestCase):
    """
    #14.8: without the secret, no request gets more bytes back, over all
    packets and retransmits, than it sent.
    """

    def total_out(self, seconds=30, to=None):
        """
        Bytes and datagrams sent over C{seconds} (only those to C{to}, if
        given).
        """
        total = packets = 0
        for _ in range(seconds * 4):
            sent = [raw for raw, address in self.transport.written if to is None or address == to]
            total += sum(len(raw) for raw in sent)
            packets += len(sent)
            del self.transport.written[:]
            self.clock.advance(0.25)
        return total, packets

    def test_introduce_pays_for_its_retransmits(self):
        """
        An Introduce that nobody acknowledges gets back, at its own address,
        both its answer and as many retransmits of its copy as its size
        pays for, no more.
        """
        self.register("a", A)
        self.register("b", B)
        raw = self.send(wire.Introduce(self.next_txid(), "a", self.cookies["a"], "b"), A)
        total, packets = self.total_out(to=A)
        self.assertLessEqual(total, len(raw))
        self.assertGreater(packets, 1)
        self.assertGreater(self.protocol.stats["push-retransmits-unpaid"], 0)

    def test_target_gets_every_retransmit_until_it_acknowledges(self):
        """
        The other side's copy goes to the address it proved, until it
        acknowledges: 8 copies when it never does (a lost introduction
        would leave the requester punching alone), one when it does.
        """
        self.register("a", A)
        self.register("b", B)
        self.send(wire.Introduce(self.next_txid(), "a", self.cookies["a"], "b"), A)
        [intro] = [wire.decode(raw) for raw, to in self.transport.written if to == B]
        self.send(wire.IntroAck(self.next_txid(), intro.intro_id), B)
        self.transport.written.clear()
        _, packets = self.total_out(seconds=8, to=B)
        self.assertEqual(packets, 0)
        self.send(wire.Introduce(self.next_txid(), "a", self.cookies["a"], "b"), A)
        _, packets = self.total_out(seconds=8, to=B)
        self.assertEqual(packets, 8)

    def test_candidate_offer_pays(self):
        """
        A CandidateOffer's acknowledgement (and anything else to its
        address), with retransmits, fits in its padded size.
        """
        self.register("a", A)
        self.register("b", B)
        raw = self.send(
            wire.CandidateOffer(self.next_txid(), "a", self.cookies["a"], "b", bytes(8), Address("192.0.2.9", 1)), A
        )
        total, _ = self.total_out(to=A)
        self.assertLessEqual(total, len(raw))


class SecretRequestBudgetTests(RequestBudgetTests):
    secret = SECRET

    def test_introduce_pays_for_its_retransmits(self):
        """
        Holders of the secret get the full retransmit schedule (8 copies of
        each side's introduction), and, b never acknowledging nor
        heartbeating, the HOST_GONE notice.
        """
        self.register("a", A)
        self.register("b", B)
        self.send(wire.Introduce(self.next_txid(), "a", self.cookies["a"], "b"), A)
        _, packets = self.total_out()
        self.assertEqual(packets, 16 + 1)
        self.assertEqual(self.protocol.stats["hosts-gone"], 1)

    def test_candidate_offer_pays(self):
        pass


class LobbyPagingTests(IntroducerTestCase):
    """
    #14.4: the lobby is always listable.
    """

    def host_raw(self, name, source, session_name, properties=()):
        self.send(
            wire.HostSession(self.next_txid(), name, self.cookies[name], session_name, "game", 4, 0, properties), source
        )
        [(answer, _)] = self.transport.clear()
        return answer

    def test_oversized_entry_refused_at_host_time(self):
        """
        A session whose entry could not fit a page (here 16 properties of
        100 bytes) is refused with a reason saying so; a large one that
        fits is listed on a page of its own.
        """
        self.register("a", A)
        big = tuple((f"k{i}", "v" * 100) for i in range(16))
        refused = self.host_raw("a", A, "huge", big)
        self.assertEqual(refused.code, ErrorCode.BAD_REQUEST)
        self.assertIn("too large", refused.reason)
        fits = tuple((f"k{i}", "v" * 100) for i in range(10))
        self.assertIsInstance(self.host_raw("a", A, "large", fits), wire.SessionHosted)
        self.assertIsInstance(self.host_raw("a", A, "small"), wire.SessionHosted)
        names = []
        cursor = None
        while True:
            self.send(wire.ListSessions(self.next_txid(), None, cursor), C)
            [(page, _)] = self.transport.clear()
            self.assertGreater(len(page.sessions), 0)
            names.extend(s.name for s in page.sessions)
            cursor = page.cursor
            if cursor is None:
                break
        self.assertEqual(names, ["large", "small"])

    def test_no_empty_page_while_sessions_remain(self):
        """
        A request too small for the next entry is refused, not answered
        with an empty page the client would take for the end.
        """
        self.register("a", A)
        self.host_raw("a", A, "x" * 200)
        self.send(wire.ListSessions(self.next_txid(), padding=bytes(150)), C, pad=False)
        [(answer, _)] = self.transport.clear()
        self.assertIsInstance(answer, wire.Error)
        self.assertEqual(answer.code, ErrorCode.BAD_REQUEST)

    def test_paced_listing_within_the_rate_limit(self):
        """
        300 sessions (15 pages or more) listed by a client against a limit
        of 5 requests a second: the lister paces itself, waits out
        refusals, and returns every session once.
        """
        from p2pnet._introclient import IntroducerClient
        from p2pnet._lister import SessionLister

        self.protocol._rate_limiter = None
        for n in range(75):
            source = (f"198.18.3.{n}", 1000 + n)
            self.register(f"h{n}", source)
            for j in range(4):
                self.host_raw(f"h{n}", source, f"game {n}-{j} " + "x" * 20)
        self.protocol._rate_limiter = RateLimiter(5.0, 5.0)
        outbox = []

        def write(raw, to):
            outbox.append(raw)
            self.clock.callLater(0.01, deliver)

        def deliver():
            while outbox:
                self.protocol.datagramReceived(outbox.pop(0), C)
                for answer, _ in self.transport.clear():
                    client.answer(answer)

        client = IntroducerClient(self.clock, write, Address("192.0.2.1", 3478), seeded_bytes(5))
        lister = SessionLister(self.clock, client.request, client.new_txid)
        d = lister.list()
        for _ in range(2000):
            self.clock.advance(0.05)
        sessions = self.successResultOf(d)
        self.assertEqual(len(sessions), 300)
        self.assertEqual(len({s.session_id for s in sessions}), 300)

    def test_listing_reports_refusals(self):
        """
        A refusal other than RATE_LIMITED fails the listing.
        """
        from p2pnet._lister import SessionLister
        from p2pnet.errors import IntroducerError
        from twisted.internet.defer import fail

        def refuse(message):
            return fail(IntroducerError(ErrorCode.BAD_REQUEST, "no"))

        failure = self.failureResultOf(SessionLister(self.clock, refuse, lambda: bytes(8)).list())
        failure.trap(IntroducerError)

    def test_empty_page_with_a_cursor_is_not_the_end(self):
        """
        An empty page that has a cursor (the filters matched none of the
        sessions the introducer looked at) is not the end: the lister asks
        for the next page after it, and ends at the page without a cursor.
        """
        from twisted.internet.defer import succeed

        from p2pnet._lister import SessionLister

        asked = []
        info = wire.SessionInfo(b"s" * 8, "found", "game", "h", 1, 4)
        pages = {None: ((), b"\x01"), b"\x01": ((), b"\x02"), b"\x02": ((info,), None)}

        def answer(message):
            asked.append(message.cursor)
            sessions, cursor = pages[message.cursor]
            return succeed(wire.SessionList(message.txid, sessions, cursor, 5))

        d = SessionLister(self.clock, answer, lambda: bytes(8)).list()
        for _ in range(10):
            self.clock.advance(0.05)
        self.assertEqual(self.successResultOf(d), [info])
        self.assertEqual(asked, [None, b"\x01", b"\x02"])

    def test_endless_cursors_fail(self):
        """
        An introducer that never ends the list (a broken or hostile one)
        fails the listing after MAX_PAGES pages instead of asking forever.
        """
        from twisted.internet.defer import succeed

        from p2pnet._lister import SessionLister
        from p2pnet.errors import IntroducerError

        asked = []

        def endless(message):
            asked.append(message.cursor)
            return succeed(wire.SessionList(message.txid, (), b"again", 5))

        lister = SessionLister(self.clock, endless, lambda: bytes(8))
        lister.MAX_PAGES = 3
        d = lister.list()
        for _ in range(10):
            self.clock.advance(0.05)
        self.failureResultOf(d).trap(IntroducerError)
        self.assertEqual(asked, [None, b"again", b"again"])


class LobbyFloodTests(IntroducerTestCase):
    """
    #14.5: lobby flood and squatting.
    """

    def setUp(self):
        super().setUp()
        self.protocol._rate_limiter = None

    def join(self, name, source, session_id, ack):
        self.send(wire.Introduce(self.next_txid(), name, self.cookies[name], session_id=session_id), source)
        answers = self.transport.clear()
        for message, to in answers:
            if ack and to == source and isinstance(message, wire.Introduction):
                self.send(wire.IntroAck(self.next_txid(), message.intro_id), to)
        self.transport.clear()
        return [m for m, to in answers if to == source]

    def test_silent_joiners_do_not_hold_slots(self):
        """
        Seven joiners that never acknowledge their introduction fill an
        8-player game only for 10 s; then a real player joins, and players
        who acknowledge become members.
        """
        self.register("host", A)
        session_id = self.host("host", A, max_players=8)
        for n in range(7):
            self.register(f"squat{n}", ("198.18.5.1", 100 + n))
            self.join(f"squat{n}", ("198.18.5.1", 100 + n), session_id, ack=False)
        self.register("player", B)
        [full] = self.join("player", B, session_id, ack=True)
        self.assertEqual(full.code, ErrorCode.SESSION_FULL)
        self.clock.advance(10.5)
        self.transport.clear()
        [intro] = self.join("player", B, session_id, ack=True)
        self.assertIsInstance(intro, wire.Introduction)
        self.send(wire.ListSessions(self.next_txid()), C)
        [(page, _)] = self.transport.clear()
        self.assertEqual(page.sessions[0].players, 2)
        self.assertEqual(self.protocol.stats["joins-confirmed"], 1)

    def test_acknowledging_joiners_keep_their_slots(self):
        """
        Joiners that acknowledge keep their slots past the reservation
        time: the game stays full.
        """
        self.register("host", A)
        session_id = self.host("host", A, max_players=2)
        self.register("p", B)
        self.join("p", B, session_id, ack=True)
        self.clock.advance(11)
        self.transport.clear()
        self.register("late", C)
        [full] = self.join("late", C, session_id, ack=True)
        self.assertEqual(full.code, ErrorCode.SESSION_FULL)

    def test_sessions_per_ip_capped(self):
        """
        One source IP hosts at most 64 sessions (through any number of
        registrations); others still can.
        """
        answers = []
        for n in range(20):
            source = ("198.18.6.1", 1000 + n)
            self.register(f"h{n}", source)
            for j in range(4):
                self.send(
                    wire.HostSession(self.next_txid(), f"h{n}", self.cookies[f"h{n}"], f"s{n}-{j}", "g", 4), source
                )
                [(answer, _)] = self.transport.clear()
                answers.append(answer)
        self.assertEqual(sum(isinstance(a, wire.SessionHosted) for a in answers), 64)
        self.assertEqual({a.code for a in answers if isinstance(a, wire.Error)}, {ErrorCode.TOO_MANY_SESSIONS})
        self.register("other", B)
        self.host("other", B)

    def test_flood_does_not_stop_a_join(self):
        """
        Seeded simulation: 50 IPs try to host 20,000 sessions of the same
        game; a real host's session is still found by a paced listing
        (within a 50 packets/s limit) and joined.
        """
        import random

        from p2pnet._introclient import IntroducerClient
        from p2pnet._lister import SessionLister

        rng = random.Random(145)
        attempts = hosted = 0
        for n in range(5000):
            ip = f"198.18.{rng.randrange(50)}.1"
            source = (ip, 1024 + n)
            self.send(wire.Register(self.next_txid(), f"f{n}", ()), source)
            [(registered, _)] = self.transport.clear()
            self.send(wire.Heartbeat(self.next_txid(), f"f{n}", registered.cookie), source)
            self.transport.clear()
            for j in range(4):
                attempts += 1
                self.send(
                    wire.HostSession(
                        self.next_txid(), f"f{n}", registered.cookie, f"flood {n}-{j} " + "x" * rng.randrange(40), "game", 8
                    ),
                    source,
                )
                [(answer, _)] = self.transport.clear()
                hosted += isinstance(answer, wire.SessionHosted)
        self.assertEqual(attempts, 20_000)
        self.assertLessEqual(hosted, 50 * 64)
        self.register("keith", A)
        session_id = self.host("keith", A, "Keith's Server", max_players=4)
        self.protocol._rate_limiter = RateLimiter(50.0, 100.0)
        self.register("joiner", B)
        outbox = []

        def write(raw, to):
            outbox.append(raw)
            self.clock.callLater(0.01, deliver)

        def deliver():
            while outbox:
                self.protocol.datagramReceived(outbox.pop(0), B)
                for answer, _ in self.transport.clear():
                    client.answer(answer)

        client = IntroducerClient(self.clock, write, Address("192.0.2.1", 3478), seeded_bytes(6))
        d = SessionLister(self.clock, client.request, client.new_txid).list(LobbyQuery("game"))
        for step in range(4000):
            self.clock.advance(0.05)
            if d.called:
                break
            if step % 100 == 99:
                # Keith heartbeats, as a live host does (a silent one is
                # taken for gone: HOST_GONE).
                self.send(wire.Heartbeat(self.next_txid(), "keith", self.cookies["keith"]), A)
                self.transport.clear()
        sessions = self.successResultOf(d)
        [keiths] = [s for s in sessions if s.name == "Keith's Server"]
        self.assertEqual(keiths.session_id, session_id)
        [intro] = self.join("joiner", B, session_id, ack=True)
        self.assertEqual(intro.peer_id, "keith")

    def test_only_the_joiners_own_acknowledgement_confirms(self):
        """
        The host acknowledging its copy of the introduction does not
        confirm the joiner: only the joiner's own acknowledgement does.
        """
        self.register("host", A)
        session_id = self.host("host", A, max_players=2)
        self.register("squat", C)
        self.send(wire.Introduce(self.next_txid(), "squat", self.cookies["squat"], session_id=session_id), C)
        for message, to in self.transport.clear():
            if to == A:
                self.send(wire.IntroAck(self.next_txid(), message.intro_id), A)
        self.assertEqual(self.protocol.stats["joins-confirmed"], 0)
        self.clock.advance(10.5)
        self.transport.clear()
        self.register("player", B)
        [intro] = self.join("player", B, session_id, ack=True)
        self.assertIsInstance(intro, wire.Introduction)


#: wire.proof_tag(bytes(range(32)), bytes(range(16)), "ann", 192.0.2.7:4000)
PINNED_PROOF = "6c5b1a52aee655c40c31a0be4e613aea"


class ProofFormatTests(SynchronousTestCase):
    def test_proof_tag_pinned(self):
        """
        The proof's bytes are part of the protocol: for a fixed key,
        challenge, peer id and address the tag stays this value (see
        docs/protocol.md, Proof).
        """
        tag = wire.proof_tag(bytes(range(32)), bytes(range(16)), "ann", Address("192.0.2.7", 4000))
        self.assertEqual(tag.hex(), PINNED_PROOF)
        others = [
            wire.proof_tag(bytes(range(1, 33)), bytes(range(16)), "ann", Address("192.0.2.7", 4000)),
            wire.proof_tag(bytes(range(32)), bytes(range(1, 17)), "ann", Address("192.0.2.7", 4000)),
            wire.proof_tag(bytes(range(32)), bytes(range(16)), "anne", Address("192.0.2.7", 4000)),
            wire.proof_tag(bytes(range(32)), bytes(range(16)), "ann", Address("192.0.2.7", 4001)),
        ]
        self.assertNotIn(tag, others)

    def test_round_trips(self):
        """
        Challenge and Proof survive encode/decode; wrong-sized fields are
        malformed.
        """
        from p2pnet.errors import MalformedMessage

        for message in (
            wire.Challenge(txid(1), bytes(16), Address("2001:db8::1", 9), bytes(32)),
            wire.Challenge(txid(2), bytes(16), Address("192.0.2.1", 9)),
            wire.Proof(txid(3), "é" * 32, bytes(16), bytes(range(16))),
            wire.Register(txid(4), "a", (), peer_key=bytes(32)),
            wire.Registered(txid(5), Address("192.0.2.1", 9), 30, bytes(8), bytes(32)),
        ):
            self.assertEqual(wire.decode(wire.encode(message)), message)
        raw = wire.encode(wire.Proof(txid(3), "a", bytes(16), bytes(16)))
        self.assertRaises(MalformedMessage, wire.decode, raw[:-1] + b"")
        short = raw.replace(b"\x22\x00\x10" + bytes(16), b"\x22\x00\x0f" + bytes(15))
        self.assertRaises(MalformedMessage, wire.decode, short)


class CapOptionTests(SynchronousTestCase):
    def test_cap_options(self):
        """
        The cap options reach the registry, and 0 is a usage error.
        """
        from twisted.python import usage

        from p2pnet.introducer_tap import Options, make_protocol

        options = Options()
        options.parseOptions(
            ["--max-registrations", "5", "--max-per-ip", "2", "--max-sessions", "7", "--max-sessions-per-ip", "3"]
        )
        registry = make_protocol(options, Clock()).registry
        self.assertEqual(
            (registry.max_registrations, registry.max_per_ip, registry.max_sessions, registry.max_sessions_per_ip),
            (5, 2, 7, 3),
        )
        for name in ("--max-registrations", "--max-per-ip", "--max-sessions", "--max-sessions-per-ip"):
            self.assertRaises(usage.UsageError, Options().parseOptions, [name, "0"])
