"""
twistd options and service for a standalone relay: C{twistd -n p2pnet-relay}.

Give the relay and the introducer the same secret file (the introducer's
C{--relay HOST:PORT --relay-secret-file PATH}).
"""

from __future__ import annotations

from twisted.application.service import MultiService
from twisted.python import usage

from p2pnet._ratelimit import SourceLimiter
from p2pnet.introducer import UDPService
from p2pnet._options import metrics_options
from p2pnet._options import non_negative as _non_negative
from p2pnet._options import port as _port
from p2pnet._options import positive as _positive
from p2pnet._options import ListeningServices, read_secret
from p2pnet.relay import RelayProtocol


class Options(usage.Options):
    """
    Options for the relay.
    """

    synopsis = "--secret-file PATH [options]"
    longdesc = (
        "Run a p2pnet relay: forwards authenticated datagrams between the two "
        "members of allocations that a p2pnet introducer hands out, each member "
        "bound to an address only after it answered the relay's challenge there."
    )
    optParameters = [
        ["port", "p", 3479, "UDP port to listen on (0 picks a free one).", _port],
        ["interface", "i", "", "Address to bind (default: all IPv4 addresses)."],
        ["interface6", None, None, "Also listen on this IPv6 address ('::' for all), on the same port where free."],
        ["secret-file", "s", None, "File with the secret shared with the introducer (required)."],
        ["idle-timeout", None, 60.0, "Seconds before an unused allocation is forgotten.", _positive],
        ["max-packets", None, 2000, "Packets per second per allocation.", int],
        ["max-bytes", None, 2_000_000, "Bytes per second per allocation.", int],
        ["rate", None, 5000.0, "Packets per second per source IP.", _positive],
        ["source-bytes", None, 5_000_000.0, "Bytes per second per source IP.", _positive],
        ["max-allocations", None, 100_000, "Allocations at most (half-bound ones are evicted first).", int],
        ["max-per-source", None, 256, "Member bindings at most per source IP.", int],
        ["unbound-timeout", None, 15.0, "Seconds a half-bound allocation may wait for its second member.", _positive],
        ["stats-interval", None, 60.0, "Seconds between statistics log lines (0: never).", _non_negative],
        *metrics_options(),
    ]
    optFlags = [
        ["verify-all", None, "Check every datagram's tag, not only those that bind or move a member's address."],
    ]

    def postOptions(self) -> None:
        if self["secret-file"] is None:
            raise usage.UsageError("--secret-file is required (the same file as the introducer's --relay-secret-file)")
        self["secret"] = read_secret(self["secret-file"], "--secret-file")
        for name in ("max-packets", "max-bytes", "max-allocations", "max-per-source"):
            if self[name] <= 0:
                raise usage.UsageError(f"--{name} must be greater than 0")
        if self["interface6"] is not None:
            from p2pnet.address import Address

            try:
                if not Address(self["interface6"], 0).is_ipv6:
                    raise ValueError("not an IPv6 address")
            except ValueError as e:
                raise usage.UsageError(f"--interface6: {e}")
        if self["rate"] < 0.5:
            raise usage.UsageError("--rate must be at least 0.5 (a source's burst, twice the rate, must hold a packet)")


def make_protocol(options: Options, clock) -> RelayProtocol:
    return RelayProtocol(
        clock,
        options["secret"],
        idle_timeout=options["idle-timeout"],
        max_packets=options["max-packets"],
        max_bytes=options["max-bytes"],
        source_limiter=SourceLimiter(options["rate"], options["source-bytes"]),
        verify_all=options["verify-all"],
        max_allocations=options["max-allocations"],
        max_per_source=options["max-per-source"],
        unbound_timeout=options["unbound-timeout"],
        stats_interval=options["stats-interval"],
    )


def makeService(options: Options, reactor=None) -> MultiService:
    """
    The twistd entry point: a MultiService holding the relay.
    """
    if reactor is None:
        from twisted.internet import reactor  # the tap may use the global reactor
    parent = ListeningServices("p2pnet relay")
    protocol = make_protocol(options, reactor)
    UDPService(
        reactor, protocol, options["port"], options["interface"], "relay", options["interface6"]
    ).setServiceParent(parent)
    if options["metrics-port"] is not None:
        from p2pnet._metrics import MetricsService, relay_registry

        MetricsService(
            reactor, relay_registry(protocol), options["metrics-port"], options["metrics-interface"]
        ).setServiceParent(parent)
    return parent
