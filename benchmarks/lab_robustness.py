"""
Kernel lab: how often a direct path comes up under loss and under a burst
of introductions (issue 14, item 11).  Needs root.

    python -m benchmarks.lab_robustness loss --runs 50
    python -m benchmarks.lab_robustness mesh --runs 50

Scenarios (L{p2pnet.testing.netlab}, the real introducer and the real
C{p2pnet peer} CLI with C{--json}):

  - C{loss}: alice behind a C{cone} router and bob behind a C{race-prone}
    router (the kernel's "poisoning" router, see docs/netlab.md), 25%
    random loss each way on both sites' links (C{--loss}).  Bob
    registers, then alice starts with C{--connect bob}.  A run succeeds
    when both report C{connected} with a C{direct-*} path.
  - C{mesh}: two players behind each of a C{cone}, a C{race-prone} and a
    C{firewall} site, no loss.  The first cone player hosts a session with
    C{--mesh}; once it is listed, the other five start together with
    C{--join}, so the introducer sends its introductions in bursts.  A
    run succeeds when every one of the 15 pairs reports C{connected} with
    a C{direct-*} path on both sides.

One lab (and one introducer) serves every run of a series; each run uses
fresh peer processes and fresh names, and stops them before the next.
Each run waits at most C{--wait} seconds for its connections.

Results go to C{benchmarks/results/lab_robustness_SCENARIO[_LABEL].json}
(every run's outcome, and for failed pairs what each side printed).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

INTRODUCER_PORT = 9000
WAIT = 20.0


def _peer(lab, host: str, name: str, *options: str):
    from p2pnet.testing.netlab import INTRODUCER_ADDRESS, Lab

    return lab.spawn(host, Lab.p2pnet_argv(
        "peer", "--introducer", f"{INTRODUCER_ADDRESS}:{INTRODUCER_PORT}",
        "--name", name, "--json", "--send", f"from-{name}", "--heartbeat", "2",
        *options))


def _stop(processes) -> None:
    for process in processes:
        if process.process.poll() is None:
            process.process.terminate()
    for process in processes:
        if process.wait_exit(3.0) is None:
            process.kill()


def _connected(process, peer: str) -> str | None:
    for event in process.events:
        if event.get("event") == "connected" and event.get("peer") == peer:
            return event.get("path")
    return None


def _summary(process, peer: str) -> list[str]:
    keep = ("introduced", "warming", "punching", "reversal", "relaying", "connected", "failed", "error")
    return [f"{e.get('t')} {e.get('event')} {e.get('detail') or e.get('reason') or e.get('path') or ''}".strip()
            for e in process.events
            if e.get("event") in keep and e.get("peer") in (peer, None)]


def run_loss(lab, n: int, wait: float) -> dict:
    alice_name, bob_name = f"alice{n}", f"bob{n}"
    bob = _peer(lab, "bob", bob_name)
    processes = [bob]
    try:
        if bob.wait_for_event("registered", WAIT) is None:
            return {"ok": False, "why": "bob did not register"}
        alice = _peer(lab, "alice", alice_name, "--connect", bob_name)
        processes.append(alice)
        started = time.monotonic()
        on_alice = alice.wait_for_event("connected", wait, peer=bob_name)
        on_bob = bob.wait_for_event("connected", max(0.1, wait - (time.monotonic() - started)),
                                    peer=alice_name)
        paths = [on_alice and on_alice.get("path"), on_bob and on_bob.get("path")]
        ok = all(p is not None and p.startswith("direct") for p in paths)
        result = {"ok": ok, "paths": paths,
                  "elapsed": [on_alice and on_alice.get("elapsed"), on_bob and on_bob.get("elapsed")]}
        if not ok:
            result["alice"] = _summary(alice, bob_name)
            result["bob"] = _summary(bob, alice_name)
        return result
    finally:
        _stop(processes)


MESH_PLAYERS = (("cone1", "cone"), ("race1", "race"), ("fire1", "fire"),
                ("cone2", "cone"), ("race2", "race"), ("fire2", "fire"))


def run_mesh(lab, n: int, wait: float) -> dict:
    names = {host: f"{host}r{n}" for host, _ in MESH_PLAYERS}
    title = f"mesh{n}"
    host = _peer(lab, "cone1", names["cone1"], "--host-session", title, "--mesh", "--max-players", "6")
    processes = [host]
    try:
        if host.wait_for_event("hosting", WAIT) is None:
            return {"ok": False, "why": "the host did not start hosting"}
        for player, _ in MESH_PLAYERS[1:]:
            processes.append(_peer(lab, player, names[player], "--join", title))
        by_name = {names[h]: p for (h, _), p in zip(MESH_PLAYERS, processes)}
        deadline = time.monotonic() + wait
        pairs = list(itertools.combinations(sorted(by_name), 2))
        while True:
            missing = [(a, b) for a, b in pairs
                       if _connected(by_name[a], b) is None or _connected(by_name[b], a) is None]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        result = {"ok": True, "pairs": {}}
        for a, b in pairs:
            paths = [_connected(by_name[a], b), _connected(by_name[b], a)]
            ok = all(p is not None and p.startswith("direct") for p in paths)
            result["pairs"][f"{a}-{b}"] = paths
            if not ok:
                result["ok"] = False
                result.setdefault("failed", {})[f"{a}-{b}"] = {
                    a: _summary(by_name[a], b), b: _summary(by_name[b], a)}
        return result
    finally:
        _stop(processes)


def build(lab, scenario: str, loss: int) -> None:
    from p2pnet.testing.netlab import INTRODUCER_ADDRESS, Lab

    if scenario == "loss":
        lab.add_site("left", "cone", loss=loss)
        lab.add_site("right", "race-prone", loss=loss)
        lab.add_host("left", "alice")
        lab.add_host("right", "bob")
    else:
        lab.add_site("cone", "cone", loss=loss)
        lab.add_site("race", "race-prone", loss=loss)
        lab.add_site("fire", "firewall", loss=loss)
        for player, site in MESH_PLAYERS:
            lab.add_host(site, player)
    introducer = lab.spawn("introducer", Lab.p2pnet_argv(
        "introducer", "--port", str(INTRODUCER_PORT), "--interface", INTRODUCER_ADDRESS, "--no-relay"))
    if introducer.wait_for_line(lambda line: "listening" in line, WAIT) is None:
        raise SystemExit("the introducer did not start:\n" + introducer.transcript(40))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lab_robustness",
                                     description="Kernel lab: direct-path success rate (needs root).")
    parser.add_argument("scenario", choices=("loss", "mesh"))
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--loss", type=int, default=None,
                        help="percent loss each way on every site link (default: 25 for loss, 0 for mesh)")
    parser.add_argument("--wait", type=float, default=15.0, help="seconds each run waits for its connections")
    parser.add_argument("--label", default="", help="suffix of the results file name (e.g. before, after)")
    args = parser.parse_args(argv)
    loss = args.loss if args.loss is not None else (25 if args.scenario == "loss" else 0)

    from p2pnet.testing.netlab import Lab, missing_prerequisites

    reason = missing_prerequisites()
    if reason is not None:
        print(f"lab_robustness: {reason}", file=sys.stderr)
        return 1
    run = run_loss if args.scenario == "loss" else run_mesh
    results = []
    started = time.monotonic()
    with Lab() as lab:
        build(lab, args.scenario, loss)
        for n in range(args.runs):
            result = run(lab, n, args.wait)
            results.append(result)
            ok = sum(r["ok"] for r in results)
            brief = result.get("paths") or result.get("why") or (
                "all 15 pairs direct" if result["ok"] else f"failed pairs: {sorted(result.get('failed', {}))}")
            print(f"run {n}: {'ok' if result['ok'] else 'FAILED'} {brief}  ({ok}/{len(results)})", flush=True)
    ok = sum(r["ok"] for r in results)
    print(f"\n{args.scenario}: {ok} of {len(results)} runs connected directly "
          f"({100.0 * ok / len(results):.1f}%)")

    from benchmarks._common import write_result

    name = f"lab_robustness_{args.scenario}" + (f"_{args.label}" if args.label else "")
    path = write_result(name, {
        "scenario": args.scenario,
        "loss_percent": loss,
        "runs": len(results),
        "direct": ok,
        "rate": ok / len(results),
        "wait_s": args.wait,
        "duration_s": round(time.monotonic() - started, 1),
        "results": results,
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
