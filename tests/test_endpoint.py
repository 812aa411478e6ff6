"""
Tests for the game-facing API: L{PeerEndpoint} and L{PeerConnection} on the
simulated network.
"""

from __future__ import annotations

import random

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from p2pnet import wire
from p2pnet._registry import Registry
from p2pnet.address import Address
from p2pnet.endpoint import PeerConfig, PeerEndpoint, PeerFactory, PeerProtocol, Path
from p2pnet.errors import (
    ConnectionClosed,
    IntroducerUnreachable,
    PeerLost,
    SessionFull,
    UnknownPeer,
)
from p2pnet.introducer import IntroducerProtocol
from p2pnet.testing import Allocation, Network
from p2pnet.testing.scenarios import INTRODUCER, seeded_bytes

SECRET = b"game secret"


class Recorder(PeerProtocol):
    def __init__(self):
        self.received = []
        self.lost = []
        self.paths = []

    def datagram_received(self, data):
        self.received.append(data)

    def connection_lost(self, reason):
        self.lost.append(reason)

    def path_changed(self, path):
        self.paths.append(path)


class RecordingFactory(PeerFactory):
    def __init__(self):
        self.built = {}

    def build_protocol(self, peer_id):
        protocol = Recorder()
        self.built[peer_id] = protocol
        return protocol


class World:
    """
    An introducer on the simulated internet and peers behind NATs.
    """

    def __init__(self, test, secret=None, allocation=Allocation.PRESERVING):
        self.clock = Clock()
        self.network = Network(self.clock, seed=3)
        self.random_bytes = seeded_bytes(random.Random(3))
        self.secret = secret
        self.allocation = allocation
        self.introducer_host = self.network.add_host(INTRODUCER.host)
        self.start_introducer()
        self.sites = 0
        self.endpoints = []
        test.addCleanup(self.shutdown, test)

    def start_introducer(self):
        self.introducer = IntroducerProtocol(
            self.clock, Registry(60.0, self.random_bytes), self.random_bytes, secret=self.secret
        )
        self.introducer_port = self.introducer_host.listenUDP(INTRODUCER.port, self.introducer)

    def stop_introducer(self):
        self.introducer_port.stopListening()

    def peer(self, name, factory=None, secret="same", behind=None, config=PeerConfig(), **nat_options):
        self.sites += 1
        if behind is None:
            behind = self.network.add_nat(
                f"nat{self.sites}", f"203.0.113.{self.sites}", allocation=self.allocation, **nat_options
            )
        host = self.network.add_host(behind=behind)
        endpoint = PeerEndpoint(
            host,
            INTRODUCER,
            name,
            secret=self.secret if secret == "same" else secret,
            factory=factory,
            random_bytes=self.random_bytes,
            config=config,
        )
        endpoint.nat = behind
        self.endpoints.append(endpoint)
        return endpoint

    def run(self, seconds, step=0.01):
        self.clock.pump([step] * int(round(seconds / step)))

    def result(self, d, seconds=20.0):
        box = []
        d.addBoth(box.append)
        for _ in range(int(seconds / 0.01)):
            if box:
                break
            self.clock.advance(0.01)
        assert box, "no result"
        return box[0]

    def shutdown(self, test):
        for endpoint in self.endpoints:
            endpoint.stop()
        self.run(1.0)
        self.stop_introducer()
        self.run(0.1)
        test.assertEqual(self.clock.getDelayedCalls(), [])


