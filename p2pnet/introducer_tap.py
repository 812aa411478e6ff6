"""
twistd options and service for the introducer: C{twistd -n p2pnet-introducer}
and C{p2pnet introducer} take the same options.
"""

from __future__ import annotations

import os
import sys

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from twisted.application.service import MultiService, Service
from twisted.python import usage

from p2pnet._options import address as _relay_address
from p2pnet._options import metrics_options
from p2pnet._options import non_negative as _non_negative
from p2pnet._options import ListeningServices, parse, read_secret
from p2pnet._options import port as _port
from p2pnet._options import positive as _positive
from p2pnet._ratelimit import RateLimiter, SourceLimiter
from p2pnet.address import Address
from p2pnet._registry import Registry
from p2pnet.introducer import IntroducerProtocol, IntroducerService, UDPService


class Options(usage.Options):
    """
    Options for the introducer.
    """

    synopsis = "[options]"
    longdesc = (
        "Run a p2pnet introducer: hosts register over UDP, host and list "
        "sessions, and get introduced to each other. Also answers STUN "
        "Binding requests on the same port."
    )

    optParameters = [
        ["port", "p", 3478, "UDP port to listen on (0 picks a free one).", _port],
        ["interface", "i", "", "Address to bind (default: all IPv4 addresses)."],
        ["interface6", None, None,
         "Also listen on this IPv6 address ('::' for all), on the same port where free, "
         "for IPv6 hosts and dual-stack ones (the relay run here too)."],
        ["secret-file", "s", None, "File holding the shared secret hosts must sign with."],
        ["identity-file", None, None,
         "File holding the introducer's static X25519 private key (32 raw bytes); "
         "created (mode 0600) if missing.  Default: a fresh key at every start."],
        ["max-registrations", None, 200_000, "Most registrations held in all.", int],
        ["max-per-ip", None, 1024, "Most registrations from one source IP.", int],
        ["max-sessions", None, 50_000, "Most hosted sessions in all.", int],
        ["max-sessions-per-ip", None, 64, "Most sessions hosted from one source IP.", int],
        ["registration-lifetime", "l", 60.0,
         "Seconds a registration lives without a heartbeat.", _positive],
        ["rate", None, 50.0, "Packets per second allowed per source IP.", _positive],
        ["burst", None, 100.0, "Burst size allowed per source IP.", _positive],
        ["relay-port", None, None,
         "UDP port of the relay this process runs (default: the introducer's port + 1; "
         "0: any).", _port],
        ["relay-secret-file", None, None,
         "Secret shared with the relays (required with --relay; optional with --relay-port)."],
        ["relay-probe-interval", None, 1.0,
         "Seconds between status probes of each --relay.", _positive],
        ["relay-dead-after", None, 3.0,
         "Seconds without an answer after which a --relay is taken for dead "
         "and its pairs moved to another relay.", _positive],
        ["stun-alternate-ip", None, None,
         "Second local IP address: makes the STUN service an RFC 5780 "
         "behaviour-discovery server (needs --interface)."],
        ["stun-alternate-port", None, None,
         "Second UDP port for RFC 5780 behaviour discovery (default: the introducer's "
         "port + 2, or + 3 if the relay has that one).", _port],
        ["stats-interval", None, 60.0,
         "Seconds between statistics log lines (0: never).", _non_negative],
        ["log-rate", None, 20.0,
         "Most per-peer and per-datagram log lines per second (bursts of 5 s "
         "worth); the rest are counted in a summary line (0: no limit).", _non_negative],
        ["redis", None, None,
         "Be a node of an introducer cluster sharing registrations, sessions and "
         "introductions through the Redis at this URL (redis://[:password@]host[:port][/db]). "
         "Default: none (everything in this process)."],
        ["node-id", None, None, "This node's name in the cluster (default: a random one)."],
        *metrics_options(),
    ]
    optFlags = [
        ["no-stun", None, "Do not answer STUN Binding requests."],
        ["no-relay", None, "Run no relay (peers that cannot go direct then fail)."],
        ["no-stun-alternate", None,
         "No second STUN port (peers' NAT checks then cannot tell symmetric NATs apart)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["relays"] = []

    def opt_relay(self, value: str) -> None:
        """
        Hand out allocations on a separate p2pnet relay at HOST:PORT
        (repeat for several; each allocation goes to the least loaded one
        that answers its probes).
        """
        try:
            self["relays"].append(_relay_address(value))
        except ValueError as e:
            raise usage.UsageError(f"--relay: {e}") from None

    def postOptions(self) -> None:
        path = self["secret-file"]
        self["secret"] = read_secret(path, "--secret-file") if path is not None else None
        if self["burst"] < 1:
            raise usage.UsageError("--burst must be at least 1")
        if len(set(self["relays"])) != len(self["relays"]):
            raise usage.UsageError("--relay names the same relay twice")
        if self["no-relay"] and (self["relays"] or self["relay-port"] is not None):
            raise usage.UsageError("--no-relay contradicts --relay and --relay-port")
        if self["relays"] and self["relay-secret-file"] is None:
            raise usage.UsageError("--relay needs --relay-secret-file (the relay's --secret-file)")
        self["stun-alternate-default"] = False
        if self["stun-alternate-ip"] or self["stun-alternate-port"] is not None:
            if self["no-stun"] or self["no-stun-alternate"]:
                raise usage.UsageError("--stun-alternate-* make no sense with --no-stun or --no-stun-alternate")
            if self["port"] == 0 or (self["stun-alternate-ip"] and not self["interface"]):
                raise usage.UsageError(
                    "RFC 5780 alternates need a non-zero --port (and --stun-alternate-ip a fixed --interface)"
                )
            if self["stun-alternate-port"] == 0:
                raise usage.UsageError("--stun-alternate-port must not be 0")
            if self["stun-alternate-ip"]:
                try:
                    Address.parse(self["stun-alternate-ip"], 0)
                except ValueError as e:
                    raise usage.UsageError(f"--stun-alternate-ip: {e}")
        if self["interface6"] is not None:
            try:
                if not Address(self["interface6"], 0).is_ipv6:
                    raise ValueError("not an IPv6 address")
            except ValueError as e:
                raise usage.UsageError(f"--interface6: {e}")
        # The relay in this process runs unless --relay names others (then
        # only with --relay-port: alongside them) or --no-relay.
        if not self["relays"] and self["relay-port"] is None and not self["no-relay"]:
            self["relay-port"] = default_relay_port(self["port"], self["stun-alternate-port"])
        if (
            self["stun-alternate-port"] is None and not self["stun-alternate-ip"]
            and not (self["no-stun"] or self["no-stun-alternate"]) and self["port"] != 0
        ):
            # NAT behaviour discovery with what one IP address allows: a
            # second port shows whether a NAT maps per destination port.
            self["stun-alternate-port"] = default_stun_alternate_port(self["port"], self["relay-port"])
            self["stun-alternate-default"] = self["stun-alternate-port"] is not None
        relay_secret = self["relay-secret-file"]
        self["relay-secret"] = read_secret(relay_secret, "--relay-secret-file") if relay_secret else None
        for name in ("max-registrations", "max-per-ip", "max-sessions", "max-sessions-per-ip"):
            if self[name] < 1:
                raise usage.UsageError(f"--{name} must be at least 1")
        if self["redis"] is not None:
            try:
                from p2pnet.cluster._store import parse_url
            except ImportError as e:
                raise usage.UsageError(f"--redis needs txredisapi (pip install 'p2pnet[cluster]'): {e}")
            try:
                parse_url(self["redis"])
            except ValueError as e:
                raise usage.UsageError(f"--redis: {e}")
        elif self["node-id"] is not None:
            raise usage.UsageError("--node-id needs --redis")
        path = self["identity-file"]
        self["identity"] = load_identity(path) if path is not None else None


def default_relay_port(port: int, taken: int | None = None) -> int:
    """
    The in-process relay's port when none is given: the introducer's port
    + 1 (+ 2 if that is the STUN alternate port C{taken}); any free port
    (0) when the introducer's is 0 or there is no next port.
    """
    if port == 0:
        return 0
    for candidate in (port + 1, port + 2):
        if candidate <= 65535 and candidate != taken:
            return candidate
    return 0


def default_stun_alternate_port(port: int, relay_port: int | None) -> int | None:
    """
    The STUN alternate port when none is given: the introducer's port + 2
    (+ 3 if the relay has that one); None if there is no such port.
    """
    for candidate in (port + 2, port + 3):
        if candidate <= 65535 and candidate != relay_port:
            return candidate
    return None


def load_identity(path: str) -> X25519PrivateKey:
    """
    The introducer's key from C{path} (32 raw bytes), made and saved with
    mode 0600 if the file does not exist.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        key = X25519PrivateKey.generate()
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
        except OSError as e:
            raise usage.UsageError(f"cannot create --identity-file {path}: {e.strerror}")
        return key
    except OSError as e:
        raise usage.UsageError(f"cannot read --identity-file {path}: {e.strerror}")
    if len(raw) != 32:
        raise usage.UsageError(f"--identity-file {path} must hold 32 bytes, not {len(raw)}")
    return X25519PrivateKey.from_private_bytes(raw)


def _stun_responder():
    try:
        from p2pnet._stunserver import StunResponder
    except ImportError:  # pragma: no cover - STUN support not installed
        return None
    return StunResponder()


def make_protocol(options: Options, clock, relay=None) -> IntroducerProtocol:
    """
    Build the introducer protocol the options describe.

    @param relay: the L{RelayPool} (or L{RelaySettings}) of the relays to
        hand out, if any.
    """
    caps = dict(
        max_registrations=options["max-registrations"],
        max_per_ip=options["max-per-ip"],
        max_sessions=options["max-sessions"],
        max_sessions_per_ip=options["max-sessions-per-ip"],
    )
    settings = dict(
        secret=options["secret"],
        rate_limiter=RateLimiter(options["rate"], options["burst"]),
        stun_responder=None if options["no-stun"] else _stun_responder(),
        relay=relay,
        stats_interval=options["stats-interval"],
        log_rate=options["log-rate"],
        identity=options["identity"],
    )
    if options.get("redis") is not None:
        from p2pnet.cluster import cluster_protocol

        return cluster_protocol(
            clock, options["redis"], options["registration-lifetime"], caps, options.get("node-id"), **settings
        )
    registry = Registry(options["registration-lifetime"], os.urandom, **caps)
    return IntroducerProtocol(clock, registry, os.urandom, **settings)


def makeService(options: Options, reactor=None) -> MultiService:
    """
    The twistd entry point: a MultiService holding the introducer.
    """
    if reactor is None:
        from twisted.internet import reactor  # the tap may use the global reactor
    from p2pnet._relaypool import RelayMonitor, RelayPool, RelaySettings
    from p2pnet.introducer import UDPService
    from p2pnet.relay import RelayProtocol

    parent = ListeningServices("p2pnet introducer")
    relays = [RelaySettings(options["relay-secret"], address) for address in options["relays"]]
    relay_protocol = None
    if options["relay-port"] is not None:
        secret = options["relay-secret"] or os.urandom(32)
        relay_protocol = RelayProtocol(
            reactor,
            secret,
            source_limiter=SourceLimiter(5000.0, 5_000_000.0),
            stats_interval=options["stats-interval"],
        )
        relay_service = UDPService(
            reactor, relay_protocol, options["relay-port"], options["interface"], "relay", options["interface6"]
        )
        relay_service.setServiceParent(parent)
        # The port is only known once bound, so offers read it from the
        # service; peers read the 0.0.0.0 host as the introducer's host.
        relays.insert(
            0, RelaySettings(secret, None, lambda: relay_service.port.getHost().port, lambda: len(relay_protocol.allocations))
        )
    pool = RelayPool(relays, options["relay-dead-after"]) if relays else None
    protocol = make_protocol(options, reactor, pool)
    if options["redis"] is not None:
        from p2pnet.cluster import NodeService

        NodeService(protocol.node).setServiceParent(parent)
    IntroducerService(
        reactor, protocol, options["port"], options["interface"], options["interface6"]
    ).setServiceParent(parent)
    if options["relays"]:
        # Probes go from a socket of their own, so that answers never mix
        # with the introducer's traffic.
        monitor = RelayMonitor(reactor, pool, os.urandom, protocol.relay_died, options["relay-probe-interval"])
        UDPService(reactor, monitor, 0, options["interface"], "relay monitor").setServiceParent(parent)
    if options["metrics-port"] is not None:
        from p2pnet._metrics import MetricsService, introducer_registry, relay_registry

        registry = introducer_registry(protocol)
        if relay_protocol is not None:
            relay_registry(relay_protocol, registry)
        MetricsService(reactor, registry, options["metrics-port"], options["metrics-interface"]).setServiceParent(parent)
    if protocol.stun_server is not None and (options["stun-alternate-ip"] or options["stun-alternate-port"]):
        _add_stun_alternates(parent, reactor, options, protocol.stun_server)
    return parent


def _add_stun_alternates(parent: MultiService, reactor, options: Options, server) -> None:
    """
    Bind the RFC 5780 alternate sockets beside the introducer's port.
    """
    from p2pnet._stunserver import StunServerProtocol
    from p2pnet.introducer import UDPService

    primary = Address(options["interface"] or "0.0.0.0", options["port"])
    alt_ip = options["stun-alternate-ip"]
    alt_port = options["stun-alternate-port"]
    sockets = {}
    if alt_port is not None:
        sockets["alt-port"] = Address(primary.host, alt_port)
    if alt_ip:
        sockets["alt-ip"] = Address(alt_ip, primary.port)
        if alt_port is not None:
            sockets["alt-both"] = Address(alt_ip, alt_port)
    for name, local in sockets.items():
        protocol = StunServerProtocol(server, name, local)
        server.protocols[name] = protocol
        kind = _DefaultAlternate if options["stun-alternate-default"] else UDPService
        kind(reactor, protocol, local.port, options["interface"] if local.host == "0.0.0.0" else local.host,
             f"STUN {name}").setServiceParent(parent)
    server.responder.primary_address = primary
    server.responder.other_address = Address(alt_ip or primary.host, alt_port if alt_port is not None else primary.port)


class _DefaultAlternate(UDPService):
    """
    The STUN alternate port nobody asked for: if it is taken, the
    introducer runs on without NAT behaviour discovery (and says so).
    """

    def startService(self) -> None:
        from twisted.internet.error import CannotListenError

        try:
            super().startService()
        except CannotListenError as e:
            self.log.warn(
                "STUN alternate port {port} unavailable ({error}): no NAT behaviour discovery "
                "(pass --stun-alternate-port PORT, or --no-stun-alternate)",
                port=self._port_number, error=str(e.socketError),
            )
            self.protocol.server.responder.other_address = None
            Service.startService(self)


def main(argv: list[str]) -> int:
    """
    C{p2pnet introducer ...}: run the introducer in the foreground.
    """
    options = Options()
    if not parse(options, argv, "p2pnet introducer"):
        return 2
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    service = makeService(options, reactor)
    try:
        service.startService()
    except SystemExit as e:
        print(e.code, file=sys.stderr)
        return 1
    except Exception as e:
        print(f"p2pnet introducer: cannot start: {e}", file=sys.stderr)
        return 1
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return 0
