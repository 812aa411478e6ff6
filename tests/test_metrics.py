"""
Tests for L{p2pnet._metrics}: the introducer's and the relay's Prometheus
metrics, read through C{prometheus_client}'s own text parser.
"""

from __future__ import annotations

from unittest import mock

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from p2pnet import introducer_tap, relay_tap, wire
from p2pnet._metrics import IntroductionLatency, MetricsResource, introducer_registry, relay_registry
from p2pnet._registry import Registry
from p2pnet.introducer import IntroducerProtocol
from p2pnet.relay import RelayProtocol

from .helpers import FakeDatagramTransport, seeded_bytes
from .test_introducer import A, B, C, IntroducerTestCase
from .test_relay import ONE, TWO, RelayTestCase
from .test_tap import FakeUDPReactor


def samples(registry: CollectorRegistry) -> dict:
    """
    Every sample of a scrape of C{registry}, parsed by prometheus_client's
    parser: C{(name, frozenset(labels)) -> value}.
    """
    text = generate_latest(registry).decode("utf-8")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels) -> float | None:
    return scraped.get((name, frozenset(labels.items())))


class IntroducerMetricsTests(IntroducerTestCase):
    def setUp(self):
        super().setUp()
        self.registry = introducer_registry(self.protocol)

    def test_registration_counted(self):
        """
        A registration (Register, then the confirming Heartbeat) shows as
        two datagrams received and two sent, one C{registered} and one
        C{heartbeats} event, and one registration in the gauge.
        """
        before = samples(self.registry)
        self.assertEqual(value(before, "p2pnet_introducer_received_datagrams_total"), 0)
        self.assertEqual(value(before, "p2pnet_introducer_registrations"), 0)
        self.register("a", A)
        after = samples(self.registry)
        self.assertEqual(value(after, "p2pnet_introducer_received_datagrams_total"), 2)
        self.assertEqual(value(after, "p2pnet_introducer_sent_datagrams_total"), 2)
        self.assertEqual(value(after, "p2pnet_introducer_events_total", event="registered"), 1)
        self.assertEqual(value(after, "p2pnet_introducer_events_total", event="heartbeats"), 1)
        self.assertEqual(value(after, "p2pnet_introducer_registrations"), 1)
        self.assertEqual(value(after, "p2pnet_introducer_sessions"), 0)

    def test_quick_heartbeats_counted(self):
        """
        Heartbeats answered on the quick path (counted in plain integers)
        are in the scrape too.
        """
        self.register("a", A)
        for _ in range(3):
            self.send(wire.Heartbeat(self.next_txid(), "a", self.cookies["a"]), A)
        scraped = samples(self.registry)
        self.assertEqual(value(scraped, "p2pnet_introducer_events_total", event="heartbeats"), 4)
        self.assertEqual(value(scraped, "p2pnet_introducer_received_datagrams_total"), 5)

    def test_drop_reasons(self):
        """
        Each drop reason is a C{reason} label of the dropped counter, and
        not an event.
        """
        self.protocol.datagramReceived(b"\x00" * 4, A)
        self.protocol.datagramReceived(b"\xd1\x99garbage", A)
        self.protocol.datagramReceived(b"\xd1\x99garbage", B)
        scraped = samples(self.registry)
        self.assertEqual(value(scraped, "p2pnet_introducer_dropped_datagrams_total", reason="not-p2pnet"), 1)
        self.assertEqual(value(scraped, "p2pnet_introducer_dropped_datagrams_total", reason="malformed"), 2)
        self.assertIsNone(value(scraped, "p2pnet_introducer_events_total", event="dropped-malformed"))
        self.assertEqual(value(scraped, "p2pnet_introducer_received_datagrams_total"), 3)

    def test_sessions_gauge(self):
        """
        A hosted session shows in the sessions gauge, and is gone from it
        once unhosted.
        """
        self.register("a", A)
        session = self.host("a", A)
        self.assertEqual(value(samples(self.registry), "p2pnet_introducer_sessions"), 1)
        self.send(wire.Unhost(self.next_txid(), "a", self.cookies["a"], session), A)
        self.assertEqual(value(samples(self.registry), "p2pnet_introducer_sessions"), 0)

    def introduce(self):
        self.register("a", A)
        self.register("b", B)
        self.send(wire.Introduce(self.next_txid(), "a", self.cookies["a"], "b"), A)
        [(to_a, _), (to_b, _)] = self.transport.clear()
        return to_a, to_b

    def test_introduction_latency(self):
        """
        An introduction is counted, and its latency observed once both
        sides acknowledged it: the time of the later acknowledgement.
        """
        to_a, to_b = self.introduce()
        self.assertEqual(value(samples(self.registry), "p2pnet_introducer_introductions_total"), 1)
        self.clock.advance(0.02)
        self.send(wire.IntroAck(self.next_txid(), to_b.intro_id), B)
        scraped = samples(self.registry)
        self.assertEqual(value(scraped, "p2pnet_introducer_introduction_latency_seconds_count"), 0)
        self.clock.advance(0.1)
        self.send(wire.IntroAck(self.next_txid(), to_a.intro_id), A)
        # A repeated acknowledgement is no second observation.
        self.send(wire.IntroAck(self.next_txid(), to_a.intro_id), A)
        scraped = samples(self.registry)
        self.assertEqual(value(scraped, "p2pnet_introducer_introduction_latency_seconds_count"), 1)
        self.assertAlmostEqual(value(scraped, "p2pnet_introducer_introduction_latency_seconds_sum"), 0.12)
        name = "p2pnet_introducer_introduction_latency_seconds_bucket"
        self.assertEqual(value(scraped, name, le="0.1"), 0)
        self.assertEqual(value(scraped, name, le="0.25"), 1)
        self.clock.advance(10)

    def test_one_side_twice_not_observed(self):
        """
        One side's acknowledgement repeated, and one from an address
        neither copy went to, do not complete the introduction.
        """
        to_a, to_b = self.introduce()
        self.send(wire.IntroAck(self.next_txid(), to_b.intro_id), B)
        self.send(wire.IntroAck(self.next_txid(), to_b.intro_id), C)
        self.send(wire.IntroAck(self.next_txid(), to_b.intro_id), B)
        scraped = samples(self.registry)
        self.assertEqual(value(scraped, "p2pnet_introducer_introduction_latency_seconds_count"), 0)
        self.clock.advance(10)

    def test_registries_separate(self):
        """
        Two introducers' registries do not share values (no global
        registry).
        """
        other = introducer_registry(IntroducerProtocol(Clock(), Registry(30.0, seeded_bytes(3)), seeded_bytes(4)))
        self.register("a", A)
        self.assertEqual(value(samples(other), "p2pnet_introducer_received_datagrams_total"), 0)
        self.assertEqual(value(samples(self.registry), "p2pnet_introducer_received_datagrams_total"), 2)