class RegistrationTests(SynchronousTestCase):
    def test_start_reports_addresses(self):
        """
        start() fires with the public address the introducer saw and the
        local address of the socket.
        """
        world = World(self)
        alice = world.peer("alice")
        registration = world.result(alice.start())
        self.assertEqual(registration.public.host, "203.0.113.1")
        self.assertEqual(registration.local[0].host, "10.0.1.2")
        self.assertIsNotNone(world.introducer.registry.lookup("alice", world.clock.seconds()))

    def test_introducer_unreachable(self):
        """
        With no introducer answering, start() fails with
        IntroducerUnreachable naming the address, and leaves no timer.
        """
        world = World(self)
        world.stop_introducer()
        failure = world.result(world.peer("alice").start(), seconds=60)
        self.assertTrue(failure.check(IntroducerUnreachable))
        self.assertIn(str(INTRODUCER), str(failure.value))

    def test_wrong_secret_hint(self):
        """
        A wrong secret looks like an unreachable introducer (it drops what it
        cannot verify); the error says so.
        """
        world = World(self, secret=SECRET)
        failure = world.result(world.peer("alice", secret=b"wrong").start(), seconds=60)
        self.assertTrue(failure.check(IntroducerUnreachable))
        self.assertIn("secret", str(failure.value))

    def test_heartbeats_keep_registration(self):
        """
        Heartbeats keep the registration alive well past its lifetime.
        """
        world = World(self)
        alice = world.peer("alice")
        world.result(alice.start())
        world.run(200, step=0.5)
        self.assertIsNotNone(world.introducer.registry.lookup("alice", world.clock.seconds()))

    def test_introducer_restart(self):
        """
        After the introducer restarts (losing its state), peers register
        again within one heartbeat period and re-host their sessions.
        """
        world = World(self)
        alice = world.peer("alice")
        world.result(alice.start())
        world.result(alice.host_session("Keith's Server", "g", 4))
        world.stop_introducer()
        # Down long enough for heartbeats and their retransmissions to
        # fail, back at an arbitrary moment.
        world.run(37.3, step=0.05)
        world.start_introducer()
        self.assertEqual(len(world.introducer.registry), 0)
        world.run(alice.config.heartbeat_interval + 0.2, step=0.05)
        self.assertIsNotNone(world.introducer.registry.lookup("alice", world.clock.seconds()))
        self.assertEqual([s.name for s in world.introducer.registry.sessions()], ["Keith's Server"])

    def test_stop_unregisters(self):
        """
        stop() unregisters at the introducer, closes the socket, and leaves
        no timer.
        """
        world = World(self)
        alice = world.peer("alice")
        world.result(alice.start())
        world.result(alice.stop())
        world.run(0.1)
        self.assertEqual(len(world.introducer.registry), 0)


