"""
The NAT check by default (on the simulated network): it runs beside the
registration, adds no time to connect(), is cached, can be switched off;
and with defaults only (an introducer on one IP address, as
C{p2pnet introducer --port 3478} runs it, and default peers) a cone <->
symmetric pair connects directly by the birthday search and a symmetric
<-> symmetric pair goes through the relay at once.
"""

from __future__ import annotations

import random

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from p2pnet import PeerConfig, PeerEndpoint, wire
from p2pnet._registry import Registry
from p2pnet._stunserver import StunResponder, StunServerProtocol
from p2pnet.address import Address
from p2pnet.introducer import IntroducerProtocol
from p2pnet.natcache import NatCache, nat_facts
from p2pnet.natcheck import Behaviour
from p2pnet.testing import Network
from p2pnet.testing._simnet import Allocation, Mapping
from p2pnet.testing.scenarios import INTRODUCER, run_pair, seeded_bytes

CONE = ("endpoint-independent", "address-and-port-dependent")
SYMMETRIC = ("address-and-port-dependent", "address-and-port-dependent")


class OneIPWorld:
    """
    An introducer with STUN on its port and a second STUN port (one IP
    address), peers behind NATs with 5 ms links; a Clock.
    """

    def __init__(self, test, stun: bool = True) -> None:
        self.clock = Clock()
        self.network = Network(self.clock, seed=5)
        self.random_bytes = seeded_bytes(random.Random(5))
        host = self.network.add_host(INTRODUCER.host)
        self.introducer = IntroducerProtocol(
            self.clock, Registry(60.0, self.random_bytes), self.random_bytes,
            stun_responder=StunResponder() if stun else None,
        )
        self.ports = [host.listenUDP(INTRODUCER.port, self.introducer)]
        if stun:
            server = self.introducer.stun_server
            alternate = Address(INTRODUCER.host, INTRODUCER.port + 2)
            protocol = server.protocols["alt-port"] = StunServerProtocol(server, "alt-port", alternate)
            self.ports.append(host.listenUDP(alternate.port, protocol))
            server.responder.primary_address = INTRODUCER
            server.responder.other_address = alternate
        self.sites = 0
        self.endpoints = []
        test.addCleanup(self.shutdown, test)

    def peer(self, name, symmetric=False, config=PeerConfig(), **kwargs):
        self.sites += 1
        options = dict(mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT, allocation=Allocation.RANDOM) if symmetric else {}
        box = self.network.add_nat(f"nat{self.sites}", f"203.0.113.{self.sites}", **options)
        host = self.network.add_host(behind=box)
        self.network.set_link(host, latency=0.005)
        endpoint = PeerEndpoint(host, INTRODUCER, name, random_bytes=self.random_bytes, config=config, **kwargs)
        self.endpoints.append(endpoint)
        return endpoint

    def run(self, seconds, step=0.001):
        self.clock.pump([step] * int(round(seconds / step)))

    def started(self, endpoint):
        """
        Start C{endpoint}; return (seconds until start() fired, result).
        """
        began = self.clock.seconds()
        box = []
        endpoint.start().addBoth(box.append)
        while not box:
            self.clock.advance(0.001)
        return self.clock.seconds() - began, box[0]

    def facts(self, name):
        entry = self.introducer.registry.lookup(name, self.clock.seconds())
        return wire.unpack_nat(entry.nat) if entry is not None else None

    def shutdown(self, test):
        for endpoint in self.endpoints:
            endpoint.stop()
        self.run(1.0, step=0.01)
        for port in self.ports:
            port.stopListening()
        self.run(0.1, step=0.01)
        test.assertEqual(self.clock.getDelayedCalls(), [])


