"""
The cluster's failure test: 1,000 peers registered across three nodes
(two in this process, one a real C{p2pnet introducer --redis} process),
every fifth hosting a session (on every node); the process node is killed with
SIGKILL.  Every peer must be registered again within 20 s, on exactly one
node, and every session must still be listed under its id.
"""

from __future__ import annotations

import os
import sys

from twisted.internet import defer, reactor
from twisted.logger import Logger

from p2pnet._peertypes import PeerConfig
from p2pnet.address import Address
from p2pnet.cluster import _scripts as S
from p2pnet.endpoint import PeerEndpoint
from tests.test_cluster import ClusterTestCase, settle
from tests.test_endpoint_loopback import _Output

PEERS = 1000
HOSTS_EVERY = 5


class KillTests(ClusterTestCase):
    timeout = 180
    log = Logger()

    @defer.inlineCallbacks
    def process_node(self, name: str):
        output = _Output(b"p2pnet introducer listening on")
        port = _free_udp_port()
        process = reactor.spawnProcess(
            output,
            sys.executable,
            [sys.executable, "-m", "p2pnet", "introducer", "--port", str(port), "--interface", "127.0.0.1",
             "--redis", self.redis.url, "--node-id", name, "--no-relay", "--no-stun",
             "--rate", "1000000", "--burst", "1000000", "--registration-lifetime", "30", "--max-sessions-per-ip", "1000"],
            env=dict(os.environ, PYTHONPATH=_repo()),
        )

        def stop():
            if output.ended.called:
                return None
            process.signalProcess("KILL")
            return output.ended

        self.addCleanup(stop)
        yield output.seen
        return process, output, Address("127.0.0.1", port)

    @defer.inlineCallbacks
    def test_kill_one_of_three_nodes(self):
        """
        After C{kill -9} of one node of three, the 1,000 peers are all
        registered again within 20 s, none on two nodes, and all sessions
        are still listed with their ids.
        """
        a, a_address = yield self.node("a", lifetime=30.0, max_sessions_per_ip=1000)
        b, b_address = yield self.node("b", lifetime=30.0, max_sessions_per_ip=1000)
        process, output, c_address = yield self.process_node("c")
        addresses = [a_address, b_address, c_address]
        config = PeerConfig(heartbeat_interval=5.0)
        endpoints = []
        for i in range(PEERS):
            first = i % 3
            order = addresses[first:] + addresses[:first]
            endpoint = PeerEndpoint(reactor, order, f"peer-{i}", interface="127.0.0.1", config=config)
            endpoints.append(endpoint)
            self.addCleanup(endpoint.stop)
        for start in range(0, PEERS, 100):
            yield defer.gatherResults([e.start() for e in endpoints[start : start + 100]])
        hosted = {}
        for i in range(0, PEERS, HOSTS_EVERY):
            hosted[f"peer-{i}"] = yield endpoints[i].host_session(f"room {i}", "race", 4)
        yield settle(0.5)
        store = a.node.store
        before = yield self.listed(store)
        self.assertEqual(before, {s.session_id for s in hosted.values()})
        on_c = [e.peer_id for e in endpoints if e.introducer == c_address]
        self.assertEqual(len(on_c), 333)

        process.signalProcess("KILL")
        yield output.ended
        killed = reactor.seconds()
        while True:
            now = reactor.seconds()
            held = [p for p in on_c if a.registry.lookup(p, now) or b.registry.lookup(p, now)]
            if len(held) == len(on_c):
                moved = now
                break
            self.assertLess(now - killed, 20.0, f"{len(on_c) - len(held)} peers not registered again")
            yield settle(0.25)
        yield settle(0.5)
        now = reactor.seconds()
        for endpoint in endpoints:
            on_a = a.registry.lookup(endpoint.peer_id, now) is not None
            on_b = b.registry.lookup(endpoint.peer_id, now) is not None
            self.assertTrue(on_a != on_b, f"{endpoint.peer_id} on a: {on_a}, on b: {on_b}")
        nodes = yield defer.gatherResults([store.execute("HGET", S.PEER + e.peer_id, "n") for e in endpoints])
        self.assertEqual({n.decode() for n in nodes}, {"a", "b"})
        after = yield self.listed(store)
        self.assertEqual(after, before)
        # Held by a live node again (taken over, not merely not expired yet).
        holders = yield defer.gatherResults([store.execute("HGET", S.SESSION + i.hex(), "n") for i in after])
        self.assertEqual({n.decode() for n in holders}, {"a", "b"})
        self.assertEqual(len(a.registry.local_sessions()) + len(b.registry.local_sessions()), len(hosted))
        self.log.info("all {n} peers of the killed node registered again {s:.1f} s after the kill",
                      n=len(on_c), s=moved - killed)

    @defer.inlineCallbacks
    def listed(self, store):
        """
        The session ids the Redis lobby of game "race" lists.
        """
        ids = yield store.execute("ZRANGE", S.LOBBY_GAME + "race", 0, -1)
        exist = yield defer.gatherResults([store.execute("EXISTS", S.SESSION + i.decode()) for i in ids])
        return {bytes.fromhex(i.decode()) for i, e in zip(ids, exist) if int(e)}


def _repo() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
