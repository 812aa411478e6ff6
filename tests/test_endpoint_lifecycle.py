"""
A L{PeerEndpoint}'s life as a game sees it: stopped and started again,
observers removed, sessions withdrawn, names refused, ports taken, and
progress while the introducer does not answer (on the simulated network).
"""

from __future__ import annotations

from twisted.internet.error import CannotListenError
from twisted.trial.unittest import SynchronousTestCase

from p2pnet.endpoint import PeerEndpoint
from p2pnet.errors import IntroducerUnreachable
from p2pnet.testing.scenarios import INTRODUCER

from .test_endpoint import Recorder, World


class RestartTests(SynchronousTestCase):
    def test_start_after_stop(self):
        """
        stop() then start() registers again, hosts, and keeps the
        registration alive with heartbeats (before, host_session said "not
        registered" and no heartbeat went out).
        """
        world = World(self)
        alice = world.peer("alice")
        world.result(alice.start())
        world.result(alice.stop())
        world.run(0.1)
        self.assertEqual(len(world.introducer.registry), 0)
        world.result(alice.start())
        session = world.result(alice.host_session("Second Life", "g", 4))
        self.assertEqual(session.name, "Second Life")
        world.run(200, step=0.5)
        self.assertIsNotNone(world.introducer.registry.lookup("alice", world.clock.seconds()))
        self.assertEqual([s.name for s in world.introducer.registry.sessions()], ["Second Life"])

    def test_restart_connects(self):
        """
        A restarted endpoint connects to a peer and carries datagrams.
        """
        world = World(self)
        alice = world.peer("alice")
        bob = world.peer("bob")
        world.result(alice.start())
        world.result(bob.start())
        world.result(alice.stop())
        world.run(0.1)
        world.result(alice.start())
        received = Recorder()
        connection = world.result(alice.connect("bob", received))
        self.assertEqual(connection.peer_id, "bob")

    def test_sessions_do_not_survive_stop(self):
        """
        Sessions hosted before stop() are not hosted again by the next
        start() on their own (the game hosts what it wants).
        """
        world = World(self)
        alice = world.peer("alice")
        world.result(alice.start())
        world.result(alice.host_session("Old", "g", 4))
        world.result(alice.stop())
        world.run(0.1)
        world.result(alice.start())
        world.run(40, step=0.5)
        self.assertEqual(list(world.introducer.registry.sessions()), [])


class ObserverTests(SynchronousTestCase):
    def test_remove_observer(self):
        """
        A removed observer hears no more events; the others still do.
        """
        world = World(self)
        alice = world.peer("alice")
        kept, removed = [], []
        alice.add_observer(kept.append)
        alice.add_observer(removed.append)
        alice.remove_observer(removed.append)
        alice.remove_observer(removed.append)  # twice: nothing happens
        world.result(alice.start())
        world.run(0.1)
        self.assertIn("registered", [e.kind for e in kept])
        self.assertEqual(removed, [])


class UnhostTests(SynchronousTestCase):
    def test_unhost_returns_deferred(self):
        """
        unhost_session() returns a Deferred firing with None, and the
        session leaves the introducer's list.
        """
        world = World(self)
        alice = world.peer("alice")
        world.result(alice.start())
        session = world.result(alice.host_session("Going", "g", 4))
        self.assertIsNone(world.result(alice.unhost_session(session)))
        world.run(0.1)
        self.assertEqual(list(world.introducer.registry.sessions()), [])
        # Twice: nothing to withdraw, still a Deferred.
        self.assertIsNone(world.result(alice.unhost_session(session)))


class NameTests(SynchronousTestCase):
    def test_peer_id_refused(self):
        """
        Peer ids longer than 64 bytes, empty, or with newlines or other
        control characters are refused with a ValueError saying why.
        """
        world = World(self)
        host = world.network.add_host(behind=world.network.add_nat("n", "203.0.113.9"))
        for bad, why in [("a" * 65, "65 bytes"), ("", "empty"), ("eve\nINFO forged", "control"),
                         ("tab\there", "control"), ("rtl\u202eoverride", "control")]:
            error = self.assertRaises(ValueError, PeerEndpoint, host, INTRODUCER, bad)
            self.assertIn(why, str(error))
        PeerEndpoint(host, INTRODUCER, "a" * 64)
        PeerEndpoint(host, INTRODUCER, "Zoë 🎮")

    def test_session_name_with_newline_refused(self):
        """
        host_session() refuses a name with a newline (a failed Deferred),
        and the introducer never hears of it.
        """
        world = World(self)
        alice = world.peer("alice")
        world.result(alice.start())
        failure = world.result(alice.host_session("Fake\n2026-01-01 [introducer] admin logged in", "g"))
        self.assertTrue(failure.check(ValueError))
        self.assertIn("newline", str(failure.value))
        self.assertEqual(list(world.introducer.registry.sessions()), [])


class _TakenPort:
    def __init__(self, clock):
        self.clock = clock

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))

    def callLater(self, *args, **kwargs):
        return self.clock.callLater(*args, **kwargs)

    def seconds(self):
        return self.clock.seconds()


class PortTakenTests(SynchronousTestCase):
    def test_start_fails_instead_of_raising(self):
        """
        start() on a taken port returns a failed Deferred (it used to raise
        CannotListenError), and the endpoint can be started again.
        """
        from twisted.internet.task import Clock

        endpoint = PeerEndpoint(_TakenPort(Clock()), INTRODUCER, "alice", port=3478)
        failure = self.failureResultOf(endpoint.start(), CannotListenError)
        self.assertEqual(failure.value.port, 3478)
        self.failureResultOf(endpoint.start(), CannotListenError)


class ProgressTests(SynchronousTestCase):
    def test_progress_while_retrying(self):
        """
        While the introducer does not answer, the endpoint reports
        C{registering} status events with how long it has been trying, a
        few seconds apart, until it gives up.
        """
        world = World(self)
        world.stop_introducer()
        alice = world.peer("alice")
        events = []
        alice.add_observer(events.append)
        failure = world.result(alice.start(), seconds=60)
        self.assertTrue(failure.check(IntroducerUnreachable))
        world.run(0.1)
        progress = [e for e in events if e.kind == "registering"]
        self.assertGreaterEqual(len(progress), 3)
        self.assertIn("no answer from the introducer", progress[0].detail)
        self.assertIn("2 s", progress[0].detail)
        self.assertEqual(progress[0].address, INTRODUCER)
        # Nothing more once start() has failed.
        count = len(events)
        world.run(30, step=0.5)
        self.assertEqual(len(events), count)

    def test_no_progress_when_answered(self):
        """
        An introducer that answers at once causes no progress event.
        """
        world = World(self)
        alice = world.peer("alice")
        events = []
        alice.add_observer(events.append)
        world.result(alice.start())
        world.run(10)
        self.assertNotIn("registering", [e.kind for e in events])
