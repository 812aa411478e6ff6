"""
Introducer packet rate on one core beside a bare Twisted UDP echo server,
under the same load generator in the same run.

    python -m benchmarks.introducer_pps [--rounds 3] [--duration 5]

Each server runs in its own process pinned to core 0; the load generator's
processes are pinned to core 1.  Rounds alternate echo / introducer so
drift on a noisy machine hits both.  Also measured: introductions per
second (Introduce -> two Introductions -> two IntroAcks).
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks import _loadgen
from benchmarks._common import Server, table, write_result


def measure(kind: str, mode: str, args, extra=None) -> dict:
    server = Server(kind, cpu=0, extra=extra)
    try:
        result = _loadgen.run(
            mode,
            server.port,
            processes=args.processes,
            sockets=args.sockets,
            window=args.window,
            heartbeats=args.heartbeats,
            duration=args.duration,
            on_measure=server.sample,
        )
    finally:
        server.stop()
    result["server"] = kind + (" " + " ".join(extra) if extra else "")
    result["server_cpu"] = server.cpu
    result["server_stats"] = server.stats
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--sockets", type=int, default=8)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--heartbeats", type=int, default=3, help="heartbeats per registration")
    parser.add_argument("--log", choices=["info", "none"], default="info")
    parser.add_argument("--name", default="introducer_pps")
    args = parser.parse_args()

    runs = []
    for _ in range(args.rounds):
        runs.append(measure("echo", "reg", args))
        runs.append(measure("introducer", "reg", args, ["--log", args.log]))
        runs.append(measure("introducer", "intro", args, ["--log", args.log]))

    def med(server_prefix, mode):
        values = [r["pps"] for r in runs if r["server"].startswith(server_prefix) and r["mode"] == mode]
        return statistics.median(values)

    echo = med("echo", "reg")
    intro_reg = med("introducer", "reg")
    intros = med("introducer", "intro")
    rows = [
        [r["server"], r["mode"], r["pps"], r["server_cpu"], r["generator_cpu"], r["stalls"]] for r in runs
    ]
    print(table(["server", "load", "answers/s", "server CPU", "generator CPU", "stalls"], rows))
    print()
    print(f"median echo (reg/heartbeat packets):     {echo:,.0f} pps")
    print(f"median introducer registrations+heartbeats: {intro_reg:,.0f} pps = {intro_reg / echo:.1%} of echo (goal >= 50%)")
    print(f"median introductions:                    {intros:,.0f} /s")
    path = write_result(
        args.name,
        {
            "settings": vars(args),
            "runs": runs,
            "median_echo_pps": echo,
            "median_introducer_reg_hb_pps": intro_reg,
            "ratio": intro_reg / echo,
            "median_introductions_per_s": intros,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