class IntroductionLatencyTests(SynchronousTestCase):
    def setUp(self):
        self.registry = CollectorRegistry()
        self.histogram = Histogram("latency", "test", buckets=(1.0,), registry=self.registry)

    def count(self):
        return value(samples(self.registry), "latency_count")

    def test_second_side_observed(self):
        """
        The first side's acknowledgement is remembered, the second one's
        time observed.
        """
        observe = IntroductionLatency(self.histogram)
        observe(b"i" * 8, 0.5)
        self.assertEqual(self.count(), 0)
        observe(b"i" * 8, 0.75)
        self.assertEqual(self.count(), 1)
        self.assertEqual(value(samples(self.registry), "latency_sum"), 0.75)

    def test_bounded(self):
        """
        Beyond C{limit} half-acknowledged introductions, the oldest is
        forgotten: its second acknowledgement starts over.
        """
        observe = IntroductionLatency(self.histogram, limit=2)
        observe(b"1" * 8, 0.1)
        observe(b"2" * 8, 0.1)
        observe(b"3" * 8, 0.1)
        observe(b"1" * 8, 0.2)
        self.assertEqual(self.count(), 0)
        observe(b"3" * 8, 0.2)
        self.assertEqual(self.count(), 1)
        observe(b"2" * 8, 0.2)  # forgotten when "1" came back
        self.assertEqual(self.count(), 1)


class RelayMetricsTests(RelayTestCase):
    def setUp(self):
        super().setUp()
        self.registry = relay_registry(self.relay)

    def test_forwarded(self):
        """
        Forwarded datagrams and their bytes (as received) are counted,
        bindings are events, and the allocation is in the gauge.
        """
        self.assertEqual(value(samples(self.registry), "p2pnet_relay_allocations"), 0)
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.take()
        self.send(0, b"x" * 100, ONE)
        self.send(1, b"y" * 10, TWO)
        scraped = samples(self.registry)
        self.assertEqual(value(scraped, "p2pnet_relay_forwarded_datagrams_total"), 2)
        # each frame: 11-byte header, the inner datagram, 8-byte tag
        self.assertEqual(value(scraped, "p2pnet_relay_forwarded_bytes_total"), 119 + 29)
        self.assertEqual(value(scraped, "p2pnet_relay_events_total", event="bound"), 2)
        self.assertEqual(value(scraped, "p2pnet_relay_allocations"), 1)

    def test_drop_reasons(self):
        """
        Drops are counted by reason.
        """
        self.relay.datagramReceived(b"\xd1\x50short", ONE)
        self.bind(0, ONE)
        self.send(0, b"z" * 30, ONE)  # the other side is not bound
        scraped = samples(self.registry)
        self.assertEqual(value(scraped, "p2pnet_relay_dropped_datagrams_total", reason="malformed"), 1)
        self.assertEqual(value(scraped, "p2pnet_relay_dropped_datagrams_total", reason="peer-not-bound"), 1)
        self.assertEqual(value(scraped, "p2pnet_relay_forwarded_datagrams_total"), 0)


