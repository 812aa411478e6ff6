"""
The introducer's STUN service on real loopback UDP: plain Binding answers
on the introducer's port, and RFC 5780 behaviour discovery with alternates.
"""

from __future__ import annotations

import socket

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from p2pnet import introducer_tap
from p2pnet.address import Address
from p2pnet.natcheck import Behaviour, check_nat


def _free_port() -> int:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


class IntroducerStunTests(TestCase):
    timeout = 20

    def start(self, *argv):
        options = introducer_tap.Options()
        options.parseOptions(list(argv))
        service = introducer_tap.makeService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    @defer.inlineCallbacks
    def test_rfc5780_on_the_introducer_port(self):
        """
        With an alternate IP and port, natcheck against the introducer's
        own port runs RFC 5780 discovery and finds no NAT on loopback.
        """
        port, alternate = _free_port(), _free_port()
        self.start("--port", str(port), "--interface", "127.0.0.1",
                   "--stun-alternate-ip", "127.0.0.2", "--stun-alternate-port", str(alternate))
        report = yield check_nat(reactor, [Address("127.0.0.1", port)], timeout=2.0)
        self.assertTrue(report.rfc5780)
        self.assertEqual(report.mapping, Behaviour.ENDPOINT_INDEPENDENT)
        self.assertEqual(report.filtering, Behaviour.ENDPOINT_INDEPENDENT)
        self.assertEqual(report.public_address.host, "127.0.0.1")

    @defer.inlineCallbacks
    def test_plain_binding(self):
        """
        Without alternates the introducer still answers Binding requests
        with our mapped address.
        """
        port = _free_port()
        self.start("--port", str(port), "--interface", "127.0.0.1")
        report = yield check_nat(reactor, [Address("127.0.0.1", port)], timeout=2.0)
        self.assertFalse(report.rfc5780)
        self.assertEqual(report.public_address.host, "127.0.0.1")

    def test_alternates_need_interface(self):
        """
        RFC 5780 alternates without a fixed interface are a UsageError.
        """
        from twisted.python.usage import UsageError

        options = introducer_tap.Options()
        self.assertRaises(UsageError, options.parseOptions, ["--stun-alternate-port", "4000"])
