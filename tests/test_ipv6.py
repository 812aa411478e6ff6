"""
IPv6: address rules, the introducer's alternate (other-family) address,
servers on both families, and real endpoints over IPv6 loopback.
"""

from __future__ import annotations

import os
import socket

from twisted.internet import defer, reactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from p2pnet import wire
from p2pnet._ipv6 import DualStackTransport, interface_addresses, is_advertisable, normalise, usable_candidate
from p2pnet._registry import Registry
from p2pnet.address import Address
from p2pnet.endpoint import Path, PeerConfig, PeerEndpoint, PeerFactory, PeerProtocol
from p2pnet.introducer import IntroducerProtocol, IntroducerService, RelaySettings, UDPService
from p2pnet.relay import RelayProtocol
from p2pnet.wire import ErrorCode

from .helpers import FakeDatagramTransport
from .test_introducer import IntroducerTestCase

A = ("203.0.113.5", 40000)
A6 = ("2001:db8:a::5", 40000)
B = ("198.51.100.7", 41000)


class AddressRuleTests(SynchronousTestCase):
    def test_normalise_v4_mapped(self):
        """
        An IPv4-mapped IPv6 address (what a dual-stack socket reports for
        an IPv4 peer) becomes the plain IPv4 address; others stay.
        """
        self.assertEqual(normalise(Address("::ffff:192.0.2.1", 5)), Address("192.0.2.1", 5))
        # As the wire codec writes it back.
        self.assertEqual(normalise(Address("::ffff:c000:201", 5)), Address("192.0.2.1", 5))
        self.assertEqual(normalise(Address("2001:db8::1", 5)), Address("2001:db8::1", 5))
        self.assertEqual(normalise(Address("192.0.2.1", 5)), Address("192.0.2.1", 5))

    def test_advertisable(self):
        """
        Global and unique-local addresses are advertised; link-local,
        loopback, multicast, unspecified and IPv4-mapped ones are not.
        """
        self.assertTrue(is_advertisable("2001:db8:1::2"))
        self.assertTrue(is_advertisable("fd00:1::2"))
        for host in ("fe80::1", "::1", "ff02::1", "::", "::ffff:192.0.2.1", "::192.0.2.1", "10.0.0.1"):
            self.assertFalse(is_advertisable(host), host)

    def test_usable_candidate(self):
        """
        A peer's IPv6 candidate is dropped when link-local or scoped, and
        when loopback unless the peer itself was seen on loopback.
        """
        far = Address("198.51.100.7", 1)
        self.assertTrue(usable_candidate(Address("2001:db8::1", 1), far))
        self.assertTrue(usable_candidate(Address("fd00::1", 1), far))
        self.assertFalse(usable_candidate(Address("fe80::1", 1), far))
        self.assertFalse(usable_candidate(Address("fe80::1%eth0", 1), far))
        self.assertFalse(usable_candidate(Address("::1", 1), far))
        self.assertTrue(usable_candidate(Address("::1", 1), Address("127.0.0.1", 2)))
        self.assertTrue(usable_candidate(Address("::1", 1), Address("::1", 2)))

    def test_interface_addresses(self):
        """
        From Linux's interface table: global first, then unique-local;
        link-local, loopback and tentative, deprecated or failed
        addresses are left out.
        """
        path = self.mktemp()
        with open(path, "w") as table:
            table.write(
                "fd000000000000000000000000000002 04 40 00 80     eth0\n"
                "00000000000000000000000000000001 01 80 10 80       lo\n"
                "fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n"
                "20010db8000100000000000000000002 04 40 00 00     eth0\n"
                "20010db8000000010000000000000003 04 40 00 40     eth0\n"
                "20010db8000000010000000000000004 04 40 00 20     eth0\n"
                "20010db8000000010000000000000005 04 40 00 08     eth0\n"
                "garbage\n"
            )
        self.assertEqual(interface_addresses(path), ("2001:db8:1::2", "fd00::2"))
        self.assertEqual(interface_addresses(path + ".missing"), ())


class DualStackTransportTests(SynchronousTestCase):
    def test_writes_by_family(self):
        """
        A server's two sockets: IPv6 destinations leave by the IPv6 one,
        IPv4 destinations by the IPv4 one.
        """
        v4, v6 = FakeDatagramTransport(), FakeDatagramTransport("2001:db8::1")
        both = DualStackTransport(v4, v6)
        both.write(b"four", ("192.0.2.9", 1))
        both.write(b"six", ("2001:db8::9", 1))
        self.assertEqual(v4.written, [(b"four", ("192.0.2.9", 1))])
        self.assertEqual(v6.written, [(b"six", ("2001:db8::9", 1))])
        self.assertIs(both.getHost(), v4.getHost())


