"""
IPv6 in the kernel lab (L{p2pnet.testing.ip6lab}): sites whose IPv6 LANs
sit behind stateful ip6 firewalls (no NAT), with the real introducer and
relay on both families and real peers: IPv6 peers punch directly,
dual-stack pairs use the path that validates first and say which family,
and an IPv6-only peer meets an IPv4-only one through the relay.

Like the rest of the lab: skipped without root, C{ip} or C{nft}, except
under CI (C{CI=true}), where that fails.
"""

from __future__ import annotations

import sys

from twisted.trial.unittest import SynchronousTestCase

from p2pnet.testing.ip6lab import INTRODUCER6, add_ipv6, add_ipv6_host, enable_ipv6
from p2pnet.testing.netlab import INTRODUCER_ADDRESS, Lab, LabProcess

from tests.test_netlab import CONNECT_TIMEOUT, INTRODUCER_PORT, LabTestMixin, PeerScenarioMixin

_INSIDE = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 4000))
print("ready", flush=True)
sys.stdin.readline()  # the outside has sent its datagram
s.settimeout(1.0)
try:
    s.recvfrom(100)
    print("unsolicited arrived", flush=True)
except socket.timeout:
    print("unsolicited dropped", flush=True)
s.sendto(b"open", (sys.argv[1], 7000))
s.settimeout(10)
try:
    print("reply", s.recvfrom(100)[0].decode(), flush=True)
except socket.timeout:
    print("no reply", flush=True)
"""

_OUTSIDE = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 7000))
s.sendto(b"unsolicited", (sys.argv[1], 4000))
print("sent", flush=True)
s.settimeout(10)
data, source = s.recvfrom(100)
s.sendto(b"solicited", source)
print("answered", source[0], flush=True)
"""


def build_ipv6_lab(test) -> Lab:
    """
    A lab with IPv6 on the core and the introducer.
    """
    lab = test.make_lab()
    enable_ipv6(lab)
    return lab


class IPv6LabSelfTests(LabTestMixin, SynchronousTestCase):
    """
    The IPv6 lab builds what it says, checked with plain sockets.
    """

    def test_firewall_drops_unsolicited_inbound(self) -> None:
        """
        A host behind the ip6 firewall keeps its own global address (no
        NAT); a datagram from outside reaches it only once it has sent to
        that sender.
        """
        lab = build_ipv6_lab(self)
        lab.add_site("wall", "cone")
        add_ipv6(lab, "wall")
        lab.add_host("wall", "carol")
        carol = add_ipv6_host(lab, "carol")
        inside = lab.spawn("carol", [sys.executable, "-c", _INSIDE, INTRODUCER6])
        self.addCleanup(inside.stop)
        self.assertTrue(inside.wait_for_line(lambda line: line == "ready", CONNECT_TIMEOUT))
        outside = lab.spawn("introducer", [sys.executable, "-c", _OUTSIDE, carol])
        self.addCleanup(outside.stop)
        self.assertTrue(outside.wait_for_line(lambda line: line == "sent", CONNECT_TIMEOUT))
        inside.process.stdin.write("go\n")
        inside.process.stdin.flush()
        self.assertTrue(inside.wait_for_line(lambda line: line == "unsolicited dropped", CONNECT_TIMEOUT),
                        inside.transcript())
        self.assertTrue(inside.wait_for_line(lambda line: line == "reply solicited", CONNECT_TIMEOUT),
                        inside.transcript() + outside.transcript())
        self.assertTrue(outside.wait_for_line(lambda line: line == f"answered {carol}", CONNECT_TIMEOUT))

    def test_nothing_routes_out(self) -> None:
        """
        The core router has no IPv6 default route: an address outside the
        lab has no route.
        """
        lab = build_ipv6_lab(self)
        lab.add_site("left", "cone")
        add_ipv6(lab, "left")
        self.assertEqual(lab.execute("core", ["ip", "-6", "route", "show", "default"]).stdout.strip(), "")
        self.assertNotEqual(lab.execute("core", ["ip", "-6", "route", "get", "2001:4860:4860::8888"]).returncode, 0)


