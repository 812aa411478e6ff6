"""
The connection's public surface: the connect request's payload and the
host's answer, close codes, C{is_open}, what C{ConnectionClosed} says, and
that the handshake plumbing is not public.
"""

from __future__ import annotations

import random

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from p2pnet import (
    CloseCode,
    ConnectionClosed,
    ConnectionRefused,
    ConnectTimeout,
    HandshakeTimeout,
    P2PError,
    PayloadTooLarge,
    PeerConfig,
    PeerConnection,
    PeerEndpoint,
    PeerFactory,
    PeerLost,
    PeerProtocol,
)
from p2pnet._registry import Registry
from p2pnet.introducer import IntroducerProtocol
from p2pnet.testing import scenarios
from p2pnet.testing._heapclock import HeapClock
from p2pnet.testing._simnet import Network

INTRODUCER = scenarios.INTRODUCER


class Recorder(PeerProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lost: list[Failure] = []

    def datagram_received(self, data: bytes) -> None:
        self.received.append(data)

    def connection_lost(self, reason: Failure) -> None:
        self.lost.append(reason)


class Gate(PeerFactory):
    """
    A host's factory that admits by payload: C{answers} maps a payload to
    the answer (None, a reason, or a Deferred); others are accepted.
    """

    def __init__(self, answers=None) -> None:
        self.answers = answers or {}
        self.asked: list[tuple[str, bytes]] = []
        self.built: list[Recorder] = []

    def accept_connection(self, peer_id: str, payload: bytes):
        self.asked.append((peer_id, payload))
        return self.answers.get(payload)

    def build_protocol(self, peer_id: str) -> Recorder:
        protocol = Recorder()
        self.built.append(protocol)
        return protocol


class Pair:
    """
    An introducer and two public hosts on a simulated network: A joins,
    B hosts (with a L{Gate}).
    """

    def __init__(self, test: SynchronousTestCase, factory=None, insecure: bool = False, seed: int = 1) -> None:
        self.clock = HeapClock()
        network = Network(self.clock, seed=seed)
        rng = random.Random(seed)
        random_bytes = scenarios.seeded_bytes(rng)
        introducer_host = network.add_host(INTRODUCER.host, name="introducer")
        self.introducer_port = introducer_host.listenUDP(
            INTRODUCER.port, IntroducerProtocol(self.clock, Registry(60.0, random_bytes), random_bytes)
        )
        host_a = scenarios.add_site(network, "public", 1)
        host_b = scenarios.add_site(network, "public", 2)
        config = PeerConfig(insecure=insecure)
        self.factory = factory if factory is not None else Gate()
        self.a = PeerEndpoint(host_a, INTRODUCER, "A", config=config, random_bytes=random_bytes)
        self.b = PeerEndpoint(host_b, INTRODUCER, "B", config=config, random_bytes=random_bytes, factory=self.factory)
        self.events = {"A": [], "B": []}
        self.a.add_observer(self.events["A"].append)
        self.b.add_observer(self.events["B"].append)
        started = []
        self.a.start().addBoth(started.append)
        self.b.start().addBoth(started.append)
        self.run(1.0)
        test.assertEqual(len(started), 2)
        test.addCleanup(self.shutdown)

    def run(self, seconds: float, step: float = 0.005) -> None:
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end:
            self.clock.advance(step)

    def connect(self, payload: bytes = b"", protocol=None) -> list:
        outcome: list = []
        self.a.connect("B", protocol or Recorder(), payload=payload).addBoth(outcome.append)
        return outcome

    def shutdown(self) -> None:
        self.a.stop()
        self.b.stop()
        self.run(0.5)
        self.introducer_port.stopListening()
        self.run(0.1)


class ConnectPayloadTests(SynchronousTestCase):
    def test_accepted_payload_reaches_host(self) -> None:
        """
        The joiner's payload reaches the host's C{accept_connection}
        exactly; once it answers None, both sides open.
        """
        pair = Pair(self)
        outcome = pair.connect(b"token:ann")
        pair.run(3.0)
        [connection] = outcome
        self.assertIsInstance(connection, PeerConnection)
        self.assertTrue(connection.is_open)
        self.assertEqual(pair.factory.asked, [("A", b"token:ann")])
        [host_side] = pair.b.connections
        self.assertTrue(host_side.is_open)
        self.assertEqual(len(pair.factory.built), 1)

    def test_refused_with_reason(self) -> None:
        """
        A reason from C{accept_connection} fails the joiner's connect with
        L{ConnectionRefused} carrying it; the host builds no protocol and
        neither side keeps the connection.
        """
        pair = Pair(self, Gate({b"cheater": "banned for cheating"}))
        outcome = pair.connect(b"cheater")
        pair.run(3.0)
        [failure] = outcome
        self.assertIsInstance(failure, Failure)
        error = failure.value
        self.assertIsInstance(error, ConnectionRefused)
        self.assertEqual((error.code, error.reason), (CloseCode.REFUSED, "banned for cheating"))
        self.assertIn("banned for cheating", str(error))
        self.assertEqual(pair.factory.built, [])
        self.assertEqual((pair.a.connections, pair.b.connections), ([], []))
        self.assertNotIn("connected", [e.kind for e in pair.events["A"]])
        self.assertNotIn("connected", [e.kind for e in pair.events["B"]])

    def test_deferred_decision(self) -> None:
        """
        C{accept_connection} may answer with a Deferred; the joiner waits
        for it (and is not open meanwhile).
        """
        decision = Deferred()
        pair = Pair(self, Gate({b"slow": decision}))
        outcome = pair.connect(b"slow")
        pair.run(3.0)
        self.assertEqual(outcome, [])
        [pending] = pair.a.connections
        self.assertFalse(pending.is_open)
        decision.callback("the table is full")
        pair.run(1.0)
        self.assertIsInstance(outcome[0].value, ConnectionRefused)
        self.assertEqual(outcome[0].value.reason, "the table is full")

    def test_host_never_answers(self) -> None:
        """
        A host that never decides leaves the joiner waiting no longer than
        the handshake timeout after the path is up: it fails with
        L{ConnectTimeout} (a L{HandshakeTimeout}), and the host's side is
        told (closed with L{CloseCode.TIMED_OUT}).
        """
        pair = Pair(self, Gate({b"never": Deferred()}))
        outcome = pair.connect(b"never")
        pair.run(9.0)
        self.assertEqual(outcome, [])
        pair.run(2.0)
        [failure] = outcome
        self.assertIsInstance(failure.value, ConnectTimeout)
        pair.run(0.5)
        self.assertEqual(pair.b.connections, [])

    def test_payload_over_cap_refused_at_once(self) -> None:
        """
        A payload over 256 bytes fails C{connect} at once with
        L{PayloadTooLarge}; nothing is sent.
        """
        pair = Pair(self)
        sent_before = pair.a.stats.get("sent", 0), len(pair.a.connections)
        outcome = pair.connect(bytes(257))
        self.assertIsInstance(outcome[0].value, PayloadTooLarge)
        self.assertEqual(outcome[0].value.cap, 256)
        self.assertEqual((pair.a.stats.get("sent", 0), len(pair.a.connections)), sent_before)
        pair.run(2.0)
        self.assertEqual(pair.factory.asked, [])

    def test_payload_never_in_clear(self) -> None:
        """
        The payload never appears in clear in any datagram (it rides in a
        sealed frame).
        """
        pair = Pair(self)
        captured: list[bytes] = []
        original = pair.a.transport.write

        def write(data, addr):
            captured.append(data)
            return original(data, addr)

        pair.a.transport.write = write
        outcome = pair.connect(b"SECRET-JOIN-TOKEN")
        pair.run(3.0)
        self.assertIsInstance(outcome[0], PeerConnection)
        self.assertTrue(captured)
        self.assertFalse([d for d in captured if b"SECRET-JOIN-TOKEN" in d])

    def test_insecure_refuses_payload(self) -> None:
        """
        Insecure endpoints have no sealed frames: a payload is refused at
        once, and a connection without one opens as before.
        """
        pair = Pair(self, insecure=True)
        refused = pair.connect(b"token")
        self.assertIsInstance(refused[0].value, P2PError)
        self.assertIn("insecure", str(refused[0].value))
        outcome = pair.connect()
        pair.run(3.0)
        self.assertTrue(outcome[0].is_open)
        self.assertEqual(pair.factory.asked, [])


def open_pair(test: SynchronousTestCase, insecure: bool = False) -> tuple[Pair, PeerConnection, PeerConnection, Recorder, Recorder]:
    pair = Pair(test, insecure=insecure)
    mine = Recorder()
    outcome = pair.connect(protocol=mine)
    pair.run(2.0)
    [connection] = outcome
    [theirs] = pair.b.connections
    [their_protocol] = pair.factory.built
    return pair, connection, theirs, mine, their_protocol


class CloseCodeTests(SynchronousTestCase):
    def check_close(self, insecure: bool) -> None:
        pair, connection, theirs, mine, their_protocol = open_pair(self, insecure)
        connection.close(200, "round over")
        pair.run(1.0)
        [ours] = mine.lost
        self.assertIsInstance(ours.value, ConnectionClosed)
        self.assertEqual((ours.value.code, ours.value.reason), (200, "round over"))
        [lost] = their_protocol.lost
        self.assertIsInstance(lost.value, PeerLost)
        self.assertEqual((lost.value.code, lost.value.reason), (200, "round over"))
        self.assertIn("round over", str(lost.value))
        [closed] = [e for e in pair.events["A"] if e.kind == "closed"]
        [lost_event] = [e for e in pair.events["B"] if e.kind == "lost"]
        self.assertEqual((closed.code, lost_event.code), (200, 200))
        self.assertIn("round over", lost_event.detail)

    def test_close_code_secure(self) -> None:
        """
        The code and text given to C{close} reach the peer in the sealed
        CLOSE frame: its connection ends with L{PeerLost} carrying both,
        and its C{lost} event has them; ours ends with
        L{ConnectionClosed} carrying them.
        """
        self.check_close(insecure=False)

    def test_close_code_insecure(self) -> None:
        """
        Insecure connections carry the code and text in the C{Close}
        message.
        """
        self.check_close(insecure=True)

    def test_silence_has_no_code(self) -> None:
        """
        A peer that goes silent ends the connection with L{PeerLost} whose
        code is None.
        """
        pair, connection, theirs, mine, their_protocol = open_pair(self)
        pair.b.transport.write = lambda data, addr: None
        pair.run(50.0, step=0.05)
        [lost] = mine.lost
        self.assertIsInstance(lost.value, PeerLost)
        self.assertIsNone(lost.value.code)

    def test_stop_says_stopped(self) -> None:
        """
        Stopping an endpoint closes its connections with
        L{CloseCode.STOPPED}.
        """
        pair, connection, theirs, mine, their_protocol = open_pair(self)
        pair.b.stop()
        pair.run(1.0)
        [lost] = mine.lost
        self.assertEqual(lost.value.code, CloseCode.STOPPED)

    def test_bad_close_values(self) -> None:
        """
        A code outside 0-255 or a text over 255 UTF-8 bytes is refused
        with C{ValueError}, and the connection stays open.
        """
        pair, connection, theirs, mine, their_protocol = open_pair(self)
        self.assertRaises(ValueError, connection.close, 256)
        self.assertRaises(ValueError, connection.close, 1, "x" * 256)
        self.assertTrue(connection.is_open)


class OpenStateTests(SynchronousTestCase):
    def test_is_open(self) -> None:
        """
        C{is_open} is False while connecting, True once connected, False
        after C{close}.
        """
        pair = Pair(self)
        outcome = pair.connect()
        pair.run(0.001)
        [connecting] = pair.a.connections
        self.assertFalse(connecting.is_open)
        pair.run(2.0)
        self.assertIs(outcome[0], connecting)
        self.assertTrue(connecting.is_open)
        connecting.close()
        self.assertFalse(connecting.is_open)

    def test_send_while_connecting(self) -> None:
        """
        C{send} before the connection opened says it is still connecting.
        """
        pair = Pair(self)
        pair.connect()
        pair.run(0.001)
        [connecting] = pair.a.connections
        error = self.assertRaises(ConnectionClosed, connecting.send, b"x")
        self.assertIn("not open yet (still connecting)", str(error))

    def test_send_after_refusal_says_never_opened(self) -> None:
        """
        C{send} on a connection that was refused says it never opened and
        why.
        """
        pair = Pair(self, Gate({b"no": "private game"}))
        pair.connect(b"no")
        pair.run(0.001)
        [connection] = pair.a.connections
        pair.run(3.0)
        error = self.assertRaises(ConnectionClosed, connection.send, b"x")
        self.assertIn("never opened", str(error))
        self.assertIn("private game", str(error))

    def test_send_after_close(self) -> None:
        """
        C{send} after C{close} says the connection is closed.
        """
        pair, connection, theirs, mine, their_protocol = open_pair(self)
        connection.close()
        error = self.assertRaises(ConnectionClosed, connection.send, b"x")
        self.assertIn("is closed", str(error))
        self.assertNotIn("never opened", str(error))


#: What a game may use on a connection (docs/tutorial.md documents each).
PUBLIC_CONNECTION_API = {
    "address", "candidates", "close", "ended", "initiator", "intro_id", "introduced_at", "is_open",
    "key", "log", "peer_id", "peer_key", "peer_public", "path", "protocol", "relay_only", "secure", "send",
    "session_id", "set_protocol", "stats", "when_writable", "conn_id", "remote_conn_id",
    "EARLY_LIMIT",
}


class PublicSurfaceTests(SynchronousTestCase):
    def test_plumbing_is_private(self) -> None:
        """
        The handshake's plumbing (hellos, probes, relay requests, the
        machine's other outputs, the endpoint's entry points) is not
        public on a connection.
        """
        pair, connection, theirs, mine, their_protocol = open_pair(self)
        for name in (
            "send_hello", "send_probe", "request_relay", "send_answer", "send_keepalive", "send_close",
            "request_reversal", "open_birthday_sockets", "open_rescue_socket", "send_rescue_hello",
            "connected", "path_changed", "failed", "lost", "status", "turn_ready", "relay_offered",
            "turn_candidate", "reverse_received", "message_received", "data_received", "sealed_received",
            "deliver", "heard_via", "normalise", "when_connected", "machine", "sent_now",
        ):
            self.assertFalse(hasattr(connection, name), name)
        public = {name for name in dir(connection) if not name.startswith("_")}
        self.assertEqual(public - PUBLIC_CONNECTION_API, set())


class NoRelayTests(SynchronousTestCase):
    def test_no_relay_said(self) -> None:
        """
        When the relay asked for does not exist, the connection says so at
        once (status C{no-relay}) and its failure says there was no relay
        to fall back on, instead of a bare "relaying" then a timeout.
        """
        result = scenarios.run_pair("symmetric", "symmetric")
        kinds = [(side, e.kind) for t, side, e in result.events if e.peer_id is not None]
        self.assertIn(("A", "relaying"), kinds)
        self.assertIn(("A", "no-relay"), kinds)
        self.assertLess(kinds.index(("A", "relaying")), kinds.index(("A", "no-relay")))
        [no_relay] = [e for t, side, e in result.events if side == "A" and e.kind == "no-relay"]
        self.assertEqual(no_relay.detail, "the introducer runs no relay")
        [when] = [t for t, side, e in result.events if side == "A" and e.kind == "no-relay"]
        [asked] = [t for t, side, e in result.events if side == "A" and e.kind == "relaying"]
        self.assertLess(when - asked, 0.1)
        error = result.outcome_a.value
        self.assertIsInstance(error, HandshakeTimeout)
        self.assertIn("no relay to fall back on: the introducer runs no relay", str(error))

    def test_relay_present_no_such_event(self) -> None:
        """
        With a relay, no C{no-relay} event.
        """
        result = scenarios.run_pair("symmetric", "symmetric", relay=True)
        self.assertNotIn("no-relay", [e.kind for t, side, e in result.events])


class NoProtocolTests(SynchronousTestCase):
    def test_factory_without_protocol_refuses(self) -> None:
        """
        A factory that builds no protocol closes the connection with
        L{CloseCode.REFUSED}, which the joiner sees in L{PeerLost}.
        """

        class Closed(Gate):
            def build_protocol(self, peer_id):
                return None

        pair = Pair(self, Closed())
        mine = Recorder()
        outcome = pair.connect(protocol=mine)
        pair.run(2.0)
        [lost] = mine.lost
        self.assertIsInstance(lost.value, PeerLost)
        self.assertEqual((lost.value.code, lost.value.reason), (CloseCode.REFUSED, "no protocol for this peer"))


class ClosedBeforeOpenTests(SynchronousTestCase):
    def test_host_stops_while_deciding(self) -> None:
        """
        A host that stops while it decides is not a refusal: the joiner's
        connect fails with L{PeerLost} saying the connection closed before
        it opened, and why.
        """
        pair = Pair(self, Gate({b"wait": Deferred()}))
        outcome = pair.connect(b"wait")
        pair.run(1.0)
        self.assertEqual(outcome, [])
        pair.b.stop()
        pair.run(1.0)
        [failure] = outcome
        self.assertNotIsInstance(failure.value, ConnectionRefused)
        self.assertIsInstance(failure.value, PeerLost)
        self.assertEqual(failure.value.code, CloseCode.STOPPED)
        self.assertIn("before it opened", str(failure.value))
        self.assertIn("the endpoint was stopped", str(failure.value))
