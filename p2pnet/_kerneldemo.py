"""
C{p2pnet demo --kernel}: build a small kernel NAT lab (real Linux NATs in
network namespaces; needs root, C{ip} and C{nft}), run plain UDP sockets,
the real introducer and real peers in it, and tell what happened.
"""

from __future__ import annotations

import os
import time
from typing import IO, Sequence

from p2pnet.testing.netlab import (
    INTRODUCER_ADDRESS,
    Lab,
    LabError,
    LabProcess,
    cleanup_stale,
    missing_prerequisites,
)

INTRODUCER_PORT = 9000
#: The peer runs' introducer, started with defaults only (its relay on the
#: next port, a second STUN port after it).
PEER_INTRODUCER_PORT = 3478
_TIMEOUT = 15.0
_KIND_TEXT = {
    "cone": "masquerade, port-preserving",
    "symmetric": "masquerade fully-random",
    "firewall": "stateful firewall, no NAT",
    "none": "plain router",
    "race-prone": "masquerade, accepts unsolicited UDP to itself",
}


def _peer_available() -> bool:
    import p2pnet
    return os.path.exists(os.path.join(os.path.dirname(p2pnet.__file__),
                                       "_peercli.py"))


def run(out: IO[str]) -> int:
    """
    Build the lab, run the demo, print an account of it to C{out}, tear
    the lab down.

    @return: 0 when everything behaved as expected, 1 otherwise (or when
        the lab cannot run here).
    """
    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    reason = missing_prerequisites()
    if reason is not None:
        say(f"p2pnet demo --kernel: {reason}")
        return 1
    stale = cleanup_stale()
    if stale:
        say(f"(removed {len(stale)} namespaces left by an earlier crashed run)")
    try:
        with Lab() as lab:
            return _demo(lab, say)
    except LabError as e:
        say(f"p2pnet demo --kernel: the lab failed: {e}")
        return 1


def _demo(lab: Lab, say) -> int:
    sites = [("left", "cone", "alice"), ("right", "cone", "bob"),
             ("east", "race-prone", "carol"), ("west", "race-prone", "dave"),
             ("north", "symmetric", "erin"), ("south", "symmetric", "frank")]
    for site, kind, host in sites:
        lab.add_site(site, kind)
        lab.add_host(site, host)
    say("Kernel NAT lab: real netfilter routers in network namespaces "
        f"({lab.core_namespace.rsplit('-', 1)[0]}-*)")
    say(f"  introducer   {INTRODUCER_ADDRESS} on the core's public segment")
    for site, kind, host in sites:
        say(f"  {host:<12} {lab.address_of(host):<12} behind {site!r}: "
            f"{kind} ({_KIND_TEXT[kind]}); public {lab.public_address_of(site)}")
    say("  the core router has no default route: nothing leaves the lab")
    say()
    ok = _plain_race(lab, say)
    if not _peer_available():
        say()
        say("The p2pnet peer program is not available in this build yet; "
            "skipping the peer runs.")
        return 0 if ok else 1
    ok = _peer_runs(lab, say) and ok
    return 0 if ok else 1


def _plain_race(lab: Lab, say) -> bool:
    """
    Show the race-prone routers' race with plain UDP sockets.
    """
    say("1. Plain UDP sockets through the race-prone routers")
    reflector = lab.udp_agent("introducer", INTRODUCER_PORT + 1, reflect=True)
    ok = True
    for warm_up, port in ((False, 4000), (True, 4100)):
        carol = lab.udp_agent("carol", port)
        dave = lab.udp_agent("dave", port + 1)
        carol_public = carol.whoami(INTRODUCER_ADDRESS, reflector.port)
        dave_public = dave.whoami(INTRODUCER_ADDRESS, reflector.port)
        if warm_up:
            dave.send(*carol_public, "warm-up", ttl=2)
            say("   with warm-up: dave first sends a TTL-2 packet towards "
                f"carol's {_endpoint(carol_public)} (it dies in the core);")
        else:
            say("   without warm-up:")
        carol.send(*dave_public, "hello")
        say(f"   carol sends to dave's public {_endpoint(dave_public)} "
            + ("and dave's router matches it to dave's mapping," if warm_up
               else "before dave has sent anything to her,"))
        # Let carol's packet reach dave's router before dave answers.
        deadline = time.monotonic() + 2.0
        while not warm_up and time.monotonic() < deadline:
            if not _have_conntrack() or (
                    f"dport={dave_public[1]} [UNREPLIED]" in lab.conntrack("west")):
                break
        for attempt in range(3):
            dave.send(*carol_public, f"dave{attempt}")
            carol.send(*dave_public, f"carol{attempt}")
        heard_by_carol = carol.wait_received("dave", 1.0)
        heard_by_dave = dave.wait_received("carol", 1.0)
        works = heard_by_carol is not None and heard_by_dave is not None
        if works:
            say(f"   -> they hear each other (dave's packets arrive from "
                f"{heard_by_carol[0]}:{heard_by_carol[1]})")
        else:
            say("   -> neither hears the other: dave's router took carol's "
                "early packet for itself,")
            say("      so dave's own flow was remapped to another port, which "
                "carol's router in turn")
            say("      takes for itself: simultaneous open fails")
        ok = ok and works == warm_up
        carol.stop()
        dave.stop()
    reflector.stop()
    return ok


def _have_conntrack() -> bool:
    return missing_prerequisites(conntrack=True) is None


