"""
The introducer's STUN service on real loopback UDP: plain Binding answers
on the introducer's port, and RFC 5780 behaviour discovery with alternates.
"""

from __future__ import annotations

import socket

from twisted.internet import defer, reactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

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
        self.start("--port", str(port), "--interface", "127.0.0.1", "--no-stun-alternate")
        report = yield check_nat(reactor, [Address("127.0.0.1", port)], timeout=2.0)
        self.assertFalse(report.rfc5780)
        self.assertEqual(report.public_address.host, "127.0.0.1")

    @defer.inlineCallbacks
    def test_one_ip_discovery_by_default(self):
        """
        A default introducer (bound to every address, no options about
        STUN) offers behaviour discovery on a second port: natcheck runs
        the tests one IP address allows, finds the mapping the same
        towards both ports, and says what it could not tell.
        """
        port = _free_port()
        service = self.start("--port", str(port), "--no-relay")
        bound = sorted(s.port.getHost().port for s in service if getattr(s, "port", None) is not None)
        self.assertEqual(bound, [port, port + 2])
        report = yield check_nat(reactor, [Address("127.0.0.1", port)], timeout=2.0)
        self.assertTrue(report.rfc5780)
        self.assertIs(report.mapping_port_dependent, False)
        self.assertEqual(report.mapping, Behaviour.UNKNOWN)
        self.assertIn(
            "the server has only one IP address: endpoint-independent and address-dependent mapping look the same",
            report.notes,
        )
        self.assertIn("one IP", report.verdict)

    def test_alternate_ip_needs_interface(self):
        """
        An alternate IP without a fixed interface is a UsageError (an
        alternate port is not: it works on every address).
        """
        from twisted.python.usage import UsageError

        options = introducer_tap.Options()
        self.assertRaises(UsageError, options.parseOptions, ["--stun-alternate-ip", "127.0.0.2"])
        introducer_tap.Options().parseOptions(["--stun-alternate-port", "4000"])


class ThirdPartyClientsTests(TestCase):
    """
    Standard STUN clients against the introducer itself (as operators run
    it), not only against the bare STUN server.
    """

    timeout = 30

    def setUp(self):
        self.port, self.alternate = _free_port(), _free_port()
        options = introducer_tap.Options()
        options.parseOptions(["--port", str(self.port), "--interface", "127.0.0.1",
                              "--stun-alternate-ip", "127.0.0.2",
                              "--stun-alternate-port", str(self.alternate)])
        service = introducer_tap.makeService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)

    @defer.inlineCallbacks
    def test_turnutils_stunclient(self):
        """
        coturn's turnutils_stunclient gets a loopback reflexive address and
        the introducer's RFC 5780 alternate as OTHER-ADDRESS.
        """
        import re

        from .test_stun_interop import require_tool, run_tool

        tool = require_tool("turnutils_stunclient", "coturn")
        code, out, err = yield defer.Deferred.fromCoroutine(
            run_tool([tool, "-p", str(self.port), "127.0.0.1"])
        )
        self.assertEqual(code, 0, out + err)
        reflexive = re.findall(r"UDP reflexive addr: (\S+)", out)
        self.assertTrue(reflexive, out)
        self.assertEqual(Address.parse(reflexive[0]).host, "127.0.0.1")
        self.assertIn(f"Other addr: : 127.0.0.2:{self.alternate}", out)

    @defer.inlineCallbacks
    def test_aioice(self):
        """
        aioice's STUN client gets its own socket address from the introducer.
        """
        import json
        import os
        import sys

        from .test_stun_interop import AIOICE_CLIENT, REPO, require_aioice, run_tool

        require_aioice()
        code, out, err = yield defer.Deferred.fromCoroutine(
            run_tool([sys.executable, "-c", AIOICE_CLIENT, "127.0.0.1", str(self.port)],
                     env=dict(os.environ, PYTHONPATH=REPO))
        )
        self.assertEqual(code, 0, err)
        result = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(result["mapped"], result["local"])
        self.assertEqual(result["other"], ["127.0.0.2", self.alternate])


class StunErrorAmplificationTests(SynchronousTestCase):
    """
    #14.8: STUN error answers are never larger than the request.
    """

    def test_errors_no_larger_than_requests(self):
        """
        Small requests that earn an error (another method, an unknown
        comprehension-required attribute, a malformed one, a change request
        without an alternate address) get an error no larger than they
        are, or none; larger ones still get the full error.
        """
        import struct

        from p2pnet._stunserver import StunResponder
        from p2pnet.stun import ChangeRequest, Method, RawAttribute, Software, StunMessage, decode, encode

        responder = StunResponder()
        client, local = Address("198.51.100.7", 40000), Address("192.0.2.1", 3478)
        tid = b"\x22" * 12
        small = [
            encode(StunMessage.request(Method.ALLOCATE, (), tid)),
            encode(StunMessage.request(Method.BINDING, (RawAttribute(0x7777, b"x"),), tid)),
            encode(StunMessage.request(Method.BINDING, (ChangeRequest(change_ip=True),), tid)),
            struct.pack("!HHI", 1, 8, 0x2112A442) + tid + struct.pack("!HH", 0x0020, 4) + b"\0\x09\0\0",
        ]
        for data in small:
            reply = responder.respond(data, client, local)
            if reply is not None:
                self.assertLessEqual(len(reply.data), len(data))
        padded = encode(StunMessage.request(Method.ALLOCATE, (Software("x" * 80),), tid))
        reply = responder.respond(padded, client, local)
        self.assertLessEqual(len(reply.data), len(padded))
        self.assertEqual(decode(reply.data).error_code.code, 400)
        self.assertEqual(decode(reply.data).error_code.reason, "Bad Request: only Binding is served here")


class DefaultAlternateTakenTests(TestCase):
    timeout = 20

    @defer.inlineCallbacks
    def test_taken_default_alternate(self):
        """
        If the default second STUN port is taken, the introducer still
        starts (with a warning naming the port) and answers plain STUN.
        """
        from twisted.logger import capturedLogs

        port = _free_port()
        blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            blocker.bind(("0.0.0.0", port + 2))
        except OSError:
            raise SkipTest(f"port {port + 2} is in use")
        self.addCleanup(blocker.close)
        options = introducer_tap.Options()
        options.parseOptions(["--port", str(port), "--no-relay"])
        service = introducer_tap.makeService(options, reactor)
        with capturedLogs() as events:
            service.startService()
        self.addCleanup(service.stopService)
        warnings = [e for e in events if "unavailable" in e.get("log_format", "")]
        self.assertEqual([e["port"] for e in warnings], [port + 2])
        report = yield check_nat(reactor, [Address("127.0.0.1", port)], timeout=2.0)
        self.assertFalse(report.rfc5780)
