"""
Dead hosts at the introducer: their sessions leave the lobby within a
second of their registration expiring, and nobody is introduced to a host
that stopped heartbeating (C{HOST_GONE}).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from p2pnet import wire
from p2pnet import HostGone
from p2pnet.wire import ErrorCode

from .test_endpoint import Recorder, RecordingFactory, World
from .test_introducer import A, B, C, IntroducerTestCase


class _Helpers(IntroducerTestCase):
    """
    The registry's lifetime here is 30 s: a heartbeat every 7.5 s.
    """

    def listed(self):
        self.send(wire.ListSessions(self.next_txid(), "game"), C)
        [(answer, _)] = self.transport.clear()
        return [info.name for info in answer.sessions]

    def heartbeat(self, name, source):
        self.send(wire.Heartbeat(self.next_txid(), name, self.cookies[name]), source)
        self.transport.clear()


class LobbyExpiryTests(_Helpers):
    def test_gone_within_a_second_of_expiry(self):
        """
        A host that stops heartbeating keeps its session listed while its
        registration lives (30 s) and loses it within one second of that,
        well inside one heartbeat interval.
        """
        self.clock.pump([0.5] * 2)
        self.register("h", A)
        self.host("h", A, "doomed")
        self.clock.pump([0.5] * 59)
        self.assertEqual(self.listed(), ["doomed"])
        self.clock.pump([0.5] * 4)
        self.assertEqual(self.listed(), [])
        self.assertEqual(self.protocol.stats["expired"], 1)

    def test_heartbeats_keep_it(self):
        """
        Heartbeats every 7.5 s keep the session listed.
        """
        self.register("h", A)
        self.host("h", A, "alive")
        for _ in range(10):
            self.clock.pump([0.5] * 15)
            self.heartbeat("h", A)
        self.assertEqual(self.listed(), ["alive"])

    def test_gone_at_once_on_close(self):
        """
        A host that unregisters (its endpoint stopped) takes its session
        out of the list at once.
        """
        self.register("h", A)
        self.host("h", A, "closing")
        self.send(wire.Unregister(self.next_txid(), "h", self.cookies["h"]), A)
        self.assertEqual(self.listed(), [])


class HostGoneTests(_Helpers):
    """
    Silent for more than 1.5 heartbeat intervals (11.25 s here): gone.
    """

    def join(self, session_id=None, target=None):
        request = self.next_txid()
        self.send(wire.Introduce(request, "j", self.cookies["j"], target, session_id), B)
        sent = self.transport.clear()
        return request, sent

    def setUp(self):
        super().setUp()
        self.register("h", A)
        self.session_id = self.host("h", A, "s")
        self.register("j", B)

    def test_join_refused_once_silent(self):
        """
        Joining the session of a host silent for 11.5 s is refused at once
        with HOST_GONE, and the host is sent nothing.
        """
        self.clock.pump([0.5] * 23)
        self.heartbeat("j", B)
        request, sent = self.join(self.session_id)
        [(answer, to)] = sent
        self.assertEqual((answer.txid, answer.code, to), (request, ErrorCode.HOST_GONE, B))
        self.assertIn("no heartbeat for 12s", answer.reason)

    def test_join_while_heard(self):
        """
        A host silent for 11 s (one heartbeat late, not two) is still
        introduced to.
        """
        self.clock.pump([0.5] * 22)
        self.heartbeat("j", B)
        request, sent = self.join(self.session_id)
        self.assertEqual(sorted(to for _, to in sent), sorted([A, B]))
        self.assertTrue(all(isinstance(m, wire.Introduction) for m, _ in sent))

    def test_introduce_refused_once_silent(self):
        """
        The same for an introduction by peer id.
        """
        self.clock.pump([0.5] * 23)
        self.heartbeat("j", B)
        request, [(answer, to)] = self.join(target="h")
        self.assertEqual((answer.code, to), (ErrorCode.HOST_GONE, B))


class JoinerTests(SynchronousTestCase):
    """
    A joiner's connect on the simulated network (registration lifetime
    60 s: a heartbeat every 15 s, gone after 22.5 s of silence).
    """

    def test_connect_to_dead_host_fails_fast(self):
        """
        Connecting to a peer that died 23 s ago fails within 3 s with
        HostGone instead of punching until the handshake times out.
        """
        world = World(self)
        alice = world.peer("alice")
        bob = world.peer("bob")
        world.result(alice.start())
        world.result(bob.start())
        world.network.set_link(alice.reactor, loss=1.0)
        world.run(23.0, step=0.5)
        asked = world.clock.seconds()
        failure = world.result(bob.connect("alice"), seconds=3.0)
        self.assertLessEqual(world.clock.seconds() - asked, 3.0)
        self.assertTrue(failure.check(HostGone), failure)
        self.assertIn("gone", str(failure.value))


class UnansweredIntroductionTests(_Helpers):
    """
    A host that died a moment ago (its heartbeat is recent) and leaves its
    introduction unacknowledged: the joiner is told within 3 s.
    """

    def setUp(self):
        super().setUp()
        self.register("h", A)
        self.register("j", B)

    def introduce(self):
        request = self.next_txid()
        self.send(wire.Introduce(request, "j", self.cookies["j"], "h", None), B)
        sent = self.transport.clear()
        [to_host] = [m for m, to in sent if to == A]
        return request, to_host

    def errors_to_joiner(self):
        return [m for m, to in self.transport.clear() if to == B and isinstance(m, wire.Error)]

    def test_silent_host(self):
        """
        Four copies unacknowledged and no heartbeat: HOST_GONE with the
        joiner's transaction id, by 2.75 s after the introduction.
        """
        request, _ = self.introduce()
        self.clock.pump([0.25] * 11)
        [error] = self.errors_to_joiner()
        self.assertEqual((error.txid, error.code), (request, ErrorCode.HOST_GONE))
        self.assertIn("does not answer", error.reason)
        self.assertEqual(self.protocol.stats["hosts-gone"], 1)

    def test_host_acknowledges(self):
        """
        A host that acknowledges its copy is not reported.
        """
        _, to_host = self.introduce()
        self.send(wire.IntroAck(self.next_txid(), to_host.intro_id), A)
        self.clock.pump([0.25] * 16)
        self.assertEqual(self.errors_to_joiner(), [])

    def test_host_heartbeats(self):
        """
        A host whose acknowledgements are lost but who heartbeats after the
        introduction is not reported.
        """
        self.introduce()
        self.clock.pump([0.25] * 2)
        self.heartbeat("h", A)
        self.clock.pump([0.25] * 14)
        self.assertEqual(self.errors_to_joiner(), [])


class FreshlyDeadHostTests(SynchronousTestCase):
    def test_connect_to_just_killed_host(self):
        """
        Connecting to a peer that died one second ago (still registered,
        heartbeat recent) fails within 3 s with HostGone.
        """
        world = World(self)
        alice = world.peer("alice")
        bob = world.peer("bob")
        world.result(alice.start())
        world.result(bob.start())
        world.network.set_link(alice.reactor, loss=1.0)
        world.run(1.0)
        asked = world.clock.seconds()
        failure = world.result(bob.connect("alice"), seconds=3.0)
        self.assertLessEqual(world.clock.seconds() - asked, 3.0)
        self.assertTrue(failure.check(HostGone), failure)

    def test_live_host_unaffected(self):
        """
        A live host whose acknowledgements to the introducer are all lost
        still connects (its hellos validated the path before the notice
        came; one still punching but hearing from it is kept too).
        """
        world = World(self)
        factory = RecordingFactory()
        alice = world.peer("alice", factory=factory)
        bob = world.peer("bob")
        world.result(alice.start())
        world.result(bob.start())
        world.run(1.0)
        # The simulated network cannot drop one kind of message: the
        # introducer ignores alice's acknowledgements instead.
        handlers = world.introducer._handlers
        on_ack = handlers[wire.IntroAck]
        handlers[wire.IntroAck] = lambda message, source, *rest: (
            None if source == alice.public_address else on_ack(message, source, *rest)
        )
        connection = world.result(bob.connect("alice", Recorder()), seconds=5.0)
        world.run(5.0)
        self.assertFalse(connection.ended)
        self.assertEqual(world.introducer.stats["hosts-gone"], 1)
