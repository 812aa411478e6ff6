"""
Tests for the introducer's twistd plugin and options.
"""

from __future__ import annotations

from twisted.application.service import IServiceMaker, MultiService
from twisted.internet.task import Clock
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from p2pnet import introducer_tap
from p2pnet.introducer import IntroducerService


class FakeUDPReactor(Clock):
    """
    A Clock that also records listenUDP calls.
    """

    def __init__(self):
        super().__init__()
        self.listened = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        from .helpers import FakeDatagramTransport

        transport = FakeDatagramTransport("127.0.0.1", port or 43210)
        self.listened.append((port, protocol, interface))
        protocol.makeConnection(transport)
        transport.stopListening = protocol.doStop
        return transport


class PluginTests(SynchronousTestCase):
    def test_discovered(self):
        """
        twistd finds the p2pnet-introducer plugin, pointing at the tap module.
        """
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("p2pnet-introducer", makers)
        self.assertEqual(makers["p2pnet-introducer"].module, "p2pnet.introducer_tap")


class OptionsTests(SynchronousTestCase):
    def parse(self, *argv):
        options = introducer_tap.Options()
        options.parseOptions(list(argv))
        return options

    def test_defaults(self):
        """
        Defaults: port 3478 on all interfaces, 60 s lifetime, no secret,
        and converted (not string) values.
        """
        options = self.parse()
        self.assertEqual(options["port"], 3478)
        self.assertEqual(options["interface"], "")
        self.assertEqual(options["registration-lifetime"], 60.0)
        self.assertIsNone(options["secret"])

    def test_bad_port(self):
        """
        A port out of range or not a number is a UsageError naming it.
        """
        for bad in ["70000", "-1", "http"]:
            error = self.assertRaises(UsageError, self.parse, "--port", bad)
            self.assertIn("port", str(error))

    def test_bad_lifetime(self):
        """
        A non-positive lifetime is refused.
        """
        self.assertRaises(UsageError, self.parse, "--registration-lifetime", "0")

    def test_missing_secret_file(self):
        """
        A missing secret file is a UsageError naming the file.
        """
        error = self.assertRaises(UsageError, self.parse, "--secret-file", "/nonexistent/secret")
        self.assertIn("/nonexistent/secret", str(error))

    def test_empty_secret_file(self):
        """
        An empty secret file is refused rather than silently allowing all.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("\n")
        error = self.assertRaises(UsageError, self.parse, "--secret-file", path)
        self.assertIn("empty", str(error))

    def test_secret_read(self):
        """
        The secret is read from the file, without the trailing newline.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("s3cret\n")
        self.assertEqual(self.parse("--secret-file", path)["secret"], b"s3cret")


class MakeServiceTests(SynchronousTestCase):
    def test_make_service(self):
        """
        makeService returns a MultiService whose introducer listens on the
        chosen port and interface once started, with the configured
        lifetime, and stops cleanly.
        """
        options = introducer_tap.Options()
        options.parseOptions(
            ["--port", "0", "--interface", "127.0.0.1", "--registration-lifetime", "12", "--no-relay"]
        )
        reactor = FakeUDPReactor()
        service = introducer_tap.makeService(options, reactor)
        self.assertIsInstance(service, MultiService)
        [child] = list(service)
        self.assertIsInstance(child, IntroducerService)
        service.startService()
        [(port, protocol, interface)] = reactor.listened
        self.assertEqual((port, interface), (0, "127.0.0.1"))
        self.assertEqual(protocol.registry.lifetime, 12.0)
        self.assertEqual(protocol._log_budget.rate, 20.0)
        service.stopService()
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_log_rate(self):
        """
        C{--log-rate} sets the per-peer log line budget (0: no limit); a
        negative rate is refused.
        """
        for given, rate in (("0", 0.0), ("2.5", 2.5)):
            options = introducer_tap.Options()
            options.parseOptions(["--port", "0", "--log-rate", given])
            protocol = introducer_tap.make_protocol(options, FakeUDPReactor())
            self.assertEqual(protocol._log_budget.rate, rate)
        self.assertRaises(UsageError, introducer_tap.Options().parseOptions, ["--log-rate", "-1"])

    def test_cli_bad_options_exit_2(self):
        """
        C{p2pnet introducer} with bad options exits 2 without a traceback.
        """
        self.assertEqual(introducer_tap.main(["--port", "99999"]), 2)


