"""
Tests for fast failure on an active connection (L{p2pnet._liveness}) and
the slow heartbeat of an idle one, on the simulated network.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from p2pnet._handshakeconfig import HandshakeConfig
from p2pnet._liveness import FALL_BACK, LOST, PROBE, AnswerClock
from p2pnet.endpoint import PeerConfig
from p2pnet.errors import PeerLost
from p2pnet.testing.scenarios import INTRODUCER, run_pair

from .test_endpoint import Recorder, RecordingFactory, World


class AnswerClockTests(SynchronousTestCase):
    """
    The pure bookkeeping: times in, verdicts out.
    """

    def test_schedule_of_a_silent_peer(self):
        """
        After a send to a peer idle for long, silence counts from the send:
        a probe each second, the fallback at 2.5 s, the loss at 5 s.
        """
        answers = AnswerClock(5.0, 1.0)
        self.assertTrue(answers.sent(100.0, heard=80.0))
        seen = []
        while True:
            deadline = answers.next_deadline()
            if deadline is None:
                break
            seen.append((round(deadline - 100.0, 3), answers.due(deadline, heard=80.0)))
        self.assertEqual(
            seen,
            [(1.0, [PROBE]), (2.0, [PROBE]), (2.5, [FALL_BACK]), (3.0, [PROBE]), (4.0, [PROBE]), (5.0, [LOST])],
        )

    def test_talking_peer_stops(self):
        """
        A send less than two probe intervals after the peer's last packet
        counts the silence from that packet (a probe is due at once), and
        later sends change nothing until the peer speaks.
        """
        answers = AnswerClock(5.0, 1.0)
        self.assertTrue(answers.sent(11.9, heard=10.0))
        self.assertEqual(answers.due(11.9, heard=10.0), [PROBE])
        self.assertFalse(answers.sent(12.0, heard=10.0))
        self.assertEqual(answers.next_deadline(), 12.0)
        self.assertEqual(answers.due(12.0, heard=10.0), [PROBE])
        self.assertEqual(answers.due(12.5, heard=10.0), [FALL_BACK])
        self.assertEqual(answers.due(15.0, heard=10.0), [LOST])

    def test_answer_ends_the_debt(self):
        """
        Anything heard after the debt began ends it; the next send starts
        a new one.
        """
        answers = AnswerClock(5.0, 1.0)
        answers.sent(0.0, heard=-20.0)
        self.assertEqual(answers.due(1.0, heard=-20.0), [PROBE])
        self.assertEqual(answers.due(2.0, heard=1.1), [])
        self.assertIsNone(answers.next_deadline())
        self.assertTrue(answers.sent(3.5, heard=1.1))
        self.assertEqual(answers.next_deadline(), 4.5)

    def test_config(self):
        """
        The active timeout must be longer than the probe interval; None
        switches it off.
        """
        error = self.assertRaises(ValueError, HandshakeConfig, answer_timeout=1.0, probe_interval=1.0)
        self.assertIn("answer_timeout", str(error))
        self.assertIsNone(HandshakeConfig(answer_timeout=None).answer_timeout)
        self.assertEqual((HandshakeConfig().answer_timeout, HandshakeConfig().probe_interval), (5.0, 1.0))


class ConnectionLivenessTests(SynchronousTestCase):
    """
    Two endpoints on the simulated network with the default timings.
    """

    def setUp(self):
        self.start()

    def start(self, config=PeerConfig()):
        self.world = World(self)
        self.factory = RecordingFactory()
        self.alice = self.world.peer("alice", factory=self.factory, config=config)
        self.bob = self.world.peer("bob", config=config)
        self.world.result(self.alice.start())
        self.world.result(self.bob.start())
        self.mine = Recorder()
        self.connection = self.world.result(self.bob.connect("alice", self.mine))
        self.theirs = self.factory.built["bob"]
        self.world.run(1.0)

    def kill_alice(self, loss=1.0):
        self.world.network.set_link(self.alice.reactor, loss=loss)

    def stream(self, seconds, channel=None, every=0.1):
        """
        Bob sends every C{every} seconds for C{seconds} or until the
        connection is lost; the time it was lost, or None.
        """
        clock = self.world.clock
        end = clock.seconds() + seconds
        while clock.seconds() < end - 1e-9:
            if self.mine.lost:
                return clock.seconds()
            self.connection.send(b"tick", channel)
            self.world.run(every)
        return clock.seconds() if self.mine.lost else None

    def test_active_dead_peer_raw(self):
        """
        A peer that dies while we stream raw datagrams to it (it only
        receives: its side answers nothing but our echo requests) is
        reported lost within 5 s, and the reason says why.
        """
        self.assertIsNone(self.stream(3.0))
        self.assertGreater(len(self.theirs.received), 20)
        died = self.world.clock.seconds()
        self.kill_alice()
        lost_at = self.stream(10.0)
        self.assertIsNotNone(lost_at)
        self.assertLessEqual(lost_at - died, 5.0 + 0.1)
        self.assertGreaterEqual(lost_at - died, 3.9)
        [reason] = self.mine.lost
        self.assertTrue(reason.check(PeerLost))
        self.assertIn("while sending", str(reason.value))

    def test_active_dead_peer_reliable(self):
        """
        The same with reliable channel messages (the peer's acks are what
        we hear, then nothing).
        """
        self.assertIsNone(self.stream(3.0, channel=0))
        died = self.world.clock.seconds()
        self.kill_alice()
        lost_at = self.stream(10.0, channel=0)
        self.assertIsNotNone(lost_at)
        self.assertLessEqual(lost_at - died, 5.0 + 0.1)

    def test_alive_listener_is_not_lost(self):
        """
        A peer that only listens is not lost, however long we stream: it
        answers the echo requests, at about one a second.
        """
        self.assertIsNone(self.stream(60.0))
        self.assertEqual(self.connection.ended, False)
        self.assertEqual(len(self.theirs.received), 600)

    def test_loss_burst(self):
        """
        Three seconds of total loss on an active connection do not end it.
        """
        self.stream(2.0)
        self.kill_alice()
        self.assertIsNone(self.stream(3.0))
        self.kill_alice(loss=0.0)
        before = len(self.theirs.received)
        self.assertIsNone(self.stream(20.0))
        self.assertEqual(len(self.theirs.received) - before, 200)

    def test_idle_peer(self):
        """
        An idle connection sends at most 4 keepalives a minute; when its
        peer dies it is lost 45 s after the peer's last packet, not before.
        """
        bob_host = self.bob.reactor.name
        introducer = INTRODUCER.as_tuple()
        sent, heard = [], []

        def trace(event):
            if event.kind == "send" and event.where == bob_host and event.dst != introducer:
                sent.append(event.time)
            elif event.kind == "deliver" and event.where == bob_host and event.src != introducer:
                heard.append(event.time)

        self.world.network.trace = trace
        self.world.run(60.0, step=0.5)
        self.assertLessEqual(len(sent), 4)
        self.assertGreaterEqual(len(sent), 3)
        self.kill_alice()
        last = heard[-1]
        while not self.mine.lost:
            self.world.run(0.5, step=0.5)
        self.assertGreaterEqual(self.world.clock.seconds() - last, 45.0 - 1e-6)
        self.assertLessEqual(self.world.clock.seconds() - last, 45.5)
        self.assertTrue(self.mine.lost[0].check(PeerLost))

    def test_switched_off(self):
        """
        With answer_timeout=None, streaming to a dead peer is noticed only
        after dead_after.
        """
        self.start(PeerConfig(handshake=HandshakeConfig(answer_timeout=None)))
        self.stream(2.0)
        self.kill_alice()
        self.assertIsNone(self.stream(20.0))

    def test_insecure(self):
        """
        Without a secure session the echo request is a keepalive with
        sequence 1: a listening peer answers it and is not lost; a dead
        one is lost within 5 s.
        """
        self.start(PeerConfig(insecure=True))
        self.assertIsNone(self.stream(20.0))
        self.assertEqual(len(self.theirs.received), 200)
        died = self.world.clock.seconds()
        self.kill_alice()
        lost_at = self.stream(10.0)
        self.assertIsNotNone(lost_at)
        self.assertLessEqual(lost_at - died, 5.0 + 0.1)


class RelayFallbackTests(SynchronousTestCase):
    def test_active_pair_moves_to_relay(self):
        """
        When the direct path of two peers that both send dies, both move
        to the relay before the 5 s answer timeout, the connection is not
        lost, and datagrams flow through the relay.
        """
        record = {}

        def then(context):
            a = context.peer_a.connections[0]
            [theirs] = context.received_b
            b = theirs.connection
            record["before"] = a.path.value
            context.network.block(context.peer_a.public_address.host, context.peer_b.public_address.host)
            blocked = context.clock.seconds()
            moved = None
            for i in range(100):
                if a.ended or b.ended:
                    break
                a.send(b"a%d" % i)
                b.send(b"b%d" % i)
                context.run(0.1)
                if moved is None and a.path.value == "relayed" and b.path.value == "relayed":
                    moved = context.clock.seconds() - blocked
            record["moved"] = moved
            record["ended"] = (a.ended, b.ended)
            record["last"] = theirs.received[-1]

        run_pair("full-cone", "full-cone", relay=True, then=then)
        self.assertEqual(record["before"], "direct-public")
        self.assertEqual(record["ended"], (False, False))
        self.assertIsNotNone(record["moved"])
        self.assertLess(record["moved"], 5.0)
        self.assertEqual(record["last"], b"a99")
