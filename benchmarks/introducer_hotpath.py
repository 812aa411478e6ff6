"""
The introducer's per-datagram cost without sockets: realistic padded
Register and Heartbeat datagrams (distinct peer ids and source ports, the
cookie from each answer) fed straight to C{datagramReceived} with a fake
transport.  Used to profile and to measure optimisations of the hot path.

    python -m benchmarks.introducer_hotpath [--peers 50000] [--heartbeats 3] [--profile]
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks import _loadgen
from benchmarks._common import table, write_result


class FakeTransport:
    def __init__(self) -> None:
        self.last = None
        self.sent = 0

    def write(self, data, addr):
        self.last = data
        self.sent += 1

    def getHost(self):
        from twisted.internet.address import IPv4Address

        return IPv4Address("UDP", "127.0.0.1", 3478)


def build(log: bool):
    from twisted.internet.task import Clock
    from twisted.logger import globalLogBeginner, LogLevel, LogLevelFilterPredicate, FilteringLogObserver, textFileLogObserver

    from p2pnet._registry import Registry
    from p2pnet._stunserver import StunResponder
    from p2pnet.introducer import IntroducerProtocol

    if log:
        out = open(os.devnull, "w")
        observers = [FilteringLogObserver(textFileLogObserver(out), [LogLevelFilterPredicate(LogLevel.info)])]
    else:
        observers = []
    globalLogBeginner.beginLoggingTo(observers, redirectStandardIO=False, discardBuffer=True)
    clock = Clock()
    protocol = IntroducerProtocol(clock, Registry(600.0, os.urandom), os.urandom, stun_responder=StunResponder())
    protocol.transport = FakeTransport()
    return protocol


def run(peers: int, heartbeats: int, log: bool) -> dict:
    protocol = build(log)
    transport = protocol.transport
    receive = protocol.datagramReceived
    registers = [
        (_loadgen.register_packet(os.urandom(8), _loadgen._peer_id(0, 0, n)), ("10.%d.%d.%d" % (n >> 16, (n >> 8) & 255, n & 255), 40000 + n % 20000))
        for n in range(peers)
    ]
    start = time.perf_counter()
    cookies = []
    for data, addr in registers:
        receive(data, addr)
        cookies.append(transport.last[-8:])
    register_time = time.perf_counter() - start
    beats = [
        (_loadgen.heartbeat_packet(os.urandom(8), _loadgen._peer_id(0, 0, n), cookies[n]), registers[n][1])
        for n in range(peers)
    ]
    start = time.perf_counter()
    for _ in range(heartbeats):
        for data, addr in beats:
            receive(data, addr)
    heartbeat_time = time.perf_counter() - start
    assert transport.sent == peers * (1 + heartbeats), (transport.sent, dict(protocol.stats))
    assert protocol.stats["heartbeats"] == peers * heartbeats
    return {
        "peers": peers,
        "heartbeats_per_peer": heartbeats,
        "log": log,
        "register_us": register_time / peers * 1e6,
        "heartbeat_us": heartbeat_time / (peers * heartbeats) * 1e6,
        "mixed_us": (register_time + heartbeat_time) / (peers * (1 + heartbeats)) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, default=50000)
    parser.add_argument("--heartbeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="run under pyinstrument and print the tree")
    parser.add_argument("--name", default="introducer_hotpath")
    args = parser.parse_args()
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        profiler.start()
        run(args.peers, args.heartbeats, True)
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))
        return
    rows = []
    results = []
    for log in (True, False):
        r = run(args.peers, args.heartbeats, log)
        results.append(r)
        rows.append(["info to file" if log else "no observer", r["register_us"], r["heartbeat_us"], r["mixed_us"], 1e6 / r["mixed_us"]])
    print(table(["logging", "register us", "heartbeat us", "mixed us/pkt", "mixed pkt/s"], rows))
    print(f"wrote {write_result(args.name, {'settings': vars(args), 'results': results})}")


if __name__ == "__main__":
    main()
