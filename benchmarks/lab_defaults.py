"""
Kernel lab with defaults only (issue 16): how often each pair ends as it
should when nobody passes an option.  Needs root.

    python -m benchmarks.lab_defaults symmetric --runs 20
    python -m benchmarks.lab_defaults birthday --runs 20
    python -m benchmarks.lab_defaults birthday --runs 20 --no-nat-check   (the old default)

The introducer runs as C{p2pnet introducer --port 3478} (one IP address,
192.0.2.10; its relay on 3479 and its second STUN port on 3480 are
defaults), the peers as plain C{p2pnet peer --introducer ... --name ...
[--connect ...]} (plus C{--json --send} to watch them, which change
nothing).  One lab and one introducer serve every run of a series; each
run starts fresh peer processes with fresh names: bob first (until it has
registered), then alice with C{--connect}.

  - C{symmetric}: both behind C{symmetric} routers (C{masquerade
    fully-random}).  A run succeeds when both report C{connected} over
    the relay.
  - C{birthday}: alice behind a C{cone} router, bob behind a C{symmetric}
    one.  A run succeeds when both report C{connected} over a direct path.

Also recorded: each side's C{elapsed} (introduction to connected) and
alice's time from process start to C{registered} (start-up, which the
NAT check runs beside).

Results go to C{benchmarks/results/lab_defaults_SCENARIO[_LABEL].json}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

PORT = 3478
WAIT = 20.0


def _peer(lab, host: str, name: str, *options: str):
    from p2pnet.testing.netlab import INTRODUCER_ADDRESS, Lab

    return lab.spawn(host, Lab.p2pnet_argv(
        "peer", "--introducer", f"{INTRODUCER_ADDRESS}:{PORT}", "--name", name,
        "--json", "--send", f"from-{name}", *options))


def _stop(processes) -> None:
    for process in processes:
        if process.process.poll() is None:
            process.process.terminate()
    for process in processes:
        if process.wait_exit(3.0) is None:
            process.kill()


def _summary(process, peer: str) -> list[str]:
    keep = ("nat-checked", "introduced", "birthday", "punching", "relaying", "connected", "failed", "error")
    return [f"{e.get('t')} {e.get('event')} {e.get('detail') or e.get('path') or ''}".strip()
            for e in process.events
            if e.get("event") in keep and e.get("peer") in (peer, None)]


def run_pair(lab, scenario: str, n: int, wait: float, extra: tuple[str, ...]) -> dict:
    alice_name, bob_name = f"alice{n}", f"bob{n}"
    bob = _peer(lab, "bob", bob_name, *extra)
    processes = [bob]
    try:
        if bob.wait_for_event("registered", WAIT) is None:
            return {"ok": False, "why": "bob did not register"}
        alice = _peer(lab, "alice", alice_name, "--connect", bob_name, *extra)
        processes.append(alice)
        registered = alice.wait_for_event("registered", WAIT)
        started = time.monotonic()
        on_alice = alice.wait_for_event("connected", wait, peer=bob_name)
        on_bob = bob.wait_for_event("connected", max(0.1, wait - (time.monotonic() - started)), peer=alice_name)
        paths = [on_alice and on_alice.get("path"), on_bob and on_bob.get("path")]
        if scenario == "symmetric":
            ok = all(p == "relayed" for p in paths)
        else:
            ok = all(p is not None and p.startswith("direct") for p in paths)
        result = {
            "ok": ok,
            "paths": paths,
            "elapsed": [on_alice and on_alice.get("elapsed"), on_bob and on_bob.get("elapsed")],
            "registered_t": registered and registered.get("t"),
        }
        if not ok:
            result["alice"] = _summary(alice, bob_name)
            result["bob"] = _summary(bob, alice_name)
        return result
    finally:
        _stop(processes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lab_defaults",
                                     description="Kernel lab, defaults only (needs root).")
    parser.add_argument("scenario", choices=("symmetric", "birthday"))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--wait", type=float, default=15.0, help="seconds each run waits for its connections")
    parser.add_argument("--no-nat-check", action="store_true", help="peers with --no-nat-check (the old default)")
    parser.add_argument("--label", default="", help="suffix of the results file name")
    args = parser.parse_args(argv)

    from p2pnet.testing.netlab import Lab, missing_prerequisites

    reason = missing_prerequisites()
    if reason is not None:
        print(f"lab_defaults: {reason}", file=sys.stderr)
        return 1
    extra = ("--no-nat-check",) if args.no_nat_check else ()
    results = []
    began = time.monotonic()
    with Lab() as lab:
        lab.add_site("left", "cone" if args.scenario == "birthday" else "symmetric")
        lab.add_site("right", "symmetric")
        lab.add_host("left", "alice")
        lab.add_host("right", "bob")
        introducer = lab.spawn("introducer", Lab.p2pnet_argv("introducer", "--port", str(PORT)))
        if introducer.wait_for_line(lambda line: "STUN alt-port listening" in line, WAIT) is None:
            raise SystemExit("the introducer did not start:\n" + introducer.transcript(40))
        for n in range(args.runs):
            result = run_pair(lab, args.scenario, n, args.wait, extra)
            results.append(result)
            ok = sum(r["ok"] for r in results)
            print(f"run {n}: {'ok' if result['ok'] else 'FAILED'} {result.get('paths') or result.get('why')}"
                  f" elapsed {result.get('elapsed')}  ({ok}/{len(results)})", flush=True)
    ok = sum(r["ok"] for r in results)
    elapsed = [r["elapsed"][0] for r in results if r["ok"] and r["elapsed"][0] is not None]
    registered = [r["registered_t"] for r in results if r.get("registered_t") is not None]
    summary = {
        "scenario": args.scenario,
        "peer_options": list(extra),
        "runs": len(results),
        "ok": ok,
        "rate": ok / len(results),
        "connect_elapsed_median_s": statistics.median(elapsed) if elapsed else None,
        "connect_elapsed_max_s": max(elapsed) if elapsed else None,
        "registered_t_median_s": statistics.median(registered) if registered else None,
        "wait_s": args.wait,
        "duration_s": round(time.monotonic() - began, 1),
    }
    print(f"\n{args.scenario}: {ok} of {len(results)} runs as expected ({100.0 * ok / len(results):.1f}%); "
          f"connect (introduced -> connected, alice) median {summary['connect_elapsed_median_s']} s; "
          f"start -> registered median {summary['registered_t_median_s']} s")

    from benchmarks._common import write_result

    name = f"lab_defaults_{args.scenario}" + (f"_{args.label}" if args.label else "")
    path = write_result(name, {**summary, "results": results})
    print(f"results: {path}")
    return 0 if ok == len(results) else 2


if __name__ == "__main__":
    sys.exit(main())
