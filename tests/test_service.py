"""
L{p2pnet.service.PeerService} on the simulated network: it registers
(retrying while the introducer is away), hosts a session and keeps it
hosted across an introducer restart, stops and starts again; and
L{LobbyWatch} refreshes a lobby.
"""

from __future__ import annotations

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from p2pnet import PeerConfig, PeerEndpoint, PeerService, SessionSpec
from p2pnet.errors import P2PError

from p2pnet.testing.scenarios import INTRODUCER

from .test_endpoint import World

#: Introducer requests give up after 0.5 + 1 s (so a start attempt fails fast).
QUICK = PeerConfig(request_attempts=2, request_rto=0.5)


def sessions(world):
    return sorted(s.name for s in world.introducer.registry.sessions())


class StartTests(SynchronousTestCase):
    def test_registers_and_hosts(self):
        """
        Starting the service registers the endpoint and hosts the session;
        when_ready() fires with the endpoint once both are done.
        """
        world = World(self)
        endpoint = world.peer("server")
        service = PeerService(endpoint, SessionSpec("Keith's Server", "tanks", 4, properties={"map": "dunes"}))
        service.startService()
        ready = world.result(service.when_ready())
        self.assertIs(ready, endpoint)
        self.assertEqual(sessions(world), ["Keith's Server"])
        (hosted,) = world.introducer.registry.sessions()
        self.assertEqual((hosted.game_id, hosted.max_players), ("tanks", 4))
        self.assertEqual(dict(hosted.properties), {"map": "dunes"})
        self.assertEqual(service.session.session_id, hosted.session_id)
        self.assertTrue(service.registered)
        world.result(service.stopService())

    def test_retries_with_backoff(self):
        """
        While the introducer does not answer, the service tries again
        after the delays its policy gives (logging each failure and the
        delay), and registers at the first attempt after the introducer is
        back.
        """
        world = World(self)
        world.stop_introducer()
        delays = {1: 4.0, 2: 10.0}
        service = PeerService(world.peer("server", config=QUICK), retry_delay=delays.__getitem__)
        with capturedLogs() as events:
            service.startService()
            # Attempt 1 fails at 1.5 s; attempt 2 starts at 5.5 s, fails at 7 s;
            # attempt 3 starts at 17 s.
            world.run(16.9)
        retries = [e for e in events if "retrying in" in e.get("log_format", "")]
        self.assertEqual([(e["delay"], e["attempt"]) for e in retries], [(4.0, 2), (10.0, 3)])
        self.assertIn("no answer", retries[0]["error"])
        world.start_introducer()
        self.assertFalse(service.registered)
        world.run(0.05)
        self.assertFalse(service.registered)
        world.run(1.0)
        self.assertTrue(service.registered)
        self.assertIsNotNone(world.introducer.registry.lookup("server", world.clock.seconds()))
        world.result(service.stopService())

    def test_backoff_starts_over_after_success(self):
        """
        After a successful registration and a restart, the first failure
        waits the first delay again.
        """
        world = World(self)
        delays = {1: 3.0, 2: 30.0}
        service = PeerService(world.peer("server", config=QUICK), retry_delay=delays.__getitem__)
        service.startService()
        world.result(service.when_ready())
        world.result(service.stopService())
        world.stop_introducer()
        with capturedLogs() as events:
            service.startService()
            world.run(2.0)
        self.assertEqual([e["delay"] for e in events if "retrying in" in e.get("log_format", "")], [3.0])
        world.start_introducer()
        world.run(3.0)
        self.assertTrue(service.registered)
        world.result(service.stopService())


    def test_port_taken_retried(self):
        """
        A taken local port is a start failure like the others: logged
        (naming the error) and retried, and once the port is free the
        service registers.
        """
        world = World(self)
        endpoint = world.peer("server")
        host = endpoint.reactor
        blocker = host.listenUDP(4000, DatagramProtocol())
        endpoint = PeerEndpoint(host, INTRODUCER, "server", port=4000, random_bytes=world.random_bytes)
        world.endpoints.append(endpoint)
        service = PeerService(endpoint, retry_delay=lambda attempt: 5.0)
        with capturedLogs() as events:
            service.startService()
            world.run(1.0)
        retries = [e for e in events if "retrying in" in e.get("log_format", "")]
        self.assertEqual(len(retries), 1)
        self.assertIn("4000", retries[0]["error"])
        blocker.stopListening()
        world.run(4.5)
        self.assertTrue(service.registered)
        self.assertEqual(endpoint.transport.getHost().port, 4000)
        world.result(service.stopService())