class DefaultCheckTests(SynchronousTestCase):
    def test_on_by_default(self):
        """
        A default endpoint checks its NAT: by the time start() fires, the
        introducer holds its mapping facts (one IP address: the same
        mapping towards both ports reads as endpoint-independent; per
        port, address-and-port-dependent); the filtering follows within
        the check's 3 s.
        """
        world = OneIPWorld(self)
        cone = world.peer("cone")
        symmetric = world.peer("sym", symmetric=True)
        world.started(cone)
        world.started(symmetric)
        self.assertEqual(world.facts("cone"), ("endpoint-independent", "unknown"))
        self.assertEqual(world.facts("sym"), ("address-and-port-dependent", "unknown"))
        world.run(3.5, step=0.01)
        self.assertEqual(world.facts("cone"), CONE)
        self.assertEqual(world.facts("sym"), SYMMETRIC)
        self.assertIs(cone.nat_report.mapping_port_dependent, False)

    def test_switched_off(self):
        """
        nat_check=False: no STUN request, no facts, no nat_report.
        """
        world = OneIPWorld(self)
        peer = world.peer("cone", config=PeerConfig(nat_check=False))
        world.started(peer)
        world.run(4.0, step=0.01)
        self.assertEqual(world.introducer.stun_server.answered, 0)
        self.assertEqual(world.facts("cone"), ("unknown", "unknown"))
        self.assertIsNone(peer.nat_report)

    def test_start_time(self):
        """
        Beside the registration, the check costs start() one round trip to
        the introducer (10 ms here: the facts' registration), not the
        check's 3 s; against an introducer without STUN it costs nothing.
        """
        times = {}
        for name, stun, config in [
            ("off", True, PeerConfig(nat_check=False)),
            ("on", True, PeerConfig()),
            ("no-stun", False, PeerConfig()),
        ]:
            world = OneIPWorld(self, stun=stun)
            elapsed, _ = world.started(world.peer("p", config=config))
            times[name] = round(elapsed, 3)
        self.assertEqual(times, {"off": 0.02, "on": 0.03, "no-stun": 0.02})

    def test_connect_time_unchanged(self):
        """
        connect() takes as long with the check as without (it ran at
        start).
        """
        times = []
        for config in (PeerConfig(nat_check=False), PeerConfig()):
            world = OneIPWorld(self)
            a, b = world.peer("a", config=config), world.peer("b", config=config)
            world.started(a)
            world.started(b)
            world.run(5.0, step=0.01)
            began = world.clock.seconds()
            box = []
            a.connect("b").addBoth(box.append)
            while not box:
                world.clock.advance(0.001)
            times.append(round(world.clock.seconds() - began, 3))
        self.assertEqual(times[0], times[1])

    def test_cached(self):
        """
        A restart within nat_check_lifetime uses the last result (no STUN
        request; the registration carries the full facts at once); after
        it, the check runs again.
        """
        world = OneIPWorld(self)
        peer = world.peer("cone", config=PeerConfig(nat_check_lifetime=100.0))
        world.started(peer)
        world.run(4.0, step=0.01)
        answered = world.introducer.stun_server.answered
        events = []
        peer.add_observer(events.append)
        peer.stop()
        world.run(0.5, step=0.01)
        world.started(peer)
        self.assertEqual(world.facts("cone"), CONE)
        world.run(4.0, step=0.01)
        self.assertEqual(world.introducer.stun_server.answered, answered)
        self.assertIn("(cached)", [e.detail for e in events if e.kind == "nat-checked"][0])
        world.run(100.0, step=0.1)
        peer.stop()
        world.run(0.5, step=0.01)
        world.started(peer)
        self.assertEqual(world.facts("cone"), ("endpoint-independent", "unknown"))
        world.run(4.0, step=0.01)
        self.assertGreater(world.introducer.stun_server.answered, answered)

    def test_shared_cache(self):
        """
        Endpoints given one NatCache share results: the second endpoint on
        the same host checks no more.
        """
        world = OneIPWorld(self)
        cache = NatCache()
        first = world.peer("one", nat_cache=cache)
        world.started(first)
        world.run(4.0, step=0.01)
        answered = world.introducer.stun_server.answered
        second = PeerEndpoint(first.reactor, INTRODUCER, "two", random_bytes=world.random_bytes, nat_cache=cache)
        world.endpoints.append(second)
        world.started(second)
        world.run(4.0, step=0.01)
        self.assertEqual(world.introducer.stun_server.answered, answered)
        self.assertEqual(world.facts("two"), CONE)

    def test_stop_during_check(self):
        """
        Stopping while the check runs closes its sockets and timers (the
        world's cleanup asserts no timer is left).
        """
        world = OneIPWorld(self)
        peer = world.peer("cone")
        world.started(peer)
        peer.stop()
        world.run(0.5, step=0.01)
        self.assertIsNone(peer.nat_report)


