"""
One side of one run of L{benchmarks.channel_compare}: a server or a client
of one library (p2pnet channels on Twisted, ENet through pyenet, aioquic
on asyncio), each in its own process.

    python -m benchmarks._compare_peer LIB ROLE --host H --port P
        --mode bulk|coalesced|datagram [--size BYTES] [--count N]
        [--introducer H:P] [--name NAME]

The client sends one message of C{--size} bytes (C{bulk}: one reliable
message for p2pnet and ENet, the bytes of one stream for aioquic), or
C{--count} 64-byte reliable messages (C{coalesced}: written all at once,
left to the library to pack; C{datagram}: each flushed to the socket at
once, acks read every 64 messages).  The server answers C{done} once it
has it all; the client prints one JSON line: C{seconds} from its first
send to that answer (wall clock), its C{cpu} seconds meanwhile, and
C{datagrams} sent where the library counts them.  The server prints
C{ready} once listening.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

MESSAGE = 64
BATCH = 64


def _report(seconds: float, cpu: float, **extra) -> None:
    print(json.dumps({"seconds": seconds, "cpu": cpu, **extra}), flush=True)


class _ServerClock:
    """
    The server's CPU seconds from the first byte received to the last.
    """

    def __init__(self):
        self.first = None

    def received(self, done: bool) -> None:
        if self.first is None:
            self.first = time.process_time()
        if done:
            print(json.dumps({"server_cpu": time.process_time() - self.first}), flush=True)
            self.first = None


def _expected(args) -> int:
    return args.size if args.mode == "bulk" else args.count * MESSAGE


# -- p2pnet ------------------------------------------------------------------


def p2pnet_main(args) -> None:
    from twisted.internet import defer, reactor, task

    from p2pnet.address import Address
    from p2pnet.endpoint import PeerEndpoint, PeerFactory, PeerProtocol

    introducer = Address.parse(args.introducer)

    clock = _ServerClock()

    class Sink(PeerProtocol):
        got = 0

        def message_received(self, channel, data):
            self.got += len(data)
            clock.received(self.got >= _expected(args))
            if self.got >= _expected(args):
                self.connection.send(b"done", channel=0)

    class Source(PeerProtocol):
        def __init__(self):
            self.done = defer.Deferred()

        def message_received(self, channel, data):
            if data == b"done" and not self.done.called:
                self.done.callback(None)

    class SinkFactory(PeerFactory):
        protocol = Sink

    @defer.inlineCallbacks
    def server():
        endpoint = PeerEndpoint(reactor, introducer, args.name, interface=args.interface, factory=SinkFactory())
        yield endpoint.start()
        print("ready", flush=True)

    @defer.inlineCallbacks
    def client():
        endpoint = PeerEndpoint(reactor, introducer, args.name + "c", interface=args.interface)
        yield endpoint.start()
        source = Source()
        connection = yield endpoint.connect(args.name, source)
        payload = os.urandom(args.size) if args.mode == "bulk" else None
        message = bytes(MESSAGE)
        started, cpu = time.perf_counter(), time.process_time()
        if args.mode == "bulk":
            connection.send(payload, channel=0)
        else:
            flush = args.mode == "datagram"
            for n in range(args.count):
                connection.send(message, channel=0, flush=flush)
                if n % BATCH == BATCH - 1:
                    if not connection.writable:
                        yield connection.when_writable()
                    elif flush:
                        yield task.deferLater(reactor, 0, lambda: None)
        trace = os.environ.get("COMPARE_TRACE")
        if trace:
            # COMPARE_TRACE=FILE: the sender's state every 2 ms (diagnosis),
            # from the first send.
            out = open(trace, "w", buffering=1)

            def sample():
                s = connection.stats()
                out.write(f"{time.perf_counter() - started:.4f} sent={s.packets_sent} flight={s.bytes_in_flight} "
                          f"window={s.congestion_window} pacing={s.pacing_rate:.0f} bw={s.bandwidth:.0f} "
                          f"srtt={s.srtt * 1000:.2f}ms loss={s.loss:.3f} queued={s.queued_bytes}\n")

            task.LoopingCall(sample).start(0.002)
        yield source.done
        stats = connection.stats()
        _report(time.perf_counter() - started, time.process_time() - cpu, datagrams=stats.packets_sent,
                srtt=stats.srtt, min_rtt=stats.min_rtt, loss=stats.loss, bandwidth=stats.bandwidth,
                window=stats.congestion_window, mtu=stats.path_mtu)
        yield endpoint.stop()
        reactor.stop()

    def failed(failure):
        print(json.dumps({"error": failure.getErrorMessage()}), flush=True)
        reactor.stop()

    reactor.callWhenRunning(lambda: (server() if args.role == "server" else client()).addErrback(failed))
    reactor.run()


# -- ENet ----------------------------------------------------------------------


def enet_main(args) -> None:
    import enet

    reliable = enet.PACKET_FLAG_RELIABLE
    if args.role == "server":
        host = enet.Host(enet.Address(args.interface.encode() or b"0.0.0.0", args.port), 4, 1, 0, 0)
        print("ready", flush=True)
        got = 0
        clock = _ServerClock()
        while True:
            event = host.service(100)
            if event.type == enet.EVENT_TYPE_RECEIVE:
                got += len(event.packet.data)
                clock.received(got >= _expected(args))
                if got >= _expected(args):
                    event.peer.send(0, enet.Packet(b"done", reliable))
                    host.flush()
                    got = 0
            elif event.type == enet.EVENT_TYPE_DISCONNECT:
                got = 0
    host = enet.Host(None, 1, 1, 0, 0)
    peer = host.connect(enet.Address(args.host.encode(), args.port), 1)
    while True:
        event = host.service(100)
        if event.type == enet.EVENT_TYPE_CONNECT:
            break
    payload = os.urandom(args.size) if args.mode == "bulk" else None
    message = bytes(MESSAGE)
    started, cpu = time.perf_counter(), time.process_time()
    if args.mode == "bulk":
        peer.send(0, enet.Packet(payload, reliable))
        host.flush()
    else:
        flush = args.mode == "datagram"
        for n in range(args.count):
            peer.send(0, enet.Packet(message, reliable))
            if flush:
                host.flush()
            if n % BATCH == BATCH - 1:
                event = host.service(0)
                while event.type != enet.EVENT_TYPE_NONE:
                    event = host.check_events()
        host.flush()
    while True:
        event = host.service(5)
        if event.type == enet.EVENT_TYPE_RECEIVE and event.packet.data == b"done":
            break
        if event.type == enet.EVENT_TYPE_DISCONNECT:
            print(json.dumps({"error": "disconnected"}), flush=True)
            return
    _report(time.perf_counter() - started, time.process_time() - cpu, datagrams=host.totalSentPackets)
    peer.disconnect()
    host.service(50)


# -- aioquic ---------------------------------------------------------------------


def _certificate():
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    return cert, key


def aioquic_main(args) -> None:
    import asyncio
    import ssl

    from aioquic.asyncio import QuicConnectionProtocol, connect, serve
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import StreamDataReceived

    expected = _expected(args)
    clock = _ServerClock()

    class Sink(QuicConnectionProtocol):
        got = 0

        def quic_event_received(self, event):
            if isinstance(event, StreamDataReceived):
                self.got += len(event.data)
                clock.received(self.got >= expected)
                if self.got >= expected:
                    self._quic.send_stream_data(event.stream_id, b"done", end_stream=True)
                    self.transmit()

    class Source(QuicConnectionProtocol):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.done = asyncio.get_event_loop().create_future()

        def quic_event_received(self, event):
            if isinstance(event, StreamDataReceived) and b"done" in event.data and not self.done.done():
                self.done.set_result(None)

    async def server():
        cert, key = _certificate()
        configuration = QuicConfiguration(is_client=False, alpn_protocols=["bench"])
        configuration.certificate, configuration.private_key = cert, key
        await serve(args.interface or "0.0.0.0", args.port, configuration=configuration, create_protocol=Sink)
        print("ready", flush=True)
        await asyncio.Future()

    async def client():
        configuration = QuicConfiguration(is_client=True, alpn_protocols=["bench"], verify_mode=ssl.CERT_NONE)
        async with connect(args.host, args.port, configuration=configuration, create_protocol=Source) as source:
            quic = source._quic
            stream = quic.get_next_available_stream_id()
            payload = os.urandom(args.size) if args.mode == "bulk" else None
            message = bytes(MESSAGE)
            started, cpu = time.perf_counter(), time.process_time()
            if args.mode == "bulk":
                quic.send_stream_data(stream, payload)
                source.transmit()
            else:
                flush = args.mode == "datagram"
                for n in range(args.count):
                    quic.send_stream_data(stream, message)
                    if flush:
                        source.transmit()
                    if n % BATCH == BATCH - 1:
                        await asyncio.sleep(0)
                source.transmit()
            await source.done
            _report(time.perf_counter() - started, time.process_time() - cpu)

    asyncio.run(server() if args.role == "server" else client())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("lib", choices=("p2pnet", "enet", "aioquic"))
    parser.add_argument("role", choices=("server", "client"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--interface", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=("bulk", "coalesced", "datagram"), default="bulk")
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--introducer", default="127.0.0.1:9000")
    parser.add_argument("--name", default="sink")
    args = parser.parse_args(argv)
    run = {"p2pnet": p2pnet_main, "enet": enet_main, "aioquic": aioquic_main}[args.lib]
    profile = os.environ.get("COMPARE_PROFILE")
    if profile:
        # COMPARE_PROFILE=PREFIX: a cProfile dump per process, PREFIX.ROLE.
        import cProfile
        import signal

        profiler = cProfile.Profile()
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        profiler.enable()
        try:
            run(args)
        finally:
            profiler.disable()
            profiler.dump_stats(f"{profile}.{args.role}")
    else:
        run(args)


if __name__ == "__main__":
    sys.exit(main())
