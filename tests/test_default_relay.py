"""
An introducer started with default options offers a relay: two endpoints
that will only go through a relay connect over it (real loopback sockets).
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from p2pnet import introducer_tap
from p2pnet._handshake import HandshakeConfig
from p2pnet.address import Address
from p2pnet.endpoint import Path, PeerConfig, PeerEndpoint, PeerFactory, PeerProtocol
from p2pnet.errors import HandshakeTimeout
from p2pnet.introducer import IntroducerService


class Echo(PeerProtocol):
    def datagram_received(self, data):
        self.connection.send(b"echo " + data)


class EchoFactory(PeerFactory):
    protocol = Echo


class Waiting(PeerProtocol):
    def __init__(self):
        self.received = defer.Deferred()

    def datagram_received(self, data):
        if not self.received.called:
            self.received.callback(data)


class DefaultRelayLoopbackTests(TestCase):
    timeout = 30

    def start_introducer(self, *argv):
        options = introducer_tap.Options()
        options.parseOptions(["--port", "0", "--interface", "127.0.0.1", *argv])
        service = introducer_tap.makeService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        [introducer] = [s for s in service if isinstance(s, IntroducerService)]
        return Address("127.0.0.1", introducer.port.getHost().port)

    def endpoints(self, introducer):
        config = PeerConfig(handshake=HandshakeConfig(relay_only=True, timeout=3.0))
        host = PeerEndpoint(reactor, introducer, "host", interface="127.0.0.1", factory=EchoFactory(), config=config)
        player = PeerEndpoint(reactor, introducer, "player", interface="127.0.0.1", config=config)
        self.addCleanup(host.stop)
        self.addCleanup(player.stop)
        return host, player

    @defer.inlineCallbacks
    def test_relayed_with_defaults(self):
        """
        With the introducer's default options, a relay-only pair connects
        over Path.RELAYED and datagrams go both ways.
        """
        host, player = self.endpoints(self.start_introducer())
        yield host.start()
        yield player.start()
        waiting = Waiting()
        connection = yield player.connect("host", waiting)
        self.assertEqual(connection.path, Path.RELAYED)
        connection.send(b"hi")
        self.assertEqual((yield waiting.received), b"echo hi")

    @defer.inlineCallbacks
    def test_no_relay(self):
        """
        With --no-relay there is nothing to relay through: the relay-only
        pair fails.
        """
        host, player = self.endpoints(self.start_introducer("--no-relay"))
        yield host.start()
        yield player.start()
        with self.assertRaises(HandshakeTimeout):
            yield player.connect("host", Waiting())
