"""
Kernel-lab scenarios for relaying, hard NATs and NAT behaviour discovery
(issues 5 and 6), with the real introducer, peers, C{p2pnet natcheck} and
coturn behind real Linux NATs (L{p2pnet.testing.netlab}).

Like C{tests/test_netlab.py}: they need Linux, root, C{ip} and C{nft}
(and C{turnserver} for the coturn scenario); without them they skip,
except under CI (C{CI=true}), where a missing prerequisite fails.
"""

from __future__ import annotations

import json
import os
import shutil
import time

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from p2pnet.testing.netlab import INTRODUCER_ADDRESS, Lab, LabProcess
from tests.test_netlab import CONNECT_TIMEOUT, PeerScenarioMixin

INTRODUCER_PORT = 9000
#: The introducer's second address (RFC 5780 behaviour discovery).
ALTERNATE_ADDRESS = "192.0.2.11"
ALTERNATE_PORT = 9001
RELAY_PORT = 9100
TURN_PORT = 3478
TURN_USER = "u"
TURN_PASSWORD = "p"
TURN_REALM = "lab"

_BLOCK_RULESET = """\
table ip p2lab_block {{
    chain forward {{
        type filter hook forward priority filter; policy accept;
        ip saddr {a} ip daddr {b} meta l4proto udp drop
        ip saddr {b} ip daddr {a} meta l4proto udp drop
    }}
}}
"""


