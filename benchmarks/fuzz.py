"""
Fuzz the introducer, the relay, the STUN server and a peer endpoint with
mutated valid datagrams from many spoofed sources, in process, on a
simulated clock (see L{p2pnet.testing._fuzz}), and report per target:
datagrams, exceptions escaping C{datagramReceived}, errors and tracebacks
logged (and timers that raised), memory, table sizes, whether the
legitimate state set up before the fuzzing is intact, and the rate.

    python -m benchmarks.fuzz [--count 1000000] [--seed 0] [--target all]

C{--count} is the total over the chosen targets (the introducer's share
is split between an open introducer and one with a shared secret whose
holder signs the mutated requests; STUN's between the RFC 5780 server and
a TURN client holding an allocation, fed answers claiming its server; the
endpoint's between one with secure connections, three quarters, and one
with insecure connections).  Exits 1 if anything escaped, was
logged, or the legitimate state was disturbed.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks._common import table, write_result

TARGETS = ("introducer", "relay", "stun", "endpoint")


def build(name: str, seed: int):
    from p2pnet.testing import _fuzztargets
    from p2pnet.testing._fuzzendpoint import EndpointTarget
    from p2pnet.testing._fuzzturn import TurnClientTarget

    return {
        "introducer": lambda: _fuzztargets.IntroducerTarget(seed),
        "introducer+secret": lambda: _fuzztargets.IntroducerTarget(seed, secret=True),
        "relay": lambda: _fuzztargets.RelayTarget(seed),
        "stun": lambda: _fuzztargets.StunTarget(seed),
        "turn-client": lambda: TurnClientTarget(seed),
        "endpoint": lambda: EndpointTarget(seed),
        "endpoint-insecure": lambda: EndpointTarget(seed, insecure=True),
    }[name]()


def plan(target: str, count: int) -> list[tuple[str, int]]:
    """
    C{(target name, datagrams)} for each run.
    """
    chosen = TARGETS if target == "all" else (target,)
    share = count // len(chosen)
    runs = []
    for name in chosen:
        if name == "introducer":
            runs += [("introducer", share - share // 2), ("introducer+secret", share // 2)]
        elif name == "stun":
            runs += [("stun", share - share // 2), ("turn-client", share // 2)]
        elif name == "endpoint":
            runs += [("endpoint", share - share // 4), ("endpoint-insecure", share // 4)]
        else:
            runs.append((name, share))
    runs[-1] = (runs[-1][0], runs[-1][1] + count - sum(n for _, n in runs))
    return runs


def _mib(n: int) -> float:
    return n / (1 << 20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000, help="mutated datagrams in total (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", choices=("all",) + TARGETS, default="all")
    parser.add_argument("--name", default="fuzz")
    args = parser.parse_args(argv)

    from twisted.logger import globalLogBeginner

    from p2pnet.testing._fuzz import describe, run

    # Only the harness's own observer sees the log (it counts errors).
    globalLogBeginner.beginLoggingTo([], redirectStandardIO=False, discardBuffer=True)
    reports = []
    for name, count in plan(args.target, args.count):
        target = build(name, args.seed)
        report = run(target, count, seed=args.seed)
        target.close()
        reports.append(report)
        print(f"{name}: {report.messages:,} datagrams in {report.seconds:.1f} s", file=sys.stderr)

    rows = []
    for r in reports:
        rows.append([
            r.target, f"{r.messages:,}", r.escapes, r.logged_errors, f"{r.log_lines:,}",
            "intact" if not r.legit_problems else f"{len(r.legit_problems)} problems",
            f"{_mib(r.rss_before):.0f} -> {_mib(r.rss_peak):.0f}", f"{r.simulated:.0f}", r.rate,
        ])
    total = sum(r.messages for r in reports)
    print(table(["target", "datagrams", "escapes", "logged errors", "log lines", "legit state", "RSS MiB", "sim s", "datagrams/s"], rows))
    print(f"\ntotal: {total:,} datagrams, {sum(r.escapes for r in reports)} escapes, "
          f"{sum(r.logged_errors for r in reports)} logged errors")
    print("\ntable sizes, largest seen (at the end):")
    for r in reports:
        sizes = ", ".join(f"{k} {v:,} ({r.tables.get(k, 0):,})" for k, v in r.peak_tables.items())
        print(f"  {r.target}: {sizes}")
    if any(r.error_types for r in reports):
        print("\nescapes and logged errors by exception type:")
        for r in reports:
            if r.error_types:
                print(f"  {r.target}: " + ", ".join(f"{k} {v}" for k, v in sorted(r.error_types.items())))
    for r in reports:
        if r.legit_problems:
            print(f"\n{r.target}: legitimate state disturbed:")
            for problem in r.legit_problems:
                print(f"  - {problem}")
        if r.problems:
            print(f"\n{r.target}: first problems (of {r.escapes + r.logged_errors}):")
            seen = set()
            for problem in r.problems:
                key = (problem.kind, problem.summary[:80])
                if key in seen:
                    continue
                seen.add(key)
                text = describe(problem)
                print("  " + (text if len(text) < 600 else text[:600] + "...'"))
                last = [
                    line for line in problem.detail.strip().splitlines()
                    if line.startswith("  File") and "/p2pnet/" in line and "/testing/" not in line
                ]
                if last:
                    print("    raised at" + last[-1][6:])
    results = [
        {
            "target": r.target, "datagrams": r.messages, "escapes": r.escapes, "logged_errors": r.logged_errors,
            "log_lines": r.log_lines,
            "legit_problems": r.legit_problems, "rss_before": r.rss_before, "rss_peak": r.rss_peak,
            "rss_after": r.rss_after, "tables": r.tables, "peak_tables": r.peak_tables, "seconds": r.seconds,
            "simulated_seconds": r.simulated, "rate": r.rate, "error_types": r.error_types,
            "problems": [describe(p) for p in r.problems],
        }
        for r in reports
    ]
    print(f"\nwrote {write_result(args.name, {'settings': vars(args), 'results': results})}")
    clean = all(r.clean for r in reports)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
