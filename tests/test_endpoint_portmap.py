"""
The endpoint's port mapping on the simulated network, with a scripted
NAT-PMP router (the real daemon runs in tests/test_netlab_portmap.py):
the mapped address becomes a candidate, reaches the introducer, and is
deleted on stop; C{port_mapping=False} asks nothing.
"""

from __future__ import annotations

import random

from twisted.internet.interfaces import IReactorMulticast
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides

from p2pnet._registry import Registry
from p2pnet.address import Address
from p2pnet.endpoint import PeerConfig, PeerEndpoint, StatusEvent
from p2pnet.introducer import IntroducerProtocol
from p2pnet.testing import Network
from p2pnet.testing.scenarios import INTRODUCER, seeded_bytes

ROUTER = "198.51.100.1"
MAPPED = Address("198.51.100.77", 61000)


class ScriptedRouter(DatagramProtocol):
    """
    Answers NAT-PMP like a router whose external address is 198.51.100.77
    and that maps every port to 61000 for 7200 s.
    """

    def __init__(self, clock, delay=0.0):
        self.requests = []
        self.clock = clock
        self.delay = delay

    def datagramReceived(self, data, addr):
        self.requests.append(data)
        self.clock.callLater(self.delay, self.answer, data, addr)

    def answer(self, data, addr):
        if data == b"\x00\x00":
            self.transport.write(bytes.fromhex("00 80 0000 00000001 c633644d"), addr)
        elif data[:2] == b"\x00\x01":
            lifetime = int.from_bytes(data[8:12], "big")
            external = "0000" if lifetime == 0 else "ee48"
            self.transport.write(bytes.fromhex("00810000 00000001") + data[4:6] + bytes.fromhex(external) + data[8:12], addr)


class EndpointPortMappingTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.network = Network(self.clock, seed=5)
        random_bytes = seeded_bytes(random.Random(5))
        self.registry = Registry(60.0, random_bytes)
        self.introducer = self.network.add_host(INTRODUCER.host).listenUDP(
            INTRODUCER.port, IntroducerProtocol(self.clock, self.registry, random_bytes)
        )
        self.router = ScriptedRouter(self.clock)
        self.network.add_host(ROUTER).listenUDP(5351, self.router)
        nat = self.network.add_nat("nat", "203.0.113.1")
        self.host = self.network.add_host(behind=nat)
        # The simulated host stands in for a real reactor here.
        directlyProvides(self.host, IReactorMulticast)
        self.random_bytes = random_bytes

    def endpoint(self, **config):
        config = PeerConfig(port_mapping_gateway=ROUTER, port_mapping_protocols=("nat-pmp",), **config)
        endpoint = PeerEndpoint(self.host, INTRODUCER, "A", config=config, random_bytes=self.random_bytes)
        self.events = []
        endpoint.add_observer(self.events.append)
        return endpoint

    def pump(self, seconds):
        self.clock.pump([0.01] * int(seconds / 0.01))

    def test_mapped_address_advertised(self):
        """
        The mapped address is a candidate, is in the introducer's record of
        our local addresses, and a C{port-mapped} event names it; stop()
        deletes the mapping.
        """
        endpoint = self.endpoint()
        endpoint.start()
        self.pump(1.0)
        self.assertIn(StatusEvent("port-mapped", address=MAPPED, detail="nat-pmp"), self.events)
        self.assertIn(MAPPED, endpoint.own_candidates())
        self.assertIn(MAPPED, self.registry.lookup("A", self.clock.seconds()).local)
        endpoint.stop()
        self.pump(1.0)
        # external port 0, lifetime 0: delete (RFC 6886 3.4)
        self.assertEqual(self.router.requests[-1][-6:], bytes(6))
        self.introducer.stopListening()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_mapped_after_registration(self):
        """
        A mapping made after the registration completed is sent to the
        introducer at once (a Register refreshed with our cookie).
        """
        self.router.delay = 0.2
        endpoint = self.endpoint()
        endpoint.start()
        self.pump(0.2)
        self.assertNotIn(MAPPED, self.registry.lookup("A", self.clock.seconds()).local)
        self.pump(0.8)
        self.assertIn(MAPPED, self.registry.lookup("A", self.clock.seconds()).local)
        endpoint.stop()
        self.pump(1.0)
        self.introducer.stopListening()

    def test_switched_off(self):
        """
        C{port_mapping=False}: the router hears nothing.
        """
        endpoint = self.endpoint(port_mapping=False)
        endpoint.start()
        self.pump(1.0)
        self.assertEqual(self.router.requests, [])
        self.assertNotIn("port-mapped", [e.kind for e in self.events])
        endpoint.stop()
        self.pump(1.0)


