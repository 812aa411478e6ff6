"""
A real scrape over loopback: the introducer and the relay started from
their taps with C{--metrics-port 0}, real traffic on real UDP sockets, and
C{/metrics} fetched over HTTP and parsed by prometheus_client's parser.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor, task
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody

from p2pnet import introducer_tap, relay_tap, wire
from p2pnet._metrics import MetricsService
from p2pnet._relayclient import answer_challenge
from p2pnet.address import Address
from p2pnet.endpoint import PeerConfig, PeerEndpoint
from p2pnet.introducer import IntroducerService, UDPService

SECRET = b"loopback relay secret"
ALLOCATION = b"L" * 8
KEY = wire.relay_key(SECRET, ALLOCATION)
HELLO = b"h" * 24  # large enough to draw a challenge


class Socket(DatagramProtocol):
    """
    A UDP socket on loopback whose datagrams are waited for one by one.
    """

    def __init__(self):
        self.waiting: list[defer.Deferred] = []
        self.arrived: list[bytes] = []

    def datagramReceived(self, data, addr):
        if self.waiting:
            self.waiting.pop(0).callback(data)
        else:
            self.arrived.append(data)

    def next(self) -> defer.Deferred:
        if self.arrived:
            return defer.succeed(self.arrived.pop(0))
        d = defer.Deferred()
        self.waiting.append(d)
        return d


class ScrapeTestCase(TestCase):
    timeout = 20

    def start(self, tap, argv):
        options = tap.Options()
        options.parseOptions(argv)
        service = tap.makeService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        [metrics] = [s for s in service if isinstance(s, MetricsService)]
        # The introducer's own port (its default relay has one too).
        udp = ([s for s in service if isinstance(s, IntroducerService)]
               or [s for s in service if isinstance(s, UDPService)])[0]
        self.url = b"http://127.0.0.1:%d/metrics" % (metrics.port.getHost().port,)
        self.assertEqual(metrics.port.getHost().host, "127.0.0.1")
        return udp.port.getHost().port

    def socket(self) -> tuple[Socket, tuple]:
        protocol = Socket()
        port = reactor.listenUDP(0, protocol, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return protocol, ("127.0.0.1", port.getHost().port)

    @defer.inlineCallbacks
    def scrape(self, url=None):
        """
        GET the metrics page: C{(name, frozenset(labels)) -> value}.
        """
        response = yield Agent(reactor).request(b"GET", url or self.url)
        body = yield readBody(response)
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain"))
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body.decode("utf-8"))
            for sample in family.samples
        }


def value(scraped, name, **labels):
    return scraped.get((name, frozenset(labels.items())))


class IntroducerScrapeTests(ScrapeTestCase):
    @defer.inlineCallbacks
    def test_scrape_after_traffic(self):
        """
        Two real endpoints register, one hosts, the other joins: the
        scrape shows both registrations, the session, the introduction
        and its latency; a stray datagram shows as a drop reason.
        """
        port = self.start(
            introducer_tap,
            ["--port", "0", "--interface", "127.0.0.1", "--no-stun", "--metrics-port", "0"],
        )
        before = yield self.scrape()
        self.assertEqual(value(before, "p2pnet_introducer_received_datagrams_total"), 0)
        self.assertEqual(value(before, "p2pnet_introducer_registrations"), 0)

        introducer = Address("127.0.0.1", port)
        # No NAT check: its STUN requests would show in the counts.
        config = PeerConfig(nat_check=False)
        host = PeerEndpoint(reactor, introducer, "host", interface="127.0.0.1", config=config)
        player = PeerEndpoint(reactor, introducer, "player", interface="127.0.0.1", config=config)
        self.addCleanup(host.stop)
        self.addCleanup(player.stop)
        yield host.start()
        yield player.start()
        yield host.host_session("metrics", "race", 4)
        [session] = yield player.list_sessions("race")
        yield player.join(session)

        # A stray datagram, then a Register from the same socket: once that
        # is answered, the stray one was handled too.
        probe, _ = self.socket()
        probe.transport.write(b"not p2pnet", ("127.0.0.1", port))
        probe.transport.write(wire.encode(wire.padded(wire.Register(b"t" * wire.TXID_SIZE, "probe", ()))),
                              ("127.0.0.1", port))
        answer = wire.decode((yield probe.next()))
        self.assertIsInstance(answer, wire.Registered)

        after = yield self.scrape()
        self.assertEqual(value(after, "p2pnet_introducer_registrations"), 3)
        self.assertEqual(value(after, "p2pnet_introducer_sessions"), 1)
        self.assertEqual(value(after, "p2pnet_introducer_introductions_total"), 1)
        self.assertEqual(value(after, "p2pnet_introducer_events_total", event="registered"), 3)
        self.assertEqual(value(after, "p2pnet_introducer_dropped_datagrams_total", reason="not-p2pnet"), 1)
        self.assertGreater(value(after, "p2pnet_introducer_received_datagrams_total"), 8)
        self.assertGreater(value(after, "p2pnet_introducer_sent_datagrams_total"), 6)

    @defer.inlineCallbacks
    def test_latency_observed(self):
        """
        Once both endpoints acknowledged their introduction, its latency
        is in the histogram: one observation, well under a second on
        loopback.
        """
        port = self.start(introducer_tap, ["--port", "0", "--interface", "127.0.0.1", "--metrics-port", "0"])
        introducer = Address("127.0.0.1", port)
        # No NAT check: its STUN requests would show in the counts.
        config = PeerConfig(nat_check=False)
        host = PeerEndpoint(reactor, introducer, "host", interface="127.0.0.1", config=config)
        player = PeerEndpoint(reactor, introducer, "player", interface="127.0.0.1", config=config)
        self.addCleanup(host.stop)
        self.addCleanup(player.stop)
        yield host.start()
        yield player.start()
        yield host.host_session("metrics", "race", 4)
        [session] = yield player.list_sessions("race")
        yield player.join(session)
        name = "p2pnet_introducer_introduction_latency_seconds"
        for _ in range(100):
            scraped = yield self.scrape()
            if value(scraped, name + "_count"):
                break
            # The acknowledgements may still be in flight: look again soon.
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(value(scraped, name + "_count"), 1)
        self.assertLess(value(scraped, name + "_sum"), 1.0)
        self.assertEqual(value(scraped, name + "_bucket", le="+Inf"), 1)

    @defer.inlineCallbacks
    def test_scrapes_not_logged(self):
        """
        A scrape writes no access log line (one every 15 s would drown the
        service's own lines).
        """
        self.start(introducer_tap, ["--port", "0", "--interface", "127.0.0.1", "--metrics-port", "0"])
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        yield self.scrape()
        yield self.scrape()
        self.assertEqual([formatEvent(e) for e in events if "/metrics" in (formatEvent(e) or "")], [])

    @defer.inlineCallbacks
    def test_other_paths_404(self):
        """
        Only /metrics is served.
        """
        self.start(introducer_tap, ["--port", "0", "--interface", "127.0.0.1", "--metrics-port", "0"])
        response = yield Agent(reactor).request(b"GET", self.url.replace(b"/metrics", b"/"))
        yield readBody(response)
        self.assertEqual(response.code, 404)


class RelayScrapeTests(ScrapeTestCase):
    def secret_file(self) -> str:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(SECRET)
        return path

    @defer.inlineCallbacks
    def bind(self, member: Socket, side: int, relay: tuple):
        member.transport.write(wire.encode_relayed(ALLOCATION, side, HELLO, KEY), relay)
        challenge = yield member.next()
        member.transport.write(answer_challenge(challenge, ALLOCATION, side, KEY), relay)

    @defer.inlineCallbacks
    def test_scrape_after_traffic(self):
        """
        Two members bind to an allocation and exchange datagrams through
        the relay: the scrape counts them, their bytes, the bindings and
        the allocation; a malformed datagram shows as a drop reason.
        """
        port = self.start(
            relay_tap,
            ["--secret-file", self.secret_file(), "--port", "0", "--interface", "127.0.0.1", "--metrics-port", "0"],
        )
        relay = ("127.0.0.1", port)
        before = yield self.scrape()
        self.assertEqual(value(before, "p2pnet_relay_forwarded_datagrams_total"), 0)
        self.assertEqual(value(before, "p2pnet_relay_allocations"), 0)
        zero, _ = self.socket()
        one, _ = self.socket()
        yield self.bind(zero, 0, relay)
        yield self.bind(one, 1, relay)
        # Sent after the answer from the same socket: side 1 is bound by then.
        one.transport.write(wire.encode_relayed(ALLOCATION, 1, b"a" * 100, KEY), relay)
        forwarded = yield zero.next()
        self.assertEqual(forwarded[:2], bytes((wire.MAGIC, wire.MessageType.RELAY_FORWARD)))
        zero.transport.write(b"\xd1\x50 short", relay)
        zero.transport.write(wire.encode_relayed(ALLOCATION, 0, b"b" * 50, KEY), relay)
        yield one.next()

        after = yield self.scrape()
        self.assertEqual(value(after, "p2pnet_relay_forwarded_datagrams_total"), 2)
        # frames: 11-byte header + payload + 8-byte tag
        self.assertEqual(value(after, "p2pnet_relay_forwarded_bytes_total"), 119 + 69)
        self.assertEqual(value(after, "p2pnet_relay_allocations"), 1)
        self.assertEqual(value(after, "p2pnet_relay_events_total", event="bound"), 2)
        self.assertEqual(value(after, "p2pnet_relay_events_total", event="challenges"), 2)
        self.assertEqual(value(after, "p2pnet_relay_dropped_datagrams_total", reason="malformed"), 1)
