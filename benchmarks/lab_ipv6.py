"""
Kernel lab: IPv6 behind stateful firewalls, dual stack, and IPv6-only
meeting IPv4-only.

    flock /tmp/p2pnet-lab.lock python -m benchmarks.lab_ipv6 [--trials 20]      (as root)

Lab (L{p2pnet.testing.netlab} + L{p2pnet.testing.ip6lab}): the introducer
with a relay on both families (192.0.2.10 and 2001:db8:ff::10, port 9000,
relay 9100); every site's IPv6 LAN behind a stateful ip6 firewall (new
inbound dropped, no NAT).  One lab for all trials; every process is
fresh per trial, with a fresh name.

Scenarios (bob waits, alice connects; C{p2pnet peer --json}):

  - B{v6-only}: two IPv6-only hosts (no IPv4 route), IPv4 behind
    symmetric NATs; registered with the introducer's IPv6 address.
  - B{dual, symmetric v4}: dual-stack hosts (C{--introducer6}), IPv4
    behind symmetric NATs: IPv6 is the only direct path.
  - B{dual, cone v4}: dual-stack hosts, IPv4 behind cone NATs: both
    families work; which one validated first is counted.
  - B{v6-only - v4-only}: an IPv6-only host connects to an IPv4-only host
    (C{--no-ipv6}, a site without IPv6): only the relay can join them.

Connect time: C{connected.t - connecting.t} on the active side.  For
dual-stack peers, also how long after C{registered} the IPv6 address was
proven (C{ipv6-registered}; C{start()} fires then).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys

from benchmarks._common import table, write_result
from p2pnet.testing.ip6lab import INTRODUCER6, add_ipv6, add_ipv6_host, enable_ipv6
from p2pnet.testing.netlab import INTRODUCER_ADDRESS, Lab, missing_prerequisites

TIMEOUT = 20.0

#: scenario -> (alice's host, alice's family, bob's host, bob's family)
SCENARIOS = {
    "v6-only": ("a1", "v6", "b1", "v6"),
    "dual, symmetric v4": ("a2", "dual", "b2", "dual"),
    "dual, cone v4": ("a3", "dual", "b3", "dual"),
    "v6-only - v4-only": ("a4", "v6", "b4", "v4"),
}


def peer(lab: Lab, host: str, name: str, family: str, *options: str):
    if family == "v6":
        introducer = ["--introducer", f"[{INTRODUCER6}]:9000"]
    elif family == "dual":
        introducer = ["--introducer", f"{INTRODUCER_ADDRESS}:9000", "--introducer6", f"[{INTRODUCER6}]:9000"]
    else:
        introducer = ["--introducer", f"{INTRODUCER_ADDRESS}:9000", "--no-ipv6"]
    return lab.spawn(host, Lab.p2pnet_argv(
        "peer", *introducer, "--name", name, "--json", "--send", f"from-{name}", "--no-port-mapping", *options))


def trial(lab: Lab, scenario: str, number: int) -> dict:
    alice_host, alice_family, bob_host, bob_family = SCENARIOS[scenario]
    bob_name, alice_name = f"b{number}{bob_host}", f"a{number}{alice_host}"
    passive = peer(lab, bob_host, bob_name, bob_family)
    try:
        ready = "ipv6-registered" if bob_family == "dual" else "registered"
        proven = passive.wait_for_event(ready, TIMEOUT)
        if proven is None:
            return {"path": None, "why": f"bob: no {ready}"}
        registered = passive.wait_for_event("registered", TIMEOUT)
        proof = proven["t"] - registered["t"] if bob_family == "dual" and registered else None
        active = peer(lab, alice_host, alice_name, alice_family, "--connect", bob_name)
        try:
            connecting = active.wait_for_event("connecting", TIMEOUT)
            connected = active.wait_for_event("connected", TIMEOUT, peer=bob_name)
            heard = active.wait_for_event("datagram", TIMEOUT, peer=bob_name)
            other = passive.wait_for_event("connected", TIMEOUT, peer=alice_name)
            # Both send a datagram a second: one more each way.
            passive.wait_for_event("datagram", TIMEOUT, peer=alice_name, start=len(passive.lines))
            active.wait_for_event("datagram", TIMEOUT, peer=bob_name, start=len(active.lines))
            if connecting is None or connected is None:
                return {"path": None, "why": "not connected"}
            changes = [e["path"] for p in (active, passive) for e in p.events if e.get("event") == "path-changed"]
            return {"path": connected["path"], "address": connected["address"],
                    "seconds": connected["t"] - connecting["t"], "datagrams": heard is not None,
                    "ipv6_proof": proof, "other_side": other["path"] if other else None,
                    "path_changes": changes}
        finally:
            active.stop()
    finally:
        passive.stop()


def build(lab: Lab) -> None:
    enable_ipv6(lab)
    sites = [("s1", "symmetric", "a1"), ("s2", "symmetric", "b1"), ("s3", "symmetric", "a2"),
             ("s4", "symmetric", "b2"), ("s5", "cone", "a3"), ("s6", "cone", "b3"), ("s7", "cone", "a4")]
    for name, kind, host in sites:
        lab.add_site(name, kind)
        add_ipv6(lab, name)
        lab.add_host(name, host)
        add_ipv6_host(lab, host, only=host in ("a1", "b1", "a4"))
    lab.add_site("s8", "cone")  # IPv4 only
    lab.add_host("s8", "b4")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args(argv)
    reason = missing_prerequisites()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    results: dict = {"trials": args.trials, "scenarios": {}}
    with Lab() as lab:
        build(lab)
        introducer = lab.spawn("introducer", Lab.p2pnet_argv(
            "introducer", "--port", "9000", "--interface", INTRODUCER_ADDRESS, "--interface6", INTRODUCER6,
            "--relay-port", "9100"))
        introducer.wait_for_line(lambda line: "relay listening on [" in line, TIMEOUT)
        runs: dict[str, list[dict]] = {name: [] for name in SCENARIOS}
        for number in range(args.trials):
            for scenario in SCENARIOS:
                runs[scenario].append(trial(lab, scenario, number))
        rows = []
        for scenario, trials in runs.items():
            paths = collections.Counter(str(t["path"]) for t in trials)
            times = sorted(t["seconds"] for t in trials if t.get("seconds") is not None)
            direct = sum(1 for t in trials if t["path"] not in (None, "relayed"))
            heard = sum(1 for t in trials if t.get("datagrams"))
            median = round(statistics.median(times) * 1000, 1) if times else None
            worst = round(times[-1] * 1000, 1) if times else None
            proofs = sorted(t["ipv6_proof"] for t in trials if t.get("ipv6_proof") is not None)
            if proofs:
                results.setdefault("ipv6_proof_after_registered_ms", {})[scenario] = {
                    "median": round(statistics.median(proofs) * 1000, 1), "max": round(proofs[-1] * 1000, 1)}
            results["scenarios"][scenario] = {
                "other_side_paths": dict(collections.Counter(str(t.get("other_side")) for t in trials)),
                "path_changes": sum(len(t.get("path_changes", ())) for t in trials),
                "paths": dict(paths), "direct": f"{direct}/{len(trials)}", "datagrams": f"{heard}/{len(trials)}",
                "connect_median_ms": median, "connect_max_ms": worst,
                "failures": [t.get("why") for t in trials if t["path"] is None],
            }
            changes = results["scenarios"][scenario]["path_changes"]
            rows.append([scenario, ", ".join(f"{p} {n}" for p, n in sorted(paths.items())), changes,
                         f"{direct}/{len(trials)}", f"{heard}/{len(trials)}", median, worst])
        print(table(["scenario", "paths", "path changes", "direct", "datagrams", "connect median ms", "max ms"], rows))
        print("IPv6 address proven, after 'registered' (ms):", results.get("ipv6_proof_after_registered_ms"))
    print(write_result("lab_ipv6", results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