class CommandLineTests(SynchronousTestCase):
    def parse(self, *argv):
        from p2pnet._peercli import Options

        options = Options()
        options.parseOptions(["--introducer", "192.0.2.10:9000", "--name", "a", *argv])
        return options

    def test_defaults(self):
        """
        By default every protocol is tried and port mapping is on.
        """
        options = self.parse()
        self.assertEqual((options["no-port-mapping"], options["port-mapping-protocols"]),
                         (False, ("pcp", "nat-pmp", "upnp")))

    def test_choices(self):
        """
        C{--no-port-mapping} and a protocol list are read; unknown
        protocol names are refused.
        """
        options = self.parse("--no-port-mapping", "--port-mapping-protocols", "nat-pmp, upnp")
        self.assertEqual((options["no-port-mapping"], options["port-mapping-protocols"]),
                         (True, ("nat-pmp", "upnp")))
        from twisted.python.usage import UsageError

        self.assertRaises(UsageError, self.parse, "--port-mapping-protocols", "pcp,igd")
        self.assertRaises(UsageError, self.parse, "--port-mapping-protocols", ",")


class MappedPathTests(SynchronousTestCase):
    """
    A peer behind a symmetric NAT whose router forwards a mapped port to
    it (the scripted NAT-PMP router above, its external address the NAT's
    public one): a peer that connects to it at the mapped address reports
    the path as C{direct-mapped}, not C{direct-local}.
    """

    def test_connection_at_mapped_address(self):
        from p2pnet.endpoint import Path
        from p2pnet.testing import Allocation, Mapping

        clock = Clock()
        network = Network(clock, seed=7)
        random_bytes = seeded_bytes(random.Random(7))
        introducer = network.add_host(INTRODUCER.host).listenUDP(
            INTRODUCER.port, IntroducerProtocol(clock, Registry(60.0, random_bytes), random_bytes)
        )
        network.add_host(ROUTER).listenUDP(5351, ScriptedRouter(clock))
        nat = network.add_nat(
            "home", MAPPED.host, mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT, allocation=Allocation.RANDOM
        )
        home = network.add_host(behind=nat)
        directlyProvides(home, IReactorMulticast)
        mapped = PeerEndpoint(
            home, INTRODUCER, "mapped", port=5000,
            config=PeerConfig(port_mapping_gateway=ROUTER, port_mapping_protocols=("nat-pmp",)),
            random_bytes=random_bytes,
        )
        nat.forward(MAPPED.port, (home.ip, 5000))
        joiner = PeerEndpoint(network.add_host(), INTRODUCER, "joiner", random_bytes=random_bytes)
        mapped.start()
        joiner.start()
        clock.pump([0.01] * 100)
        self.assertIn(MAPPED, mapped.own_candidates())
        connecting = joiner.connect("mapped")
        clock.pump([0.01] * 300)
        connection = self.successResultOf(connecting)
        self.assertEqual((connection.address, connection.path), (MAPPED, Path.DIRECT_MAPPED))
        self.assertEqual(Path.DIRECT_MAPPED.value, "direct-mapped")
        joiner.stop()
        mapped.stop()
        clock.pump([0.01] * 200)
        introducer.stopListening()
