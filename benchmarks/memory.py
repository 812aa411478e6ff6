"""
Introducer resident memory per live registration.

Each size runs in a fresh process: an L{IntroducerProtocol} (logging at
info level to /dev/null, as a twistd introducer logs to its file) with a
fake transport receives N padded Register datagrams (distinct peer ids,
distinct public addresses, one local address each) and one Heartbeat each
(so every registration is verified), through C{datagramReceived}.  The
figure is (RSS after - RSS before) / N, read from /proc/self/statm after a
full collection; the packets themselves are generated before the first
reading and kept alive until after the last.

    python -m benchmarks.memory [--sizes 10000,100000] [--tracemalloc] [--plot docs/memory.png]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys

from benchmarks._common import table, write_result


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(n: int, trace: bool) -> dict:
    from benchmarks import _loadgen
    from benchmarks.introducer_hotpath import build

    protocol = build(log=True)
    transport = protocol.transport
    registers = []
    beats_id = []
    for i in range(n):
        addr = ("10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255), 40000 + i % 20000)
        pid = _loadgen._peer_id(0, 0, i)
        registers.append((_loadgen.register_packet(os.urandom(8), pid), addr))
        beats_id.append(pid)
    heartbeat_txids = [os.urandom(8) for _ in range(n)]
    gc.collect()
    if trace:
        import tracemalloc

        tracemalloc.start(3)
    before = rss()
    for (data, addr), pid, txid in zip(registers, beats_id, heartbeat_txids):
        protocol.datagramReceived(data, addr)
        cookie = transport.last[-8:]
        protocol.datagramReceived(_loadgen.heartbeat_packet(txid, pid, cookie), addr)
    gc.collect()
    after = rss()
    assert len(protocol.registry) == n
    result = {"registrations": n, "rss_before": before, "rss_after": after, "bytes_per_registration": (after - before) / n}
    if trace:
        import tracemalloc

        snapshot = tracemalloc.take_snapshot()
        top = snapshot.statistics("lineno")[:12]
        result["tracemalloc_top"] = [
            {"where": str(s.traceback[0]), "bytes_per_registration": s.size / n, "count": s.count} for s in top
        ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--tracemalloc", action="store_true", help="also list the biggest allocation sites")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--plot", default=None,
                        help="write a PNG of RSS growth and bytes per registration against registrations")
    parser.add_argument("--name", default="memory")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.tracemalloc)))
        return
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        argv = [sys.executable, "-m", "benchmarks.memory", "--child", str(n)]
        if args.tracemalloc:
            argv.append("--tracemalloc")
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    print(table(
        ["registrations", "RSS delta MiB", "bytes/registration"],
        [[r["registrations"], (r["rss_after"] - r["rss_before"]) / 2**20, r["bytes_per_registration"]] for r in results],
    ))
    for r in results:
        for t in r.get("tracemalloc_top", []):
            print(f"  {r['registrations']}: {t['bytes_per_registration']:7.1f} B/reg  {t['where']}")
    print(f"wrote {write_result(args.name, {'settings': vars(args), 'results': results})}")
    if args.plot:
        plot(results, args.plot)


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["registrations"] / 1000 for r in results]
    fig, (growth, each) = plt.subplots(1, 2, figsize=(9, 3.6))
    growth.plot(xs, [(r["rss_after"] - r["rss_before"]) / 2**20 for r in results], "o-", label="measured")
    growth.plot(xs, [r["registrations"] * 1024 / 2**20 for r in results], "--", label="budget: 1 KiB each")
    growth.set_xlabel("live registrations (thousands)")
    growth.set_ylabel("RSS growth (MiB)")
    growth.legend()
    each.plot(xs, [r["bytes_per_registration"] for r in results], "o-")
    each.axhline(1024, linestyle="--", color="grey")
    each.set_xlabel("live registrations (thousands)")
    each.set_ylabel("bytes per registration")
    each.set_ylim(0, 1100)
    fig.suptitle("Introducer resident memory (python -m benchmarks.memory)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
