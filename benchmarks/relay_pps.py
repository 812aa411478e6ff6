"""
Packets per second forwarded on one core: the p2pnet relay
(L{p2pnet.relay.RelayProtocol}) vs coturn's TURN relay, each pinned to
core 0, under the same closed-loop load generator (L{benchmarks._relayload}
with the C loop of L{benchmarks._fastgen}, pinned to core 1), in the same
run, alternating rounds.

    python -m benchmarks.relay_pps [--rounds 5] [--duration 5]

Load: 16 socket pairs, one allocation per pair, 16 packets circulating per
pair (256 in flight): A sends through the relay to B, B sends each one it
gets back through the relay to A.  The relayed datagram is a 112-byte
p2pnet data datagram (100 bytes of application payload, 4 bytes of
framing, 8-byte data tag) for both relays; the p2pnet relay sees it inside
RELAYED frames (131 bytes, tag precomputed per allocation, side and slot),
coturn inside ChannelData (116 bytes) from A and bare (112 bytes) from B.
Every datagram received by A or B has crossed the relay once and counts as
one forwarded packet.

Servers, configured for throughput:

  - p2pnet: C{benchmarks._server relay}: the relay tap's C{make_protocol}
    via C{relay_tap.makeService} with C{--max-packets}, C{--max-bytes}
    (per allocation), C{--rate} and C{--source-bytes} (per source IP; all
    load comes from 127.0.0.1) raised far above the offered load, so the
    limiters still run but never drop; logging at info to a file as twistd
    does.  The relay's drop counters are in the JSON and checked to be
    zero for the caps.
  - coturn: C{turnserver -n --no-cli --relay-threads 1 --lt-cred-mech
    --user u:p --realm bench --listening-ip 127.0.0.1 --relay-ip 127.0.0.1
    --allow-loopback-peers --no-tls --no-dtls --no-tcp --min-port 62000
    --max-port 62999} (no C{--max-bps}, C{--bps-capacity} or quotas: all
    unlimited by default), logging to a file.

Both are started under C{taskset -c 0}; a fresh server per round.

How the generator was checked not to be the limit: it never sleeps (it
polls its sockets without blocking, so the servers' answers never pay for
waking it up) and it counts the time it spent finding nothing to read
("generator idle": the fraction of the measured interval in which every
packet in flight was at the server).  Idle time means the generator was
waiting for the server.  Every round also runs the same loop with the
relay taken out (C{direct}: A and B send the same frames straight to each
other), which shows how many packets per second the generator turns
around on its core alone.  The server's own CPU use is sampled inside the
measured interval and printed beside its rate ("per server CPU-s"),
because other jobs on the machine take turns on both cores.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess

from benchmarks import _relayload
from benchmarks._common import add_generator_options, resolve_generator_options, Server, _wait_for_stun, table, write_result

SECRET_FILE = "/tmp/p2pnet-bench-relay.secret"
RELAY_CAPS = {
    "max-packets": 1_000_000_000,
    "max-bytes": 1_000_000_000_000,
    "rate": 1e9,
    "source-bytes": 1e12,
}
COTURN_PORTS = (62000, 62999)
COTURN_USER, COTURN_PASSWORD, COTURN_REALM = "u", "p", "bench"


class Coturn(Server):
    """
    coturn as a TURN relay (not C{--stun-only}) pinned to one core.
    """

    def __init__(self, cpu: int = 0) -> None:
        self.kind = "coturn"
        self.stats = None
        self._samples = {}
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.argv = [
            "taskset", "-c", str(cpu), "turnserver", "-n", "--no-cli",
            "--listening-ip", "127.0.0.1", "--listening-port", str(self.port),
            "--relay-ip", "127.0.0.1",
            "--relay-threads", "1",
            "--lt-cred-mech", "--user", f"{COTURN_USER}:{COTURN_PASSWORD}", "--realm", COTURN_REALM,
            "--allow-loopback-peers",
            "--no-tls", "--no-dtls", "--no-tcp",
            "--min-port", str(COTURN_PORTS[0]), "--max-port", str(COTURN_PORTS[1]),
            "--log-file", "/tmp/p2pnet-bench-coturn-relay.log", "--simple-log", "--no-stdout-log",
            "--pidfile", "/tmp/p2pnet-bench-coturn-relay.pid",
        ]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_stun(self.port)


def _relay_options(secret_file: str) -> str:
    return f"--secret-file {secret_file} " + " ".join(f"--{k} {v}" for k, v in RELAY_CAPS.items())


def measure(kind: str, args, secret: bytes) -> dict:
    common = dict(
        processes=args.processes, pairs=args.pairs, window=args.window, payload=args.payload,
        warmup=args.warmup, duration=args.duration, generator=args.generator,
    )
    if kind == "direct":
        result = _relayload.run("direct", None, secret=secret, **common)
        result.update(server="direct", server_argv=None, server_cpu=None, server_stats=None)
        return result
    if kind == "coturn":
        server = Coturn(cpu=0)
    else:
        server = Server("relay", cpu=0, extra=[
            "--log", "info", "--log-file", "/tmp/p2pnet-bench-relay.log",
            "--relay-options=" + _relay_options(SECRET_FILE),
        ])
    try:
        result = _relayload.run(
            "coturn" if kind == "coturn" else "p2pnet",
            ("127.0.0.1", server.port),
            secret=secret,
            credentials=(COTURN_USER, COTURN_PASSWORD),
            on_measure=server.sample,
            **common,
        )
    finally:
        server.stop()
    result["server"] = kind
    server.describe(result)
    if kind == "p2pnet":
        stats = server.stats or {}
        throttled = {k: stats.get(k, 0) for k in ("dropped-over-cap", "dropped-rate-limited", "dropped-byte-limited")}
        result["throttled"] = throttled
        if any(throttled.values()):
            raise RuntimeError(f"the p2pnet relay's caps dropped packets: {throttled}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    add_generator_options(parser, "pairs")
    parser.add_argument("--window", type=int, default=16, help="packets circulating per pair")
    parser.add_argument("--payload", type=int, default=100, help="application payload bytes")
    parser.add_argument("--no-direct", action="store_true", help="skip the generator-only (no relay) loop")
    parser.add_argument("--name", default="relay_pps")
    args = parser.parse_args()
    resolve_generator_options(args, "pairs")

    secret = os.urandom(24).hex().encode()
    with open(SECRET_FILE, "wb") as f:
        f.write(secret + b"\n")
    kinds = ["coturn", "p2pnet"] + ([] if args.no_direct else ["direct"])
    runs = []
    for n in range(args.rounds):
        for kind in kinds:
            result = measure(kind, args, secret)
            result["round"] = n + 1
            runs.append(result)
            cpu = "" if result["server_cpu"] is None else f", server CPU {result['server_cpu']:.3f}"
            idle = "" if result["generator_idle"] is None else f" (idle {result['generator_idle']:.3f})"
            print(f"round {n + 1} {kind}: {result['pps']:,.0f} forwarded/s{cpu}, "
                  f"generator CPU {result['generator_cpu']:.3f}{idle}", flush=True)
    medians = {kind: statistics.median(r["pps"] for r in runs if r["server"] == kind) for kind in kinds}
    per_cpu = {
        kind: statistics.median(r["pps"] / r["server_cpu"] for r in runs if r["server"] == kind)
        for kind in ("coturn", "p2pnet")
    }
    generator_cpu = {
        kind: [min(r["generator_cpu"] for r in runs if r["server"] == kind),
               max(r["generator_cpu"] for r in runs if r["server"] == kind)]
        for kind in kinds
    }
    print()
    print(table(
        ["round", "server", "forwarded/s", "server CPU", "per server CPU-s", "generator CPU", "generator idle",
         "resent", "unexpected"],
        [
            [r["round"], r["server"], r["pps"], "-" if r["server_cpu"] is None else r["server_cpu"],
             "-" if r["server_cpu"] is None else r["pps"] / r["server_cpu"],
             r["generator_cpu"], "-" if r["generator_idle"] is None else r["generator_idle"],
             r["resent"], r["unexpected"]]
            for r in runs
        ],
    ))
    print()
    ratio = medians["p2pnet"] / medians["coturn"]
    ratio_cpu = per_cpu["p2pnet"] / per_cpu["coturn"]
    print(f"median p2pnet relay: {medians['p2pnet']:,.0f}/s = {ratio:.1%} of coturn "
          f"({medians['coturn']:,.0f}/s) (goal >= 40%)")
    print(f"median per server CPU-second: p2pnet {per_cpu['p2pnet']:,.0f}, coturn {per_cpu['coturn']:,.0f} "
          f"= {ratio_cpu:.1%}")
    # Each round runs coturn and p2pnet back to back, so a round's own
    # ratio compares the two at (usually) the same machine speed.
    round_ratios = [
        next(r["pps"] for r in runs if r["round"] == n + 1 and r["server"] == "p2pnet")
        / next(r["pps"] for r in runs if r["round"] == n + 1 and r["server"] == "coturn")
        for n in range(args.rounds)
    ]
    print(f"each round's p2pnet / coturn: {', '.join(f'{x:.1%}' for x in round_ratios)} "
          f"(median {statistics.median(round_ratios):.1%}, lowest {min(round_ratios):.1%})")
    for kind in kinds:
        low, high = generator_cpu[kind]
        print(f"generator CPU with {kind}: {low:.3f}-{high:.3f}")
    if "direct" in medians:
        print(f"median generator-only loop (no relay, same packets, core 1): {medians['direct']:,.0f}/s "
              f"= {medians['direct'] / medians['coturn']:.1f}x coturn's rate, "
              f"{medians['direct'] / medians['p2pnet']:.1f}x the p2pnet relay's")
    print("p2pnet relay tap options: " + _relay_options("PATH"))
    print("coturn: " + " ".join(next(r["server_argv"] for r in runs if r["server"] == "coturn")[3:]))
    path = write_result(args.name, {
        "settings": vars(args),
        "p2pnet_relay_options": _relay_options(SECRET_FILE),
        "p2pnet_relay_caps": RELAY_CAPS,
        "coturn_argv": next(r["server_argv"] for r in runs if r["server"] == "coturn"),
        "runs": runs,
        "median_pps": medians,
        "median_per_server_cpu_second": per_cpu,
        "generator_cpu_range": generator_cpu,
        "ratio": ratio,
        "ratio_per_server_cpu_second": ratio_cpu,
        "round_ratios": round_ratios,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
