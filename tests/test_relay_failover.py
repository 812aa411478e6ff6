"""
Two relays as real processes behind one introducer; one is killed with
SIGKILL: every pair it relayed is relayed again through the other within
the relay fallback time, the connections stay up (a path change, no
loss), and datagrams flow both ways (real loopback sockets).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path as FilePath

from twisted.internet import defer, reactor, task
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

import p2pnet
from p2pnet import introducer_tap
from p2pnet._handshake import HandshakeConfig
from p2pnet.address import Address, RelayRoute
from p2pnet.endpoint import PeerConfig, PeerEndpoint, PeerFactory, PeerProtocol
from p2pnet.introducer import IntroducerService

ROOT = FilePath(p2pnet.__file__).resolve().parent.parent
PAIRS = 4
#: The relay fallback time of the endpoints below: two thirds of dead_after.
FALLBACK = 4.0


class _Relay(ProcessProtocol):
    def __init__(self) -> None:
        self.listening = defer.Deferred()
        self.ended = defer.Deferred()
        self.output = b""

    def outReceived(self, data):
        self.output += data
        if b"listening on" in self.output and not self.listening.called:
            self.listening.callback(None)

    errReceived = outReceived

    def processEnded(self, reason):
        if not self.listening.called:
            self.listening.errback(AssertionError(self.output.decode(errors="replace")))
        self.ended.callback(None)


class Counting(PeerProtocol):
    def __init__(self):
        self.received: list[bytes] = []

    def datagram_received(self, data):
        self.received.append(data)


class CountingFactory(PeerFactory):
    def __init__(self):
        self.built: list[Counting] = []

    def build_protocol(self, peer_id):
        protocol = Counting()
        self.built.append(protocol)
        return protocol


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RelayFailoverTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def start_relay(self, secret_file: str) -> defer.Deferred:
        port = _free_udp_port()
        relay = _Relay()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        process = reactor.spawnProcess(
            relay,
            sys.executable,
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
             "p2pnet-relay", "--port", str(port), "--interface", "127.0.0.1", "--secret-file", secret_file],
            env=env,
            path=self.mktemp_dir(),
        )

        def stop():
            if not relay.ended.called:
                try:
                    process.signalProcess("KILL")
                except ProcessExitedAlready:
                    pass
            return relay.ended

        self.addCleanup(stop)
        yield relay.listening
        return port, process, relay

    def mktemp_dir(self) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        return directory

    @defer.inlineCallbacks
    def test_kill_one_relay(self):
        """
        With four relay-only pairs spread over two relays, SIGKILL to the
        relay carrying most of them: within the fallback time every pair
        on it is relayed by the other relay (both sides), the connections
        are the same objects (only a path change), and a datagram goes
        each way afterwards.
        """
        secret_file = os.path.abspath(os.path.join(self.mktemp_dir(), "relay.secret"))
        FilePath(secret_file).write_bytes(b"two relays, one secret, 32 bytes")
        (one, one_process, one_relay), (two, two_process, two_relay) = yield defer.gatherResults(
            [self.start_relay(secret_file), self.start_relay(secret_file)]
        )
        options = introducer_tap.Options()
        options.parseOptions([
            "--port", "0", "--interface", "127.0.0.1", "--relay-secret-file", secret_file,
            "--relay", f"127.0.0.1:{one}", "--relay", f"127.0.0.1:{two}",
            "--relay-probe-interval", "0.2", "--relay-dead-after", "1.0",
        ])
        service = introducer_tap.makeService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        [introducer_service] = [s for s in service if isinstance(s, IntroducerService)]
        introducer = Address("127.0.0.1", introducer_service.port.getHost().port)

        handshake = HandshakeConfig(relay_only=True, timeout=5.0, keepalive_interval=1.0, dead_after=6.0)
        self.assertEqual(handshake.fallback, FALLBACK)
        config = PeerConfig(handshake=handshake)
        pairs = []
        for n in range(PAIRS):
            factory = CountingFactory()
            host = PeerEndpoint(reactor, introducer, f"host{n}", interface="127.0.0.1", factory=factory, config=config)
            player = PeerEndpoint(reactor, introducer, f"player{n}", interface="127.0.0.1", config=config)
            self.addCleanup(host.stop)
            self.addCleanup(player.stop)
            yield host.start()
            yield player.start()
            protocol = Counting()
            connection = yield player.connect(f"host{n}", protocol)
            pairs.append((host, connection, protocol, factory))
            # Let the allocation show up in the relays' next load report.
            yield task.deferLater(reactor, 0.3, lambda: None)

        def relay_port(connection) -> int | None:
            return connection.address.relay.port if isinstance(connection.address, RelayRoute) else None

        def host_side(host):
            [connection] = host.connections
            return connection

        ports = [relay_port(connection) for _, connection, _, _ in pairs]
        self.assertEqual(set(ports) <= {one, two}, True, ports)
        victim = one if ports.count(one) >= ports.count(two) else two
        survivor = two if victim == one else one
        moving = [pair for pair, port in zip(pairs, ports) if port == victim]
        self.assertGreater(len(moving), 0)
        (one_process if victim == one else two_process).signalProcess("KILL")
        yield (one_relay if victim == one else two_relay).ended
        killed_at = reactor.seconds()

        def all_moved() -> bool:
            for host, connection, _, _ in moving:
                if relay_port(connection) != survivor or relay_port(host_side(host)) != survivor:
                    return False
            return True

        while not all_moved() and reactor.seconds() - killed_at < 2 * FALLBACK:
            yield task.deferLater(reactor, 0.05, lambda: None)
        elapsed = reactor.seconds() - killed_at
        self.assertTrue(all_moved(), [(relay_port(c), relay_port(host_side(h))) for h, c, _, _ in moving])
        self.assertLessEqual(elapsed, FALLBACK)
        for host, connection, protocol, factory in pairs:
            self.assertFalse(connection.ended)
            connection.send(b"after")
            host_side(host).send(b"back")
        yield task.deferLater(reactor, 0.5, lambda: None)
        for host, connection, protocol, factory in pairs:
            self.assertIn(b"back", protocol.received)
            self.assertIn(b"after", factory.built[0].received)