class FactsTests(SynchronousTestCase):
    def test_one_ip_mapping(self):
        """
        An unknown mapping that is the same towards two ports of one IP
        registers as endpoint-independent; per port, as it is.
        """
        self.assertEqual(nat_facts(Behaviour.UNKNOWN, port_dependent=False), ("endpoint-independent", "unknown"))
        self.assertEqual(nat_facts(Behaviour.UNKNOWN), ("unknown", "unknown"))
        self.assertEqual(
            nat_facts(Behaviour.ADDRESS_AND_PORT_DEPENDENT, Behaviour.ADDRESS_AND_PORT_DEPENDENT, True), SYMMETRIC
        )

    def test_cache_expiry_and_cap(self):
        """
        A cached report lives for its lifetime; the oldest go beyond the
        size.
        """
        cache = NatCache(size=2)
        cache.put("a", "A", now=0.0, lifetime=10.0)
        self.assertEqual(cache.get("a", 9.9), "A")
        self.assertIsNone(cache.get("a", 10.0))
        cache.put("a", "A", 0.0, 10.0)
        cache.put("b", "B", 0.0, 10.0)
        cache.put("c", "C", 0.0, 10.0)
        self.assertEqual((cache.get("a", 1.0), cache.get("b", 1.0), cache.get("c", 1.0)), (None, "B", "C"))


class DefaultsOnlyPairsTests(SynchronousTestCase):
    """
    Pairs with defaults only: what the kernel lab checks with real
    processes (tests/test_netlab_defaults.py), here on seeded simulations.
    """

    def test_cone_symmetric_birthday(self):
        """
        Port-restricted cone <-> symmetric (random ports), either side
        connecting: direct, through the birthday search, in at least 19
        of 20 seeded trials each way.
        """
        for kinds in [("port-restricted", "symmetric"), ("symmetric", "port-restricted")]:
            results = [run_pair(*kinds, seed=seed, defaults=True) for seed in range(20)]
            direct = sum(r.path == "direct-public" for r in results)
            self.assertGreaterEqual(direct, 19, kinds)
            for r in results:
                self.assertIn("birthday", {e.kind for _, side, e in r.events if side == "A"})
                self.assertEqual(r.leftover_calls, 0)

    def test_symmetric_pair_relayed_at_once(self):
        """
        Symmetric <-> symmetric: relayed, the relay asked for at the
        introduction (the facts say a direct path cannot exist).
        """
        for seed in range(5):
            r = run_pair("symmetric", "symmetric", seed=seed, defaults=True)
            self.assertEqual(r.path, "relayed")
            introduced = next(t for t, side, e in r.events if side == "A" and e.kind == "introduced")
            relaying = next(t for t, side, e in r.events if side == "A" and e.kind == "relaying")
            self.assertLess(relaying - introduced, 0.005)
            self.assertLess(r.connect_time, 0.2)

    def test_without_nat_check(self):
        """
        With nat_check=False the same cone <-> symmetric pair finds no
        direct path (it ends relayed after the relay delay): the default
        check is what makes it direct.
        """
        r = run_pair("port-restricted", "symmetric", seed=0, defaults=True, peer_config=PeerConfig(nat_check=False))
        self.assertEqual(r.path, "relayed")
        self.assertNotIn("birthday", {e.kind for _, side, e in r.events})


class PortMappedTests(SynchronousTestCase):
    def test_no_facts_while_mapped(self):
        """
        Behind a symmetric NAT that maps a port for us (NAT-PMP), the
        introducer gets no NAT facts while the mapping lasts: the mapped
        port takes packets from anyone, so the facts must not make peers
        give up on a direct path.  Before the mapping came, they were
        registered.
        """
        from zope.interface import directlyProvides
        from twisted.internet.interfaces import IReactorMulticast

        from .test_endpoint_portmap import ROUTER, ScriptedRouter

        world = OneIPWorld(self)
        router = ScriptedRouter(world.clock, delay=0.5)
        world.ports.append(world.network.add_host(ROUTER).listenUDP(5351, router))
        box = world.network.add_nat("nat", "203.0.113.50", mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
                                    allocation=Allocation.RANDOM)
        host = world.network.add_host(behind=box)
        directlyProvides(host, IReactorMulticast)
        config = PeerConfig(port_mapping_gateway=ROUTER, port_mapping_protocols=("nat-pmp",))
        peer = PeerEndpoint(host, INTRODUCER, "mapped", config=config, random_bytes=world.random_bytes)
        world.endpoints.append(peer)
        world.started(peer)
        self.assertEqual(world.facts("mapped"), ("address-and-port-dependent", "unknown"))
        world.run(1.0, step=0.01)
        self.assertIsNotNone(peer.port_mapping)
        self.assertEqual(world.facts("mapped"), ("unknown", "unknown"))
        world.run(4.0, step=0.01)
        self.assertEqual(world.facts("mapped"), ("unknown", "unknown"))
        self.assertIsNotNone(peer.nat_report)
