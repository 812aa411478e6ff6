"""
Tests for L{p2pnet._udpread}: the servers' batched reads, on real loopback
UDP ports.  Datagrams sent on loopback are in the port's socket when
C{sendto} returns, so each test calls C{doRead} itself instead of running
the reactor.
"""

from __future__ import annotations

import errno
import socket

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from p2pnet import wire
from p2pnet._relayclient import answer_challenge
from p2pnet._udpread import FastReadPort, listen_udp
from p2pnet.relay import RelayProtocol
from tests.test_tap import FakeUDPReactor


class Collect(DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple]] = []

    def datagramReceived(self, data, addr):
        if data == b"boom":
            raise ZeroDivisionError("a bug in the protocol")
        self.got.append((data, addr))


class CollectBatches(DatagramProtocol):
    def __init__(self, stop_after: int | None = None) -> None:
        self.batches: list[list[tuple[bytes, tuple]]] = []
        self.stop_after = stop_after

    def datagrams_received(self, datagrams):
        batch = []
        for item in datagrams:
            batch.append(item)
            if len(batch) == self.stop_after:
                break
        self.batches.append(batch)


class BrokenSocket:
    """
    Stands in for a port's socket: every read fails with C{errno}.
    """

    def __init__(self, number: int) -> None:
        self.number = number
        self.reads = 0

    def recvfrom(self, size):
        self.reads += 1
        raise OSError(self.number, "injected")


class FastReadPortTests(TestCase):
    def listen(self, protocol, interface: str = "127.0.0.1"):
        port = listen_udp(reactor, 0, protocol, interface)
        self.addCleanup(port.stopListening)
        return port

    def client(self, family=socket.AF_INET, host="127.0.0.1") -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind((host, 0))
        return sock

    def send(self, port, datagrams, sock=None, host="127.0.0.1"):
        sock = sock or self.client()
        for data in datagrams:
            sock.sendto(data, (host, port.getHost().port))
        return sock.getsockname()[:2]

    def test_listen_udp_uses_it_on_posix_reactors(self):
        """
        On Twisted's own reactor, L{listen_udp} binds a L{FastReadPort};
        on anything else (a test double) it is that reactor's C{listenUDP}.
        """
        self.assertIsInstance(self.listen(Collect()), FastReadPort)
        double = FakeUDPReactor()
        protocol = Collect()
        listen_udp(double, 4000, protocol, "127.0.0.1")
        self.assertEqual(double.listened, [(4000, protocol, "127.0.0.1")])

    def test_per_datagram_protocol(self):
        """
        A protocol without C{datagrams_received} gets C{datagramReceived}
        for every datagram, in order, with the sender's address; one that
        raises is logged and the rest still arrive.
        """
        protocol = Collect()
        port = self.listen(protocol)
        source = self.send(port, [b"one", b"boom", b"two", b"three"])
        port.doRead()
        self.assertEqual(protocol.got, [(b"one", source), (b"two", source), (b"three", source)])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_batches(self):
        """
        A protocol with C{datagrams_received} gets what is readable as one
        batch of C{(data, address)} pairs, at most L{FastReadPort.batch}
        per read; what it does not consume stays for the next read.
        """
        protocol = CollectBatches()
        port = self.listen(protocol)
        port.batch = 3
        source = self.send(port, [b"%d" % n for n in range(5)])
        port.doRead()
        port.doRead()
        self.assertEqual(protocol.batches, [
            [(b"0", source), (b"1", source), (b"2", source)],
            [(b"3", source), (b"4", source)],
        ])
        protocol.stop_after = 1
        source = self.send(port, [b"a", b"b"])
        port.doRead()
        port.doRead()
        self.assertEqual(protocol.batches[2:], [[(b"a", source)], [(b"b", source)]])

    def test_errors_go_to_twisted(self):
        """
        A read error other than "nothing to read" is Twisted's to handle:
        a refusal is ignored on an unconnected port (Twisted reads once
        more and returns), anything else raises as from C{udp.Port}.
        """
        for protocol in (Collect(), CollectBatches()):
            port = self.listen(protocol)
            real = port.socket
            try:
                port.socket = BrokenSocket(errno.ECONNREFUSED)
                port.doRead()
                self.assertEqual(port.socket.reads, 2)
                port.socket = BrokenSocket(errno.EBADF)
                self.assertRaises(OSError, port.doRead)
            finally:
                port.socket = real

    def test_ipv6_as_twisted(self):
        """
        On an IPv6 socket the port reads as C{udp.Port} does: addresses
        are C{(host, port)}, without flow and scope.
        """
        if not socket.has_ipv6:
            raise self.skipTest("no IPv6")
        protocol = Collect()
        try:
            port = self.listen(protocol, "::1")
            sock = self.client(socket.AF_INET6, "::1")
        except Exception as e:  # no IPv6 loopback here
            raise self.skipTest(f"no IPv6 loopback: {e}")
        source = self.send(port, [b"six"], sock, "::1")
        port.doRead()
        self.assertEqual(protocol.got, [(b"six", source)])

    def test_relay_through_a_real_port(self):
        """
        The relay on a L{FastReadPort} forwards a whole batch between the
        members of an allocation, and counts it.
        """
        secret, allocation = b"secret", b"B" * 8
        key = wire.relay_key(secret, allocation)
        relay = RelayProtocol(reactor, secret)
        port = self.listen(relay)
        one, two = self.client(), self.client()
        for sock in (one, two):
            sock.settimeout(5)
        # Each member proves its address: a frame, the relay's challenge,
        # the answer.
        for side, sock in ((1, two), (0, one)):
            self.send(port, [wire.encode_relayed(allocation, side, b"hello, relay: bind me", key)], sock)
            port.doRead()
            answer = answer_challenge(sock.recv(200), allocation, side, key)
            self.send(port, [answer], sock)
            port.doRead()
        self.assertEqual(relay.stats["bound"], 2)
        self.send(port, [wire.encode_relayed(allocation, 0, b"%d" % n, key) for n in range(4)], one)
        port.doRead()
        got = []
        for _ in range(4):
            frame = two.recv(200)
            self.assertEqual(frame[1], wire.MessageType.RELAY_FORWARD)
            got.append(wire.verify_relayed(bytes((wire.MAGIC, wire.MessageType.RELAYED)) + frame[2:], key))
        self.assertEqual(got, [b"0", b"1", b"2", b"3"])
        self.assertEqual(relay.stats["forwarded"], 4)
