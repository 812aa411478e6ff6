"""
Connections relayed through a real coturn: a peer with a TURN server and
a relay-only policy, and a plain peer, through a real introducer on
loopback.
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from p2pnet._handshake import HandshakeConfig
from p2pnet._registry import Registry
from p2pnet.address import Address
from p2pnet.endpoint import Path, PeerConfig, PeerEndpoint, TurnSettings
from p2pnet.introducer import IntroducerProtocol, IntroducerService

from .test_endpoint_loopback import EchoFactory, Waiting
from .test_turn_interop import PASSWORD, USER, CoturnTestCase


class TurnEndpointTests(CoturnTestCase):
    timeout = 30

    @inlineCallbacks
    def test_relayed_through_coturn(self):
        """
        A relay-only peer with a TURN server joins a plain host: both
        report path=relayed, and datagrams go both ways through coturn.
        """
        service = IntroducerService(reactor, IntroducerProtocol(reactor, Registry(30.0, os.urandom)), 0, "127.0.0.1")
        service.startService()
        self.addCleanup(service.stopService)
        introducer = Address("127.0.0.1", service.port.getHost().port)
        host = PeerEndpoint(reactor, introducer, "host", interface="127.0.0.1", factory=EchoFactory())
        player = PeerEndpoint(
            reactor,
            introducer,
            "player",
            interface="127.0.0.1",
            config=PeerConfig(
                handshake=HandshakeConfig(relay_only=True),
                turn=TurnSettings(self.server, USER, PASSWORD),
            ),
        )
        self.addCleanup(host.stop)
        self.addCleanup(player.stop)
        yield host.start()
        yield player.start()
        receiver = Waiting()
        connection = yield player.connect("host", receiver)
        self.assertEqual(connection.path, Path.RELAYED)
        arrived = receiver.next
        connection.send(b"through coturn")
        self.assertEqual((yield arrived), b"echo through coturn")
        [theirs] = [c for c in host.connections if c.peer_id == "player"]
        self.assertEqual(theirs.path, Path.RELAYED)
