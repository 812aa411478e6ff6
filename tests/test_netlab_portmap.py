"""
Port mapping against the real miniupnpd (Debian's C{miniupnpd-nftables})
on a kernel-lab router: a peer behind a symmetric NAT that offers NAT-PMP,
PCP or UPnP-IGD connects directly to a peer behind a symmetric NAT that
offers nothing, through the mapping and without a relay; a router that
refuses leaves the peers to fall back cleanly.

Like the rest of the lab: skipped without root, C{ip}, C{nft} or
miniupnpd, except under CI (C{CI=true}), where that fails.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from p2pnet.testing.netlab import INTRODUCER_ADDRESS, Lab
from p2pnet.testing.upnplab import add_upnp_site, missing_miniupnpd, wan_address

from tests.test_netlab import CONNECT_TIMEOUT, INTRODUCER_PORT, PeerScenarioMixin


class PortMappingScenarios(PeerScenarioMixin, SynchronousTestCase):
    """
    Symmetric NAT with miniupnpd (alice) <-> symmetric NAT without (bob).
    """

    def setUp(self) -> None:
        reason = missing_miniupnpd()
        if reason is not None:
            if os.environ.get("CI") == "true":
                self.fail(f"CI=true and {reason}")
            raise SkipTest(reason)
        super().setUp()

    def build(self, **router) -> None:
        self.home, self.daemon = add_upnp_site(self.lab, "home", **router)
        self.processes.append(self.daemon)
        self.lab.add_site("far", "symmetric")
        self.lab.add_host("home", "alice")
        self.lab.add_host("far", "bob")
        # With a relay, so "direct" is a choice, not the only way.
        introducer = self.lab.spawn("introducer", Lab.p2pnet_argv(
            "introducer", "--port", str(INTRODUCER_PORT), "--interface", INTRODUCER_ADDRESS,
            "--relay-port", "9100"))
        self.processes.append(introducer)
        self.check(introducer.wait_for_line(lambda line: "listening" in line, CONNECT_TIMEOUT),
                   "the introducer did not start")

    def mapped_connect(self, protocol: str | None, *options: str) -> dict:
        """
        alice maps her port (with C{protocol}, or any when None), then bob
        connects to her directly, through the mapped address.

        @return: alice's C{port-mapped} event.
        """
        alice = self.start_peer("alice", *options)
        mapped = alice.wait_for_event("port-mapped", CONNECT_TIMEOUT)
        self.check(mapped, "alice got no port mapping")
        if protocol is not None:
            self.assertEqual(mapped["protocol"], protocol, self.transcripts())
        self.assertEqual(mapped["address"].rpartition(":")[0], wan_address(self.home))
        bob = self.start_peer("bob", "--no-port-mapping", "--connect", "alice")
        on_bob = bob.wait_for_event("connected", CONNECT_TIMEOUT, peer="alice")
        on_alice = alice.wait_for_event("connected", CONNECT_TIMEOUT, peer="bob")
        self.check(on_bob and on_alice, "bob and alice did not connect")
        self.check(on_bob["path"] != "relayed" and on_alice["path"] != "relayed", "relayed, not direct")
        self.assertEqual(on_bob["address"], mapped["address"], self.transcripts())
        self.assert_datagrams(bob, "alice")
        self.assert_datagrams(alice, "bob")
        self.assertIn("dnat", self.mappings(), self.transcripts())
        # Stopping alice deletes her mapping on the router.
        alice.stop()
        self.assertNotIn("dnat", self.mappings(), self.transcripts())
        return mapped

    def mappings(self) -> str:
        """
        miniupnpd's DNAT chain on the home router.
        """
        return self.lab.execute("homegw", ["nft", "list", "chain", "inet", "p2lab_upnp",
                                           "prerouting_miniupnpd"]).stdout

    def test_pcp(self) -> None:
        """
        PCP MAP alone (the client asks only PCP; miniupnpd serves PCP and
        NAT-PMP on one switch, UPnP off).
        """
        self.build(upnp=False)
        self.mapped_connect("pcp", "--port-mapping-protocols", "pcp")

    def test_nat_pmp(self) -> None:
        """
        NAT-PMP alone.
        """
        self.build(upnp=False)
        self.mapped_connect("nat-pmp", "--port-mapping-protocols", "nat-pmp")

    def test_upnp(self) -> None:
        """
        UPnP-IGD alone (NAT-PMP/PCP off in miniupnpd).
        """
        self.build(natpmp=False)
        self.mapped_connect("upnp")

    def test_all_offered(self) -> None:
        """
        Everything on, every protocol tried: the first to answer (PCP or
        NAT-PMP, which need one round trip where UPnP needs three) maps.
        """
        self.build()
        mapped = self.mapped_connect(None)
        self.assertIn(mapped["protocol"], ("pcp", "nat-pmp"))

    def test_router_refuses(self) -> None:
        """
        A router whose rules deny every mapping: no port-mapped event, no
        error, and the peers still connect (through the relay, as two
        symmetric NATs without a mapping must).  UPnP only: miniupnpd
        2.3.1 answers one denied PCP MAP by trying external ports one by
        one, logging "port mapping rejected" for each (hundreds a
        second, for tens of seconds), which starves this 2-core machine.
        """
        self.build(refuse=True, natpmp=False)
        alice = self.start_peer("alice")
        bob = self.start_peer("bob", "--no-port-mapping", "--connect", "alice")
        on_bob = bob.wait_for_event("connected", CONNECT_TIMEOUT, peer="alice")
        self.check(on_bob, "no connection after the refusal")
        self.assertEqual(on_bob["path"], "relayed", self.transcripts())
        self.assertEqual([e for e in alice.events if e["event"] in ("port-mapped", "error")], [])
