"""
Two real PeerEndpoints and a real introducer on loopback UDP, and the
introducer started the way operators start it (twistd).
"""

from __future__ import annotations

import os
import sys

from twisted.internet import defer, reactor
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

from p2pnet._registry import Registry
from p2pnet.address import Address
from p2pnet.endpoint import Path, PeerEndpoint, PeerFactory, PeerProtocol
from p2pnet.introducer import IntroducerProtocol, IntroducerService


class Echo(PeerProtocol):
    def datagram_received(self, data):
        self.connection.send(b"echo " + data)


class EchoFactory(PeerFactory):
    protocol = Echo


class Waiting(PeerProtocol):
    def __init__(self):
        self.next = defer.Deferred()

    def datagram_received(self, data):
        d, self.next = self.next, defer.Deferred()
        d.callback(data)


class LoopbackEndpointTests(TestCase):
    timeout = 20

    @defer.inlineCallbacks
    def test_two_endpoints_through_real_introducer(self):
        """
        A host and a player on real loopback sockets register, the player
        lists and joins the host's session, and datagrams go both ways.
        """
        service = IntroducerService(reactor, IntroducerProtocol(reactor, Registry(30.0, os.urandom)), 0, "127.0.0.1")
        service.startService()
        self.addCleanup(service.stopService)
        introducer = Address("127.0.0.1", service.port.getHost().port)
        host = PeerEndpoint(reactor, introducer, "host", interface="127.0.0.1", factory=EchoFactory())
        player = PeerEndpoint(reactor, introducer, "player", interface="127.0.0.1")
        self.addCleanup(host.stop)
        self.addCleanup(player.stop)
        yield host.start()
        registration = yield player.start()
        self.assertEqual(registration.public.host, "127.0.0.1")
        yield host.host_session("Keith's Server", "race", 4)
        [session] = yield player.list_sessions("race")
        receiver = Waiting()
        connection = yield player.join(session, receiver)
        self.assertEqual(connection.peer_id, "host")
        self.assertIn(connection.path, (Path.DIRECT_PUBLIC, Path.DIRECT_LOCAL))
        arrived = receiver.next
        connection.send(b"ping")
        self.assertEqual((yield arrived), b"echo ping")


class _Output(ProcessProtocol):
    def __init__(self, marker: bytes):
        self.marker = marker
        self.seen = defer.Deferred()
        self.ended = defer.Deferred()
        self.output = b""

    def outReceived(self, data):
        self.output += data
        if self.marker in self.output and not self.seen.called:
            self.seen.callback(self.output)

    errReceived = outReceived

    def processEnded(self, reason):
        if not self.seen.called:
            self.seen.errback(AssertionError(self.output.decode(errors="replace")))
        self.ended.callback(None)


class TwistdTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_twistd_port_zero_logs_port(self):
        """
        C{twistd -n p2pnet-introducer --port 0} starts and logs the port it
        listens on.
        """
        output = _Output(b"p2pnet introducer listening on")
        directory = self.mktemp()
        os.makedirs(directory)
        process = reactor.spawnProcess(
            output,
            sys.executable,
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "p2pnet-introducer",
             "--port", "0", "--interface", "127.0.0.1"],
            env=dict(os.environ),
            path=directory,
        )
        try:
            text = yield output.seen
        finally:
            if not output.ended.called:
                process.signalProcess("TERM")
            yield output.ended
        line = [l for l in text.decode().splitlines() if "listening on" in l][0]
        port = int(line.rsplit(":", 1)[1])
        self.assertGreater(port, 0)
