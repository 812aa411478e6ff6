"""
C{p2pnet demo}: an introducer and peers behind simulated NATs of several
kinds, in one process and on a virtual clock, with a readable timeline of
warm-up, hellos and the path chosen.

C{p2pnet demo --kernel} runs a short version of the kernel NAT lab instead
(Linux, root, C{ip} and C{nft} needed).
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import TextIO

from twisted.python import usage

from p2pnet._options import parse
from p2pnet.errors import HandshakeTimeout
from p2pnet.testing.scenarios import SITE_KINDS, run_pair

#: (title, kind A, kind B, options, what we expect and why)
SCENARIOS = [
    ("two home routers", "full-cone", "port-restricted", {}, "direct-public",
     "both NATs keep one public port per socket, so hellos to the public "
     "addresses the introducer saw get through once both sides have sent"),
    ("same LAN, router without hairpinning", "port-restricted", "port-restricted",
     {"same_lan": True}, "direct-local",
     "hellos to the public address die in the router, hellos to the local "
     "address arrive directly"),
    ("a NAT that remembers unsolicited packets, with warm-up", "full-cone", "poisoned", {},
     "direct-public",
     "B's short-TTL probes open B's NAT before A's first hello arrives"),
    ("the same NAT without warm-up", "full-cone", "poisoned", {"warmup": False}, None,
     "A's first hello reaches B's NAT before B sent anything; the NAT rejects it "
     "and then keeps rejecting the whole flow"),
    ("carrier-grade NAT behind a home NAT", "double-nat", "restricted", {}, "direct-public",
     "both layers keep one port per socket; the warm-up dies at the second NAT, "
     "the retransmitted hellos get through"),
    ("symmetric NAT against a port-restricted NAT", "symmetric", "port-restricted", {}, None,
     "the symmetric NAT uses a new port for every destination and the other "
     "side only accepts ports it sent to: this needs a relay"),
]


class Options(usage.Options):
    synopsis = "[--kernel] [--seed N]"
    optParameters = [["seed", None, 1, "Seed for the simulated network.", int]]
    optFlags = [
        ["kernel", None, "Run a short kernel NAT lab instead (root; ip and nft)."],
        ["quiet", "q", "Only one line per scenario."],
    ]


def _describe(kind: str) -> str:
    return f"{kind} ({SITE_KINDS[kind]})"


def run_demo(out: TextIO, seed: int = 1, quiet: bool = False) -> int:
    """
    Run every scenario and print what happened; returns 0 when each one
    ended as expected.
    """
    surprises = 0
    out.write(
        "p2pnet demo: an introducer at 192.0.2.10:3478 on a simulated internet; peer A "
        "connects to peer B.\nA's link has 5 ms latency, B's 10 ms; times are virtual.\n"
    )
    for title, kind_a, kind_b, options, expected, why in SCENARIOS:
        trace = []
        result = run_pair(kind_a, kind_b, seed=seed, trace=trace.append, **options)
        out.write(f"\n== {title} ==\n")
        if not quiet:
            out.write(f"   A: {_describe(kind_a)}\n")
            b_kind = kind_a if options.get("same_lan") else kind_b
            where = "on A's LAN" if options.get("same_lan") else ""
            out.write(f"   B: {_describe(b_kind)} {where}\n")
            for line in _timeline(result):
                out.write(f"   {line}\n")
            out.write(f"   packets: {_packet_summary(trace)}\n")
        if result.connected:
            outcome = f"connected over {result.path} in {result.connect_time * 1000:.0f} ms"
        elif hasattr(result.outcome_a, "check") and result.outcome_a.check(HandshakeTimeout):
            outcome = "no direct path (HandshakeTimeout)"
        else:
            outcome = f"unexpected: {result.outcome_a}"
        ok = (result.path == expected and result.connected) if expected else not result.connected
        surprises += not ok
        out.write(f"   => {outcome}{'' if ok else '   (NOT AS EXPECTED)'}\n")
        out.write(f"      why: {why}\n")
    out.write(
        "\nEvery scenario ended as expected.\n" if not surprises
        else f"\n{surprises} scenario(s) did not end as expected.\n"
    )
    return 1 if surprises else 0


def _timeline(result) -> list[str]:
    lines = []
    shown = {"registered", "introduced", "warming", "punching", "reversal", "connected",
             "path-changed", "failed"}
    for time, side, event in result.events:
        if event.kind not in shown:
            continue
        if event.kind == "registered":
            text = f"registered, public address {event.address}"
        elif event.kind == "introduced":
            text = f"introduced to {event.peer_id}: candidates {', '.join(map(str, event.candidates))}"
        elif event.kind == "warming":
            text = "warm-up: short-TTL probes to every candidate"
        elif event.kind == "punching":
            text = "hellos to every candidate"
        elif event.kind == "reversal":
            text = "no answer yet: asks the introducer to make the peer send first"
        elif event.kind == "connected":
            text = f"connected to {event.peer_id} via {event.path.value} {event.address}"
        elif event.kind == "path-changed":
            text = f"path moved to {event.path.value} {event.address}"
        else:
            text = f"gave up: {event.detail}"
        lines.append(f"{time:7.3f}s  {side}  {text}")
    return lines


def _packet_summary(trace) -> str:
    sent = sum(1 for e in trace if e.kind == "send")
    delivered = sum(1 for e in trace if e.kind == "deliver")
    drops = Counter(e.reason for e in trace if e.kind == "drop")
    text = f"{sent} sent, {delivered} delivered"
    if drops:
        text += ", dropped: " + ", ".join(f"{n} {reason}" for reason, n in drops.most_common())
    return text


def main(argv: list[str]) -> int:
    options = Options()
    if not parse(options, argv, "p2pnet demo"):
        return 2
    if options["kernel"]:
        try:
            from p2pnet._kerneldemo import run
        except ImportError as e:
            print(f"p2pnet demo --kernel is not available: {e}", file=sys.stderr)
            return 1
        return run(sys.stdout)
    return run_demo(sys.stdout, options["seed"], options["quiet"])
