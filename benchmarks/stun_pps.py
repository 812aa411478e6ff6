"""
STUN Binding answers per second on one core: p2pnet's standalone STUN
server (C{p2pnet._stunserver.listen_stun}), the introducer's STUN path, and
coturn (C{turnserver --stun-only --relay-threads 1}), each pinned to core 0,
under the same load generator (core 1; by default the C loop of
L{benchmarks._fastgen}) in the same run.

    python -m benchmarks.stun_pps [--rounds 5] [--duration 5]
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks import _loadgen
from benchmarks._common import add_generator_options, resolve_generator_options, Server, table, write_result


def measure(kind: str, args, extra=None) -> dict:
    server = Server(kind, cpu=0, extra=extra)
    try:
        result = _loadgen.run(
            "stun",
            server.port,
            processes=args.processes,
            sockets=args.sockets,
            window=args.window,
            duration=args.duration,
            on_measure=server.sample,
            generator=args.generator,
        )
    finally:
        server.stop()
    result["server"] = kind
    server.describe(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    add_generator_options(parser, "sockets")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--name", default="stun_pps")
    args = parser.parse_args()
    resolve_generator_options(args, "sockets")
    runs = []
    for _ in range(args.rounds):
        runs.append(measure("coturn", args))
        runs.append(measure("stunserver", args, ["--log", "info"]))
        runs.append(measure("introducer", args, ["--log", "info"]))
    medians = {
        kind: statistics.median(r["pps"] for r in runs if r["server"] == kind)
        for kind in ("coturn", "stunserver", "introducer")
    }
    print(table(
        ["server", "answers/s", "server CPU", "generator CPU", "generator idle", "stalls"],
        [[r["server"], r["pps"], r["server_cpu"], r["generator_cpu"], r["generator_idle"], r["stalls"]] for r in runs],
    ))
    print()
    for kind in ("stunserver", "introducer"):
        print(f"median {kind}: {medians[kind]:,.0f}/s = {medians[kind] / medians['coturn']:.1%} of coturn "
              f"({medians['coturn']:,.0f}/s) (goal >= 35%)")
    path = write_result(args.name, {
        "settings": vars(args),
        "runs": runs,
        "median_pps": medians,
        "ratio_stunserver": medians["stunserver"] / medians["coturn"],
        "ratio_introducer": medians["introducer"] / medians["coturn"],
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