class ConnectTests(SynchronousTestCase):
    def pair(self, secret=None, bob_nat=None, **kwargs):
        world = World(self, secret=secret, **kwargs)
        factory = RecordingFactory()
        alice = world.peer("alice", factory=factory)
        bob = world.peer("bob", **(bob_nat or {}))
        world.result(alice.start())
        world.result(bob.start())
        return world, alice, bob, factory

    def test_datagrams_both_ways(self):
        """
        connect() fires with a connection over which datagrams flow both
        ways; the other side's connection comes from its factory.
        """
        world, alice, bob, factory = self.pair()
        mine = Recorder()
        connection = world.result(bob.connect("alice", mine))
        self.assertEqual(connection.path, Path.DIRECT_PUBLIC)
        connection.send(b"hello host")
        world.run(0.1)
        theirs = factory.built["bob"]
        self.assertEqual(theirs.received, [b"hello host"])
        theirs.connection.send(b"welcome")
        world.run(0.1)
        self.assertEqual(mine.received, [b"welcome"])

    def test_with_secret(self):
        """
        Everything works the same behind an introducer with a secret.
        """
        world, alice, bob, factory = self.pair(secret=SECRET)
        connection = world.result(bob.connect("alice", Recorder()))
        self.assertEqual(connection.path, Path.DIRECT_PUBLIC)

    def test_unknown_peer(self):
        """
        Connecting to a peer the introducer does not know fails with
        UnknownPeer.
        """
        world, alice, bob, factory = self.pair()
        failure = world.result(bob.connect("carol"))
        self.assertTrue(failure.check(UnknownPeer))
        self.assertIn("carol", str(failure.value))

    def test_forged_packets_dropped(self):
        """
        Hellos and data without the introduction's key, and garbage, are
        dropped silently and do not disturb the connection.  (Bob's NAT lets
        anyone in, so the forgeries reach him.)
        """
        from p2pnet.testing import Filtering

        world, alice, bob, factory = self.pair(bob_nat={"filtering": Filtering.ENDPOINT_INDEPENDENT})
        mine = Recorder()
        connection = world.result(bob.connect("alice", mine))
        theirs = factory.built["bob"]
        attacker = world.network.add_host("198.51.100.66").listenUDP(666, PeerProtocol.__new__(_Silent))
        target = bob.public_address.as_tuple()
        forged_hello = wire.encode(
            wire.Hello(b"f" * 8, connection.intro_id, "alice", 7), b"k" * 16
        )
        for junk in [forged_hello, wire.encode_data(connection.conn_id, b"evil", b"k" * 16), b"\xd1", b"junk"]:
            attacker.write(junk, target)
        world.run(0.1)
        theirs.connection.send(b"still here")
        world.run(0.1)
        self.assertEqual(mine.received, [b"still here"])
        self.assertEqual(connection.address, Address(*alice.public_address.as_tuple()))
        self.assertGreaterEqual(bob.stats.get("dropped-unauthenticated", 0), 1)
        # A secure connection takes no unsealed data at all.
        self.assertGreaterEqual(bob.stats.get("dropped-plain-data", 0), 1)

    def test_nat_rebinding(self):
        """
        When the peer's NAT mapping is flushed and its next packet comes
        from a new port, the connection re-binds without reconnecting.
        (Our side's NAT must let the new port in: endpoint-independent
        filtering here.)
        """
        from p2pnet.testing import Filtering

        world, alice, bob, factory = self.pair(
            allocation=Allocation.SEQUENTIAL, bob_nat={"filtering": Filtering.ENDPOINT_INDEPENDENT}
        )
        mine = Recorder()
        connection = world.result(bob.connect("alice", mine))
        theirs = factory.built["bob"]
        before = connection.address
        alice.nat.flush()
        theirs.connection.send(b"after flush")
        world.run(0.1)
        self.assertEqual(mine.received, [b"after flush"])
        self.assertNotEqual(connection.address, before)
        self.assertEqual(mine.paths, [Path.DIRECT_PUBLIC])
        connection.send(b"reply")
        world.run(0.1)
        self.assertEqual(theirs.received, [b"reply"])

    def test_peer_lost(self):
        """
        If the peer goes silent, connection_lost reports PeerLost after the
        configured silence.
        """
        world, alice, bob, factory = self.pair()
        mine = Recorder()
        world.result(bob.connect("alice", mine))
        world.network.set_link(alice.reactor, loss=1.0)
        world.run(44, step=0.5)
        self.assertEqual(mine.lost, [])
        world.run(2, step=0.5)
        [reason] = mine.lost
        self.assertTrue(reason.check(PeerLost))

    def test_close(self):
        """
        Closing tells the peer, whose protocol sees PeerLost at once; ours
        sees ConnectionClosed; send() then raises.
        """
        world, alice, bob, factory = self.pair()
        mine = Recorder()
        connection = world.result(bob.connect("alice", mine))
        connection.close()
        world.run(0.1)
        self.assertTrue(mine.lost[0].check(ConnectionClosed))
        self.assertTrue(factory.built["bob"].lost[0].check(PeerLost))
        self.assertRaises(ConnectionClosed, connection.send, b"x")

    def test_stop_fails_pending_connect(self):
        """
        Stopping while a connect is pending fails it with ConnectionClosed.
        """
        world, alice, bob, factory = self.pair()
        d = bob.connect("alice")
        bob.stop()
        failure = world.result(d)
        self.assertTrue(failure.check(ConnectionClosed))

    def test_warmup_restores_ttl(self):
        """
        Warm-up probes go out with TTL 2 and the socket's TTL is restored.
        """
        world, alice, bob, factory = self.pair()
        events = []
        world.network.trace = events.append
        world.result(bob.connect("alice"))
        ttls = {e.ttl for e in events if e.kind == "send"}
        self.assertIn(2, ttls)
        import socket

        handle = bob.transport.getHandle()
        self.assertEqual(handle.getsockopt(socket.IPPROTO_IP, socket.IP_TTL), 64)


class _Silent:
    def makeConnection(self, transport):
        self.transport = transport

    def doStart(self):
        pass

    def doStop(self):
        pass

    def datagramReceived(self, data, addr):
        pass


