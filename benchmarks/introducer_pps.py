"""
Introducer packet rate on one core beside a bare Twisted UDP echo server,
under the same load generator in the same run.

    python -m benchmarks.introducer_pps [--rounds 5] [--duration 5] [--heartbeats 3,20]

Each server runs in its own process pinned to core 0; the load generator
(L{benchmarks._loadgen}, by default with the C loop of
L{benchmarks._fastgen}, which never sleeps and reports the share of time
it found nothing to read: "generator idle") is pinned to core 1.  Rounds alternate echo / introducer so
drift on a noisy machine hits both.  The registration load is measured
at each registration:heartbeat mix of C{--heartbeats}: 1:3 is a stress
case (a new player every fourth packet); 1:20 is a steady state (a
player's endpoint heartbeats every 15 s, so 1:20 is a five-minute stay).
Also measured: introductions per second (Introduce -> two Introductions
-> two IntroAcks).
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks import _loadgen
from benchmarks._common import add_generator_options, resolve_generator_options, Server, table, write_result


def measure(kind: str, mode: str, args, extra=None, heartbeats: int = 3) -> dict:
    server = Server(kind, cpu=0, extra=extra)
    try:
        result = _loadgen.run(
            mode,
            server.port,
            processes=args.processes,
            sockets=args.sockets,
            window=args.window,
            heartbeats=heartbeats,
            duration=args.duration,
            on_measure=server.sample,
            generator=args.generator,
        )
    finally:
        server.stop()
    result["server"] = kind + (" " + " ".join(extra) if extra else "")
    server.describe(result)
    result["heartbeats_per_registration"] = heartbeats if mode == "reg" else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    add_generator_options(parser, "sockets")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--heartbeats", default="3,20",
                        help="heartbeats per registration, one mix per comma-separated value")
    parser.add_argument("--log", choices=["info", "none"], default="info")
    parser.add_argument("--name", default="introducer_pps")
    args = parser.parse_args()
    resolve_generator_options(args, "sockets")
    mixes = [int(n) for n in args.heartbeats.split(",")]

    runs = []
    for _ in range(args.rounds):
        runs.append(measure("echo", "reg", args, heartbeats=mixes[0]))
        for heartbeats in mixes:
            runs.append(measure("introducer", "reg", args, ["--log", args.log], heartbeats))
        runs.append(measure("introducer", "intro", args, ["--log", args.log]))

    def med(server_prefix, mode, heartbeats=None, key="pps"):
        values = [
            r[key] if key == "pps" else r["pps"] / r["server_cpu"]
            for r in runs
            if r["server"].startswith(server_prefix) and r["mode"] == mode
            and (heartbeats is None or r["heartbeats_per_registration"] == heartbeats)
        ]
        return statistics.median(values)

    echo = med("echo", "reg")
    echo_cpu = med("echo", "reg", key="per-cpu")
    intros = med("introducer", "intro")
    rows = [
        [r["server"], r["mode"] + (f" 1:{r['heartbeats_per_registration']}" if r["mode"] == "reg" else ""),
         r["pps"], r["server_cpu"], r["pps"] / r["server_cpu"], r["generator_cpu"],
         "-" if r["generator_idle"] is None else r["generator_idle"], r["stalls"]]
        for r in runs
    ]
    print(table(["server", "load", "answers/s", "server CPU", "per CPU-second", "generator CPU", "generator idle",
                 "stalls"], rows))
    print()
    print(f"median echo (reg/heartbeat packets): {echo:,.0f} pps ({echo_cpu:,.0f} per CPU-second)")
    ratios = {}
    for heartbeats in mixes:
        pps = med("introducer", "reg", heartbeats)
        per_cpu = med("introducer", "reg", heartbeats, key="per-cpu")
        ratios[heartbeats] = {"pps": pps, "ratio": pps / echo, "per_cpu": per_cpu, "ratio_per_cpu": per_cpu / echo_cpu}
        print(f"median introducer registrations+heartbeats at 1:{heartbeats}: {pps:,.0f} pps = {pps / echo:.1%} "
              f"of echo; per CPU-second {per_cpu / echo_cpu:.1%} (goal >= 50%)")
    print(f"median introductions: {intros:,.0f} /s")
    path = write_result(
        args.name,
        {
            "settings": vars(args),
            "runs": runs,
            "median_echo_pps": echo,
            "median_echo_per_cpu": echo_cpu,
            "mixes": ratios,
            "median_introductions_per_s": intros,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