class IPv6Scenarios(PeerScenarioMixin, SynchronousTestCase):
    """
    Real peers over IPv6 behind stateful firewalls, with a dual-stack
    introducer and relay.
    """

    def setUp(self) -> None:
        super().setUp()
        enable_ipv6(self.lab)

    def start_introducer(self) -> LabProcess:
        introducer = self.lab.spawn("introducer", Lab.p2pnet_argv(
            "introducer", "--port", str(INTRODUCER_PORT), "--interface", INTRODUCER_ADDRESS,
            "--interface6", INTRODUCER6, "--relay-port", "9100"))
        self.processes.append(introducer)
        self.check(introducer.wait_for_line(lambda line: "relay listening on [" in line, CONNECT_TIMEOUT),
                   "the introducer did not start")
        return introducer

    def start_family_peer(self, host: str, family: str, *options: str) -> LabProcess:
        """
        C{p2pnet peer} on C{host}: C{"v6"} (registered with the
        introducer's IPv6 address only), C{"dual"} (IPv4, and IPv6 beside:
        waits until its IPv6 address is proven) or C{"v4"} (C{--no-ipv6}).
        """
        if family == "v6":
            introducer = ["--introducer", f"[{INTRODUCER6}]:{INTRODUCER_PORT}"]
        elif family == "dual":
            introducer = ["--introducer", f"{INTRODUCER_ADDRESS}:{INTRODUCER_PORT}",
                          "--introducer6", f"[{INTRODUCER6}]:{INTRODUCER_PORT}"]
        else:
            introducer = ["--introducer", f"{INTRODUCER_ADDRESS}:{INTRODUCER_PORT}", "--no-ipv6"]
        peer = self.lab.spawn(host, Lab.p2pnet_argv(
            "peer", *introducer, "--name", host, "--json", "--send", f"from-{host}", "--no-port-mapping",
            "--heartbeat", str(self.heartbeat), *options))
        self.processes.append(peer)
        ready = "ipv6-registered" if family == "dual" else "registered"
        self.check(peer.wait_for_event(ready, CONNECT_TIMEOUT), f"{host} did not register ({ready})")
        return peer

    def pair(self, families: tuple[str, str]) -> tuple[dict, dict]:
        """
        bob (C{families[1]}) waits, alice (C{families[0]}) connects; both
        report C{connected} and hear each other.
        """
        self.start_introducer()
        bob = self.start_family_peer("bob", families[1])
        alice = self.start_family_peer("alice", families[0], "--connect", "bob")
        on_alice = alice.wait_for_event("connected", CONNECT_TIMEOUT, peer="bob")
        on_bob = bob.wait_for_event("connected", CONNECT_TIMEOUT, peer="alice")
        self.check(on_alice and on_bob, "alice and bob did not both connect")
        self.assert_datagrams(alice, "bob")
        self.assert_datagrams(bob, "alice")
        self.peers = (alice, bob)
        return on_alice, on_bob

    def two_sites(self, v4_kind: str, *, v6: tuple[bool, bool] = (True, True), only: bool = False) -> None:
        for name, host, with_v6 in (("left", "alice", v6[0]), ("right", "bob", v6[1])):
            self.lab.add_site(name, v4_kind)
            self.lab.add_host(name, host)
            if with_v6:
                add_ipv6(self.lab, name)
                add_ipv6_host(self.lab, host, only=only)

    def test_ipv6_firewalls_punch_directly(self) -> None:
        """
        Two IPv6-only hosts behind stateful ip6 firewalls connect directly
        at their own global addresses: C{direct-public-v6}.
        """
        self.two_sites("symmetric", only=True)
        on_alice, on_bob = self.pair(("v6", "v6"))
        self.assertEqual((on_alice["path"], on_bob["path"]), ("direct-public-v6",) * 2, self.transcripts())
        self.assertEqual(on_alice["address"].rpartition(":")[0], "[2001:db8:2::10]")

    def test_dual_stack_behind_symmetric_nats_goes_ipv6(self) -> None:
        """
        Dual-stack hosts whose IPv4 is behind symmetric NATs (no direct
        IPv4 path) connect directly over IPv6, not through the relay.
        """
        self.two_sites("symmetric")
        on_alice, on_bob = self.pair(("dual", "dual"))
        self.assertEqual((on_alice["path"], on_bob["path"]), ("direct-public-v6",) * 2, self.transcripts())

    def test_dual_stack_takes_first_validated_path(self) -> None:
        """
        Dual-stack hosts behind cone NATs (both families work) connect
        directly on whichever path validates first, the path names its
        family consistently with the address, and they stay there (a
        global IPv6 address is no LAN path to upgrade to).
        """
        self.two_sites("cone")
        on_alice, on_bob = self.pair(("dual", "dual"))
        for event in (on_alice, on_bob):
            self.assertIn(event["path"], ("direct-public", "direct-public-v6"), self.transcripts())
            self.assertEqual(event["path"].endswith("-v6"), event["address"].startswith("["), event)
        changes = [e for p in self.peers for e in p.events if e["event"] == "path-changed"]
        self.assertEqual(changes, [], self.transcripts())

    def test_ipv6_only_meets_ipv4_only_through_relay(self) -> None:
        """
        An IPv6-only host and an IPv4-only one share no family: both
        reach the relay (one over each family) and connect through it.
        """
        self.two_sites("cone", v6=(True, False), only=True)
        on_alice, on_bob = self.pair(("v6", "v4"))
        self.assertEqual((on_alice["path"], on_bob["path"]), ("relayed", "relayed"), self.transcripts())
        self.assertEqual(on_alice["address"], f"relay [{INTRODUCER6}]:9100")
        self.assertEqual(on_bob["address"], f"relay {INTRODUCER_ADDRESS}:9100")
