"""
The endpoint asks for a 4 MiB socket receive buffer (p2pnet._sockbuf), so
a burst of channel packets is not dropped at a descheduled receiver's
socket; a socket that refuses is left as it is.
"""

from __future__ import annotations

import socket

from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from p2pnet._sockbuf import grow_receive_buffer
from p2pnet.endpoint import PeerConfig, PeerEndpoint
from p2pnet.testing import Network
from p2pnet.testing.scenarios import INTRODUCER


class RecordingReactor:
    """
    A simulated host that remembers the ports it opened.
    """

    def __init__(self, host):
        self._host = host
        self.ports = []

    def listenUDP(self, *args, **kwargs):
        port = self._host.listenUDP(*args, **kwargs)
        self.ports.append(port)
        return port

    def __getattr__(self, name):
        return getattr(self._host, name)


class Refusing:
    def __init__(self):
        self.asked = []

    def getHandle(self):
        return self

    def getsockopt(self, level, option):
        return 212992

    def setsockopt(self, level, option, value):
        self.asked.append((level, option, value))
        raise OSError(1, "Operation not permitted")


class ReceiveBufferTests(SynchronousTestCase):
    def test_endpoint_asks_for_4_mib(self):
        """
        C{start()} sets the listening socket's SO_RCVBUF to 4 MiB.
        """
        clock = Clock()
        network = Network(clock, seed=1)
        reactor = RecordingReactor(network.add_host())
        # The NAT check off: it opens sockets of its own.
        endpoint = PeerEndpoint(reactor, INTRODUCER, "a", config=PeerConfig(nat_check=False))
        started = endpoint.start()
        [port] = reactor.ports
        self.assertEqual(port.getHandle().getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), 4 * 1024 * 1024)
        endpoint.stop()
        clock.advance(10)
        self.failureResultOf(started)  # stopped before any introducer answered

    def test_refusal_ignored(self):
        """
        A socket that refuses the option raises nothing.
        """
        port = Refusing()
        grow_receive_buffer(port)
        self.assertEqual(port.asked, [(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)])

    def test_never_shrinks(self):
        """
        A buffer already larger is left alone.
        """
        clock = Clock()
        port = Network(clock, seed=1).add_host().listenUDP(0, DatagramProtocol())
        port.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        grow_receive_buffer(port)
        self.assertEqual(port.getHandle().getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), 8 * 1024 * 1024)