class RelayStatsLineTests(SynchronousTestCase):
    def test_periodic_stats_line(self):
        """
        With C{stats_interval}, the relay logs its allocations and counters
        at the first sweep at least that long after the last line.
        """
        clock = Clock()
        events = []
        relay = RelayProtocol(clock, b"secret", idle_timeout=20.0, unbound_timeout=20.0, stats_interval=30.0)
        relay.log = Logger(observer=events.append)
        relay.makeConnection(FakeDatagramTransport())
        self.addCleanup(relay.doStop)
        relay.datagramReceived(b"junk", ONE)
        clock.advance(20)  # sweeps at 10 and 20 s: no line yet
        self.assertEqual([e for e in events if "counters" in e], [])
        clock.advance(10)
        [line] = [e for e in events if "counters" in e]
        self.assertEqual(line["allocations"], 0)
        self.assertEqual(line["counters"], {"dropped-malformed": 1})
        clock.advance(20)
        self.assertEqual(len([e for e in events if "counters" in e]), 1)
        clock.advance(10)
        self.assertEqual(len([e for e in events if "counters" in e]), 2)

    def test_no_stats_line_by_default(self):
        """
        A relay built without C{stats_interval} logs no statistics.
        """
        clock = Clock()
        events = []
        relay = RelayProtocol(clock, b"secret")
        relay.log = Logger(observer=events.append)
        relay.makeConnection(FakeDatagramTransport())
        self.addCleanup(relay.doStop)
        clock.advance(600)
        self.assertEqual([e for e in events if "counters" in e], [])


class ResourceTests(SynchronousTestCase):
    def test_render(self):
        """
        The resource renders the registry in the Prometheus text format,
        with its content type.
        """
        from twisted.web.test.requesthelper import DummyRequest

        registry = CollectorRegistry()
        Histogram("h", "help", buckets=(1.0,), registry=registry).observe(0.5)
        request = DummyRequest([b""])
        body = MetricsResource(registry).render_GET(request)
        families = {family.name: family for family in text_string_to_metric_families(body.decode())}
        self.assertEqual(families["h"].type, "histogram")
        self.assertIn(("h_count", {}, 1.0), [(s.name, s.labels, s.value) for s in families["h"].samples])
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-type"),
            [b"text/plain; version=0.0.4; charset=utf-8"],
        )


class FakeReactor(FakeUDPReactor):
    """
    Records listenTCP calls as well.
    """

    def __init__(self):
        super().__init__()
        self.tcp = []

    def listenTCP(self, port, factory, backlog=50, interface=""):
        from twisted.internet.address import IPv4Address

        self.tcp.append((port, factory, interface))
        listening = mock.Mock()
        listening.getHost.return_value = IPv4Address("TCP", interface, port or 45678)
        listening.stopListening.return_value = None
        return listening


def scrape_site(site) -> dict:
    """
    Scrape a metrics site in memory: GET /metrics, parsed.
    """
    from twisted.web.test.requesthelper import DummyRequest

    resource = site.resource.getChildWithDefault(b"metrics", DummyRequest([b"metrics"]))
    text = resource.render_GET(DummyRequest([])).decode()
    return {family.name for family in text_string_to_metric_families(text)}


