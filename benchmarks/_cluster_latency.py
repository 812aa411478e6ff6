"""
The Twisted halves of L{benchmarks.cluster}: introduction latency across
and within nodes (real loopback sockets, one process), and the
C{txredisapi} client measurement.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from twisted.internet import defer, reactor, task


def _report(result: dict) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def main() -> None:
    trials = int(sys.argv[2])

    @defer.inlineCallbacks
    def run():
        from tests.redislab import RedisServer
        from tests.test_introducer_loopback import ScriptedHost
        from p2pnet import wire
        from p2pnet.address import Address
        from p2pnet.cluster import NodeService, cluster_protocol
        from p2pnet.introducer import IntroducerService

        redis_server = RedisServer()
        redis_server.start()
        try:
            nodes = []
            for name in ("a", "b"):
                protocol = cluster_protocol(reactor, redis_server.url, 600.0, {}, node_id=name)
                NodeService(protocol.node).startService()
                service = IntroducerService(reactor, protocol, 0, "127.0.0.1")
                service.startService()
                yield protocol.node.store.whenUp()
                nodes.append(Address("127.0.0.1", service.port.getHost().port))

            @defer.inlineCallbacks
            def host(name, server):
                h = ScriptedHost()
                port = reactor.listenUDP(0, h, interface="127.0.0.1")
                registered = h.expect(wire.Registered)
                h.send(wire.Register(os.urandom(8), name, (Address("127.0.0.1", port.getHost().port),)),
                       server.as_tuple())
                answer = yield registered
                acked = h.expect(wire.HeartbeatAck)
                h.send(wire.Heartbeat(os.urandom(8), name, answer.cookie), server.as_tuple())
                yield acked
                h.cookie = answer.cookie
                return h

            requester = yield host("req", nodes[0])
            same = yield host("same", nodes[0])
            other = yield host("other", nodes[1])
            yield task.deferLater(reactor, 0.1, lambda: None)
            result = {"trials": trials}
            for label, target in (("same_node", same), ("cross_node", other)):
                times = []
                for _ in range(trials):
                    at_requester = requester.expect(wire.Introduction)
                    at_target = target.expect(wire.Introduction)
                    t0 = time.perf_counter()
                    requester.send(wire.Introduce(os.urandom(8), "req", requester.cookie, target_name(target)),
                                   nodes[0].as_tuple())
                    mine, theirs = yield defer.gatherResults([at_requester, at_target])
                    times.append(time.perf_counter() - t0)
                    for h, node, intro in ((requester, nodes[0], mine),
                                           (target, nodes[0] if target is same else nodes[1], theirs)):
                        h.send(wire.IntroAck(os.urandom(8), intro.intro_id), node.as_tuple())
                    yield task.deferLater(reactor, 0.002, lambda: None)
                times.sort()
                result[label] = {"median_ms": statistics.median(times) * 1e3,
                                 "p90_ms": times[int(len(times) * 0.9)] * 1e3}
            _report(result)
        finally:
            redis_server.stop()
            reactor.stop()

    names = {}

    def target_name(h):
        return names[id(h)]

    from tests import test_introducer_loopback

    original = test_introducer_loopback.ScriptedHost.send

    def send(self, message, to):
        if hasattr(message, "peer_id") and type(message).__name__ == "Register":
            names[id(self)] = message.peer_id
        return original(self, message, to)

    test_introducer_loopback.ScriptedHost.send = send
    reactor.callWhenRunning(run)
    reactor.run()


def txredis_client(port: int, n: int) -> None:
    from p2pnet.cluster._store import RedisStore

    @defer.inlineCallbacks
    def run():
        store = RedisStore(reactor, f"redis://127.0.0.1:{port}", "bench", lambda m: None, lambda: None)
        store.startService()
        yield store.whenUp()
        yield task.deferLater(reactor, 0.05, lambda: None)
        t0 = time.perf_counter()
        for i in range(n):
            yield store.execute("SET", f"k{i}", "v")
        one_by_one = time.perf_counter() - t0
        t0 = time.perf_counter()
        yield defer.gatherResults([store.execute("SET", f"k{i}", "v") for i in range(n)])
        pipelined = time.perf_counter() - t0
        _report({"awaited_us": one_by_one / n * 1e6, "pipeline_us": pipelined / n * 1e6})
        yield store.stopService()
        reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run()


def lobby_pages(url: str, sizes: list[int], pages: int) -> None:
    """
    CPU and wall time per Redis lobby page (no filter, 1,100-byte
    budget), paging on with the cursor, at each lobby size (sessions
    already written under games C{g<size>}).
    """
    from p2pnet._lobby import LobbyQuery
    from p2pnet.cluster import cluster_protocol

    @defer.inlineCallbacks
    def run():
        protocol = cluster_protocol(reactor, url, 600.0, {})
        protocol.node.store.startService()
        yield protocol.node.store.whenUp()
        lobby = protocol.registry.lobby
        result = {}
        for size in sizes:
            cursor, walls, cpu0, listed = None, [], time.process_time(), 0
            for _ in range(pages):
                t0 = time.perf_counter()
                page = yield lobby.page(LobbyQuery(game_id=f"g{size}", cursor=cursor), 1100, reactor.seconds())
                walls.append(time.perf_counter() - t0)
                listed += len(page.sessions)
                cursor = page.cursor
            cpu = time.process_time() - cpu0
            walls.sort()
            result[str(size)] = {"pages": pages, "sessions_per_page": listed / pages,
                                 "node_cpu_us_per_page": cpu / pages * 1e6,
                                 "wall_median_us": statistics.median(walls) * 1e6}
        _report(result)
        yield protocol.node.store.stopService()
        reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run()
