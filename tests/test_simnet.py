"""
Tests for L{p2pnet.testing}, the simulated network.
"""

from __future__ import annotations

import socket

from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError, InvalidAddressError
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTime,
    IReactorUDP,
    IUDPTransport,
)
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from p2pnet.testing import (
    Allocation,
    Filtering,
    Mapping,
    Network,
    TraceEvent,
)


class Recorder(DatagramProtocol):
    """
    Records what it receives and when it starts and stops.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock
        self.received: list[tuple[bytes, tuple]] = []
        self.times: list[float] = []
        self.started = 0
        self.stopped = 0

    def startProtocol(self) -> None:
        self.started += 1

    def stopProtocol(self) -> None:
        self.stopped += 1

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        self.received.append((data, addr))
        if self.clock is not None:
            self.times.append(self.clock.seconds())

    @property
    def sources(self) -> list[tuple]:
        return [addr for _, addr in self.received]


def _set_ttl(port, ttl: int) -> None:
    port.getHandle().setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)


class SimnetCase(SynchronousTestCase):
    """
    Builds a network with one NAT ("home", 203.0.113.10, LAN 10.0.1.0/24),
    a host inside on port 5000, and a server host on the internet at
    198.51.100.7 bound on ports 7000 and 7001, plus a second server at
    198.51.100.8 on 7000.
    """

    def build(self, seed: int = 1, **nat_options) -> None:
        self.clock = Clock()
        self.net = Network(self.clock, seed=seed)
        self.events: list[TraceEvent] = []
        self.net.trace = self.events.append
        self.nat = self.net.add_nat(
            "home", public_ip="203.0.113.10", lan="10.0.1.0/24", **nat_options
        )
        self.inside = self.net.add_host("10.0.1.2", behind=self.nat)
        self.inside_proto = Recorder(self.clock)
        self.inside_port = self.inside.listenUDP(5000, self.inside_proto)
        self.server = self.net.add_host("198.51.100.7")
        self.server_protos = [Recorder(self.clock), Recorder(self.clock)]
        self.server_ports = [
            self.server.listenUDP(7000, self.server_protos[0]),
            self.server.listenUDP(7001, self.server_protos[1]),
        ]
        self.other = self.net.add_host("198.51.100.8")
        self.other_proto = Recorder(self.clock)
        self.other_port = self.other.listenUDP(7000, self.other_proto)

    def drops(self) -> list[tuple[str, str]]:
        return [(e.reason, e.where) for e in self.events if e.kind == "drop"]

    def settle(self) -> None:
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def out_and_back(self, remote_port, remote_index: int = 0) -> list:
        """
        The inside host sends to a server port; then C{remote_port} writes
        back to where the first packet came from.  Returns what the inside
        host received.
        """
        self.inside_port.write(b"out", ("198.51.100.7", 7000 + remote_index))
        self.settle()
        seen = self.server_protos[remote_index].sources[-1]
        remote_port.write(b"back", seen)
        self.settle()
        return self.inside_proto.received


class ListenTests(SimnetCase):
    def test_host_is_a_reactor(self) -> None:
        """
        A host provides IReactorUDP and IReactorTime, with time delegated to
        the network's clock.
        """
        self.build()
        verifyObject(IReactorUDP, self.inside)
        verifyObject(IReactorTime, self.inside)
        self.clock.advance(3)
        self.assertEqual(self.inside.seconds(), 3)
        call = self.inside.callLater(1, lambda: None)
        self.assertEqual(self.inside.getDelayedCalls(), [call])
        self.assertEqual(self.clock.getDelayedCalls(), [call])
        call.cancel()

    def test_transport_interfaces(self) -> None:
        """
        The transport provides IListeningPort and IUDPTransport.
        """
        self.build()
        verifyObject(IListeningPort, self.inside_port)
        verifyObject(IUDPTransport, self.inside_port)

    def test_listen_starts_protocol_and_reports_address(self) -> None:
        """
        listenUDP starts the protocol and getHost gives the host's address
        and the bound port.
        """
        self.build()
        self.assertEqual(self.inside_proto.started, 1)
        self.assertEqual(
            self.inside_port.getHost(), IPv4Address("UDP", "10.0.1.2", 5000)
        )
        self.assertIs(self.inside_proto.transport, self.inside_port)

    def test_ephemeral_ports_are_deterministic_and_distinct(self) -> None:
        """
        Port 0 picks the next free ephemeral port of that host, in order.
        """
        self.build()
        ports = [self.inside.listenUDP(0, Recorder()).getHost().port for _ in range(3)]
        self.assertEqual(ports, [32768, 32769, 32770])
        other = self.net.add_host(behind=self.nat).listenUDP(0, Recorder())
        self.assertEqual(other.getHost().port, 32768)

    def test_ephemeral_port_skips_bound_ports(self) -> None:
        """
        Port 0 never returns a port that is already bound.
        """
        self.build()
        self.inside.listenUDP(32768, Recorder())
        self.assertEqual(self.inside.listenUDP(0, Recorder()).getHost().port, 32769)

    def test_binding_used_port_fails(self) -> None:
        """
        Binding a port already bound on that host raises CannotListenError.
        """
        self.build()
        self.assertRaises(CannotListenError, self.inside.listenUDP, 5000, Recorder())
        self.assertRaises(
            CannotListenError, self.inside.listenUDP, 5001, Recorder(), "10.9.9.9"
        )
        self.inside.listenUDP(5001, Recorder(), interface="10.0.1.2")

    def test_stop_listening_unbinds_and_stops(self) -> None:
        """
        stopListening stops the protocol and frees the port; packets then
        arriving for it are dropped as port unreachable.
        """
        self.build()
        self.server_ports[0].write(b"x", ("198.51.100.8", 7000))
        self.other_port.stopListening()
        self.assertEqual(self.other_proto.stopped, 1)
        self.settle()
        self.assertEqual(self.other_proto.received, [])
        self.assertEqual(self.drops(), [("port unreachable", "198.51.100.8")])
        again = Recorder()
        self.other.listenUDP(7000, again)
        self.assertEqual(again.started, 1)

    def test_write_after_stop_drops(self) -> None:
        """
        A write after stopListening is dropped with reason 'closed'.
        """
        self.build()
        self.other_port.stopListening()
        self.other_port.write(b"x", ("198.51.100.7", 7000))
        self.settle()
        self.assertEqual(self.server_protos[0].received, [])
        self.assertEqual(self.net.stats.dropped["closed"], 1)

    def test_write_needs_ip_literal(self) -> None:
        """
        Like a real IPv4 port, write rejects host names.
        """
        self.build()
        self.assertRaises(
            InvalidAddressError, self.inside_port.write, b"x", ("example.com", 1)
        )

    def test_write_checks_port(self) -> None:
        """
        Like sendto, write rejects ports that are not integers in 0-65535.
        """
        self.build()
        self.assertRaises(TypeError, self.inside_port.write, b"x", ("10.0.1.3", "1"))
        self.assertRaises(OverflowError, self.inside_port.write, b"x", ("10.0.1.3", 65536))

    def test_unknown_destinations_drop(self) -> None:
        """
        Unknown internet addresses drop as 'no route', unknown LAN addresses
        as 'no host'.
        """
        self.build()
        self.server_ports[0].write(b"x", ("192.0.2.99", 1))
        self.inside_port.write(b"x", ("10.0.1.99", 1))
        self.settle()
        self.assertEqual(
            self.drops(), [("no route", "internet"), ("no host", "home LAN")]
        )

    def test_delivery_is_never_reentrant(self) -> None:
        """
        Even at zero latency, nothing is delivered inside write; the packet
        is a pending call until the clock runs.
        """
        self.build()
        self.server_ports[0].write(b"x", ("198.51.100.8", 7000))
        self.assertEqual(self.other_proto.received, [])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.settle()
        self.assertEqual(self.other_proto.received, [(b"x", ("198.51.100.7", 7000))])

    def test_loopback(self) -> None:
        """
        A host reaches its own ports at its own address and at 127.0.0.1.
        """
        self.build()
        mine = Recorder()
        self.inside.listenUDP(6000, mine)
        self.inside_port.write(b"a", ("10.0.1.2", 6000))
        self.inside_port.write(b"b", ("127.0.0.1", 6000))
        self.settle()
        self.assertEqual(
            mine.received,
            [(b"a", ("10.0.1.2", 5000)), (b"b", ("127.0.0.1", 5000))],
        )

    def test_protocol_errors_are_logged(self) -> None:
        """
        An exception in datagramReceived is logged, as by a real reactor,
        and other packets are still delivered.
        """
        self.build()

        class Broken(DatagramProtocol):
            def datagramReceived(self, data, addr):
                raise ZeroDivisionError()

        self.server.listenUDP(7002, Broken())
        self.other_port.write(b"x", ("198.51.100.7", 7002))
        self.other_port.write(b"y", ("198.51.100.7", 7000))
        self.settle()
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.server_protos[0].received, [(b"y", ("198.51.100.8", 7000))])


class MappingTests(SimnetCase):
    def send_to_three(self) -> list[tuple]:
        """
        The inside host sends to 198.51.100.7:7000, :7001 and
        198.51.100.8:7000; return the sources the three saw.
        """
        for dst in [("198.51.100.7", 7000), ("198.51.100.7", 7001), ("198.51.100.8", 7000)]:
            self.inside_port.write(b"x", dst)
        self.settle()
        return [
            self.server_protos[0].sources[0],
            self.server_protos[1].sources[0],
            self.other_proto.sources[0],
        ]

    def test_endpoint_independent(self) -> None:
        """
        An endpoint-independent mapping shows every destination the same
        public address.
        """
        self.build(mapping=Mapping.ENDPOINT_INDEPENDENT)
        seen = self.send_to_three()
        self.assertEqual(set(seen), {("203.0.113.10", 5000)})

    def test_address_dependent(self) -> None:
        """
        An address-dependent mapping reuses its port for another port of
        the same remote IP but not for another remote IP.
        """
        self.build(mapping=Mapping.ADDRESS_DEPENDENT)
        seen = self.send_to_three()
        self.assertEqual(seen[0], seen[1])
        self.assertNotEqual(seen[0], seen[2])
        self.assertEqual([ip for ip, _ in seen], ["203.0.113.10"] * 3)

    def test_address_and_port_dependent(self) -> None:
        """
        An address-and-port-dependent mapping uses a new port for every
        remote (ip, port).
        """
        self.build(mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT)
        seen = self.send_to_three()
        self.assertEqual(len(set(seen)), 3)
        self.assertEqual(len(self.nat.mappings()), 3)

    def test_mapping_snapshot(self) -> None:
        """
        NatBox.mappings lists live mappings with their inside and outside
        addresses.
        """
        self.build()
        self.clock.advance(5)
        self.inside_port.write(b"x", ("198.51.100.7", 7000))
        self.settle()
        [mapping] = self.nat.mappings()
        self.assertEqual(mapping.internal, ("10.0.1.2", 5000))
        self.assertEqual(mapping.external, ("203.0.113.10", 5000))
        self.assertIsNone(mapping.remote)
        self.assertEqual(mapping.last_outbound, 5)


class AllocationTests(SimnetCase):
    def test_preserving_keeps_port_then_next_free(self) -> None:
        """
        A port-preserving NAT keeps the inside port; a second inside host
        using the same port gets the next free one.
        """
        self.build(allocation=Allocation.PRESERVING)
        second = self.net.add_host(behind=self.nat)
        second_port = second.listenUDP(5000, Recorder())
        self.inside_port.write(b"x", ("198.51.100.7", 7000))
        second_port.write(b"x", ("198.51.100.7", 7000))
        self.settle()
        self.assertEqual(
            self.server_protos[0].sources,
            [("203.0.113.10", 5000), ("203.0.113.10", 5001)],
        )

    def test_sequential(self) -> None:
        """
        A sequential allocator hands out port_start, port_start + 1, ... to
        new mappings.
        """
        self.build(
            allocation=Allocation.SEQUENTIAL,
            mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
            port_start=41000,
        )
        for port in (7000, 7001):
            self.inside_port.write(b"x", ("198.51.100.7", port))
        self.inside_port.write(b"x", ("198.51.100.8", 7000))
        self.settle()
        seen = [
            self.server_protos[0].sources[0][1],
            self.server_protos[1].sources[0][1],
            self.other_proto.sources[0][1],
        ]
        self.assertEqual(seen, [41000, 41001, 41002])

    def random_ports(self, seed: int) -> list[int]:
        self.build(
            seed=seed,
            allocation=Allocation.RANDOM,
            mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT,
        )
        for port in range(20):
            self.inside_port.write(b"x", ("198.51.100.7", 9000 + port))
        self.settle()
        return [m.external[1] for m in self.nat.mappings()]

    def test_random_is_seeded(self) -> None:
        """
        A random allocator gives distinct ports in 1024-65535, the same for
        the same seed and different for another seed.
        """
        first = self.random_ports(5)
        self.assertEqual(len(set(first)), 20)
        self.assertTrue(all(1024 <= port <= 65535 for port in first))
        self.assertNotIn(5000, first)
        self.assertEqual(self.random_ports(5), first)
        self.assertNotEqual(self.random_ports(6), first)


class FilteringTests(SimnetCase):
    def test_endpoint_independent(self) -> None:
        """
        An endpoint-independent filter lets anyone reach a mapped port.
        """
        self.build(filtering=Filtering.ENDPOINT_INDEPENDENT)
        self.inside_port.write(b"x", ("198.51.100.7", 7000))
        self.settle()
        self.other_port.write(b"stranger", ("203.0.113.10", 5000))
        self.settle()
        self.assertEqual(self.inside_proto.received, [(b"stranger", ("198.51.100.8", 7000))])

    def test_endpoint_independent_needs_mapping(self) -> None:
        """
        Even an endpoint-independent filter drops packets to a port with no
        mapping.
        """
        self.build(filtering=Filtering.ENDPOINT_INDEPENDENT)
        self.other_port.write(b"x", ("203.0.113.10", 5000))
        self.settle()
        self.assertEqual(self.inside_proto.received, [])
        self.assertEqual(self.drops(), [("no mapping", "home")])

    def test_address_dependent(self) -> None:
        """
        An address-dependent filter accepts another port of an IP the
        mapping sent to, and drops other IPs.
        """
        self.build(filtering=Filtering.ADDRESS_DEPENDENT)
        self.inside_port.write(b"x", ("198.51.100.7", 7000))
        self.settle()
        self.server_ports[1].write(b"same ip", ("203.0.113.10", 5000))
        self.other_port.write(b"other ip", ("203.0.113.10", 5000))
        self.settle()
        self.assertEqual(self.inside_proto.received, [(b"same ip", ("198.51.100.7", 7001))])
        self.assertEqual(self.drops(), [("filtered", "home")])

    def test_address_and_port_dependent(self) -> None:
        """
        An address-and-port-dependent filter drops a packet from a port the
        inside host never sent to, and accepts the one it did.
        """
        self.build(filtering=Filtering.ADDRESS_AND_PORT_DEPENDENT)
        self.inside_port.write(b"x", ("198.51.100.7", 7000))
        self.settle()
        self.server_ports[1].write(b"other port", ("203.0.113.10", 5000))
        self.server_ports[0].write(b"answer", ("203.0.113.10", 5000))
        self.settle()
        self.assertEqual(self.inside_proto.received, [(b"answer", ("198.51.100.7", 7000))])
        self.assertEqual(self.drops(), [("filtered", "home")])


class HairpinTests(SimnetCase):
    def two_inside(self, hairpin: bool):
        self.build(hairpin=hairpin, filtering=Filtering.ENDPOINT_INDEPENDENT)
        second = self.net.add_host("10.0.1.3", behind=self.nat)
        second_proto = Recorder()
        second_port = second.listenUDP(6000, second_proto)
        # Both open mappings (public ports 5000 and 6000).
        self.inside_port.write(b"open", ("198.51.100.7", 7000))
        second_port.write(b"open", ("198.51.100.7", 7000))
        self.settle()
        second_port.write(b"hairpin", ("203.0.113.10", 5000))
        self.settle()
        return second_proto

    def test_hairpin_on(self) -> None:
        """
        With hairpin on, a LAN host reaches another through the NAT's public
        address, and the packet comes from the sender's public mapping.
        """
        self.two_inside(hairpin=True)
        self.assertEqual(
            self.inside_proto.received, [(b"hairpin", ("203.0.113.10", 6000))]
        )

    def test_hairpin_off(self) -> None:
        """
        With hairpin off, a LAN host sending to its NAT's public address is
        dropped.
        """
        self.two_inside(hairpin=False)
        self.assertEqual(self.inside_proto.received, [])
        self.assertEqual(self.drops(), [("no hairpin", "home")])

    def test_hairpin_is_filtered(self) -> None:
        """
        A hairpinned packet is filtered like any inbound packet: an
        address-and-port-dependent filter drops it unless the target sent to
        the sender's public mapping.
        """
        self.build(hairpin=True)
        second = self.net.add_host("10.0.1.3", behind=self.nat)
        second_port = second.listenUDP(6000, Recorder())
        self.inside_port.write(b"open", ("198.51.100.7", 7000))
        second_port.write(b"hairpin", ("203.0.113.10", 5000))
        self.settle()
        self.assertEqual(self.drops(), [("filtered", "home")])
        self.inside_port.write(b"punch", ("203.0.113.10", 6000))
        second_port.write(b"hairpin", ("203.0.113.10", 5000))
        self.settle()
        self.assertEqual(
            self.inside_proto.received, [(b"hairpin", ("203.0.113.10", 6000))]
        )

    def test_lan_direct(self) -> None:
        """
        LAN hosts reach each other by private address without crossing the
        NAT: no translation, no TTL decrement, no mapping.
        """
        second_proto = self.two_inside(hairpin=False)
        self.nat.flush()
        self.inside_port.write(b"direct", ("10.0.1.3", 6000))
        self.settle()
        self.assertEqual(second_proto.received, [(b"direct", ("10.0.1.2", 5000))])
        self.assertEqual(self.events[-1].kind, "deliver")
        self.assertEqual(self.events[-1].ttl, 64)
        self.assertEqual(self.nat.mappings(), [])


class PoisonTests(SimnetCase):
    def remote_first(self, poisoned: bool, warm_up: bool) -> list:
        """
        The server sends to the NAT first (unless warmed up), then the inside
        host sends to the server, then the server sends again.
        """
        self.build(poisoned=poisoned)
        if warm_up:
            _set_ttl(self.inside_port, 2)
            self.inside_port.write(b"warm", ("198.51.100.7", 7000))
            _set_ttl(self.inside_port, 64)
            self.settle()
        self.server_ports[0].write(b"early", ("203.0.113.10", 5000))
        self.settle()
        self.inside_port.write(b"hello", ("198.51.100.7", 7000))
        self.settle()
        self.server_ports[0].write(b"late", ("203.0.113.10", 5000))
        self.settle()
        return [data for data, _ in self.inside_proto.received]

    def test_unpoisoned_nat_recovers(self) -> None:
        """
        A normal NAT drops the unsolicited packet but accepts the remote
        once the inside host has sent to it.
        """
        self.assertEqual(self.remote_first(poisoned=False, warm_up=False), [b"late"])

    def test_poisoned_nat_keeps_rejecting(self) -> None:
        """
        A poisoned NAT keeps rejecting a remote whose packet arrived before
        any outbound packet, even after the inside host sent to it.
        """
        self.assertEqual(self.remote_first(poisoned=True, warm_up=False), [])
        self.assertEqual(
            self.drops(), [("no mapping", "home"), ("poisoned", "home")]
        )

    def test_warm_up_prevents_poisoning(self) -> None:
        """
        A short-TTL outbound packet sent first opens the mapping (and dies
        in the internet core), so the remote's first packet is accepted.
        """
        self.assertEqual(
            self.remote_first(poisoned=True, warm_up=True), [b"early", b"late"]
        )
        self.assertEqual(self.server_protos[0].received[0][0], b"hello")

    def test_poison_is_refreshed_then_expires(self) -> None:
        """
        Each rejected packet refreshes the poison; after mapping_timeout
        without rejected packets it is gone.
        """
        self.build(poisoned=True, mapping_timeout=30.0)
        self.server_ports[0].write(b"unsolicited", ("203.0.113.10", 5000))
        self.settle()
        self.clock.advance(20)
        self.server_ports[0].write(b"again", ("203.0.113.10", 5000))
        self.settle()
        self.clock.advance(20)
        self.inside_port.write(b"hello", ("198.51.100.7", 7000))
        self.server_ports[0].write(b"still poisoned", ("203.0.113.10", 5000))
        self.settle()
        self.assertEqual(self.inside_proto.received, [])
        self.clock.advance(29)
        self.inside_port.write(b"hello", ("198.51.100.7", 7000))
        self.server_ports[0].write(b"too soon", ("203.0.113.10", 5000))
        self.settle()
        self.clock.advance(30)
        self.inside_port.write(b"hello", ("198.51.100.7", 7000))
        self.server_ports[0].write(b"clean", ("203.0.113.10", 5000))
        self.settle()
        self.assertEqual(self.inside_proto.received, [(b"clean", ("198.51.100.7", 7000))])

    def test_poison_is_per_remote(self) -> None:
        """
        Poison from one remote does not affect another remote.
        """
        self.build(poisoned=True, filtering=Filtering.ENDPOINT_INDEPENDENT)
        self.server_ports[0].write(b"unsolicited", ("203.0.113.10", 5000))
        self.settle()
        self.inside_port.write(b"hello", ("198.51.100.7", 7000))
        self.settle()
        self.other_port.write(b"fine", ("203.0.113.10", 5000))
        self.server_ports[0].write(b"poisoned", ("203.0.113.10", 5000))
        self.settle()
        self.assertEqual(self.inside_proto.received, [(b"fine", ("198.51.100.8", 7000))])


class TTLTests(SimnetCase):
    def test_default_ttl_and_restore(self) -> None:
        """
        A socket starts with IP_TTL 64; setsockopt changes it and getsockopt
        reads it back.
        """
        self.build()
        handle = self.inside_port.getHandle()
        self.assertEqual(handle.getsockopt(socket.IPPROTO_IP, socket.IP_TTL), 64)
        _set_ttl(self.inside_port, 2)
        self.assertEqual(handle.getsockopt(socket.IPPROTO_IP, socket.IP_TTL), 2)
        self.assertRaises(OSError, _set_ttl, self.inside_port, 0)

    def test_short_ttl_opens_own_nat_and_dies_in_core(self) -> None:
        """
        TTL 2 from behind a NAT creates the mapping at the NAT and dies in
        the internet core; the remote's answer then gets in.
        """
        self.build()
        _set_ttl(self.inside_port, 2)
        self.inside_port.write(b"warm", ("198.51.100.7", 7000))
        self.settle()
        self.assertEqual(self.server_protos[0].received, [])
        self.assertEqual(self.drops(), [("ttl", "internet")])
        self.assertEqual(len(self.nat.mappings()), 1)
        self.server_ports[0].write(b"in", ("203.0.113.10", 5000))
        self.settle()
        self.assertEqual(self.inside_proto.received, [(b"in", ("198.51.100.7", 7000))])

    def test_ttl_one_creates_no_mapping(self) -> None:
        """
        A packet that dies at the NAT itself (TTL 1) leaves no mapping.
        """
        self.build()
        _set_ttl(self.inside_port, 1)
        self.inside_port.write(b"x", ("198.51.100.7", 7000))
        self.settle()
        self.assertEqual(self.drops(), [("ttl", "home")])
        self.assertEqual(self.nat.mappings(), [])

    def test_core_hops(self) -> None:
        """
        Crossing the internet core costs internet_hops: a host on the
        internet needs TTL internet_hops + 1, and arrives with TTL 1.
        """
        self.build()
        _set_ttl(self.other_port, 8)
        self.other_port.write(b"short", ("198.51.100.7", 7000))
        _set_ttl(self.other_port, 9)
        self.other_port.write(b"enough", ("198.51.100.7", 7000))
        self.settle()
        self.assertEqual([d for d, _ in self.server_protos[0].received], [b"enough"])
        self.assertEqual(self.events[-1].ttl, 1)

    def test_through_cgn(self) -> None:
        """
        Behind a NAT inside a carrier-grade NAT, TTL 2 opens the home NAT
        and dies at the CGN, which creates no mapping.
        """
        self.build()
        cgn = self.net.add_nat("cgn", "192.0.2.1", lan="100.64.0.0/10")
        home = self.net.add_nat("home2", parent=cgn, lan="10.0.1.0/24")
        self.assertEqual(home.public_ip, "100.64.0.2")
        host = self.net.add_host(behind=home)
        port = host.listenUDP(5000, Recorder())
        _set_ttl(port, 2)
        port.write(b"warm", ("198.51.100.7", 7000))
        self.settle()
        self.assertEqual(self.drops(), [("ttl", "cgn")])
        self.assertEqual(len(home.mappings()), 1)
        self.assertEqual(cgn.mappings(), [])


class NestedNatTests(SimnetCase):
    def test_round_trip_through_cgn(self) -> None:
        """
        A host behind a home NAT behind a CGN appears on the internet at the
        CGN's public address, and answers come back through both.
        """
        self.build()
        cgn = self.net.add_nat("cgn", "192.0.2.1", lan="100.64.0.0/10")
        home = self.net.add_nat("home2", "100.64.0.9", parent=cgn)
        host = self.net.add_host(behind=home)
        proto = Recorder()
        port = host.listenUDP(5000, proto)
        port.write(b"out", ("198.51.100.7", 7000))
        self.settle()
        [(_, seen)] = self.server_protos[0].received
        self.assertEqual(seen, ("192.0.2.1", 5000))
        self.assertEqual(cgn.mappings()[0].internal, ("100.64.0.9", 5000))
        self.server_ports[0].write(b"back", seen)
        self.settle()
        self.assertEqual(proto.received, [(b"back", ("198.51.100.7", 7000))])
        # The core and two boxes: 64 - 8 - 1 - 1.
        self.assertEqual(self.events[-1].ttl, 54)

    def test_nested_public_ip_must_be_on_parent_lan(self) -> None:
        """
        A NAT inside a NAT must take an address of its parent's LAN.
        """
        self.build()
        self.assertRaises(
            ValueError, self.net.add_nat, "bad", "198.51.100.50", parent=self.nat
        )


class FirewallTests(SimnetCase):
    def build_firewall(self, **options) -> None:
        self.build()
        self.firewall = self.net.add_firewall("office", **options)
        self.office = self.net.add_host("198.51.100.20", behind=self.firewall)
        self.office_proto = Recorder()
        self.office_port = self.office.listenUDP(5000, self.office_proto)

    def test_unsolicited_inbound_dropped(self) -> None:
        """
        A firewall drops inbound packets for which no flow exists.
        """
        self.build_firewall()
        self.server_ports[0].write(b"x", ("198.51.100.20", 5000))
        self.settle()
        self.assertEqual(self.office_proto.received, [])
        self.assertEqual(self.drops(), [("filtered", "office")])

    def test_flow_is_exact_and_untranslated(self) -> None:
        """
        After an outbound packet, the remote sees the host's own address and
        its answer passes; another port of the same remote is dropped.
        """
        self.build_firewall()
        self.office_port.write(b"out", ("198.51.100.7", 7000))
        self.settle()
        self.assertEqual(self.server_protos[0].sources, [("198.51.100.20", 5000)])
        self.server_ports[1].write(b"other", ("198.51.100.20", 5000))
        self.server_ports[0].write(b"answer", ("198.51.100.20", 5000))
        self.settle()
        self.assertEqual(self.office_proto.received, [(b"answer", ("198.51.100.7", 7000))])

    def test_short_ttl_opens_flow(self) -> None:
        """
        TTL 2 from behind a firewall opens the flow and dies in the core.
        """
        self.build_firewall()
        _set_ttl(self.office_port, 2)
        self.office_port.write(b"warm", ("198.51.100.7", 7000))
        self.settle()
        self.assertEqual(self.drops(), [("ttl", "internet")])
        self.server_ports[0].write(b"answer", ("198.51.100.20", 5000))
        self.settle()
        self.assertEqual(len(self.office_proto.received), 1)

    def test_flow_times_out_and_flushes(self) -> None:
        """
        A flow expires timeout seconds after its last outbound packet, and
        flush forgets flows at once.
        """
        self.build_firewall(timeout=30.0)
        self.office_port.write(b"out", ("198.51.100.7", 7000))
        self.settle()
        self.clock.advance(29)
        self.server_ports[0].write(b"in time", ("198.51.100.20", 5000))
        self.settle()
        self.clock.advance(1)
        self.server_ports[0].write(b"expired", ("198.51.100.20", 5000))
        self.office_port.write(b"out", ("198.51.100.7", 7000))
        self.settle()
        self.firewall.flush()
        self.server_ports[0].write(b"flushed", ("198.51.100.20", 5000))
        self.settle()
        self.assertEqual([d for d, _ in self.office_proto.received], [b"in time"])

    def test_address_dependent_firewall(self) -> None:
        """
        A firewall keyed on remote IPs accepts another port of a remote the
        host sent to, but not another remote.
        """
        self.build_firewall(filtering=Filtering.ADDRESS_DEPENDENT)
        self.office_port.write(b"out", ("198.51.100.7", 7000))
        self.settle()
        self.server_ports[1].write(b"other port", ("198.51.100.20", 5000))
        self.other_port.write(b"other ip", ("198.51.100.20", 5000))
        self.settle()
        self.assertEqual(
            self.office_proto.received, [(b"other port", ("198.51.100.7", 7001))]
        )

    def test_hosts_behind_same_firewall(self) -> None:
        """
        Hosts behind the same firewall reach each other without it.
        """
        self.build_firewall()
        peer = self.net.add_host(behind=self.firewall)
        peer_proto = Recorder()
        peer.listenUDP(5000, peer_proto)
        self.office_port.write(b"hi", (peer.ip, 5000))
        self.settle()
        self.assertEqual(peer_proto.received, [(b"hi", ("198.51.100.20", 5000))])


class TimeoutTests(SimnetCase):
    def test_inbound_does_not_refresh(self) -> None:
        """
        A mapping expires mapping_timeout seconds after its last outbound
        packet even while the remote keeps sending.
        """
        self.build(mapping_timeout=60.0)
        self.inside_port.write(b"out", ("198.51.100.7", 7000))
        self.settle()
        for _ in range(3):
            self.clock.advance(20)
            self.server_ports[0].write(b"in", ("203.0.113.10", 5000))
            self.settle()
        self.assertEqual(len(self.inside_proto.received), 2)
        self.assertEqual(self.drops(), [("no mapping", "home")])

    def test_outbound_refreshes(self) -> None:
        """
        Outbound packets keep a mapping alive past mapping_timeout.
        """
        self.build(mapping_timeout=60.0)
        for _ in range(4):
            self.inside_port.write(b"keepalive", ("198.51.100.7", 7000))
            self.clock.advance(50)
            self.server_ports[0].write(b"in", ("203.0.113.10", 5000))
            self.settle()
        self.assertEqual(len(self.inside_proto.received), 4)

    def test_expired_mapping_is_replaced(self) -> None:
        """
        After expiry, the next outbound packet makes a fresh mapping (here
        a new sequential port).
        """
        self.build(mapping_timeout=60.0, allocation=Allocation.SEQUENTIAL)
        self.inside_port.write(b"x", ("198.51.100.7", 7000))
        self.clock.advance(60)
        self.inside_port.write(b"x", ("198.51.100.7", 7000))
        self.settle()
        self.assertEqual(
            [port for _, port in self.server_protos[0].sources], [40000, 40001]
        )


class FlushTests(SimnetCase):
    def test_flush_drops_mappings(self) -> None:
        """
        After flush, an answer on a previously open mapping is dropped.
        """
        self.build()
        self.inside_port.write(b"out", ("198.51.100.7", 7000))
        self.settle()
        self.nat.flush()
        self.assertEqual(self.nat.mappings(), [])
        self.server_ports[0].write(b"in", ("203.0.113.10", 5000))
        self.settle()
        self.assertEqual(self.inside_proto.received, [])
        self.assertEqual(self.drops(), [("no mapping", "home")])


class GatewayHostTests(SimnetCase):
    def build_gateway(self) -> None:
        self.build()
        self.gateway = self.net.add_host(behind=self.nat, on_gateway=True)
        self.gateway_proto = Recorder()
        self.gateway_port = self.gateway.listenUDP(9000, self.gateway_proto)

    def test_outward_untranslated(self) -> None:
        """
        A program on the NAT box sends from the public address and its own
        port, and is reachable there without any mapping.
        """
        self.build_gateway()
        self.assertEqual(self.gateway_port.getHost().host, "203.0.113.10")
        self.gateway_port.write(b"out", ("198.51.100.7", 7000))
        self.other_port.write(b"in", ("203.0.113.10", 9000))
        self.settle()
        self.assertEqual(self.server_protos[0].sources, [("203.0.113.10", 9000)])
        self.assertEqual(self.gateway_proto.received, [(b"in", ("198.51.100.8", 7000))])
        self.assertEqual(self.nat.mappings(), [])

    def test_gateway_ports_beat_mappings(self) -> None:
        """
        Inbound to a port the gateway host has bound goes to it, and the NAT
        does not hand that port to a new mapping.
        """
        self.build_gateway()
        inside = self.net.add_host(behind=self.nat)
        inside_port = inside.listenUDP(9000, Recorder())
        inside_port.write(b"x", ("198.51.100.7", 7000))
        self.settle()
        self.assertEqual(self.server_protos[0].sources, [("203.0.113.10", 9001)])

    def test_lan_side(self) -> None:
        """
        Towards the LAN the gateway host uses the box's LAN address, and LAN
        hosts reach it there or at the public address.
        """
        self.build_gateway()
        self.gateway_port.write(b"to lan", ("10.0.1.2", 5000))
        self.inside_port.write(b"via lan ip", ("10.0.1.1", 9000))
        self.inside_port.write(b"via public ip", ("203.0.113.10", 9000))
        self.settle()
        self.assertEqual(self.inside_proto.received, [(b"to lan", ("10.0.1.1", 9000))])
        self.assertEqual(
            self.gateway_proto.received,
            [(b"via lan ip", ("10.0.1.2", 5000)), (b"via public ip", ("10.0.1.2", 5000))],
        )

    def test_gateway_uses_nat_link(self) -> None:
        """
        The gateway host has no link of its own: the NAT's link applies.
        """
        self.build_gateway()
        self.assertRaises(ValueError, self.net.set_link, self.gateway, latency=1)
        self.net.set_link(self.nat, latency=0.5)
        self.gateway_port.write(b"out", ("198.51.100.7", 7000))
        self.clock.advance(0.4)
        self.assertEqual(self.server_protos[0].received, [])
        self.clock.advance(0.1)
        self.assertEqual(len(self.server_protos[0].received), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class LatencyTests(SimnetCase):
    def test_latency_is_sum_of_links(self) -> None:
        """
        A packet arrives after the sum of the latencies of the links it
        crosses, and not before.
        """
        self.build()
        self.net.set_link(self.inside, latency=0.010)
        self.net.set_link(self.nat, latency=0.020)
        self.net.set_link(self.server, latency=0.030)
        self.inside_port.write(b"x", ("198.51.100.7", 7000))
        self.clock.advance(0.059)
        self.assertEqual(self.server_protos[0].received, [])
        self.clock.advance(0.002)
        self.assertEqual(len(self.server_protos[0].received), 1)
        [delivered] = [e for e in self.events if e.kind == "deliver"]
        self.assertAlmostEqual(delivered.time, 0.060)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_state_checked_on_arrival(self) -> None:
        """
        NAT state is checked when a packet reaches the box: packets crossing
        in flight both get through (simultaneous open).
        """
        self.build()
        self.net.set_link(self.nat, latency=0.050)
        self.net.set_link(self.server, latency=0.050)
        self.inside_port.write(b"out", ("198.51.100.7", 7000))
        self.server_ports[0].write(b"in", ("203.0.113.10", 5000))
        self.clock.advance(1)
        self.assertEqual(len(self.server_protos[0].received), 1)
        self.assertEqual(len(self.inside_proto.received), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_late_packet_filtered_on_arrival(self) -> None:
        """
        A packet that reaches the NAT before the inside host's outbound
        packet has left is filtered, even within one big clock advance.
        """
        self.build()
        self.net.set_link(self.inside, latency=0.100)
        self.net.set_link(self.server, latency=0.050)
        self.inside_port.write(b"out", ("198.51.100.7", 7000))
        self.server_ports[0].write(b"in", ("203.0.113.10", 5000))
        self.clock.advance(1)
        self.assertEqual(len(self.server_protos[0].received), 1)
        self.assertEqual(self.inside_proto.received, [])
        self.assertEqual(self.drops(), [("no mapping", "home")])
        self.assertEqual([e.time for e in self.events if e.kind == "drop"], [0.05])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class LossTests(SimnetCase):
    def run_lossy(self, seed: int, count: int = 1000) -> list[bytes]:
        self.build(seed=seed)
        self.net.set_link(self.other, loss=0.3)
        for index in range(count):
            self.other_port.write(b"%d" % index, ("198.51.100.7", 7000))
        self.settle()
        return [data for data, _ in self.server_protos[0].received]

    def test_loss_rate(self) -> None:
        """
        A link with loss 0.3 drops about 30% of the packets crossing it.
        """
        received = self.run_lossy(seed=1)
        self.assertTrue(630 <= len(received) <= 770, len(received))
        self.assertEqual(self.net.stats.dropped["loss"], 1000 - len(received))
        self.assertEqual(self.net.stats.sent, 1000)
        self.assertEqual(self.net.stats.delivered, len(received))

    def test_same_seed_same_losses(self) -> None:
        """
        The same seed loses the same packets; another seed others.
        """
        first = self.run_lossy(seed=3, count=200)
        self.assertEqual(self.run_lossy(seed=3, count=200), first)
        self.assertNotEqual(self.run_lossy(seed=4, count=200), first)

    def test_loss_applies_on_every_link(self) -> None:
        """
        Loss on both ends compounds: about 1 - 0.7 * 0.7 of round trips
        through two lossy links are lost.
        """
        self.build(seed=2)
        self.net.set_link(self.other, loss=0.3)
        self.net.set_link(self.server, loss=0.3)
        for index in range(1000):
            self.other_port.write(b"x", ("198.51.100.7", 7000))
        self.settle()
        self.assertTrue(420 <= len(self.server_protos[0].received) <= 560)

    def test_handshakes_under_loss(self) -> None:
        """
        Two hosts behind different NATs retrying every second complete 200
        punch handshakes through 30% loss per link, deterministically.
        """
        results = []
        for attempt in range(2):
            clock = Clock()
            net = Network(clock, seed=7)
            completed = 0
            for index in range(200):
                left_nat = net.add_nat(f"l{index}")
                right_nat = net.add_nat(f"r{index}")
                left = net.add_host(behind=left_nat)
                right = net.add_host(behind=right_nat)
                net.set_link(left, latency=0.01, loss=0.3)
                net.set_link(right, latency=0.01, loss=0.3)
                left_proto, right_proto = Recorder(), Recorder()
                left_port = left.listenUDP(4000, left_proto)
                right_port = right.listenUDP(4000, right_proto)
                for _ in range(10):
                    left_port.write(b"hi", (right_nat.public_ip, 4000))
                    right_port.write(b"hi", (left_nat.public_ip, 4000))
                    clock.advance(1)
                    if left_proto.received and right_proto.received:
                        completed += 1
                        break
            clock.advance(1)
            self.assertEqual(clock.getDelayedCalls(), [])
            results.append((completed, net.stats.dropped["loss"]))
        self.assertEqual(results[0], results[1])
        self.assertTrue(190 <= results[0][0] <= 200, results)


class TraceTests(SimnetCase):
    def test_trace_and_stats(self) -> None:
        """
        The trace sees send, drop and deliver events with translated
        addresses, and stats count them.
        """
        self.build()
        self.server_ports[0].write(b"early", ("203.0.113.10", 5000))
        self.inside_port.write(b"out", ("198.51.100.7", 7000))
        self.settle()
        self.assertEqual(
            [(e.kind, e.src, e.dst, e.size, e.ttl, e.where, e.reason) for e in self.events],
            [
                ("send", ("198.51.100.7", 7000), ("203.0.113.10", 5000), 5, 64,
                 "198.51.100.7", None),
                ("drop", ("198.51.100.7", 7000), ("203.0.113.10", 5000), 5, 56,
                 "home", "no mapping"),
                ("send", ("10.0.1.2", 5000), ("198.51.100.7", 7000), 3, 64,
                 "10.0.1.2", None),
                ("deliver", ("203.0.113.10", 5000), ("198.51.100.7", 7000), 3, 55,
                 "198.51.100.7", None),
            ],
        )
        self.assertEqual(self.net.stats.sent, 2)
        self.assertEqual(self.net.stats.delivered, 1)
        self.assertEqual(self.net.stats.dropped_total, 1)


class BuildTests(SynchronousTestCase):
    def test_addresses_are_checked(self) -> None:
        """
        Clashing or out-of-LAN addresses and duplicate names are refused.
        """
        net = Network(Clock())
        nat = net.add_nat("home", "203.0.113.10", lan="10.0.1.0/24")
        self.assertRaises(ValueError, net.add_nat, "home", "203.0.113.11")
        self.assertRaises(ValueError, net.add_host, "203.0.113.10")
        self.assertRaises(ValueError, net.add_host, "10.0.2.5", behind=nat)
        self.assertRaises(ValueError, net.add_host, "10.0.1.1", behind=nat)
        self.assertRaises(ValueError, net.add_host, "10.0.1.2", behind=nat, on_gateway=True)
        net.add_host("10.0.1.2", behind=nat)
        self.assertRaises(ValueError, net.add_host, "10.0.1.2", behind=nat)
        self.assertRaises(ValueError, net.set_link, nat, loss=1.5)

    def test_default_addresses(self) -> None:
        """
        Without explicit addresses, NATs get documentation addresses and
        distinct 10.0.N.0/24 LANs, and hosts the next free LAN address.
        """
        net = Network(Clock())
        first = net.add_nat("a")
        second = net.add_nat("b")
        self.assertEqual((first.public_ip, str(first.lan)), ("198.51.100.1", "10.0.1.0/24"))
        self.assertEqual((second.public_ip, str(second.lan)), ("198.51.100.2", "10.0.2.0/24"))
        self.assertEqual(net.add_host(behind=first).ip, "10.0.1.2")
        self.assertEqual(net.add_host(behind=first).ip, "10.0.1.3")
        self.assertEqual(net.add_host().ip, "198.51.100.3")
