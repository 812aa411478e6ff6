"""
An introducer and two hosts on real loopback UDP.
"""

from __future__ import annotations

import os

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from p2pnet import wire
from p2pnet._registry import Registry
from p2pnet.address import Address
from p2pnet.introducer import IntroducerProtocol, IntroducerService


class ScriptedHost(DatagramProtocol):
    """
    A bare host speaking the wire protocol; fires Deferreds per message type.
    """

    def __init__(self):
        self.waiting = {}
        self.received = []

    def expect(self, kind):
        d = defer.Deferred()
        self.waiting.setdefault(kind, []).append(d)
        return d

    def datagramReceived(self, data, addr):
        message = wire.decode(data)
        self.received.append(message)
        waiters = self.waiting.get(type(message))
        if waiters:
            waiters.pop(0).callback(message)

    def send(self, message, to):
        self.transport.write(wire.encode(wire.padded(message)), to)


class LoopbackTests(TestCase):
    timeout = 10

    @defer.inlineCallbacks
    def test_introduction_arrives_at_both(self):
        """
        Two hosts register with a real introducer over loopback UDP; when
        one asks to be introduced, both receive the introduction with the
        other's public and local addresses and the same key.
        """
        introducer = IntroducerProtocol(reactor, Registry(30.0, os.urandom))
        service = IntroducerService(reactor, introducer, 0, "127.0.0.1")
        service.startService()
        self.addCleanup(service.stopService)
        server = ("127.0.0.1", service.port.getHost().port)

        hosts = {}
        for name in ("alice", "bob"):
            host = ScriptedHost()
            port = reactor.listenUDP(0, host, interface="127.0.0.1")
            self.addCleanup(port.stopListening)
            hosts[name] = (host, port.getHost().port)
            registered = host.expect(wire.Registered)
            local = Address("127.0.0.1", port.getHost().port)
            host.send(wire.Register(os.urandom(8), name, (local,)), server)
            answer = yield registered
            self.assertEqual(answer.public, local)
            acked = host.expect(wire.HeartbeatAck)
            host.send(wire.Heartbeat(os.urandom(8), name, answer.cookie), server)
            yield acked
            host.cookie = answer.cookie

        alice, alice_port = hosts["alice"]
        bob, bob_port = hosts["bob"]
        at_alice = alice.expect(wire.Introduction)
        at_bob = bob.expect(wire.Introduction)
        alice.send(wire.Introduce(os.urandom(8), "alice", alice.cookie, "bob"), server)
        to_alice, to_bob = yield defer.gatherResults([at_alice, at_bob])
        self.assertEqual(to_alice.peer_id, "bob")
        self.assertEqual(to_alice.public, Address("127.0.0.1", bob_port))
        self.assertEqual(to_bob.peer_id, "alice")
        self.assertEqual(to_bob.local, (Address("127.0.0.1", alice_port),))
        self.assertEqual(to_alice.key, to_bob.key)