class RelayTapTests(SynchronousTestCase):
    def secret_file(self) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("relay secret\n")
        return path

    def test_discovered(self):
        """
        twistd finds the p2pnet-relay plugin.
        """
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertEqual(makers["p2pnet-relay"].module, "p2pnet.relay_tap")

    def test_secret_required(self):
        """
        The relay refuses to start without the secret it shares with the
        introducer.
        """
        from p2pnet import relay_tap

        error = self.assertRaises(UsageError, relay_tap.Options().parseOptions, [])
        self.assertIn("--secret-file", str(error))

    def test_make_service(self):
        """
        makeService listens where told, with the configured caps.
        """
        from p2pnet import relay_tap

        path = self.secret_file()
        options = relay_tap.Options()
        options.parseOptions(["--port", "0", "--interface", "127.0.0.1", "--secret-file", path,
                              "--max-packets", "10", "--rate", "7", "--source-bytes", "900",
                              "--max-allocations", "12", "--max-per-source", "5", "--unbound-timeout", "8"])
        reactor = FakeUDPReactor()
        service = relay_tap.makeService(options, reactor)
        service.startService()
        [(port, protocol, interface)] = reactor.listened
        self.assertEqual((port, interface, protocol.max_packets), (0, "127.0.0.1", 10))
        table = protocol.table
        self.assertEqual((table.max_allocations, table.max_per_source, table.unbound_timeout), (12, 5, 8.0))
        limiter = protocol.source_limiter
        self.assertEqual((limiter.packet_rate, limiter.byte_rate), (7.0, 900.0))
        self.assertEqual((limiter.packet_burst, limiter.byte_burst), (14.0, 1800.0))
        self.assertFalse(protocol.verify_all)
        service.stopService()
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_rate_too_low(self):
        """
        A per-source rate whose burst cannot hold one packet is refused
        with a clear message, not a traceback at start-up.
        """
        from p2pnet import relay_tap

        path = self.secret_file()
        error = self.assertRaises(
            UsageError, relay_tap.Options().parseOptions, ["--secret-file", path, "--rate", "0.2"]
        )
        self.assertIn("--rate must be at least 0.5", str(error))

    def test_table_caps_positive(self):
        """
        --max-allocations and --max-per-source below 1 are usage errors.
        """
        from p2pnet import relay_tap

        path = self.secret_file()
        for name in ("--max-allocations", "--max-per-source"):
            error = self.assertRaises(
                UsageError, relay_tap.Options().parseOptions, ["--secret-file", path, name, "0"]
            )
            self.assertIn(f"{name} must be greater than 0", str(error))

    def test_verify_all(self):
        """
        --verify-all makes the relay check every datagram's tag.
        """
        from p2pnet import relay_tap

        path = self.secret_file()
        options = relay_tap.Options()
        options.parseOptions(["--secret-file", path, "--verify-all"])
        self.assertTrue(relay_tap.make_protocol(options, FakeUDPReactor()).verify_all)

    def test_introducer_with_relay_port(self):
        """
        --relay-port runs a relay in the introducer's process and the
        introducer hands out allocations for it.
        """
        options = introducer_tap.Options()
        options.parseOptions(["--port", "0", "--relay-port", "0"])
        reactor = FakeUDPReactor()
        service = introducer_tap.makeService(options, reactor)
        service.startService()
        protocols = [protocol for _, protocol, _ in reactor.listened]
        introducer = [p for p in protocols if hasattr(p, "registry")][0]
        self.assertIsNotNone(introducer.relay)
        self.assertEqual(introducer.relay.offer_address().host, "0.0.0.0")
        service.stopService()

    def test_relay_needs_secret(self):
        """
        --relay without --relay-secret-file is a UsageError.
        """
        error = self.assertRaises(
            UsageError, introducer_tap.Options().parseOptions, ["--relay", "192.0.2.5:3479"]
        )
        self.assertIn("--relay-secret-file", str(error))