def _endpoint(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def _peer_runs(lab: Lab, say) -> bool:
    """
    Run the real introducer (C{p2pnet introducer --port 3478}, defaults
    only) and plain peers: cone <-> cone, race-prone <-> race-prone with
    and without warm-up, cone <-> symmetric, symmetric <-> symmetric.
    """
    introducer = lab.spawn("introducer", Lab.p2pnet_argv(
        "introducer", "--port", str(PEER_INTRODUCER_PORT)))
    if introducer.wait_for_line(lambda l: "STUN alt-port listening" in l, _TIMEOUT) is None:
        say("The introducer did not start:")
        say(introducer.transcript())
        return False
    say()
    say(f"The introducer runs as 'p2pnet introducer --port {PEER_INTRODUCER_PORT}' "
        f"(its relay on {PEER_INTRODUCER_PORT + 1}, a second STUN port on "
        f"{PEER_INTRODUCER_PORT + 2}); the peers with default options.")
    ok = True
    number = 2
    for title, first, second, options, expect in (
            ("cone <-> cone", "alice", "bob", (), "direct"),
            ("race-prone <-> race-prone, with warm-up", "carol", "dave",
             ("--port", "5000"), "direct"),
            ("race-prone <-> race-prone, warm-up disabled", "carol", "dave",
             ("--port", "5100", "--no-warmup"), "relayed"),
            ("cone <-> symmetric: the birthday search", "alice", "erin", (), "direct"),
            ("symmetric <-> symmetric", "erin", "frank", (), "relayed")):
        say()
        say(f"{number}. {title}")
        number += 1
        path = _connect(lab, say, first, second, options, expect)
        ok = ok and path is not None and path.startswith(expect)
    introducer.stop()
    return ok


def _connect(lab: Lab, say, first: str, second: str,
             options: Sequence[str], expect: str) -> str | None:
    """
    Connect C{first} to C{second}, print what they report; return the
    path C{first} connected over (None if it did not).
    """
    processes = []

    def peer(host: str, *extra: str) -> LabProcess:
        process = lab.spawn(host, Lab.p2pnet_argv(
            "peer", "--introducer", f"{INTRODUCER_ADDRESS}:{PEER_INTRODUCER_PORT}",
            "--name", host, "--json", "--send", f"hello-from-{host}",
            *options, *extra))
        processes.append(process)
        registered = process.wait_for_event("registered", _TIMEOUT)
        if registered is None:
            say(f"   {host} did not register")
        else:
            say(f"   {host} registered: public {registered.get('public')}, "
                f"local {', '.join(registered.get('local', []))}")
        return process

    try:
        passive = peer(second)
        active = peer(first, "--connect", second)
        connected = active.wait_for_event("connected", _TIMEOUT, peer=second)
        if connected is not None:
            passive.wait_for_event("connected", _TIMEOUT, peer=first)
            passive.wait_for_event("datagram", _TIMEOUT, peer=first)
            active.wait_for_event("datagram", _TIMEOUT, peer=second)
        for process in (active, passive):
            heard = False
            for event in process.events:
                if event.get("event") == "datagram":
                    if heard:
                        continue
                    heard = True
                line = _describe(process.host, event)
                if line:
                    say(f"   {line}")
        if connected is None:
            say(f"   -> no connection within {_TIMEOUT:.0f}s")
            return None
        path = str(connected.get("path", ""))
        if path.startswith("direct"):
            kind = lab.site(lab.host(first).site).kind
            say("   -> a direct path is up and datagrams flow both ways"
                + (" (the warm-up opened each router first)" if "race" in kind else "")
                + (" (found by the birthday search)" if any(
                    e.get("event") == "birthday" for e in active.events) else ""))
        elif expect == "relayed" and "--no-warmup" in options:
            say("   -> relayed: a hello reached the far router before that side's own first "
                "hello had left it;")
            say("      the router took it for itself and remapped its host's flow, so after 3 s "
                "both asked the relay")
        else:
            say("   -> relayed: the NAT checks show both routers pick a new random port per "
                "destination,")
            say("      so no direct path can exist; both asked the introducer's relay at once")
        return path
    finally:
        for process in processes:
            process.stop()


def _describe(host: str, event: dict) -> str | None:
    kind = event.get("event")
    if kind == "introduced":
        return f"{host} was introduced to {event.get('peer')}: candidates " + \
            ", ".join(map(str, event.get("candidates", [])))
    if kind == "connected":
        elapsed = event.get("elapsed")
        took = f" in {elapsed * 1000:.0f} ms" if isinstance(
            elapsed, (int, float)) else ""
        return (f"{host} connected to {event.get('peer')}{took}: "
                f"{event.get('path')} via {event.get('address')}")
    if kind == "datagram":
        return f"{host} received {event.get('text')!r} from {event.get('peer')}"
    if kind == "path-changed":
        return (f"{host}: path to {event.get('peer')} is now "
                f"{event.get('path')} via {event.get('address')}")
    if kind == "birthday":
        return (f"{host}: birthday search with {event.get('peer')} (the NAT checks show "
                "one side maps per destination)")
    if kind == "relaying":
        return f"{host}: asks the introducer's relay for a path to {event.get('peer')}"
    if kind == "reversal":
        return (f"{host}: no answer from {event.get('peer')} yet, asked the "
                "introducer to have it send first (connection reversal)")
    if kind == "lost":
        return f"{host} lost {event.get('peer')}: {event.get('reason')}"
    if kind == "error":
        return f"{host} error {event.get('error')}: {event.get('message')}"
    return None