class RelayScenarios(PeerScenarioMixin, SynchronousTestCase):
    """
    Real peers that cannot (or may not) reach each other directly end up
    relayed, and C{p2pnet natcheck} classifies the lab's NATs.
    """

    # -- helpers ----------------------------------------------------------

    def start_introducer(self, *options: str, rfc5780: bool = False,
                         relay: bool = False) -> LabProcess:
        """
        Start the introducer on 192.0.2.10:9000; with C{rfc5780} also as a
        behaviour-discovery server (second address 192.0.2.11, second
        port 9001), with C{relay} with a p2pnet relay on port 9100.
        """
        arguments = ["introducer", "--port", str(INTRODUCER_PORT),
                     "--interface", INTRODUCER_ADDRESS, *options]
        if rfc5780:
            self.add_alternate_address()
            arguments += ["--stun-alternate-ip", ALTERNATE_ADDRESS,
                          "--stun-alternate-port", str(ALTERNATE_PORT)]
        if relay:
            arguments += ["--relay-port", str(RELAY_PORT)]
        elif "--relay" not in options:
            arguments += ["--no-relay"]
        introducer = self.lab.spawn("introducer", Lab.p2pnet_argv(*arguments))
        self.processes.append(introducer)
        expected = 4 if rfc5780 else 1
        started = [0]

        def listening(line: str) -> bool:
            if "listening" in line and "relay" not in line.lower():
                started[0] += 1
            return started[0] >= expected

        self.check(introducer.wait_for_line(listening, CONNECT_TIMEOUT),
                   "the introducer did not start")
        return introducer

    def connect(self, first: str, second: str, *options: str,
                timeout: float = CONNECT_TIMEOUT,
                ) -> tuple[LabProcess, LabProcess, dict, dict]:
        """
        Start peer C{second}, then C{first} with C{--connect second}
        (the introducer must be running); wait until both report
        C{connected} and each has received the other's datagrams.
        """
        return self.connect_named(first, second, first, second, *options,
                                  timeout=timeout)

    def assert_relayed(self, *events: dict, via: str | None = None) -> None:
        """
        Every C{connected} event in C{events} reports a relayed path (and,
        with C{via}, that address).
        """
        for event in events:
            self.check(event["path"] == "relayed",
                       f"expected a relayed path, got {event}")
            if via is not None:
                self.check(event["address"] == via,
                           f"expected a path through {via}, got {event}")

    def assert_not_stuck(self, *processes: LabProcess) -> None:
        """
        No peer reported a failed or lost connection.
        """
        for process in processes:
            bad = [e for e in process.events
                   if e.get("event") in ("failed", "lost", "error")]
            self.check(bad == [], f"{process.host}: {bad}")

    def block_udp_between(self, first: str, second: str) -> None:
        """
        Drop UDP between two sites' public addresses in the core, both
        ways; traffic to and from the introducer is untouched.
        """
        self.lab.nft(self.lab.core_namespace, _BLOCK_RULESET.format(
            a=self.lab.public_address_of(first),
            b=self.lab.public_address_of(second)))

    def start_coturn(self, rfc5780: bool = False) -> str:
        """
        Start coturn on the introducer host, port 3478 (long-term
        credentials, user C{u}, realm C{lab}, relay ports 49152-49252);
        with C{rfc5780} it listens on the second address too, which makes
        it an RFC 5780 server.

        @return: the path of a file holding the TURN password.
        """
        turnserver = shutil.which("turnserver")
        if turnserver is None:
            if os.environ.get("CI") == "true":
                self.fail("CI=true and turnserver (coturn) is not installed")
            raise SkipTest("turnserver (coturn) is not installed")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        password_file = os.path.join(directory, "turn-password")
        with open(password_file, "w") as f:
            f.write(TURN_PASSWORD + "\n")
        listening = ["--listening-ip", INTRODUCER_ADDRESS]
        if rfc5780:
            self.add_alternate_address()
            listening += ["--listening-ip", ALTERNATE_ADDRESS]
        coturn = self.lab.spawn("introducer", [
            turnserver, "-n", "--no-cli", "--no-tls", "--no-dtls",
            *listening, "--listening-port", str(TURN_PORT),
            "--relay-ip", INTRODUCER_ADDRESS,
            "--min-port", "49152", "--max-port", "49252",
            "--lt-cred-mech", "--user", f"{TURN_USER}:{TURN_PASSWORD}",
            "--realm", TURN_REALM,
            "--userdb", os.path.join(directory, "turndb"),
            "--pidfile", os.path.join(directory, "turnserver.pid"),
            "--log-file", "stdout", "--simple-log"])
        self.processes.append(coturn)
        self.check(self.wait_listening("introducer", TURN_PORT),
                   "coturn did not start listening")
        return password_file

    def add_alternate_address(self) -> None:
        """
        Give the introducer host its second address, 192.0.2.11.
        """
        if getattr(self, "_alternate_added", False):
            return
        self.lab.execute("introducer", [
            "ip", "addr", "add", f"{ALTERNATE_ADDRESS}/24", "dev", "eth0"],
            check=True)
        self._alternate_added = True

    def wait_listening(self, host: str, port: int) -> bool:
        """
        Wait until something listens on UDP C{port} in C{host}'s namespace.
        """
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while time.monotonic() < deadline:
            result = self.lab.execute(host, ["ss", "-Hlun", f"sport = :{port}"])
            if result.stdout.strip():
                return True
            time.sleep(0.1)
        return False

    def natcheck(self, host: str, port: int = INTRODUCER_PORT) -> dict:
        """
        Run C{p2pnet natcheck --json} against 192.0.2.10:C{port} on
        C{host}; return its report.
        """
        result = self.lab.execute(host, Lab.p2pnet_argv(
            "natcheck", "--stun", f"{INTRODUCER_ADDRESS}:{port}",
            "--json"), timeout=2 * CONNECT_TIMEOUT)
        self.check(result.returncode == 0,
                   f"natcheck on {host} failed ({result.returncode}):\n"
                   f"{result.stdout}{result.stderr}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    # -- 1. natcheck against the RFC 5780 introducer ----------------------

    def assert_natcheck_classifies(self, port: int) -> None:
        """
        Behind the lab's C{cone} router, C{p2pnet natcheck --json} against
        the RFC 5780 server on 192.0.2.10:C{port} reports
        endpoint-independent mapping (port preserved) and
        address-and-port-dependent filtering; behind the C{symmetric}
        (C{fully-random}) router, address-and-port-dependent mapping.
        Both see their router's public address and no hairpinning.
        """
        cone = self.natcheck("alice", port)
        symmetric = self.natcheck("bob", port)
        report = json.dumps([cone, symmetric], indent=1)
        for result in (cone, symmetric):
            self.assertTrue(result["rfc5780"], report)
            self.assertTrue(result["behind_nat"], report)
            self.assertFalse(result["hairpin"], report)
            self.assertEqual(result["filtering"],
                             "address-and-port-dependent", report)
        self.assertEqual(cone["mapping"], "endpoint-independent", report)
        self.assertTrue(cone["port_preserved"], report)
        self.assertEqual(symmetric["mapping"], "address-and-port-dependent",
                         report)
        self.assertEqual(cone["public_address"].rpartition(":")[0],
                         self.lab.public_address_of("left"), report)
        self.assertEqual(symmetric["public_address"].rpartition(":")[0],
                         self.lab.public_address_of("right"), report)

    def add_cone_and_symmetric(self) -> None:
        self.lab.add_site("left", "cone")
        self.lab.add_site("right", "symmetric")
        self.lab.add_host("left", "alice")
        self.lab.add_host("right", "bob")

    def test_natcheck_against_introducer(self) -> None:
        """
        The introducer runs as an RFC 5780 server (two addresses, two
        ports); natcheck classifies the lab's cone and symmetric NATs.
        """
        self.add_cone_and_symmetric()
        self.start_introducer(rfc5780=True)
        self.assert_natcheck_classifies(INTRODUCER_PORT)

    def test_natcheck_against_coturn(self) -> None:
        """
        coturn listening on both of the introducer host's addresses is an
        RFC 5780 server too; natcheck classifies the same NATs against it.
        """
        self.add_cone_and_symmetric()
        self.start_coturn(rfc5780=True)
        self.assert_natcheck_classifies(TURN_PORT)

    # -- 2-4. relayed paths -----------------------------------------------

    def test_symmetric_to_symmetric_relayed(self) -> None:
        """
        Two hosts behind symmetric (C{fully-random}) NATs cannot punch a
        direct path; they end relayed through the introducer's p2pnet
        relay (never stuck), and datagrams flow both ways.
        """
        self.lab.add_site("left", "symmetric")
        self.lab.add_site("right", "symmetric")
        self.lab.add_host("left", "alice")
        self.lab.add_host("right", "bob")
        self.start_introducer(relay=True)
        first, second, alice, bob = self.connect("alice", "bob")
        self.assert_relayed(alice, bob,
                            via=f"relay {INTRODUCER_ADDRESS}:{RELAY_PORT}")
        self.assert_not_stuck(first, second)

    def test_blocked_udp_relayed_through_p2pnet_relay(self) -> None:
        """
        With UDP between the two sites' public addresses dropped in the
        core (both ways), two cone-NATed hosts end relayed through the
        introducer's p2pnet relay, and datagrams flow.
        """
        self.lab.add_site("left", "cone")
        self.lab.add_site("right", "cone")
        self.lab.add_host("left", "alice")
        self.lab.add_host("right", "bob")
        self.block_udp_between("left", "right")
        self.start_introducer(relay=True)
        first, second, alice, bob = self.connect("alice", "bob")
        self.assert_relayed(alice, bob,
                            via=f"relay {INTRODUCER_ADDRESS}:{RELAY_PORT}")
        self.assert_not_stuck(first, second)

    def test_blocked_udp_relayed_through_coturn(self) -> None:
        """
        The same blocked pair, with coturn running on the introducer host
        (long-term credentials, its own port) and no p2pnet relay: the
        peers (C{--turn}) end relayed through coturn, and datagrams flow.
        """
        password_file = self.start_coturn()
        self.lab.add_site("left", "cone")
        self.lab.add_site("right", "cone")
        self.lab.add_host("left", "alice")
        self.lab.add_host("right", "bob")
        self.block_udp_between("left", "right")
        self.start_introducer()
        _, _, alice, bob = self.connect(
            "alice", "bob", "--turn", f"{INTRODUCER_ADDRESS}:{TURN_PORT}",
            "--turn-user", TURN_USER, "--turn-password-file", password_file)
        self.assert_relayed(alice, bob)
        for event in (alice, bob):
            # "TURN to PEER" (sending through our own allocation) or
            # "TURN relay RELAY-ADDRESS" (the peer's allocation).
            self.check("TURN" in event["address"],
                       f"not relayed through coturn: {event}")

    # -- 5. easy <-> hard: the birthday search ----------------------------

    #: Attempts at a direct cone <-> symmetric path before giving up.
    birthday_attempts = 3

    def test_cone_to_symmetric_birthday(self) -> None:
        """
        A host behind a cone NAT and one behind a symmetric
        (C{fully-random}) NAT, both checking their NAT against the RFC
        5780 introducer (C{--nat-check}), connect through the real kernel:
        every attempt ends connected (direct or relayed, never stuck) with
        datagrams flowing, and at least one of up to three attempts finds
        the direct path with the birthday search.  (Measured: see
        docs/netlab.md, "Hard NATs".)
        """
        self.add_cone_and_symmetric()
        self.start_introducer(rfc5780=True, relay=True)
        outcomes = []
        for attempt in range(self.birthday_attempts):
            alice, bob, on_alice, on_bob = self.connect_named(
                "alice", "bob", f"alice{attempt}", f"bob{attempt}",
                "--nat-check")
            self.assert_not_stuck(alice, bob)
            self.check(any(e.get("event") == "birthday" for e in bob.events),
                       "the symmetric side did not start the birthday search")
            outcomes.append((on_alice["path"], on_bob["path"]))
            alice.stop()
            bob.stop()
            if all(path.startswith("direct") for path in outcomes[-1]):
                break
        self.check(any(all(path.startswith("direct") for path in outcome)
                       for outcome in outcomes),
                   f"no direct path in {len(outcomes)} attempts: {outcomes}")