class AlternateAddressTests(IntroducerTestCase):
    def prove_alternate(self, name, source):
        """
        A heartbeat from C{source} is challenged; the proof from there
        makes it the alternate.
        """
        self.send(wire.Heartbeat(self.next_txid(), name, self.cookies[name]), source)
        [(challenge, to)] = self.transport.clear()
        self.assertEqual(to, source)
        self.assertIsInstance(challenge, wire.Challenge)
        proof = wire.proof_tag(self.cookies[name], challenge.challenge, name, Address(*source))
        self.send(wire.Proof(self.next_txid(), name, challenge.challenge, proof), source)
        [(answer, to)] = self.transport.clear()
        self.assertEqual(to, source)
        return answer

    def test_heartbeat_from_other_family_adds_alternate(self):
        """
        A registered IPv4 host's heartbeat from an IPv6 address, once
        proven from there, records that address beside the IPv4 one (the
        registration does not move) and is answered with it.
        """
        self.register("a", A)
        answer = self.prove_alternate("a", A6)
        self.assertIsInstance(answer, wire.HeartbeatAck)
        self.assertEqual(answer.public, Address(*A6))
        registration = self.protocol.registry.lookup("a", 0)
        self.assertEqual((registration.public, registration.alternate), (Address(*A), Address(*A6)))
        # Later heartbeats from there need no new proof.
        self.send(wire.Heartbeat(self.next_txid(), "a", self.cookies["a"]), A6)
        [(again, to)] = self.transport.clear()
        self.assertEqual((type(again), again.public, to), (wire.HeartbeatAck, Address(*A6), A6))
        self.assertEqual(self.protocol.registry.lookup("a", 0).public, Address(*A))

    def test_wrong_cookie_from_other_family(self):
        """
        A heartbeat with a wrong cookie from an IPv6 address is refused
        and records nothing.
        """
        self.register("a", A)
        self.send(wire.Heartbeat(self.next_txid(), "a", bytes(8)), A6)
        [(answer, _)] = self.transport.clear()
        self.assertEqual(answer.code, ErrorCode.NOT_AUTHORISED)
        self.assertIsNone(self.protocol.registry.lookup("a", 0).alternate)

    def test_unproven_alternate_not_introduced(self):
        """
        Until proven from there, an IPv6 address is not handed to peers:
        a proof sent from elsewhere is refused.
        """
        self.register("a", A)
        self.send(wire.Heartbeat(self.next_txid(), "a", self.cookies["a"]), A6)
        [(challenge, _)] = self.transport.clear()
        elsewhere = ("2001:db8:bad::1", 40000)
        proof = wire.proof_tag(self.cookies["a"], challenge.challenge, "a", Address(*elsewhere))
        self.send(wire.Proof(self.next_txid(), "a", challenge.challenge, proof), elsewhere)
        [(answer, _)] = self.transport.clear()
        self.assertEqual(answer.code, ErrorCode.NOT_AUTHORISED)
        self.register("b", B)
        self.send(wire.Introduce(self.next_txid(), "b", self.cookies["b"], "a"), B)
        intros = {to: m for m, to in self.transport.clear() if isinstance(m, wire.Introduction)}
        self.assertIsNone(intros[B].other_public)

    def test_introduction_carries_alternate(self):
        """
        Both sides' introductions name the other side's proven address of
        the other family.
        """
        self.register("a", A)
        self.prove_alternate("a", A6)
        self.register("b", B)
        self.send(wire.Introduce(self.next_txid(), "b", self.cookies["b"], "a"), B)
        intros = {to: m for m, to in self.transport.clear() if isinstance(m, wire.Introduction)}
        self.assertEqual(intros[B].peer_id, "a")
        self.assertEqual(intros[B].other_public, Address(*A6))
        self.assertIsNone(intros[A].other_public)

    def test_move_in_family_of_alternate_drops_it(self):
        """
        A registration that moves to an IPv6 address (its IPv4 path gone)
        forgets its IPv6 alternate: one address per family.
        """
        self.register("a", A)
        self.prove_alternate("a", A6)
        moved = ("2001:db8:a::6", 40000)
        self.send(wire.Register(self.next_txid(), "a", (), self.cookies["a"]), moved)
        [(challenge, _)] = self.transport.clear()
        proof = wire.proof_tag(self.cookies["a"], challenge.challenge, "a", Address(*moved))
        self.send(wire.Proof(self.next_txid(), "a", challenge.challenge, proof), moved)
        self.transport.clear()
        registration = self.protocol.registry.lookup("a", 0)
        self.assertEqual((registration.public, registration.alternate), (Address(*moved), None))


