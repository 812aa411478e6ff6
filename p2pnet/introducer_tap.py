"""
twistd options and service for the introducer: C{twistd -n p2pnet-introducer}
and C{p2pnet introducer} take the same options.
"""

from __future__ import annotations

import os
import sys

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from twisted.application.service import MultiService
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
from p2pnet.introducer import IntroducerProtocol, IntroducerService


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
        ["relay", None, None,
         "Hand out allocations on a separate p2pnet relay at HOST:PORT.", _relay_address],
        ["relay-secret-file", None, None,
         "Secret shared with the relay (required with --relay; optional with --relay-port)."],
        ["stun-alternate-ip", None, None,
         "Second local IP address: makes the STUN service an RFC 5780 "
         "behaviour-discovery server (needs --interface)."],
        ["stun-alternate-port", None, None,
         "Second UDP port for RFC 5780 behaviour discovery.", _port],
        ["stats-interval", None, 60.0,
         "Seconds between statistics log lines (0: never).", _non_negative],
        ["log-rate", None, 20.0,
         "Most per-peer and per-datagram log lines per second (bursts of 5 s "
         "worth); the rest are counted in a summary line (0: no limit).", _non_negative],
        *metrics_options(),
    ]
    optFlags = [
        ["no-stun", None, "Do not answer STUN Binding requests."],
        ["no-relay", None, "Run no relay (peers that cannot go direct then fail)."],
    ]

    def postOptions(self) -> None:
        path = self["secret-file"]
        self["secret"] = read_secret(path, "--secret-file") if path is not None else None
        if self["burst"] < 1:
            raise usage.UsageError("--burst must be at least 1")
        if self["relay"] is not None and self["relay-port"] is not None:
            raise usage.UsageError("use --relay (a separate relay) or --relay-port (one in this process), not both")
        if self["no-relay"] and (self["relay"] is not None or self["relay-port"] is not None):
            raise usage.UsageError("--no-relay contradicts --relay and --relay-port")
        if self["relay"] is not None and self["relay-secret-file"] is None:
            raise usage.UsageError("--relay needs --relay-secret-file (the relay's --secret-file)")
        if self["stun-alternate-ip"] or self["stun-alternate-port"] is not None:
            if self["no-stun"]:
                raise usage.UsageError("--stun-alternate-* make no sense with --no-stun")
            if not self["interface"] or self["port"] == 0:
                raise usage.UsageError(
                    "RFC 5780 alternates need a fixed --interface address and a non-zero --port"
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
        if self["relay"] is None and self["relay-port"] is None and not self["no-relay"]:
            self["relay-port"] = default_relay_port(self["port"], self["stun-alternate-port"])
        relay_secret = self["relay-secret-file"]
        self["relay-secret"] = read_secret(relay_secret, "--relay-secret-file") if relay_secret else None
        for name in ("max-registrations", "max-per-ip", "max-sessions", "max-sessions-per-ip"):
            if self[name] < 1:
                raise usage.UsageError(f"--{name} must be at least 1")
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

    @param relay: the L{RelaySettings} of the relay to hand out, if any.
    """
    registry = Registry(
        options["registration-lifetime"],
        os.urandom,
        max_registrations=options["max-registrations"],
        max_per_ip=options["max-per-ip"],
        max_sessions=options["max-sessions"],
        max_sessions_per_ip=options["max-sessions-per-ip"],
    )
    return IntroducerProtocol(
        clock,
        registry,
        os.urandom,
        secret=options["secret"],
        rate_limiter=RateLimiter(options["rate"], options["burst"]),
        stun_responder=None if options["no-stun"] else _stun_responder(),
        relay=relay,
        stats_interval=options["stats-interval"],
        log_rate=options["log-rate"],
        identity=options["identity"],
    )


def makeService(options: Options, reactor=None) -> MultiService:
    """
    The twistd entry point: a MultiService holding the introducer.
    """
    if reactor is None:
        from twisted.internet import reactor  # the tap may use the global reactor
    from p2pnet.introducer import RelaySettings, UDPService
    from p2pnet.relay import RelayProtocol

    parent = ListeningServices("p2pnet introducer")
    relay = relay_protocol = None
    if options["relay"] is not None:
        relay = RelaySettings(options["relay-secret"], options["relay"])
    elif options["relay-port"] is not None:
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
        relay = RelaySettings(secret, None, lambda: relay_service.port.getHost().port)
    protocol = make_protocol(options, reactor, relay)
    IntroducerService(
        reactor, protocol, options["port"], options["interface"], options["interface6"]
    ).setServiceParent(parent)
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

    primary = Address(options["interface"], options["port"])
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
        UDPService(reactor, protocol, local.port, local.host, f"STUN {name}").setServiceParent(parent)
    server.responder.primary_address = primary
    server.responder.other_address = Address(alt_ip or primary.host, alt_port if alt_port is not None else primary.port)


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
