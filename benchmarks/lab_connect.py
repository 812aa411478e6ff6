"""
Kernel lab: time from "connect" to the first application datagram
received, p2pnet vs aioice (a real ICE implementation), in the SAME lab.

    python -m benchmarks.lab_connect [--trials 10]      (as root)

Lab (L{p2pnet.testing.netlab}): two sites, each behind a C{cone} router
(nftables C{masquerade}: endpoint-independent mapping, port-restricted
filtering), one host each (alice 10.1.0.10, bob 10.2.0.10); on the public
segment the p2pnet introducer (192.0.2.10:9000) and, on the same host,
coturn on 192.0.2.10:3478 (started as C{tests/test_netlab_relay.py}'s
C{start_coturn} does), which aioice uses as its STUN server.  Every
process is started fresh for each trial; trials alternate p2pnet and
aioice (which one goes first alternates too).  All timestamps are
C{time.monotonic()} taken inside the peers' processes: CLOCK_MONOTONIC is
one system-wide clock (network namespaces do not change it), so the two
peers' values are compared directly.

Timed intervals
===============

p2pnet (the library, C{PeerConfig()} defaults = what C{p2pnet peer}
uses; a small driver in this module, C{--p2pnet-peer}, runs in each lab
host): both peers start and register with the introducer first (not
timed, as in the tests).  Then the benchmark writes C{connect bobN} to
alice's stdin.

  - B{p2pnet}: from alice's C{endpoint.connect("bobN")} call (stamped just
    before the call) to the first application datagram delivered to
    either side's C{PeerProtocol.datagram_received}.  Each side sends one
    datagram from C{connection_made}, i.e. as soon as its connection is
    up.  Includes the introducer round trip (Introduce -> Introduction to
    both), the warm-up and the hello exchange.

aioice (C{benchmarks/_aioice_peer.py}, one per lab host; alice is
controlling): each peer creates its C{aioice.Connection(stun_server=
("192.0.2.10", 3478))} (not timed), then the benchmark writes C{gather}
to both; each gathers host + server-reflexive candidates and prints them
with its ufrag/pwd; the benchmark (the signalling channel) waits for both
and writes each side's line to the other's stdin; each adds the remote
candidates plus end-of-candidates and runs C{await connect()}; when
C{connect()} returns it sends one datagram (C{connection.send}); the
interval ends when either side's application gets the other's datagram
from C{connection.recv()}.

  - B{aioice (1)}: from the earlier of the two C{gather_candidates()}
    starts (the moment the application decides to connect: ICE must
    gather and signal before it can check) to the first datagram
    received.  This is the figure comparable with p2pnet's, which also
    includes its "signalling" (the introducer round trip).  Best case for
    ICE: both sides gather at the same moment and signalling is a local
    pipe (about a millisecond), not a server round trip.
  - B{aioice (2)}: from the earlier of the two C{connect()} starts (both
    sides already hold each other's candidates; the benchmark writes both
    lines back to back, so the starts are within a few ms, reported) to
    the first datagram received: the connectivity-check phase alone.

Cross-check with the real CLI (C{p2pnet peer --json}, unchanged): the
passive peer registers, then the active one is started with C{--connect}.
The CLI prints C{t} (seconds since its start, 1 ms resolution) and calls
C{endpoint.connect} in the same reactor turn in which C{start()} fires,
right after printing C{registered}; so on the active side
C{connected.t - registered.t} is request -> connected.  Its first
datagram is NOT a protocol figure: C{--send} sends from a 1 s
C{LoopingCall} started with C{now=False} (see C{p2pnet/_peercli.py}), so
the first datagram waits for the next tick of either side's loop.

No added latency: this kernel has no netem, and every lab link is a veth
pair (RTTs well under a millisecond), so both sides' times are dominated
by their timers, not by the network.

Which timers dominate
=====================

p2pnet (C{HandshakeConfig} defaults, C{p2pnet/_handshake.py}):
2 TTL-2 probes per candidate, then the adaptive pause before the first
hello: the introduction's C{lag} (how much longer the other side's
measured round trip to the introducer is, here about 0) plus
C{warmup_margin=0.001}; C{hello_intervals=(0.1, 0.2, 0.3, 0.4, 0.5)} (only used if
the first hellos are lost), C{reversal_after=2.0}, C{relay_after=3.0},
C{timeout=10.0}.  A hello received is answered and triggers a hello back
at once (no wait for the retransmit timer).  Without loss: introducer
RTT + lag + 1 ms + peer RTT, i.e. a few milliseconds of scheduling.

aioice (version printed in the JSON; read in site-packages, 0.13.0; the
trials' JSON holds aioice's own INFO log, which shows each step below):
  - C{ice.py} C{Connection.connect}: starts one check per
    C{_check_periodic()} call and then C{await asyncio.sleep(0.02)}: the
    Ta pacing timer, 20 ms per check.  Pairs are our host candidate x
    each remote candidate (a server-reflexive candidate shares its host
    socket): host -> host (10.2.0.10, unreachable: the core has no route
    to a NAT's LAN) is checked at once, host -> srflx (198.18.2.2) 20 ms
    later, on both sides within a fraction of a millisecond.
  - C{stun.py}: C{RETRY_RTO = 0.5}, C{RETRY_MAX = 6}; a C{Transaction} is
    re-sent after 0.5 s, then 1, 2, 4 ... s.  Whichever side's first
    check towards the other's public address reaches the far
    port-restricted NAT before that side's own check has left it is
    dropped (the hole is not open yet); with ~0.1 ms paths and the two
    checks leaving within ~0.2 ms of each other, one of them is dropped
    in practice every time, and it is re-sent only after 500 ms.
  - C{ice.py} C{check_incoming}: an incoming check on a pair that is
    In-Progress starts nothing (only Waiting pairs are started), so the
    dropped check is not re-sent when the peer's check arrives (RFC 8445
    section 7.3.1.4 asks for a triggered check here).  With aggressive
    nomination (C{nominate = self.ice_controlling and not
    self.remote_is_lite} in C{check_start}) the side whose check got
    through completes at once only if it is the controlling one; the
    controlled side completes when its own check has succeeded and the
    controlling side's C{USE-CANDIDATE} check has arrived.  Either way one
    C{connect()} waits for the 500 ms retransmission, and the first
    datagram reaches an application only then (the other side's
    datagram may reach the C{Connection} earlier, but C{recv()} cannot
    return it before C{connect()} completes).
  - Gathering: C{server_reflexive_candidate} is one STUN transaction
    (same 0.5 s RTO, no loss here, so one RTT); C{get_component_candidates}
    waits at most C{timeout=5} s.
  - After connecting: consent freshness every C{CONSENT_INTERVAL = 5} s
    (x 0.8-1.2), C{CONSENT_FAILURES = 6}: outside the timed interval.

So the lab is a worst case for aioice's missing triggered check: on a
path whose one-way delay exceeds the skew between the two sides' first
checks, both would pass and aioice would finish in about 20 ms + one RTT.
p2pnet's warm-up (TTL-2 probes that open the local NAT before any hello,
and a pause sized by the introducer's round-trip measurements) makes its
time independent of that skew.

Results go to C{benchmarks/results/lab_connect.json} (every trial's raw
timestamps, relative to the trial's start event).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

INTRODUCER_PORT = 9000
STUN_PORT = 3478
#: Seconds to wait for anything that should happen.
WAIT = 20.0
#: Pause after both peers are ready before the timed part starts.
SETTLE = 0.3
GOAL = 0.5


# -- the p2pnet driver (runs inside a lab host) ------------------------------


def p2pnet_peer(argv: list[str]) -> int:
    """
    C{python -m benchmarks.lab_connect --p2pnet-peer NAME INTRODUCER}: a
    p2pnet endpoint with the default C{PeerConfig} (what C{p2pnet peer}
    uses) that prints JSON events with C{mono} (C{time.monotonic()}),
    connects when stdin says C{connect PEER}, sends one datagram on every
    connection as soon as it is up, and stops on C{quit} or end of input.
    """
    name, introducer = argv
    from twisted.internet import reactor, stdio
    from twisted.protocols.basic import LineReceiver

    from p2pnet.address import Address
    from p2pnet.endpoint import PeerConfig, PeerEndpoint, PeerFactory, PeerProtocol

    def emit(event: str, **fields: object) -> None:
        record = {"event": event, "mono": time.monotonic()}
        record.update(fields)
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    class Sender(PeerProtocol):
        def __init__(self, peer: str) -> None:
            self.peer = peer

        def connection_made(self, connection) -> None:
            super().connection_made(connection)
            connection.send(f"from-{name}".encode())
            emit("sent", peer=self.peer)

        def datagram_received(self, data: bytes) -> None:
            emit("datagram", peer=self.peer, text=data.decode("utf-8", "replace"))

    class Factory(PeerFactory):
        def build_protocol(self, peer_id: str) -> PeerProtocol:
            return Sender(peer_id)

    endpoint = PeerEndpoint(reactor, Address.parse(introducer), name, factory=Factory(), config=PeerConfig())

    def status(event) -> None:
        emit(
            event.kind,
            peer=event.peer_id,
            path=event.path.value if event.path is not None else None,
            address=str(event.address) if event.address is not None else None,
            elapsed=event.elapsed,
        )

    endpoint.add_observer(status)

    def stop() -> None:
        if reactor.running:
            endpoint.stop().addBoth(lambda _: reactor.stop() if reactor.running else None)

    class Commands(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            words = line.decode().split()
            if words[:1] == ["connect"]:
                emit("request", peer=words[1])
                d = endpoint.connect(words[1], Sender(words[1]))
                d.addErrback(lambda f: emit("error", message=f"{type(f.value).__name__}: {f.value}"))
            elif words[:1] == ["quit"]:
                stop()

        def connectionLost(self, reason=None) -> None:
            stop()

    def started(_) -> None:
        stdio.StandardIO(Commands())

    def failed(f) -> None:
        emit("error", message=f"{type(f.value).__name__}: {f.value}")
        reactor.stop()

    reactor.callWhenRunning(lambda: endpoint.start().addCallbacks(started, failed))
    reactor.run()
    return 0


# -- statistics ---------------------------------------------------------------


def p90(values: list[float]) -> float:
    """
    The 90th percentile, linear interpolation between closest ranks
    (C{statistics.quantiles(..., method="inclusive")}).
    """
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p90": p90(values),
        "min": min(values),
        "max": max(values),
    }


# -- the benchmark ------------------------------------------------------------


class Failed(Exception):
    pass


class Bench:
    def __init__(self, lab, python: str) -> None:
        self.lab = lab
        self.python = python
        self.introducer = f"192.0.2.10:{INTRODUCER_PORT}"

    # setup

    def start_servers(self, directory: str) -> None:
        from p2pnet.testing.netlab import INTRODUCER_ADDRESS, Lab

        lab = self.lab
        lab.add_site("left", "cone")
        lab.add_site("right", "cone")
        lab.add_host("left", "alice")
        lab.add_host("right", "bob")
        introducer = lab.spawn(
            "introducer",
            Lab.p2pnet_argv(
                "introducer", "--port", str(INTRODUCER_PORT), "--interface", INTRODUCER_ADDRESS, "--no-relay"
            ),
        )
        if introducer.wait_for_line(lambda line: "listening" in line, WAIT) is None:
            raise Failed("the introducer did not start:\n" + introducer.transcript(40))
        # As tests/test_netlab_relay.py's start_coturn (aioice only uses
        # its STUN Binding answers).
        password = "p"
        self.coturn = lab.spawn(
            "introducer",
            [
                shutil.which("turnserver"), "-n", "--no-cli", "--no-tls", "--no-dtls",
                "--listening-ip", INTRODUCER_ADDRESS, "--listening-port", str(STUN_PORT),
                "--relay-ip", INTRODUCER_ADDRESS, "--min-port", "49152", "--max-port", "49252",
                "--lt-cred-mech", "--user", f"u:{password}", "--realm", "lab",
                "--userdb", os.path.join(directory, "turndb"),
                "--pidfile", os.path.join(directory, "turnserver.pid"),
                "--log-file", "stdout", "--simple-log",
            ],
        )
        deadline = time.monotonic() + WAIT
        while True:
            result = lab.execute("introducer", ["ss", "-Hlun", f"sport = :{STUN_PORT}"])
            if result.stdout.strip():
                break
            if time.monotonic() > deadline:
                raise Failed("coturn did not start listening:\n" + self.coturn.transcript(40))
            time.sleep(0.1)

    def _stop(self, *processes) -> None:
        for process in processes:
            try:
                if process.process.stdin is not None:
                    process.process.stdin.write("quit\n")
                    process.process.stdin.flush()
            except (OSError, ValueError):
                pass
        for process in processes:
            if process.wait_exit(3.0) is None:
                process.stop(2.0)

    @staticmethod
    def _need(process, event: str, timeout: float = WAIT, **fields) -> dict:
        found = process.wait_for_event(event, timeout, **fields)
        if found is None:
            raise Failed(f"{process.host}: no {event!r} event\n" + process.transcript(40))
        return found

    @staticmethod
    def _write(process, line: str) -> None:
        process.process.stdin.write(line + "\n")
        process.process.stdin.flush()

    # p2pnet, library driver

    def p2pnet_trial(self, n: int) -> dict:
        a_name, b_name = f"alice{n}", f"bob{n}"
        argv = [self.python, "-m", "benchmarks.lab_connect", "--p2pnet-peer"]
        bob = self.lab.spawn("bob", argv + [b_name, self.introducer])
        alice = self.lab.spawn("alice", argv + [a_name, self.introducer])
        try:
            self._need(bob, "registered")
            self._need(alice, "registered")
            time.sleep(SETTLE)
            self._write(alice, f"connect {b_name}")
            request = self._need(alice, "request")
            at_bob = self._need(bob, "datagram", peer=a_name)
            at_alice = self._need(alice, "datagram", peer=b_name)
            t0 = request["mono"]
            events = {
                "alice": {e["event"]: e for e in reversed(alice.events)},
                "bob": {e["event"]: e for e in reversed(bob.events)},
            }
            first = min(at_bob["mono"], at_alice["mono"])
            ac, bc = events["alice"]["connected"], events["bob"]["connected"]
            return {
                "first_datagram": first - t0,
                "alice_connected": ac["mono"] - t0,
                "bob_connected": bc["mono"] - t0,
                "alice_introduced": events["alice"]["introduced"]["mono"] - t0,
                "bob_introduced": events["bob"]["introduced"]["mono"] - t0,
                "datagram_at_bob": at_bob["mono"] - t0,
                "datagram_at_alice": at_alice["mono"] - t0,
                "alice_elapsed": ac.get("elapsed"),
                "path": [ac.get("path"), bc.get("path")],
            }
        finally:
            self._stop(alice, bob)

    # p2pnet, the real CLI (cross-check)

    def cli_trial(self, n: int) -> dict:
        from p2pnet.testing.netlab import Lab

        a_name, b_name = f"clialice{n}", f"clibob{n}"
        common = ["peer", "--introducer", self.introducer, "--json"]
        bob = self.lab.spawn("bob", Lab.p2pnet_argv(*common, "--name", b_name, "--send", f"from-{b_name}"))
        alice = None
        try:
            self._need(bob, "registered")
            time.sleep(SETTLE)
            alice = self.lab.spawn(
                "alice",
                Lab.p2pnet_argv(*common, "--name", a_name, "--connect", b_name, "--send", f"from-{a_name}"),
            )
            registered = self._need(alice, "registered")
            connected = self._need(alice, "connected", peer=b_name)
            datagram = self._need(alice, "datagram", peer=b_name)
            return {
                "connected": connected["t"] - registered["t"],
                "first_datagram_at_alice": datagram["t"] - registered["t"],
                "elapsed": connected.get("elapsed"),
                "path": connected.get("path"),
            }
        finally:
            self._stop(*(p for p in (alice, bob) if p is not None))

    # aioice

    def aioice_trial(self, n: int) -> dict:
        argv = [self.python, "-m", "benchmarks._aioice_peer", "--log", "--stun", f"192.0.2.10:{STUN_PORT}"]
        alice = self.lab.spawn("alice", argv + ["--controlling"])
        bob = self.lab.spawn("bob", argv + ["--controlled"])
        try:
            self._need(alice, "ready")
            ready = self._need(bob, "ready")
            time.sleep(SETTLE)
            self._write(alice, "gather")
            self._write(bob, "gather")
            a_line = alice.wait_for_line(lambda l: '"candidates"' in l, WAIT)
            b_line = bob.wait_for_line(lambda l: '"candidates"' in l, WAIT)
            if a_line is None or b_line is None:
                raise Failed("no candidates\n" + alice.transcript(40) + "\n" + bob.transcript(40))
            self._write(bob, a_line)
            self._write(alice, b_line)
            at_bob = self._need(bob, "datagram")
            at_alice = self._need(alice, "datagram")
            a_cand, b_cand = json.loads(a_line), json.loads(b_line)
            a_conn, b_conn = self._need(alice, "connect"), self._need(bob, "connect")
            a_done, b_done = self._need(alice, "connected"), self._need(bob, "connected")
            t_decide = min(a_cand["gather_start"], b_cand["gather_start"])
            t_connect = min(a_conn["mono"], b_conn["mono"])
            first = min(at_bob["mono"], at_alice["mono"])
            arrivals = [e["arrived"] for e in (at_bob, at_alice) if e.get("arrived")]
            self._stop(alice, bob)
            time.sleep(0.1)  # let the reader threads drain stderr (the log)
            return {
                "from_gather": first - t_decide,
                "from_connect": first - t_connect,
                "gather": [a_cand["mono"] - a_cand["gather_start"], b_cand["mono"] - b_cand["gather_start"]],
                "connect_start": [a_conn["mono"] - t_decide, b_conn["mono"] - t_decide],
                "connect_spread": abs(a_conn["mono"] - b_conn["mono"]),
                "connect_duration": [a_done["mono"] - a_conn["mono"], b_done["mono"] - b_conn["mono"]],
                "datagram_at_bob": at_bob["mono"] - t_decide,
                "datagram_at_alice": at_alice["mono"] - t_decide,
                "arrived_at_bob": (at_bob["arrived"] - t_decide) if at_bob.get("arrived") else None,
                "arrived_at_alice": (at_alice["arrived"] - t_decide) if at_alice.get("arrived") else None,
                "candidates": [a_cand["candidates"], b_cand["candidates"]],
                "pair": [a_done.get("pair"), b_done.get("pair")],
                "first_arrival": (min(arrivals) - t_decide) if arrivals else None,
                "aioice": ready.get("aioice"),
                "log": self._aioice_log(t_decide, alice, bob),
            }
        finally:
            self._stop(alice, bob)


    @staticmethod
    def _aioice_log(t0: float, *processes) -> list[str]:
        """
        aioice's INFO lines (C{--log}), both peers merged in time order,
        as C{"+MS HOST message"} relative to C{t0}.
        """
        lines = []
        for process in processes:
            for line in process.errors:
                stamp, _, message = line.partition(" ")
                try:
                    at = float(stamp)
                except ValueError:
                    continue
                lines.append((at, f"{(at - t0) * 1000:+8.1f} ms {process.host:5} {message}"))
        return [text for _, text in sorted(lines)]


def _other_labs() -> list[str]:
    import subprocess

    from p2pnet.testing.netlab import PREFIX

    result = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    mine = f"{PREFIX}{os.getpid()}-"
    return sorted(
        {
            line.split()[0].rsplit("-", 1)[0]
            for line in result.stdout.splitlines()
            if line.startswith(PREFIX) and not line.startswith(mine)
        }
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--p2pnet-peer"]:
        return p2pnet_peer(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.lab_connect",
        description="Kernel lab: connect -> first datagram, p2pnet vs aioice (needs root).",
    )
    parser.add_argument("--trials", type=int, default=10, help="trials of each kind (default 10)")
    parser.add_argument("--no-cli", action="store_true", help="skip the p2pnet peer CLI cross-check")
    parser.add_argument("--name", default="lab_connect", help="results file name")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")

    from p2pnet.testing.netlab import Lab, missing_prerequisites

    if os.geteuid() != 0:
        print("lab_connect needs root: the kernel NAT lab creates network namespaces "
              "and nftables rules (run it with sudo)", file=sys.stderr)
        return 1
    reason = missing_prerequisites()
    if reason is not None:
        print(f"lab_connect: {reason}", file=sys.stderr)
        return 1
    if shutil.which("turnserver") is None:
        print("lab_connect needs coturn's turnserver (apt-get install -y coturn)", file=sys.stderr)
        return 1
    try:
        import aioice
    except ImportError:
        print("lab_connect needs aioice (pip install aioice)", file=sys.stderr)
        return 1

    others_before = _other_labs()
    if others_before:
        print(f"note: other labs are running now ({', '.join(others_before)}); "
              "they share the CPUs", file=sys.stderr)
    kinds = ["p2pnet", "aioice"]
    trials: dict[str, list] = {"p2pnet": [], "aioice": [], "cli": []}
    failures: list[dict] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lab_connect-") as directory:
        lab = Lab()
        try:
            bench = Bench(lab, sys.executable)
            bench.start_servers(directory)
            for n in range(args.trials):
                order = kinds if n % 2 == 0 else kinds[::-1]
                if not args.no_cli:
                    order = order + ["cli"]
                for kind in order:
                    run = {"p2pnet": bench.p2pnet_trial, "aioice": bench.aioice_trial, "cli": bench.cli_trial}[kind]
                    try:
                        result = run(n)
                    except Failed as e:
                        failures.append({"kind": kind, "trial": n, "error": str(e)})
                        print(f"trial {n} {kind}: FAILED\n{e}", file=sys.stderr)
                        continue
                    trials[kind].append(result)
                    shown = {
                        "p2pnet": lambda r: f"first datagram {r['first_datagram'] * 1000:.1f} ms",
                        "aioice": lambda r: (f"from gather {r['from_gather'] * 1000:.1f} ms, "
                                             f"from connect() {r['from_connect'] * 1000:.1f} ms"),
                        "cli": lambda r: f"registered -> connected {r['connected'] * 1000:.0f} ms",
                    }[kind](result)
                    print(f"trial {n} {kind}: {shown}", flush=True)
        finally:
            lab.close()
    others_after = _other_labs()

    from benchmarks._common import table

    ms = lambda values: [v * 1000 for v in values]  # noqa: E731
    series = {
        "p2pnet: connect() -> first datagram": ms([r["first_datagram"] for r in trials["p2pnet"]]),
        "p2pnet: connect() -> connected (alice)": ms([r["alice_connected"] for r in trials["p2pnet"]]),
        "aioice (1): gather start -> first datagram": ms([r["from_gather"] for r in trials["aioice"]]),
        "aioice (2): connect() start -> first datagram": ms([r["from_connect"] for r in trials["aioice"]]),
        "aioice: gathering (host + srflx), slower side": ms([max(r["gather"]) for r in trials["aioice"]]),
        "aioice: connect() starts, spread": ms([r["connect_spread"] for r in trials["aioice"]]),
        "aioice: connect() duration, controlling (alice)": ms([r["connect_duration"][0] for r in trials["aioice"]]),
        "aioice: connect() duration, controlled (bob)": ms([r["connect_duration"][1] for r in trials["aioice"]]),
        "aioice: gather start -> 1st datagram reaches a Connection": ms(
            [r["first_arrival"] for r in trials["aioice"] if r["first_arrival"] is not None]),
    }
    if trials["cli"]:
        series["p2pnet peer CLI: registered -> connected"] = ms([r["connected"] for r in trials["cli"]])
        series["p2pnet peer CLI: registered -> 1st datagram (1 s --send loop)"] = ms(
            [r["first_datagram_at_alice"] for r in trials["cli"]])
    stats = {name: summary(values) for name, values in series.items()}
    rows = [[name, s["n"], s.get("median"), s.get("p90"), s.get("min"), s.get("max")]
            for name, s in stats.items()]
    print()
    print(table(["interval (ms)", "n", "median", "p90", "min", "max"], rows))

    ratios = {}
    p2p = stats["p2pnet: connect() -> first datagram"]
    for key, label in (("aioice (1): gather start -> first datagram", "vs aioice (1)"),
                       ("aioice (2): connect() start -> first datagram", "vs aioice (2)")):
        other = stats[key]
        if p2p["n"] and other["n"]:
            ratios[label] = {"median": p2p["median"] / other["median"], "p90": p2p["p90"] / other["p90"]}
    print()
    for label, r in ratios.items():
        verdict = "meets" if r["median"] <= GOAL else "fails"
        print(f"p2pnet / aioice, {label[3:]}: median {r['median']:.3f}x, p90 {r['p90']:.3f}x "
              f"(goal <= {GOAL}x on the medians: {verdict})")
    if failures:
        print(f"\n{len(failures)} trial(s) failed (details in the JSON)")

    from benchmarks._common import write_result

    path = write_result(args.name, {
        "trials_per_kind": args.trials,
        "setup": {
            "sites": "left and right, both cone (nftables masquerade), one host each "
                     "(alice 10.1.0.10 behind 198.18.1.2, bob 10.2.0.10 behind 198.18.2.2)",
            "introducer": f"192.0.2.10:{INTRODUCER_PORT} (p2pnet introducer)",
            "stun": f"192.0.2.10:{STUN_PORT} (coturn, aioice's STUN server)",
            "latency": "none added (no netem in this kernel); veth links",
            "p2pnet_config": "PeerConfig() defaults (HandshakeConfig adaptive_warmup: pause = "
                             "introduction lag + warmup_margin 0.001; hello_intervals (0.1, 0.2, 0.3, 0.4, 0.5))",
            "aioice_version": aioice.__version__,
            "aioice_roles": "alice controlling (aggressive nomination), bob controlled",
            "other_labs_seen": sorted(set(others_before) | set(others_after)),
        },
        "definitions": {
            "p2pnet": "alice's endpoint.connect() call -> first application datagram delivered on "
                      "either side (each side sends one as soon as its connection is up); "
                      "both peers registered beforehand",
            "aioice (1)": "earlier of the two gather_candidates() starts -> first datagram returned "
                          "by connection.recv() on either side (each sends one when connect() returns); "
                          "includes gathering and the (local pipe) signalling",
            "aioice (2)": "earlier of the two connect() starts (candidates already exchanged) -> "
                          "first datagram, as above",
            "cli": "p2pnet peer --json --connect on the active side: connected.t - registered.t; "
                   "its first datagram waits for the 1 s --send loop",
        },
        "unit": "ms",
        "stats": stats,
        "ratios": ratios,
        "goal": f"p2pnet median <= {GOAL} x aioice median",
        "trials": trials,
        "failures": failures,
        "duration_s": round(time.monotonic() - started, 1),
    })
    print(f"\nwrote {path}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