def _have_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


class Waiting(PeerProtocol):
    def __init__(self):
        self.next = defer.Deferred()

    def datagram_received(self, data):
        d, self.next = self.next, defer.Deferred()
        d.callback(data)


class Echo(PeerProtocol):
    def datagram_received(self, data):
        self.connection.send(b"echo " + data)


class EchoFactory(PeerFactory):
    protocol = Echo


class LoopbackIPv6Tests(TestCase):
    """
    Real endpoints, a real introducer and relay on 127.0.0.1 and ::1.
    """

    timeout = 30

    def setUp(self):
        if not _have_ipv6_loopback():
            raise SkipTest("no IPv6 loopback here")
        secret = os.urandom(32)
        self.relay = UDPService(reactor, RelayProtocol(reactor, secret), 0, "127.0.0.1", "relay", "::1")
        self.relay.startService()
        self.addCleanup(self.relay.stopService)
        protocol = IntroducerProtocol(
            reactor, Registry(30.0, os.urandom),
            relay=RelaySettings(secret, None, lambda: self.relay.port.getHost().port),
        )
        self.service = IntroducerService(reactor, protocol, 0, "127.0.0.1", "::1")
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.introducer = Address("127.0.0.1", self.service.port.getHost().port)
        self.introducer6 = Address("::1", self.service.port6.getHost().port)

    def endpoint(self, name, family, **kwargs):
        """
        C{family}: "dual" (IPv4 main socket, IPv6 beside), "v6" (IPv6
        only) or "v4" (IPv4 only).
        """
        if family == "v6":
            endpoint = PeerEndpoint(reactor, self.introducer6, name, interface="::1", **kwargs)
        elif family == "dual":
            endpoint = PeerEndpoint(
                reactor, self.introducer, name, interface="127.0.0.1", introducer6=self.introducer6,
                interface6="::1", **kwargs,
            )
        else:
            endpoint = PeerEndpoint(
                reactor, self.introducer, name, interface="127.0.0.1", config=PeerConfig(ipv6=False), **kwargs
            )
        self.addCleanup(endpoint.stop)
        return endpoint

    @defer.inlineCallbacks
    def test_dual_stack_registration(self):
        """
        A dual-stack endpoint registers over IPv4 and proves its IPv6
        address before C{start()} fires; the introducer records it.
        """
        host = self.endpoint("host", "dual")
        registration = yield host.start()
        self.assertEqual(registration.public.host, "127.0.0.1")
        self.assertEqual(registration.public6.host, "::1")
        self.assertIn(registration.public6, host.own_candidates())
        recorded = self.service.protocol.registry.lookup("host", reactor.seconds())
        self.assertEqual(recorded.alternate, registration.public6)

    @defer.inlineCallbacks
    def test_ipv6_only_meets_dual_stack(self):
        """
        An IPv6-only endpoint and a dual-stack one connect directly over
        IPv6 (the only family they share), and the path says so.
        """
        host = self.endpoint("host", "dual", factory=EchoFactory())
        player = self.endpoint("player", "v6")
        yield host.start()
        registration = yield player.start()
        self.assertEqual(registration.public.host, "::1")
        receiver = Waiting()
        connection = yield player.connect("host", receiver)
        self.assertEqual(connection.path, Path.DIRECT_LOCAL_V6)
        self.assertTrue(connection.address.is_ipv6)
        arrived = receiver.next
        connection.send(b"ping")
        self.assertEqual((yield arrived), b"echo ping")

    @defer.inlineCallbacks
    def test_ipv6_only_meets_ipv4_only_through_relay(self):
        """
        An IPv6-only endpoint and an IPv4-only one share no family: they
        meet through the relay, which listens on both.
        """
        host = self.endpoint("host", "v4", factory=EchoFactory())
        player = self.endpoint("player", "v6")
        yield host.start()
        yield player.start()
        receiver = Waiting()
        connection = yield player.connect("host", receiver)
        self.assertEqual(connection.path, Path.RELAYED)
        arrived = receiver.next
        connection.send(b"ping")
        self.assertEqual((yield arrived), b"echo ping")

    @defer.inlineCallbacks
    def test_warmup_hop_limit(self):
        """
        A low-TTL warm-up packet to an IPv6 address leaves with that hop
        limit (IPV6_UNICAST_HOPS), and the socket's hop limit is restored
        for what follows.
        """
        endpoint = self.endpoint("host", "dual")
        yield endpoint.start()
        receiver = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        receiver.bind(("::1", 0))
        receiver.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        receiver.settimeout(5)
        to = Address("::1", receiver.getsockname()[1])

        def hop_limit():
            data, ancillary, _, _ = receiver.recvmsg(2048, socket.CMSG_SPACE(4))
            [(level, kind, value)] = ancillary
            self.assertEqual((level, kind), (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT))
            return data, int.from_bytes(value[:4], "little" if socket.htons(1) != 1 else "big")

        endpoint.write_with_ttl(b"warm", to, 2)
        self.assertEqual(hop_limit(), (b"warm", 2))
        endpoint.write(b"plain", to)
        data, hops = hop_limit()
        self.assertEqual(data, b"plain")
        self.assertGreater(hops, 2)

    @defer.inlineCallbacks
    def test_unusable_ipv6_candidates_dropped(self):
        """
        IPv6 addresses a peer claims as its own that no one can send to
        (multicast, unspecified, link-local) or that are a third party's
        (a global address the introducer never saw it at) are never
        candidates, an IPv4-mapped one becomes its IPv4 address; the
        connection still comes up.
        """
        victim = self.endpoint("victim", "dual", factory=EchoFactory())
        yield victim.start()
        mapped = Address("::ffff:127.0.0.1", 5001)
        bad = (
            Address("ff02::1", 5000), Address("::", 5000), Address("fe80::1", 5000),
            Address("2001:db8:dead::1", 5000),
        )
        mallory = PeerEndpoint(
            reactor, self.introducer, "mallory", interface="127.0.0.1", introducer6=self.introducer6,
            interface6="::1", local_addresses=bad + (mapped,),
        )
        self.addCleanup(mallory.stop)
        yield mallory.start()
        yield mallory.connect("victim", Waiting())
        [connection] = victim.connections
        self.assertEqual([c for c in connection.candidates if c in bad], [])
        self.assertEqual(
            {c.host for c in connection.candidates}, {"127.0.0.1", "::1"}
        )
        # An IPv4-mapped address is the IPv4 address it maps.
        self.assertIn(Address("127.0.0.1", 5001), connection.candidates)


