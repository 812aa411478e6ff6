"""
The servers the packet-rate benchmarks load, one per process:

  - C{echo}: a bare Twisted UDP echo server (a DatagramProtocol that writes
    back what it gets): the ceiling for a Twisted UDP service.
  - C{introducer}: L{p2pnet.introducer.IntroducerProtocol} as the tap builds
    it (registry, STUN responder), without the per-IP rate limiter (the load
    comes from one IP) unless C{--rate-limit}.
  - C{stunserver}: the standalone L{p2pnet._stunserver.listen_stun} server.
  - C{relay}: L{p2pnet.relay.RelayProtocol} built as the relay tap builds
    it (L{p2pnet.relay_tap.makeService} from the tap's options, given with
    C{--relay-options="..."}, e.g. C{--secret-file PATH} and raised caps).

Prints C{PORT <n>} once listening; on SIGTERM prints C{STATS <json>} and
exits.  Run as C{python -m benchmarks._server KIND}; the benchmarks start
it under C{taskset -c 0}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["echo", "introducer", "stunserver", "relay"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--log",
        choices=["info", "none"],
        default="info",
        help="info: log at info level to a file, as twistd does; none: no observer",
    )
    parser.add_argument("--log-file", default="/tmp/p2pnet-bench-server.log")
    parser.add_argument("--rate-limit", action="store_true", help="install the tap's RateLimiter (with a huge rate)")
    parser.add_argument("--redis", default=None, help="introducer: a cluster node on the Redis at this URL")
    parser.add_argument(
        "--relay-options",
        default="",
        help="relay: the p2pnet-relay tap's options, one string (use --relay-options=...)",
    )
    args = parser.parse_args()

    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.internet.protocol import DatagramProtocol
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    if args.log == "info":
        out = open(args.log_file, "w")
        observer = FilteringLogObserver(
            textFileLogObserver(out), [LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)]
        )
        globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    else:
        globalLogBeginner.beginLoggingTo([], redirectStandardIO=False)

    stats = lambda: {}  # noqa: E731
    if args.kind == "echo":

        class Echo(DatagramProtocol):
            def datagramReceived(self, data, addr):
                self.transport.write(data, addr)

        port = reactor.listenUDP(args.port, Echo(), interface="127.0.0.1")
    elif args.kind == "introducer":
        from p2pnet._ratelimit import RateLimiter
        from p2pnet._registry import Registry
        from p2pnet._stunserver import StunResponder
        from p2pnet.introducer import IntroducerProtocol

        settings = dict(rate_limiter=RateLimiter(1e9, 1e9) if args.rate_limit else None, stun_responder=StunResponder())
        # All load comes from 127.0.0.1: no per-IP caps (as no rate limit).
        caps = dict(max_per_ip=10**9, max_sessions_per_ip=10**9)
        if args.redis:
            from p2pnet.cluster import cluster_protocol

            protocol = cluster_protocol(reactor, args.redis, 600.0, caps, **settings)
            protocol.node.start()
        else:
            protocol = IntroducerProtocol(reactor, Registry(600.0, os.urandom, **caps), os.urandom, **settings)
        from p2pnet._udpread import listen_udp

        port = listen_udp(reactor, args.port, protocol, "127.0.0.1")  # as IntroducerService does
        stats = lambda: dict(  # noqa: E731
            protocol.stats, registrations=len(protocol.registry), **getattr(getattr(protocol, "node", None), "stats", {})
        )
    elif args.kind == "relay":
        import shlex

        from p2pnet import relay_tap

        options = relay_tap.Options()
        options.parseOptions(["--port", str(args.port), "--interface", "127.0.0.1"] + shlex.split(args.relay_options))
        service = relay_tap.makeService(options, reactor)
        service.startService()
        udp = service.services[0]
        port = udp.port
        relay = udp.protocol
        # Count the port's wake-ups: forwarded / reads is the mean batch.
        reads = [0]
        read_batch = port.doRead

        def counted_read():
            reads[0] += 1
            return read_batch()

        port.doRead = counted_read
        stats = lambda: dict(relay.stats, live_allocations=len(relay.allocations), reads=reads[0])  # noqa: E731
    else:
        from p2pnet._stunserver import listen_stun
        from p2pnet.address import Address

        ports = listen_stun(reactor, Address("127.0.0.1", args.port))
        port = ports[0]
        server = port.protocol.server
        stats = lambda: {"answered": server.answered, "dropped": server.dropped}  # noqa: E731

    # Bigger socket buffers so bursts of a pipelined window are not dropped.
    import socket

    handle = port.getHandle()
    handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)

    def stop(*_):
        sys.stdout.write("STATS " + json.dumps(stats()) + "\n")
        sys.stdout.flush()
        reactor.stop()

    signal.signal(signal.SIGTERM, lambda *a: reactor.callFromThread(stop))
    sys.stdout.write(f"PORT {port.getHost().port}\n")
    sys.stdout.flush()
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main()