class TapOptionTests(SynchronousTestCase):
    def secret_file(self) -> str:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"relay secret\n")
        return path

    def introducer(self, *argv):
        options = introducer_tap.Options()
        options.parseOptions(list(argv))
        return options

    def relay(self, *argv):
        options = relay_tap.Options()
        options.parseOptions(["--secret-file", self.secret_file(), *argv])
        return options

    def both(self, *argv):
        """
        The introducer's and the relay's options parsed from C{argv}.
        """
        introducer = introducer_tap.Options()
        introducer.parseOptions(list(argv))
        relay = relay_tap.Options()
        relay.parseOptions(["--secret-file", self.secret_file(), *argv])
        return introducer, relay

    def test_defaults(self):
        """
        No metrics port unless asked for; the metrics interface is
        loopback; the relay logs statistics every 60 s.
        """
        for options in self.both():
            self.assertIsNone(options["metrics-port"])
            self.assertEqual(options["metrics-interface"], "127.0.0.1")
        self.assertEqual(self.both()[1]["stats-interval"], 60.0)

    def test_no_metrics_service_by_default(self):
        """
        Without C{--metrics-port} nothing listens on TCP.
        """
        for tap, options in zip((introducer_tap, relay_tap), self.both("--port", "0")):
            reactor = FakeReactor()
            tap.makeService(options, reactor).startService()
            self.assertEqual(reactor.tcp, [])

    def test_bad_metrics_port(self):
        """
        A metrics port out of range or not a number is a UsageError whose
        message is one line naming the port.
        """
        for bad in ["70000", "-1", "http"]:
            error = self.assertRaises(UsageError, self.both, "--metrics-port", bad)
            self.assertIn("port", str(error))
            self.assertNotIn("\n", str(error))

    def test_bad_metrics_interface(self):
        """
        The metrics interface must be an IP address literal; IPv6 is
        accepted.
        """
        for bad in ["localhost", "1.2.3", ""]:
            self.assertRaises(UsageError, self.both, "--metrics-interface", bad)
        self.assertEqual(self.both("--metrics-interface", "::1")[0]["metrics-interface"], "::1")

    def test_cli_bad_metrics_port_exit_2(self):
        """
        C{p2pnet introducer --metrics-port 99999} exits with status 2 and
        the error on the last line of stderr.
        """
        import io
        import sys

        err = io.StringIO()
        self.patch(sys, "stderr", err)
        self.assertEqual(introducer_tap.main(["--metrics-port", "99999"]), 2)
        lines = err.getvalue().splitlines()
        # The mistake, then a hint where the help is.
        self.assertIn("p2pnet introducer: ", lines[-2])
        self.assertIn("99999", lines[-2])
        self.assertIn("--help", lines[-1])

    def test_introducer_metrics_service(self):
        """
        C{--metrics-port} on the introducer serves its metrics on that TCP
        port and interface.
        """
        options = self.introducer(
            "--port", "0", "--no-relay", "--metrics-port", "9100", "--metrics-interface", "127.0.0.2"
        )
        reactor = FakeReactor()
        introducer_tap.makeService(options, reactor).startService()
        [(port, site, interface)] = reactor.tcp
        self.assertEqual((port, interface), (9100, "127.0.0.2"))
        names = scrape_site(site)
        self.assertIn("p2pnet_introducer_received_datagrams", names)
        self.assertIn("p2pnet_introducer_introduction_latency_seconds", names)
        self.assertNotIn("p2pnet_relay_allocations", names)

    def test_introducer_with_relay_port(self):
        """
        An introducer with an in-process relay serves both's metrics.
        """
        options = self.introducer("--port", "0", "--relay-port", "0", "--metrics-port", "0")
        reactor = FakeReactor()
        introducer_tap.makeService(options, reactor).startService()
        [(port, site, interface)] = reactor.tcp
        self.assertEqual((port, interface), (0, "127.0.0.1"))
        names = scrape_site(site)
        self.assertIn("p2pnet_introducer_registrations", names)
        self.assertIn("p2pnet_relay_allocations", names)

    def test_relay_metrics_service(self):
        """
        C{--metrics-port} on the relay serves its metrics.
        """
        _, options = self.both("--port", "0", "--metrics-port", "9101")
        reactor = FakeReactor()
        relay_tap.makeService(options, reactor).startService()
        [(port, site, interface)] = reactor.tcp
        self.assertEqual((port, interface), (9101, "127.0.0.1"))
        names = scrape_site(site)
        self.assertIn("p2pnet_relay_forwarded_bytes", names)
        self.assertNotIn("p2pnet_introducer_registrations", names)

    def test_relay_stats_interval(self):
        """
        The relay tap's C{--stats-interval} reaches the protocol: a stats
        line after that many seconds.
        """
        options = self.relay("--port", "0", "--stats-interval", "10", "--idle-timeout", "10")
        reactor = FakeReactor()
        relay_tap.makeService(options, reactor).startService()
        [(_, protocol, _)] = reactor.listened
        events = []
        protocol.log = Logger(observer=events.append)
        reactor.advance(10)
        self.assertEqual(len([e for e in events if "counters" in e]), 1)
