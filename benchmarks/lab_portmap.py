"""
Kernel lab: port mapping against the real miniupnpd.

    python -m benchmarks.lab_portmap [--trials 20]      (as root)

Lab (L{p2pnet.testing.netlab} + L{p2pnet.testing.upnplab}): site C{home}
(symmetric NAT, miniupnpd serving NAT-PMP and PCP, host alice), site
C{igd} (symmetric NAT, miniupnpd serving UPnP-IGD only, host carol), site
C{far} (symmetric NAT, nothing, host bob), two C{cone} sites without any
port mapping service (hosts dave, erin); the introducer with a relay
(192.0.2.10:9000, relay port 9100).  One lab for all trials; every
process is fresh per trial, with a fresh name (a new port, a new
mapping).

Measured with the real CLI (C{p2pnet peer --json}): its C{t} field is
seconds since the CLI's event printer was made, just before
C{endpoint.start()}.

  - B{mapped}: for each protocol (PCP, NAT-PMP: the client restricted with
    C{--port-mapping-protocols}; UPnP on C{igd}), C{t} of the
    C{port-mapped} event = time from C{start()} to the mapped candidate,
    and C{t} of C{registered} beside it.  Then bob (no port mapping)
    connects to the mapped peer; the path must not be C{relayed}.
  - B{no router}: dave connects to erin (cone <-> cone, routers that do
    not answer port 5351 nor SSDP), alternately with port mapping on
    (the default) and C{--no-port-mapping}: C{connected.t -
    connecting.t} on the active side.  The difference is what port
    mapping adds to a connect when no router answers.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from benchmarks._common import table, write_result
from p2pnet.testing.netlab import INTRODUCER_ADDRESS, Lab, missing_prerequisites
from p2pnet.testing.upnplab import add_upnp_site, missing_miniupnpd

TIMEOUT = 20.0


def peer(lab: Lab, host: str, name: str, *options: str):
    return lab.spawn(host, Lab.p2pnet_argv(
        "peer", "--introducer", f"{INTRODUCER_ADDRESS}:9000", "--name", name, "--json",
        "--send", f"from-{name}", *options))


def summary(values: list[float]) -> dict:
    values = sorted(values)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values) * 1000, 1),
        "p90_ms": round(values[min(len(values) - 1, int(0.9 * len(values)))] * 1000, 1),
        "max_ms": round(values[-1] * 1000, 1),
    }


def mapped_trial(lab: Lab, host: str, name: str, *options: str) -> dict:
    mapped_peer = peer(lab, host, name, *options)
    try:
        mapped = mapped_peer.wait_for_event("port-mapped", TIMEOUT)
        registered = mapped_peer.wait_for_event("registered", TIMEOUT)
        if mapped is None:
            return {"mapped": None}
        joiner = peer(lab, "bob", f"b{name}", "--no-port-mapping", "--connect", name)
        try:
            connected = joiner.wait_for_event("connected", TIMEOUT, peer=name)
        finally:
            joiner.stop()
        return {
            "mapped": mapped["t"],
            "registered": registered["t"] if registered else None,
            "protocol": mapped["protocol"],
            "path": connected["path"] if connected else None,
            "via_mapping": bool(connected and connected["address"] == mapped["address"]),
        }
    finally:
        mapped_peer.stop()


def connect_trial(lab: Lab, name: str, *options: str) -> float | None:
    passive = peer(lab, "erin", f"e{name}", *options)
    try:
        if passive.wait_for_event("registered", TIMEOUT) is None:
            return None
        active = peer(lab, "dave", f"d{name}", "--connect", f"e{name}", *options)
        try:
            connecting = active.wait_for_event("connecting", TIMEOUT)
            connected = active.wait_for_event("connected", TIMEOUT, peer=f"e{name}")
            if connecting is None or connected is None:
                return None
            return connected["t"] - connecting["t"]
        finally:
            active.stop()
    finally:
        passive.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--no-router-only", action="store_true", help="only the connect-time comparison")
    args = parser.parse_args(argv)
    reason = missing_prerequisites() or missing_miniupnpd()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    results: dict = {"trials": args.trials, "mapped": {}, "no_router": {}}
    with Lab() as lab:
        add_upnp_site(lab, "home", upnp=False)
        add_upnp_site(lab, "igd", natpmp=False)
        lab.add_site("far", "symmetric")
        lab.add_site("c1", "cone")
        lab.add_site("c2", "cone")
        for site, host in (("home", "alice"), ("igd", "carol"), ("far", "bob"), ("c1", "dave"), ("c2", "erin")):
            lab.add_host(site, host)
        introducer = lab.spawn("introducer", Lab.p2pnet_argv(
            "introducer", "--port", "9000", "--interface", INTRODUCER_ADDRESS, "--relay-port", "9100"))
        introducer.wait_for_line(lambda line: "listening" in line, TIMEOUT)
        runs = {"pcp": [], "nat-pmp": [], "upnp": []}
        for trial in range(0 if args.no_router_only else args.trials):
            runs["pcp"].append(mapped_trial(lab, "alice", f"p{trial}", "--port-mapping-protocols", "pcp"))
            runs["nat-pmp"].append(mapped_trial(lab, "alice", f"n{trial}", "--port-mapping-protocols", "nat-pmp"))
            runs["upnp"].append(mapped_trial(lab, "carol", f"u{trial}"))
        rows = []
        for protocol, trials in runs.items() if not args.no_router_only else ():
            mapped = [t["mapped"] for t in trials if t["mapped"] is not None]
            direct = sum(1 for t in trials if t.get("path") not in (None, "relayed") and t.get("via_mapping"))
            results["mapped"][protocol] = {
                "start_to_mapped": summary(mapped),
                "start_to_registered": summary([t["registered"] for t in trials if t.get("registered")]),
                "direct_via_mapping": f"{direct}/{len(trials)}",
                "paths": sorted({str(t.get("path")) for t in trials}),
            }
            s = results["mapped"][protocol]["start_to_mapped"]
            rows.append([protocol, s.get("median_ms"), s.get("p90_ms"), s.get("max_ms"),
                         f"{direct}/{len(trials)}"])
        if rows:
            print(table(["protocol", "mapped median ms", "p90 ms", "max ms", "direct via mapping"], rows))
        on, off = [], []
        for trial in range(args.trials):
            pair = [("on", ()), ("off", ("--no-port-mapping",))]
            if trial % 2:
                pair.reverse()
            for label, options in pair:
                value = connect_trial(lab, f"{label}{trial}", *options)
                if value is not None:
                    (on if label == "on" else off).append(value)
        results["no_router"] = {"port_mapping_on": summary(on), "port_mapping_off": summary(off)}
        print(table(["no router", "n", "median ms", "p90 ms", "max ms"], [
            [label, s["n"], s.get("median_ms"), s.get("p90_ms"), s.get("max_ms")]
            for label, s in (("on", summary(on)), ("off", summary(off)))]))
    print(write_result("lab_portmap_no_router" if args.no_router_only else "lab_portmap", results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
