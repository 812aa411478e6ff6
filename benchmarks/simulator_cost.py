"""
CPU cost of the simulated network (p2pnet.testing) with many peers, on
Twisted's C{Clock} and on L{p2pnet.testing.HeapClock}.

Two workloads, each on a fresh network with an introducer:

  - C{star}: one host behind a port-restricted NAT hosts a session; N
    joiners, each behind its own port-restricted NAT, start, register and
    join it; then everyone idles (keepalives, heartbeats) for C{--idle}
    simulated seconds.
  - C{mesh}: a mesh session of C{--mesh} players (every member connects to
    every other), then the same idle time.

Both clocks must give the same packet and timer counts (checked); the
result is the CPU seconds (C{time.process_time}) of each.

    python -m benchmarks.simulator_cost [--joiners 1000] [--mesh 40] [--idle 60] [--clocks heap,clock]
"""

from __future__ import annotations

import argparse
import random
import time

from benchmarks._common import table, write_result

INTRODUCER = ("192.0.2.1", 3478)


def build(clock_kind: str, seed: int = 0):
    from twisted.internet.task import Clock

    from p2pnet._registry import Registry
    from p2pnet.introducer import IntroducerProtocol
    from p2pnet.testing import HeapClock, Network
    from p2pnet.testing.scenarios import seeded_bytes

    clock = HeapClock() if clock_kind == "heap" else Clock()
    network = Network(clock, seed=seed)
    random_bytes = seeded_bytes(random.Random(seed))
    introducer_host = network.add_host(INTRODUCER[0], name="introducer")
    introducer = IntroducerProtocol(clock, Registry(60.0, random_bytes), random_bytes)
    introducer_host.listenUDP(INTRODUCER[1], introducer)
    return clock, network, random_bytes


def add_peer(network, index: int, name: str, random_bytes, factory=None):
    from p2pnet.address import Address
    from p2pnet.endpoint import PeerEndpoint

    public_ip = f"198.18.{index // 250}.{index % 250 + 1}"
    box = network.add_nat(f"nat{index}", public_ip)
    host = network.add_host(behind=box, name=f"host{index}")
    network.set_link(host, latency=0.005 + 0.00001 * (index % 100))
    return PeerEndpoint(host, Address(*INTRODUCER), name, random_bytes=random_bytes, factory=factory)


def run_until(clock, step: float, limit: float, done) -> None:
    deadline = clock.seconds() + limit
    while not done() and clock.seconds() < deadline:
        clock.advance(step)


class _Factory:
    def build_protocol(self, peer_id: str):
        from p2pnet.endpoint import PeerProtocol

        return PeerProtocol()


def star(clock_kind: str, joiners: int, idle: float) -> dict:
    from p2pnet import wire

    clock, network, random_bytes = build(clock_kind)
    host = add_peer(network, 0, "host", random_bytes, factory=_Factory())
    started = []
    host.start().addBoth(started.append)
    run_until(clock, 0.01, 10.0, lambda: started)
    hosted = []
    host.host_session("bench", "g", max_players=joiners + 1).addBoth(hosted.append)
    run_until(clock, 0.01, 10.0, lambda: hosted)
    session = wire.SessionInfo(hosted[0].session_id, "bench", "g", "host", 1, joiners + 1)
    peers = [add_peer(network, i + 1, f"j{i}", random_bytes) for i in range(joiners)]
    joined: list[object] = []
    ready: list[object] = []

    def join(peer):
        def registered(_):
            peer.join(session).addBoth(joined.append)

        peer.start().addCallbacks(registered, ready.append)

    begin = time.process_time()
    for peer in peers:
        join(peer)
    run_until(clock, 0.01, 120.0, lambda: len(joined) + len(ready) == joiners)
    connect_seconds = clock.seconds()
    run_until(clock, 0.05, idle, lambda: False)
    cpu = time.process_time() - begin
    connected = sum(1 for outcome in joined if not hasattr(outcome, "trap"))
    return {
        "cpu_s": round(cpu, 2),
        "connected": connected,
        "sim_time_s": round(clock.seconds(), 2),
        "connect_done_at_s": round(connect_seconds, 2),
        "sent": network.stats.sent,
        "delivered": network.stats.delivered,
        "dropped": network.stats.dropped_total,
        "pending_calls": len(clock.getDelayedCalls()),
    }


def mesh(clock_kind: str, players: int, idle: float) -> dict:
    from p2pnet import wire

    clock, network, random_bytes = build(clock_kind)
    peers = [add_peer(network, i, f"p{i}", random_bytes, factory=_Factory()) for i in range(players)]
    started: list[object] = []
    for peer in peers:
        peer.start().addBoth(started.append)
    run_until(clock, 0.01, 10.0, lambda: len(started) == players)
    hosted = []
    peers[0].host_session("mesh", "g", max_players=players, mesh=True).addBoth(hosted.append)
    run_until(clock, 0.01, 10.0, lambda: hosted)
    session = wire.SessionInfo(hosted[0].session_id, "mesh", "g", "p0", 1, players, True)
    begin = time.process_time()
    joined: list[object] = []
    for peer in peers[1:]:
        peer.join(session).addBoth(joined.append)
    run_until(clock, 0.01, 120.0, lambda: len(joined) == players - 1)
    run_until(clock, 0.05, idle, lambda: False)
    cpu = time.process_time() - begin
    links = sum(len([c for c in peer.connections if c.address is not None]) for peer in peers)
    return {
        "cpu_s": round(cpu, 2),
        "connection_ends": links,
        "sim_time_s": round(clock.seconds(), 2),
        "sent": network.stats.sent,
        "delivered": network.stats.delivered,
        "dropped": network.stats.dropped_total,
        "pending_calls": len(clock.getDelayedCalls()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joiners", type=int, default=1000)
    parser.add_argument("--mesh", type=int, default=40, help="players in the mesh run (0: skip)")
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--clocks", default="heap,clock")
    parser.add_argument("--name", default="simulator_cost")
    args = parser.parse_args()
    from twisted.logger import LogLevel, LogLevelFilterPredicate, FilteringLogObserver, globalLogBeginner

    # Keep per-peer log lines out of the measurement.
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(lambda e: None, [LogLevelFilterPredicate(LogLevel.critical)])],
        redirectStandardIO=False,
    )
    clocks = args.clocks.split(",")
    results: dict = {"joiners": args.joiners, "mesh_players": args.mesh, "idle_s": args.idle, "runs": {}}
    rows = []
    for kind in clocks:
        if args.joiners:
            r = star(kind, args.joiners, args.idle)
            results["runs"][f"star/{kind}"] = r
            rows.append([f"star {args.joiners}", kind, r["cpu_s"], r["connected"], r["sent"], r["delivered"]])
            print(rows[-1], flush=True)
        if args.mesh:
            r = mesh(kind, args.mesh, args.idle)
            results["runs"][f"mesh/{kind}"] = r
            rows.append([f"mesh {args.mesh}", kind, r["cpu_s"], r["connection_ends"], r["sent"], r["delivered"]])
            print(rows[-1], flush=True)
    for workload in ("star", "mesh"):
        runs = [v for k, v in results["runs"].items() if k.startswith(workload + "/")]
        if len(runs) == 2:
            same = all(runs[0][f] == runs[1][f] for f in ("sent", "delivered", "dropped", "pending_calls"))
            results[f"{workload}_identical_counts"] = same
    print(table(["workload", "clock", "CPU s", "connected", "sent", "delivered"], rows))
    print(write_result(args.name, results))


if __name__ == "__main__":
    main()
