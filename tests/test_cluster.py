"""
Introducer nodes sharing a real C{redis-server} (started per test on a
free loopback port), in this process on real loopback sockets.
"""

from __future__ import annotations

import os

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from p2pnet import wire
from p2pnet.address import Address
from p2pnet.cluster import NodeService, cluster_protocol
from p2pnet.endpoint import Path, PeerEndpoint
from p2pnet.introducer import IntroducerService
from tests.redislab import RedisServer, require_redis
from tests.test_endpoint_loopback import EchoFactory, Waiting
from tests.test_introducer_loopback import ScriptedHost


class ClusterTestCase(TestCase):
    timeout = 30

    def setUp(self):
        require_redis()
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.stop)

    @defer.inlineCallbacks
    def node(self, name: str, lifetime: float = 30.0, **caps):
        """
        A started introducer node on 127.0.0.1 (stopped at cleanup),
        connected to Redis; returns (protocol, address).
        """
        protocol = cluster_protocol(reactor, self.redis.url, lifetime, caps, node_id=name)
        node_service = NodeService(protocol.node)
        node_service.startService()
        self.addCleanup(lambda: node_service.running and node_service.stopService())
        service = IntroducerService(reactor, protocol, 0, "127.0.0.1")
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        protocol.services = (service, node_service)
        yield protocol.node.store.whenUp()
        while not protocol.node.store.ready:
            yield settle(0.01)
        return protocol, Address("127.0.0.1", service.port.getHost().port)

    @defer.inlineCallbacks
    def scripted(self, name: str, server: Address):
        """
        A registered and confirmed L{ScriptedHost} named C{name}.
        """
        host = ScriptedHost()
        port = reactor.listenUDP(0, host, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        host.address = Address("127.0.0.1", port.getHost().port)
        registered = host.expect(wire.Registered)
        host.send(wire.Register(os.urandom(8), name, (host.address,)), server.as_tuple())
        answer = yield registered
        acked = host.expect(wire.HeartbeatAck)
        host.send(wire.Heartbeat(os.urandom(8), name, answer.cookie), server.as_tuple())
        yield acked
        host.cookie = answer.cookie
        return host


def settle(seconds: float = 0.05):
    """
    Let the nodes write to Redis (writes go out at the end of a turn).
    """
    return task.deferLater(reactor, seconds, lambda: None)


class TwoNodeTests(ClusterTestCase):
    @defer.inlineCallbacks
    def test_introduction_across_nodes(self):
        """
        A host registered on node A asks to be introduced to one registered
        on node B: each receives its copy from its own node, with the
        other's addresses and the same key.
        """
        a, a_address = yield self.node("a")
        b, b_address = yield self.node("b")
        alice = yield self.scripted("alice", a_address)
        bob = yield self.scripted("bob", b_address)
        yield settle()
        at_alice = alice.expect(wire.Introduction)
        at_bob = bob.expect(wire.Introduction)
        alice.send(wire.Introduce(os.urandom(8), "alice", alice.cookie, "bob"), a_address.as_tuple())
        to_alice, to_bob = yield defer.gatherResults([at_alice, at_bob])
        self.assertEqual((to_alice.peer_id, to_alice.public), ("bob", bob.address))
        self.assertEqual((to_bob.peer_id, to_bob.public), ("alice", alice.address))
        self.assertEqual(to_alice.key, to_bob.key)
        self.assertEqual(b.stats["introductions"], 0)
        self.assertEqual(a.stats["introductions-cross-node"], 1)

    @defer.inlineCallbacks
    def test_relay_only_requester_hidden_across_nodes(self):
        """
        A relay-only requester (FLAG_RELAY_ONLY) on node A asks for a peer
        on node B: the target's copy, built on A and delivered through B,
        carries none of the requester's addresses, and is flagged.
        """
        a, a_address = yield self.node("a")
        b, b_address = yield self.node("b")
        alice = yield self.scripted("alice", a_address)
        bob = yield self.scripted("bob", b_address)
        yield settle()
        at_bob = bob.expect(wire.Introduction)
        alice.send(
            wire.Introduce(os.urandom(8), "alice", alice.cookie, "bob", flags=wire.FLAG_RELAY_ONLY),
            a_address.as_tuple(),
        )
        to_bob = yield at_bob
        self.assertEqual(to_bob.peer_id, "alice")
        self.assertEqual((to_bob.public, to_bob.local, to_bob.nat), (Address("0.0.0.0", 0), (), None))
        self.assertEqual(to_bob.flags, wire.FLAG_RELAY_ONLY)

    @defer.inlineCallbacks
    def test_unknown_peer_across_nodes(self):
        """
        A target registered on no node is refused UNKNOWN_PEER, after the
        Redis lookup.
        """
        a, a_address = yield self.node("a")
        yield self.node("b")
        alice = yield self.scripted("alice", a_address)
        error = alice.expect(wire.Error)
        alice.send(wire.Introduce(os.urandom(8), "alice", alice.cookie, "nobody"), a_address.as_tuple())
        self.assertEqual((yield error).code, wire.ErrorCode.UNKNOWN_PEER)

    @defer.inlineCallbacks
    def test_join_session_hosted_via_other_node(self):
        """
        A player registered on node A lists the lobby there, joins a
        session hosted via node B, connects, and datagrams flow; node B
        counts the player once it acknowledged its introduction.
        """
        a, a_address = yield self.node("a")
        b, b_address = yield self.node("b")
        host = PeerEndpoint(reactor, b_address, "host", interface="127.0.0.1", factory=EchoFactory())
        player = PeerEndpoint(reactor, a_address, "player", interface="127.0.0.1")
        self.addCleanup(host.stop)
        self.addCleanup(player.stop)
        yield host.start()
        yield player.start()
        yield host.host_session("Keith's Server", "race", 4)
        yield settle()
        [session] = yield player.list_sessions("race")
        self.assertEqual((session.name, session.host, session.players), ("Keith's Server", "host", 1))
        receiver = Waiting()
        connection = yield player.join(session, receiver)
        self.assertEqual(connection.peer_id, "host")
        self.assertIn(connection.path, (Path.DIRECT_PUBLIC, Path.DIRECT_LOCAL))
        arrived = receiver.next
        connection.send(b"ping")
        self.assertEqual((yield arrived), b"echo ping")
        yield settle(0.3)
        [hosted] = b.registry.local_sessions()
        self.assertEqual(hosted.members, ["player"])

    @defer.inlineCallbacks
    def test_full_session_across_nodes(self):
        """
        A join of a full session held by another node is refused with
        SESSION_FULL, answered by the joiner's own node.
        """
        a, a_address = yield self.node("a")
        b, b_address = yield self.node("b")
        hoster = yield self.scripted("hoster", b_address)
        hosted = hoster.expect(wire.SessionHosted)
        hoster.send(wire.HostSession(os.urandom(8), "hoster", hoster.cookie, "duel", "chess", 2), b_address.as_tuple())
        session_id = (yield hosted).session_id
        first = yield self.scripted("first", a_address)
        second = yield self.scripted("second", a_address)
        yield settle()
        introduced = first.expect(wire.Introduction)
        first.send(wire.Introduce(os.urandom(8), "first", first.cookie, None, session_id), a_address.as_tuple())
        self.assertEqual((yield introduced).session_id, session_id)
        refused = second.expect(wire.Error)
        second.send(wire.Introduce(os.urandom(8), "second", second.cookie, None, session_id), a_address.as_tuple())
        self.assertEqual((yield refused).code, wire.ErrorCode.SESSION_FULL)


class FailoverTests(ClusterTestCase):
    @defer.inlineCallbacks
    def test_host_moves_to_another_node_and_session_stays(self):
        """
        A host given both nodes' addresses registers and hosts via node A;
        when node A dies (its socket and its Redis link gone, nothing
        removed), the host is registered on node B within one heartbeat
        interval of noticing, its session is listed under the same id
        throughout, and a player on node B joins it and connects.
        """
        from p2pnet._peertypes import PeerConfig

        a, a_address = yield self.node("a")
        b, b_address = yield self.node("b")
        config = PeerConfig(heartbeat_interval=1.0)
        host = PeerEndpoint(reactor, [a_address, b_address], "host", interface="127.0.0.1",
                            factory=EchoFactory(), config=config)
        self.addCleanup(host.stop)
        yield host.start()
        self.assertIsNotNone(a.registry.lookup("host", reactor.seconds()))
        yield host.host_session("Keith's Server", "race", 4)
        yield settle()
        player = PeerEndpoint(reactor, b_address, "player", interface="127.0.0.1")
        self.addCleanup(player.stop)
        yield player.start()
        [before] = yield player.list_sessions("race")
        # Node A dies: no goodbye to Redis, its UDP port closes.
        for service in a.services:
            yield service.stopService()
        started = reactor.seconds()
        while b.registry.lookup("host", reactor.seconds()) is None or not b.registry.local_sessions():
            # One heartbeat interval, the failed heartbeat's 3.5 s of tries, slack.
            self.assertLess(reactor.seconds() - started, 1.0 + 3.5 + 3.0, "the host did not move to node B")
            [during] = yield player.list_sessions("race")
            self.assertEqual(during.session_id, before.session_id)
            yield settle(0.1)
        [session] = b.registry.local_sessions()
        self.assertEqual(session.session_id, before.session_id)
        [after] = yield player.list_sessions("race")
        self.assertEqual(after.session_id, before.session_id)
        receiver = Waiting()
        connection = yield player.join(after, receiver)
        arrived = receiver.next
        connection.send(b"ping")
        self.assertEqual((yield arrived), b"echo ping")


class RedisOutageTests(ClusterTestCase):
    @defer.inlineCallbacks
    def test_redis_restart_resyncs(self):
        """
        While Redis is down a node keeps answering what it holds (same-node
        heartbeats and introductions); when an empty Redis comes back on
        the same port, the node writes its registrations and sessions
        again and cross-node introductions work.
        """
        a, a_address = yield self.node("a")
        b, b_address = yield self.node("b")
        alice = yield self.scripted("alice", a_address)
        carol = yield self.scripted("carol", a_address)
        hosted = alice.expect(wire.SessionHosted)
        alice.send(wire.HostSession(os.urandom(8), "alice", alice.cookie, "room", "chess", 4), a_address.as_tuple())
        yield hosted
        yield settle()
        self.redis.stop()
        while a.node.store.up:
            # The connection's loss arrives in a later reactor turn.
            yield settle(0.05)
        at_carol, at_alice = carol.expect(wire.Introduction), alice.expect(wire.Introduction)
        carol.send(wire.Introduce(os.urandom(8), "carol", carol.cookie, "alice"), a_address.as_tuple())
        to_carol, to_alice = yield defer.gatherResults([at_carol, at_alice])
        self.assertEqual((to_carol.peer_id, to_alice.peer_id), ("alice", "carol"))
        # Acknowledged, so that no retransmission is taken for a later one.
        carol.send(wire.IntroAck(os.urandom(8), to_carol.intro_id), a_address.as_tuple())
        alice.send(wire.IntroAck(os.urandom(8), to_alice.intro_id), a_address.as_tuple())
        acked = alice.expect(wire.HeartbeatAck)
        alice.send(wire.Heartbeat(os.urandom(8), "alice", alice.cookie), a_address.as_tuple())
        yield acked
        self.redis.start()
        while not (a.node.store.ready and b.node.store.ready):
            yield settle(0.1)
        yield settle(0.2)
        bob = yield self.scripted("bob", b_address)
        yield settle()
        at_bob = bob.expect(wire.Introduction)
        at_alice = alice.expect(wire.Introduction)
        bob.send(wire.Introduce(os.urandom(8), "bob", bob.cookie, "alice"), b_address.as_tuple())
        to_bob, to_alice = yield defer.gatherResults([at_bob, at_alice])
        self.assertEqual((to_bob.peer_id, to_alice.peer_id), ("alice", "bob"))
        listed = bob.expect(wire.SessionList)
        bob.send(wire.ListSessions(os.urandom(8), "chess"), b_address.as_tuple())
        self.assertEqual([s.name for s in (yield listed).sessions], ["room"])


class OptionTests(TestCase):
    def test_redis_url_checked(self):
        """
        C{--redis} takes only a redis://host[:port][/db] URL; C{--node-id}
        needs C{--redis}; a good URL makes a cluster node's protocol.
        """
        from twisted.python.usage import UsageError

        from p2pnet import introducer_tap
        from p2pnet.cluster import ClusterIntroducerProtocol

        for bad in ("http://x", "redis://", "redis://host/zero"):
            options = introducer_tap.Options()
            self.assertRaises(UsageError, options.parseOptions, ["--redis", bad, "--no-relay"])
        options = introducer_tap.Options()
        self.assertRaises(UsageError, options.parseOptions, ["--node-id", "x", "--no-relay"])
        options = introducer_tap.Options()
        options.parseOptions(["--redis", "redis://127.0.0.1:1/2", "--node-id", "n1", "--no-relay"])
        protocol = introducer_tap.make_protocol(options, reactor)
        self.assertIsInstance(protocol, ClusterIntroducerProtocol)
        self.assertEqual(protocol.node.node_id, "n1")
        options = introducer_tap.Options()
        options.parseOptions(["--no-relay"])
        self.assertNotIsInstance(introducer_tap.make_protocol(options, reactor), ClusterIntroducerProtocol)


class ThreeNodeTests(ClusterTestCase):
    @defer.inlineCallbacks
    def test_mesh_session_across_three_nodes(self):
        """
        A mesh session hosted via node A: a player on node B joins and
        acknowledges (node A counts it a member), then a player on node C
        is introduced to both the host and the first player, each copy
        sent by the node that holds its receiver.
        """
        a, a_address = yield self.node("a")
        b, b_address = yield self.node("b")
        c, c_address = yield self.node("c")
        host = yield self.scripted("host", a_address)
        hosted = host.expect(wire.SessionHosted)
        host.send(wire.HostSession(os.urandom(8), "host", host.cookie, "arena", "shooter", 8, True), a_address.as_tuple())
        session_id = (yield hosted).session_id
        first = yield self.scripted("first", b_address)
        second = yield self.scripted("second", c_address)
        yield settle()

        at_host = host.expect(wire.Introduction)
        at_first = first.expect(wire.Introduction)
        first.send(wire.Introduce(os.urandom(8), "first", first.cookie, None, session_id), b_address.as_tuple())
        to_host, to_first = yield defer.gatherResults([at_host, at_first])
        self.assertEqual((to_host.peer_id, to_first.peer_id), ("first", "host"))
        first.send(wire.IntroAck(os.urandom(8), to_first.intro_id), b_address.as_tuple())
        host.send(wire.IntroAck(os.urandom(8), to_host.intro_id), a_address.as_tuple())
        while a.registry.local_sessions()[0].members != ["first"]:
            yield settle(0.02)

        at_host = host.expect(wire.Introduction)
        at_first = first.expect(wire.Introduction)
        at_second = [second.expect(wire.Introduction), second.expect(wire.Introduction)]
        second.send(wire.Introduce(os.urandom(8), "second", second.cookie, None, session_id), c_address.as_tuple())
        to_host, to_first, *to_second = yield defer.gatherResults([at_host, at_first, *at_second])
        self.assertEqual((to_host.peer_id, to_first.peer_id), ("second", "second"))
        self.assertEqual(sorted(m.peer_id for m in to_second), ["first", "host"])
        self.assertEqual(to_first.public, second.address)
        self.assertEqual(a.stats["introductions-cross-node"], 3)

    def test_peer_takes_several_introducers(self):
        """
        C{p2pnet peer --introducer} given more than once keeps every
        address, in order, without repeats; the first is the one in use.
        """
        from p2pnet._peercli import Options

        options = Options()
        options.parseOptions(["--introducer", "127.0.0.1:5", "-i", "127.0.0.2:6", "--introducer", "127.0.0.1:5",
                              "--name", "x"])
        self.assertEqual(options["introducers"], [Address("127.0.0.1", 5), Address("127.0.0.2", 6)])
        self.assertEqual(options["introducer"], Address("127.0.0.1", 5))


class RedisLobbyTests(ClusterTestCase):
    @defer.inlineCallbacks
    def hosted(self, protocol, count, now):
        """
        C{count} sessions of game "race" hosted through C{protocol}'s
        registry ("room 0".. in creation order, every third full-sized
        "duel" for two with one reserved slot), written to Redis.
        """
        registry = protocol.registry
        sessions = []
        for i in range(count):
            host = registry.register(f"host-{i}", Address("198.51.100.1", 1000 + i), (), None, now)
            registry.authenticate(host.peer_id, host.cookie, host.public, now)
            duel = i % 3 == 0
            session = registry.host_session(
                host, f"{'duel' if duel else 'room'} {i}", "race", 2 if duel else 8, False,
                (("map", "dust" if i % 2 else "ice"),),
            )
            if duel:
                session.pending["someone"] = now + 3600.0
                protocol.node.session_changed(session)
            sessions.append(session)
        yield settle(0.3)
        return sessions

    @defer.inlineCallbacks
    def pages(self, lobby, query, budget=1100):
        from p2pnet._lobby import LobbyQuery

        listed, cursor, count = [], None, 0
        while True:
            page = yield lobby.page(LobbyQuery(**query, cursor=cursor), budget, reactor.seconds())
            listed.extend(page.sessions)
            count += 1
            cursor = page.cursor
            if cursor is None:
                return listed, count, page.total

    @defer.inlineCallbacks
    def test_cursor_pages_list_each_once_in_order(self):
        """
        Paging the Redis lobby from another node with the cursor lists
        every session of the game exactly once, in creation order, across
        pages bounded by the byte budget; C{total} counts the game.
        """
        a, _ = yield self.node("a", max_sessions_per_ip=1000, max_per_ip=1000)
        b, _ = yield self.node("b")
        now = reactor.seconds()
        sessions = yield self.hosted(a, 300, now)
        listed, count, total = yield self.pages(b.registry.lobby, {"game_id": "race"})
        self.assertEqual([s.session_id for s in listed], [s.session_id for s in sessions])
        self.assertGreater(count, 2)
        self.assertEqual(total, 300)
        empty, _, total = yield self.pages(b.registry.lobby, {"game_id": "other"})
        self.assertEqual((empty, total), ([], 0))

    @defer.inlineCallbacks
    def test_filters(self):
        """
        Name prefix, property and open-slot filters and the limit behave
        as in memory: only matches, in order, at most C{limit} a page; a
        page looks at no more than 256 sessions, so a filter matching
        nothing still pages through with a cursor.
        """
        from p2pnet._lobby import LobbyQuery

        a, _ = yield self.node("a", max_sessions_per_ip=1000, max_per_ip=1000)
        now = reactor.seconds()
        sessions = yield self.hosted(a, 300, now)
        lobby = a.registry.lobby
        duels, _, _ = yield self.pages(lobby, {"game_id": "race", "name_prefix": "duel"})
        self.assertEqual([s.name for s in duels], [f"duel {i}" for i in range(0, 300, 3)])
        icy, _, _ = yield self.pages(lobby, {"game_id": "race", "properties": (("map", "ice"),)})
        self.assertEqual([s.name.split()[1] for s in icy], [str(i) for i in range(0, 300, 2)])
        open_, _, _ = yield self.pages(lobby, {"game_id": "race", "open_only": True})
        self.assertEqual(len(open_), 200)
        self.assertFalse(any(s.name.startswith("duel") for s in open_))
        page = yield lobby.page(LobbyQuery(game_id="race", limit=5), 1100, now)
        self.assertEqual([s.session_id for s in page.sessions], [s.session_id for s in sessions[:5]])
        nothing = yield lobby.page(LobbyQuery(game_id="race", name_prefix="zzz"), 1100, now)
        self.assertEqual(nothing.sessions, ())
        self.assertIsNotNone(nothing.cursor)
        rest = yield lobby.page(LobbyQuery(game_id="race", name_prefix="zzz", cursor=nothing.cursor), 1100, now)
        self.assertEqual((rest.sessions, rest.cursor), ((), None))

    @defer.inlineCallbacks
    def test_withdrawn_and_expired_sessions_leave_the_lobby(self):
        """
        A withdrawn session leaves the lobby at once; one whose node died
        and whose key expired is skipped (and removed) by the page that
        finds it.
        """
        a, _ = yield self.node("a", max_sessions_per_ip=1000, max_per_ip=1000)
        now = reactor.seconds()
        sessions = yield self.hosted(a, 5, now)
        host = a.registry.lookup("host-1", now)
        a.registry.unhost(host, sessions[1].session_id)
        yield settle()
        yield a.node.store.execute("DEL", "p2p:session:" + sessions[3].session_id.hex())
        listed, _, _ = yield self.pages(a.registry.lobby, {"game_id": "race"})
        self.assertEqual([s.name for s in listed], ["duel 0", "room 2", "room 4"])
        left = yield a.node.store.execute("ZCARD", "p2p:lobby:g:race")
        self.assertEqual(int(left), 3)


class RelayAcrossNodesTests(ClusterTestCase):
    @defer.inlineCallbacks
    def test_both_sides_get_one_allocation(self):
        """
        Two peers on different nodes introduced to each other both ask
        their own node for a relay: each is offered the same allocation,
        relay and key (shared through Redis), on opposite sides, and the
        other side's offer is pushed through its node.
        """
        from p2pnet.introducer import RelaySettings

        relay = RelaySettings(b"r" * 32, Address("192.0.2.50", 3479))
        nodes = {}
        for name in ("a", "b"):
            protocol = cluster_protocol(reactor, self.redis.url, 30.0, {}, node_id=name, relay=relay)
            node_service = NodeService(protocol.node)
            node_service.startService()
            self.addCleanup(node_service.stopService)
            service = IntroducerService(reactor, protocol, 0, "127.0.0.1")
            service.startService()
            self.addCleanup(service.stopService)
            yield protocol.node.store.whenUp()
            nodes[name] = Address("127.0.0.1", service.port.getHost().port)
        alice = yield self.scripted("alice", nodes["a"])
        bob = yield self.scripted("bob", nodes["b"])
        yield settle()
        at_alice, at_bob = alice.expect(wire.Introduction), bob.expect(wire.Introduction)
        alice.send(wire.Introduce(os.urandom(8), "alice", alice.cookie, "bob"), nodes["a"].as_tuple())
        intro, _ = yield defer.gatherResults([at_alice, at_bob])
        offers_alice = [alice.expect(wire.RelayOffer)]
        offers_bob = [bob.expect(wire.RelayOffer)]
        alice.send(wire.RelayRequest(os.urandom(8), "alice", alice.cookie, "bob", intro.intro_id),
                   nodes["a"].as_tuple())
        first_alice, pushed_bob = yield defer.gatherResults(offers_alice + offers_bob)
        at_bob = bob.expect(wire.RelayOffer)
        bob.send(wire.RelayRequest(os.urandom(8), "bob", bob.cookie, "alice", intro.intro_id), nodes["b"].as_tuple())
        answer_bob = yield at_bob
        for offer in (pushed_bob, answer_bob):
            self.assertEqual((offer.allocation, offer.relay, offer.key),
                             (first_alice.allocation, relay.address, first_alice.key))
            self.assertEqual(offer.side, 1 - first_alice.side)
        self.assertEqual(first_alice.key, wire.relay_key(relay.secret, first_alice.allocation))


class JoinDuringFailoverTests(ClusterTestCase):
    @defer.inlineCallbacks
    def test_join_forwarded_to_a_dead_node_is_forwarded_again(self):
        """
        A player joins a session whose node has just died: the first
        forwarded join is lost, the player's retransmissions are forwarded
        again once the host has moved to another node (which took the
        session over), and the player connects.
        """
        from p2pnet._peertypes import PeerConfig

        a, a_address = yield self.node("a")
        b, b_address = yield self.node("b")
        c, c_address = yield self.node("c")
        host = PeerEndpoint(reactor, [a_address, b_address], "host", interface="127.0.0.1",
                            factory=EchoFactory(), config=PeerConfig(heartbeat_interval=1.0))
        self.addCleanup(host.stop)
        yield host.start()
        yield host.host_session("Keith's Server", "race", 4)
        player = PeerEndpoint(reactor, c_address, "player", interface="127.0.0.1")
        self.addCleanup(player.stop)
        yield player.start()
        yield settle()
        [session] = yield player.list_sessions("race")
        for service in a.services:
            yield service.stopService()
        receiver = Waiting()
        connection = yield player.join(session, receiver)
        self.assertEqual(connection.peer_id, "host")
        self.assertEqual([s.session_id for s in b.registry.local_sessions()], [session.session_id])
        self.assertGreater(c.stats["introductions-repeated"], 0)
        arrived = receiver.next
        connection.send(b"ping")
        self.assertEqual((yield arrived), b"echo ping")


class RedisLobbyCountTests(ClusterTestCase):
    hosted = RedisLobbyTests.hosted

    @defer.inlineCallbacks
    def test_player_counts_current(self):
        """
        A join's reservation and its confirmation show in the Redis lobby
        at once (as in memory), not at the next periodic rewrite.
        """
        from p2pnet._lobby import LobbyQuery

        a, _ = yield self.node("a", max_sessions_per_ip=1000, max_per_ip=1000)
        now = reactor.seconds()
        sessions = yield self.hosted(a, 2, now)
        session = sessions[1]
        joiner = a.registry.register("joiner", Address("198.51.100.9", 9), (), None, now)
        a.registry.join(joiner, session.session_id, now)
        yield settle()
        page = yield a.registry.lobby.page(LobbyQuery(game_id="race", name_prefix="room"), 1100, now)
        self.assertEqual([s.players for s in page.sessions], [1])
        a.registry.confirm_join(session.session_id, "joiner", now)
        yield settle()
        page = yield a.registry.lobby.page(LobbyQuery(game_id="race", name_prefix="room"), 1100, now)
        self.assertEqual([s.players for s in page.sessions], [2])