class SessionTests(SynchronousTestCase):
    def test_host_list_join(self):
        """
        A hosted session is listed with its details; joining connects to the
        host, whose factory gets the joiner.
        """
        world = World(self)
        factory = RecordingFactory()
        host = world.peer("host", factory=factory)
        player = world.peer("player")
        world.result(host.start())
        world.result(player.start())
        world.result(host.host_session("Keith's Server", "race", 4, properties={"map": "oval"}))
        [session] = world.result(player.list_sessions("race"))
        self.assertEqual((session.name, session.host, session.max_players), ("Keith's Server", "host", 4))
        self.assertEqual(session.properties, {"map": "oval"})
        self.assertEqual(session.properties["map"], "oval")
        connection = world.result(player.join(session, Recorder()))
        self.assertEqual(connection.peer_id, "host")
        world.run(0.1)
        self.assertIn("player", factory.built)

    def test_list_with_filters_and_pages(self):
        """
        list_sessions passes its filters to the introducer; with a limit it
        stops there; all_pages=False gives one page and the cursor that
        continues it; filters the introducer would refuse raise ValueError.
        """
        world = World(self)
        host = world.peer("host")
        player = world.peer("player")
        world.result(host.start())
        world.result(player.start())
        for n, track in enumerate(["oval", "dunes", "oval", "oval"]):
            world.result(host.host_session(f"Race {n}", "race", 4, properties={"map": track}))
        found = world.result(player.list_sessions("race", properties={"map": "oval"}))
        self.assertEqual([s.name for s in found], ["Race 0", "Race 2", "Race 3"])
        found = world.result(player.list_sessions("race", properties={"map": "oval"}, limit=2))
        self.assertEqual([s.name for s in found], ["Race 0", "Race 2"])
        found = world.result(player.list_sessions(name_prefix="Race 1", open_only=True))
        self.assertEqual([s.name for s in found], ["Race 1"])
        page = world.result(player.list_sessions("race", limit=3, all_pages=False))
        self.assertEqual(([s.name for s in page.sessions], page.total), (["Race 0", "Race 1", "Race 2"], 4))
        rest = world.result(player.list_sessions("race", cursor=page.cursor, all_pages=False))
        self.assertEqual(([s.name for s in rest.sessions], rest.cursor), (["Race 3"], None))
        self.assertRaises(ValueError, player.list_sessions, properties={str(i): "x" for i in range(5)})
        self.assertRaises(ValueError, player.list_sessions, cursor="text")
        self.assertRaises(ValueError, player.list_sessions, limit=0, all_pages=False)

    def test_full_session(self):
        """
        Joining a full session fails with SessionFull.
        """
        world = World(self)
        host = world.peer("host", factory=RecordingFactory())
        one, two = world.peer("one"), world.peer("two")
        for endpoint in (host, one, two):
            world.result(endpoint.start())
        world.result(host.host_session("duel", "g", 2))
        [session] = world.result(one.list_sessions())
        world.result(one.join(session))
        failure = world.result(two.join(session))
        self.assertTrue(failure.check(SessionFull))
        self.assertIn("full", str(failure.value))

    def test_mesh(self):
        """
        In a mesh session every member ends up connected to every other
        member; members arriving later come through the factories.
        """
        world = World(self)
        factories = {name: RecordingFactory() for name in ["host", "b", "c", "d"]}
        peers = {name: world.peer(name, factory=factories[name]) for name in factories}
        for endpoint in peers.values():
            world.result(endpoint.start())
        world.result(peers["host"].host_session("party", "g", 8, mesh=True))
        [session] = world.result(peers["b"].list_sessions())
        for name in ["b", "c", "d"]:
            world.result(peers[name].join(session))
            world.run(0.5)
        for name, endpoint in peers.items():
            others = {c.peer_id for c in endpoint.connections if c.address is not None}
            self.assertEqual(others, set(peers) - {name}, name)
        # b joined without its own protocol, so its factory also built the
        # one for the host connection.
        self.assertEqual(set(factories["b"].built), {"host", "c", "d"})
