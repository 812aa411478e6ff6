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
from p2pnet._handshakeconfig import HandshakeConfig
from p2pnet._peertypes import PeerConfig
from p2pnet.errors import HandshakeTimeout
from p2pnet.testing.scenarios import SITE_KINDS, run_pair

#: (title, kind A, kind B, options, the paths we expect (at connect, at
#: the end) and why).  Everything else is as out of the box: the
#: introducer as C{p2pnet introducer --port 3478} runs it (its relay on
#: 3479, a second STUN port on 3480) and peers with default options (their
#: NAT check on).
SCENARIOS = [
    ("two home routers", "full-cone", "port-restricted", {}, ("direct-public", "direct-public"),
     "both NATs keep one public port per socket, so hellos to the public "
     "addresses the introducer saw get through once both sides have sent"),
    ("same LAN, router without hairpinning", "port-restricted", "port-restricted",
     {"same_lan": True}, ("direct-local", "direct-local"),
     "hellos to the public address die in the router, hellos to the local "
     "address arrive directly"),
    ("a NAT that remembers unsolicited packets, with warm-up", "full-cone", "poisoned", {},
     ("direct-public", "direct-public"),
     "B's short-TTL probes open B's NAT before A's first hello arrives"),
    ("the same NAT without warm-up", "full-cone", "poisoned", {"warmup": False}, ("relayed", "relayed"),
     "A's first hello reaches B's NAT before B sent anything; the NAT rejects it "
     "and then keeps rejecting the whole flow: after 3 s without a direct path "
     "both ask the introducer's relay, and the game goes on through it"),
    ("carrier-grade NAT behind a home NAT", "double-nat", "restricted", {},
     ("direct-public", "direct-public"),
     "both layers keep one port per socket; the warm-up dies at the second NAT, "
     "the retransmitted hellos get through"),
    ("a firewall between the sites, opened later", "port-restricted", "port-restricted",
     {"block": True}, ("relayed", "direct-public"),
     "UDP between the two sites is dropped, so the pair falls back to the relay "
     "after 3 s; the connection keeps retrying its direct candidates, and once "
     "the firewall opens it moves to the direct path by itself"),
    ("symmetric NAT against a port-restricted NAT", "symmetric", "port-restricted", {},
     ("direct-public", "direct-public"),
     "the NAT checks show the symmetric NAT uses a new port for every "
     "destination: its side opens many sockets towards the peer while the "
     "other side probes random ports, until a probe meets one of them "
     "(the birthday search)"),
    ("two symmetric NATs", "symmetric", "symmetric", {}, ("relayed", "relayed"),
     "both NATs use a new random port for every destination, so no direct path "
     "can exist: the NAT checks say so and both ask for the relay at once"),
]

#: Virtual seconds the firewall stays closed after the relayed connection
#: is up, then how long the demo watches.
_OPEN_AFTER = 2.0
_WATCH = 15.0


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
        "p2pnet demo: an introducer at 192.0.2.10:3478 on a simulated internet, with its\n"
        "relay and NAT discovery as 'p2pnet introducer --port 3478' runs them; peer A\n"
        "connects to peer B, both with default options.\n"
        "A's link has 5 ms latency, B's 10 ms; times are virtual.\n"
    )
    for title, kind_a, kind_b, options, expected, why in SCENARIOS:
        trace = []
        notes: list[tuple[float, str]] = []
        arguments = dict(options)
        if arguments.pop("warmup", True) is False:
            arguments["peer_config"] = PeerConfig(handshake=HandshakeConfig(warmup=False))
        if options.get("block"):
            arguments["then"] = lambda context, notes=notes: _open_firewall(context, notes)
        result = run_pair(kind_a, kind_b, seed=seed, trace=trace.append, defaults=True, **arguments)
        out.write(f"\n== {title} ==\n")
        if not quiet:
            out.write(f"   A: {_describe(kind_a)}\n")
            b_kind = kind_a if options.get("same_lan") else kind_b
            where = "on A's LAN" if options.get("same_lan") else ""
            out.write(f"   B: {_describe(b_kind)} {where}\n")
            for line in _timeline(result, notes):
                out.write(f"   {line}\n")
            out.write(f"   packets: {_packet_summary(trace)}\n")
        first = next((e.path.value for _, side, e in result.events if side == "A" and e.kind == "connected"), None)
        if result.connected:
            outcome = f"connected over {first} in {result.connect_time * 1000:.0f} ms"
            if result.path != first:
                outcome += f", then moved to {result.path}"
        elif hasattr(result.outcome_a, "check") and result.outcome_a.check(HandshakeTimeout):
            outcome = "no path at all (HandshakeTimeout)"
        else:
            outcome = f"unexpected: {result.outcome_a}"
        ok = result.connected and (first, result.path) == expected
        surprises += not ok
        out.write(f"   => {outcome}{'' if ok else '   (NOT AS EXPECTED)'}\n")
        out.write(f"      why: {why}\n")
    out.write(
        "\nEvery scenario ended as expected.\n" if not surprises
        else f"\n{surprises} scenario(s) did not end as expected.\n"
    )
    return 1 if surprises else 0


def _open_firewall(context, notes: list) -> None:
    """
    The C{block} scenario's second act: open the firewall a little after
    the relayed connection is up, and watch the path move.
    """
    context.run(_OPEN_AFTER)
    notes.append((context.clock.seconds(), "the firewall between the sites opens"))
    context.network.unblock(context.peer_a.public_address.host, context.peer_b.public_address.host)
    context.run(_WATCH)


def _timeline(result, notes=()) -> list[str]:
    lines = []
    shown = {"registered", "introduced", "warming", "punching", "reversal", "connected",
             "path-changed", "failed", "birthday", "relaying"}
    events = [(time, side, event) for time, side, event in result.events if event.kind in shown]
    events += [(time, "-", text) for time, text in notes]
    for time, side, event in sorted(events, key=lambda item: item[0]):
        if isinstance(event, str):
            text = event
        elif event.kind == "registered":
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
        elif event.kind == "birthday":
            text = "birthday search: the NAT checks show one side maps per destination"
        elif event.kind == "relaying":
            text = "asks the introducer's relay for a path"
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
