"""
Prometheus metrics for the introducer and the relay, served over
twisted.web (C{--metrics-port}).

Nothing here touches the per-datagram path: the counters are the
services' own statistics (L{IntroducerProtocol.stats},
L{RelayProtocol.stats}), read by a collector when Prometheus scrapes, and
the gauges are the sizes of their tables at that moment.  Each service
owns its L{CollectorRegistry} (never the global default one), and the
scrape runs in the reactor thread like everything else, so it reads the
tables without locks.  docs/operations.md lists every metric.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.application.service import Service
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

#: Upper bounds (seconds) of the introduction latency buckets: pushes are
#: retransmitted 0.25, 0.75, 1.75 ... 5.75 s after the first copy (given
#: up at 6.75 s).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)

#: The text format every Prometheus server reads (what prometheus_client's
#: own server answers when the scraper asks for nothing newer; our names
#: are plain, so the 1.0.0 format would be the same bytes).
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _split(stats, named: dict[str, str], prefix: str) -> Iterator[Metric]:
    """
    The metrics of one service's statistics counters: C{named} counters
    (stats key -> metric name) on their own, every C{dropped-*} key as a
    C{reason} of C{PREFIX_dropped_datagrams_total}, and all other keys as
    an C{event} of C{PREFIX_events_total}, so no counter is left out.
    """
    stats = dict(stats)
    for key, name in named.items():
        family = CounterMetricFamily(f"{prefix}_{name}", _HELP[name])
        family.add_metric([], stats.pop(key, 0))
        yield family
    dropped = CounterMetricFamily(
        f"{prefix}_dropped_datagrams", "Datagrams dropped (received ones, or answers and pushes not sent), by reason.", labels=["reason"]
    )
    events = CounterMetricFamily(f"{prefix}_events", "Other events the service counts, by kind.", labels=["event"])
    for key, value in sorted(stats.items()):
        if key.startswith("dropped-"):
            dropped.add_metric([key[len("dropped-"):]], value)
        else:
            events.add_metric([key], value)
    yield dropped
    yield events


_HELP = {
    "received_datagrams": "Datagrams received.",
    "sent_datagrams": "Datagrams sent: answers, errors, challenges and introduction pushes.",
    "introductions": "Pairs of peers introduced to each other.",
    "forwarded_datagrams": "Datagrams forwarded between the members of an allocation.",
    "forwarded_bytes": "Bytes of the datagrams forwarded (as received).",
}


class IntroducerCollector:
    """
    The introducer's counters and gauges, read at scrape time.

    @param protocol: the L{IntroducerProtocol}.
    """

    def __init__(self, protocol) -> None:
        self._protocol = protocol

    def collect(self) -> Iterator[Metric]:
        protocol = self._protocol
        yield from _split(
            protocol.stats,
            {"received": "received_datagrams", "sent": "sent_datagrams", "introductions": "introductions"},
            "p2pnet_introducer",
        )
        registry = protocol.registry
        yield GaugeMetricFamily("p2pnet_introducer_registrations", "Peers registered now.", len(registry))
        yield GaugeMetricFamily("p2pnet_introducer_sessions", "Sessions hosted now.", registry.session_count)


class RelayCollector:
    """
    The relay's counters and gauges, read at scrape time.

    @param protocol: the L{RelayProtocol}.
    """

    def __init__(self, protocol) -> None:
        self._protocol = protocol

    def collect(self) -> Iterator[Metric]:
        protocol = self._protocol
        yield from _split(
            protocol.stats,
            {"forwarded": "forwarded_datagrams", "forwarded-bytes": "forwarded_bytes"},
            "p2pnet_relay",
        )
        yield GaugeMetricFamily(
            "p2pnet_relay_allocations", "Allocations held now (one or both members bound).", len(protocol.allocations)
        )


class IntroductionLatency:
    """
    Observes how long introductions take to be acknowledged: from the
    moment the introducer sends both sides their introduction (the turn it
    handles the C{Introduce}) until the later of the two sides'
    acknowledgements arrives.  Introductions one side never acknowledges
    are not observed (they are counted as C{introductions-unacknowledged}).

    Install as L{IntroducerProtocol.intro_ack_observer}, which is called
    at the first acknowledgement of each side's copy.

    @param histogram: the histogram to observe into.
    @param limit: introductions remembered with one side acknowledged; the
        oldest are forgotten beyond.
    """

    def __init__(self, histogram: Histogram, limit: int = 10_000) -> None:
        self._histogram = histogram
        self._limit = limit
        self._half: OrderedDict[bytes, None] = OrderedDict()

    def __call__(self, intro_id: bytes, elapsed: float) -> None:
        half = self._half
        if intro_id not in half:
            half[intro_id] = None
            if len(half) > self._limit:
                half.popitem(last=False)
            return
        del half[intro_id]
        self._histogram.observe(max(0.0, elapsed))


def introducer_registry(protocol, registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """
    Add the introducer's metrics to C{registry} (default: a new one), its
    introduction latency histogram installed as C{protocol}'s
    acknowledgement observer.
    """
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
    registry.register(IntroducerCollector(protocol))
    histogram = Histogram(
        "p2pnet_introducer_introduction_latency_seconds",
        "Seconds from sending an introduction to both sides until both acknowledged it.",
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    protocol.intro_ack_observer = IntroductionLatency(histogram)
    return registry


def relay_registry(protocol, registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """
    Add the relay's metrics to C{registry} (default: a new one).
    """
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
    registry.register(RelayCollector(protocol))
    return registry


class MetricsResource(Resource):
    """
    Renders a registry in the Prometheus text format.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE)
        return generate_latest(self._registry)


class MetricsSite(Site):
    """
    A Site that writes no access log line per scrape.
    """

    noisy = False

    def log(self, request) -> None:
        pass


def metrics_site(registry: CollectorRegistry) -> Site:
    """
    A site serving C{registry} at C{/metrics} (other paths: 404).
    """
    root = Resource()
    root.putChild(b"metrics", MetricsResource(registry))
    return MetricsSite(root)


class MetricsService(Service):
    """
    Serves a registry over HTTP on a TCP port while running.

    @ivar port: the listening port once started.
    """

    log = Logger()

    def __init__(self, reactor, registry: CollectorRegistry, port: int, interface: str = "127.0.0.1") -> None:
        self._reactor = reactor
        self._site = metrics_site(registry)
        self._port_number = port
        self._interface = interface
        self.port = None

    def startService(self) -> None:
        self.port = self._reactor.listenTCP(self._port_number, self._site, interface=self._interface)
        address = self.port.getHost()
        host = f"[{address.host}]" if ":" in address.host else address.host
        self.log.info("metrics on http://{host}:{port}/metrics", host=host, port=address.port)
        super().startService()

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None
