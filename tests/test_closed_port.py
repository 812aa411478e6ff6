"""
An introducer whose port is closed, on real loopback sockets: the endpoint
says so within 3 s instead of retrying in silence for 17.5 s; a silent
introducer gets progress reports.
"""

from __future__ import annotations

import socket

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from p2pnet.address import Address
from p2pnet.endpoint import PeerEndpoint
from p2pnet.errors import ConnectionClosed, IntroducerUnreachable


def closed_port() -> Address:
    """
    A loopback UDP port that nothing listens on (bound, then closed).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return Address("127.0.0.1", port)


class ClosedPortTests(TestCase):
    timeout = 25

    @defer.inlineCallbacks
    def test_closed_port_reported_within_3s(self):
        """
        start() fails with IntroducerUnreachable saying the port is closed,
        within 3 s.
        """
        endpoint = PeerEndpoint(reactor, closed_port(), "alice", interface="127.0.0.1")
        self.addCleanup(endpoint.stop)
        began = reactor.seconds()
        with self.assertRaises(IntroducerUnreachable) as caught:
            yield endpoint.start()
        self.assertLess(reactor.seconds() - began, 3.0)
        self.assertIn("closed", str(caught.exception))
        self.assertTrue(caught.exception.port_closed)
        self.assertNotIn("secret", str(caught.exception))

    @defer.inlineCallbacks
    def test_closed_port_with_secret(self):
        """
        With a secret, a closed port is not blamed on a wrong secret.
        """
        endpoint = PeerEndpoint(reactor, closed_port(), "alice", interface="127.0.0.1", secret=b"s")
        self.addCleanup(endpoint.stop)
        with self.assertRaises(IntroducerUnreachable) as caught:
            yield endpoint.start()
        self.assertIn("closed", str(caught.exception))
        self.assertNotIn("wrong secret", str(caught.exception))

    @defer.inlineCallbacks
    def test_silent_introducer_progress(self):
        """
        A port that is open but never answers is not taken for a closed
        one: after 2 s a C{registering} event says we are still trying.
        """
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        self.addCleanup(silent.close)
        endpoint = PeerEndpoint(reactor, Address(*silent.getsockname()), "alice", interface="127.0.0.1")
        events = []
        progressed = defer.Deferred()

        def observe(event):
            events.append(event)
            if event.kind == "registering" and not progressed.called:
                progressed.callback(event)

        endpoint.add_observer(observe)
        starting = endpoint.start()
        starting.addErrback(lambda f: f.trap(ConnectionClosed))
        event = yield progressed
        self.assertIn("no answer", event.detail)
        self.assertFalse(starting.called)
        yield endpoint.stop()
        yield starting
