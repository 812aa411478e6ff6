"""
Tests for L{p2pnet._udpwrite}: the servers' direct C{sendto}, on real
loopback UDP ports.
"""

from __future__ import annotations

import socket

from twisted.internet import error, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from p2pnet._udpwrite import datagram_writer
from tests.helpers import FakeDatagramTransport


class DatagramWriterTests(TestCase):
    def listen(self, interface: str = "127.0.0.1"):
        port = reactor.listenUDP(0, DatagramProtocol(), interface=interface)
        self.addCleanup(port.stopListening)
        return port

    def receiver(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        return sock

    def test_sends_with_the_socket(self):
        """
        On a listening UDP port the writer is not C{Port.write}, and what it
        writes arrives, from the port's address.
        """
        port = self.listen()
        write = datagram_writer(port)
        self.assertNotEqual(write, port.write)
        sink = self.receiver()
        write(b"hello", sink.getsockname())
        data, source = sink.recvfrom(100)
        self.assertEqual((data, source[1]), (b"hello", port.getHost().port))

    def test_refusals_as_port_write(self):
        """
        What the kernel refuses is handed to C{Port.write}, which raises
        what it always raises: a too-long datagram, an address of the
        wrong family.
        """
        port = self.listen()
        write = datagram_writer(port)
        sink = self.receiver().getsockname()
        self.assertRaises(error.MessageLengthError, write, b"x" * 70000, sink)
        self.assertRaises(error.InvalidAddressError, write, b"x", ("::1", sink[1]))

    def test_test_doubles_keep_their_write(self):
        """
        A transport whose handle is not a UDP socket (a test double, the
        simulator's) is written to with its own C{write}.
        """
        transport = FakeDatagramTransport()
        self.assertEqual(datagram_writer(transport), transport.write)
        datagram_writer(transport)(b"x", ("192.0.2.9", 9))
        self.assertEqual(transport.written, [(b"x", ("192.0.2.9", 9))])

    def test_connected_port_keeps_write(self):
        """
        A connected port keeps C{Port.write}, which uses C{send}.
        """
        port = self.listen()
        port.connect("127.0.0.1", self.receiver().getsockname()[1])
        self.assertEqual(datagram_writer(port), port.write)