class HostingTests(SynchronousTestCase):
    def test_rehosted_after_introducer_restart(self):
        """
        After the introducer restarts (losing every registration and
        session), the session is listed again, and the service's
        C{session} is the new one.
        """
        world = World(self)
        service = PeerService(world.peer("server"), SessionSpec("Keith's Server", "tanks", 4))
        service.startService()
        world.result(service.when_ready())
        before = service.session.session_id
        world.stop_introducer()
        world.run(20.0, step=0.1)
        world.start_introducer()
        self.assertEqual(sessions(world), [])
        world.run(40.0, step=0.1)
        self.assertEqual(sessions(world), ["Keith's Server"])
        (listed,) = world.introducer.registry.sessions()
        self.assertNotEqual(listed.session_id, before)
        self.assertEqual(service.session.session_id, listed.session_id)
        world.result(service.stopService())

    def test_hosted_again_when_withdrawn(self):
        """
        A session that is no longer hosted (the endpoint could not host it
        again, or it was withdrawn behind the service's back) is hosted
        again at the next check, every C{check_interval} seconds.
        """
        world = World(self)
        endpoint = world.peer("server")
        service = PeerService(endpoint, SessionSpec("Keith's Server"), check_interval=10.0)
        service.startService()
        world.result(service.when_ready())
        world.run(2.0)  # now about 2 s after registering: checks at ~10 s, ~20 s
        world.result(endpoint.unhost_session(service.session))
        world.run(0.5)
        self.assertEqual(sessions(world), [])
        self.assertIsNone(service.session)
        world.run(6.0)
        self.assertEqual(sessions(world), [])
        world.run(3.0)
        self.assertEqual(sessions(world), ["Keith's Server"])
        self.assertIsNotNone(service.session)
        world.result(service.stopService())

    def test_stop_unhosts_and_start_hosts_again(self):
        """
        stopService() withdraws the session, unregisters and fires once the
        endpoint is stopped; startService() registers and hosts again.
        """
        world = World(self)
        service = PeerService(world.peer("server"), SessionSpec("Keith's Server"))
        service.startService()
        world.result(service.when_ready())
        stopped = service.stopService()
        self.assertIsNone(world.result(stopped))
        world.run(0.5)
        self.assertFalse(service.running)
        self.assertFalse(service.registered)
        self.assertEqual(sessions(world), [])
        self.assertIsNone(world.introducer.registry.lookup("server", world.clock.seconds()))
        service.startService()
        world.result(service.when_ready())
        self.assertEqual(sessions(world), ["Keith's Server"])
        world.run(100.0, step=0.5)  # heartbeats keep it
        self.assertEqual(sessions(world), ["Keith's Server"])
        world.result(service.stopService())

    def test_stop_while_retrying(self):
        """
        Stopping while waiting to retry cancels the retry: nothing is left
        scheduled, and when_ready() waiters fail.
        """
        world = World(self)
        world.stop_introducer()
        service = PeerService(world.peer("server", config=QUICK), retry_delay=lambda attempt: 30.0)
        service.startService()
        waiter = service.when_ready()
        world.run(5.0)
        world.result(service.stopService())
        self.assertTrue(world.result(waiter).check(P2PError))
        world.run(1.0)
        self.assertEqual(world.clock.getDelayedCalls(), [])

    def test_stop_while_registering(self):
        """
        Stopping while the first registration is under way ends it: no
        heartbeat keeps the registration (it expires, never confirmed) and
        nothing is hosted.
        """
        world = World(self)
        service = PeerService(world.peer("server"), SessionSpec("Keith's Server"))
        service.startService()
        stopped = service.stopService()
        world.result(stopped)
        world.run(70.0, step=0.5)
        self.assertIsNone(world.introducer.registry.lookup("server", world.clock.seconds()))
        self.assertEqual(sessions(world), [])


class LobbyTests(SynchronousTestCase):
    def test_watch_lobby(self):
        """
        A lobby watch lists the sessions at once and then every
        C{interval} seconds while registered, and stops with stop().
        """
        world = World(self)
        host = PeerService(world.peer("server"), SessionSpec("Keith's Server", "tanks"))
        other = PeerService(world.peer("server2"), SessionSpec("Other game", "chess"))
        player = PeerService(world.peer("player"))
        for service in (host, other, player):
            service.startService()
            world.result(service.when_ready())
        seen = []
        watch = player.watch_lobby(lambda found: seen.append([s.name for s in found]), "tanks", interval=5.0)
        world.run(0.5)
        self.assertEqual(seen, [["Keith's Server"]])
        world.run(4.0)
        self.assertEqual(len(seen), 1)
        world.run(1.0)
        self.assertEqual(len(seen), 2)
        watch.stop()
        world.run(20.0)
        self.assertEqual(len(seen), 2)
        for service in (host, other, player):
            world.result(service.stopService())

    def test_watch_pauses_while_stopped(self):
        """
        A watch made before the service starts begins once it is
        registered, pauses while it is stopped and resumes after a start.
        """
        world = World(self)
        host = PeerService(world.peer("server"), SessionSpec("Keith's Server"))
        host.startService()
        world.result(host.when_ready())
        player = PeerService(world.peer("player"))
        seen = []
        player.watch_lobby(seen.append, interval=5.0)
        world.run(20.0)
        self.assertEqual(seen, [])
        player.startService()
        world.result(player.when_ready())
        world.run(5.5)
        self.assertEqual(len(seen), 1)
        world.result(player.stopService())
        world.run(20.0)
        self.assertEqual(len(seen), 1)
        player.startService()
        world.result(player.when_ready())
        world.run(5.5)
        self.assertEqual(len(seen), 2)
        world.result(player.stopService())
        world.result(host.stopService())