class OptionTests(TestCase):
    def test_introducer_tap_interface6(self):
        """
        C{--interface6} makes the introducer and the relay it runs listen
        on IPv6 too; it must be an IPv6 address.
        """
        from twisted.python.usage import UsageError

        from p2pnet import introducer_tap

        if not _have_ipv6_loopback():
            raise SkipTest("no IPv6 loopback here")
        options = introducer_tap.Options()
        options.parseOptions(["--port", "0", "--relay-port", "0", "--interface", "127.0.0.1", "--interface6", "::1"])
        service = introducer_tap.makeService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        bound = [(s.port.getHost().host, s.port6.getHost().host) for s in service]
        self.assertEqual(bound, [("127.0.0.1", "::1")] * 2)
        bad = introducer_tap.Options()
        self.assertRaises(UsageError, bad.parseOptions, ["--interface6", "10.0.0.1"])

    def test_peer_introducer6(self):
        """
        C{p2pnet peer --introducer6} takes an IPv6 address only.
        """
        from twisted.python.usage import UsageError

        from p2pnet import _peercli

        options = _peercli.Options()
        options.parseOptions(["--introducer", "127.0.0.1:5", "--name", "a", "--introducer6", "[::1]:5"])
        self.assertEqual(options["introducer6"], Address("::1", 5))
        bad = _peercli.Options()
        self.assertRaises(
            UsageError, bad.parseOptions, ["--introducer", "127.0.0.1:5", "--name", "a", "--introducer6", "127.0.0.1:5"]
        )
        both = _peercli.Options()
        self.assertRaises(
            UsageError, both.parseOptions,
            ["--introducer", "127.0.0.1:5", "--name", "a", "--introducer6", "[::1]:5", "--no-ipv6"],
        )
