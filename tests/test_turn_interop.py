"""
Interoperability tests: L{p2pnet.turn.TurnClient} against a real coturn
C{turnserver} that each test starts on loopback with one user.

Skipped when C{turnserver} is not installed, except under CI (C{CI=true}),
where a missing coturn is a failure (CI installs it: C{apt-get install
coturn}).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from p2pnet.address import Address
from p2pnet.errors import AuthenticationFailed
from p2pnet.stun import MessageClass, Nonce, StunMessage, decode, encode, looks_like_stun
from p2pnet.turn import TurnAuthenticationFailed, TurnClient

TURNSERVER = shutil.which("turnserver")
USER, PASSWORD, REALM = "alice", "secret", "p2pnet.test"
#: Upper bound for any single step (allocation, delivery, start-up).
STEP_TIMEOUT = 10.0


def _require_turnserver() -> None:
    if TURNSERVER is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("turnserver (coturn) is not installed, and CI requires it: apt-get install coturn")
        raise SkipTest("turnserver (coturn) is not installed: apt-get install coturn")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def turnserver_command(directory: str, port: int, min_port: int, max_port: int, *extra: str) -> list[str]:
    """
    The coturn command line the tests (and docs/turn.md) use: long-term
    credentials for one user, UDP only, everything on 127.0.0.1, loopback
    peers allowed (coturn refuses them by default), no config file, no CLI,
    no TLS/DTLS, and a private user database and pid file.
    """
    return [
        TURNSERVER or "turnserver",
        "-n",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--no-tcp",
        "--listening-ip", "127.0.0.1",
        "--listening-port", str(port),
        "--relay-ip", "127.0.0.1",
        "--min-port", str(min_port),
        "--max-port", str(max_port),
        "--lt-cred-mech",
        "--user", f"{USER}:{PASSWORD}",
        "--realm", REALM,
        "--allow-loopback-peers",
        "--userdb", os.path.join(directory, "turndb"),
        "--pidfile", os.path.join(directory, "turnserver.pid"),
        "--log-file", "stdout",
        "--simple-log",
        *extra,
    ]


class _Probe(DatagramProtocol):
    def __init__(self) -> None:
        self.answered = Deferred()

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        if looks_like_stun(data) and not self.answered.called:
            message = decode(data)
            if message.message_class in (MessageClass.SUCCESS, MessageClass.ERROR):
                self.answered.callback(None)


class TurnSocket(DatagramProtocol):
    """
    A UDP socket shared, as in the peer endpoint, between a TurnClient and
    whatever else arrives; records what it wrote and what it received.
    """

    def __init__(self, server: Address, password: str = PASSWORD, **options) -> None:
        self.server = server
        self.password = password
        self.options = options
        self.written: list[bytes] = []
        self.heard: list[bytes] = []
        self.unclaimed: list[tuple[bytes, tuple]] = []
        self.received: list[tuple[Address, bytes]] = []
        self._waiting: list[tuple[Address, bytes, Deferred]] = []

    def startProtocol(self) -> None:
        self.client = TurnClient(reactor, self.write, self.server, USER, self.password, **self.options)
        self.client.on_data = self.data_received

    def write(self, data: bytes, addr: tuple) -> None:
        self.written.append(data)
        self.transport.write(data, addr)

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        self.heard.append(data)
        if not self.client.datagram_received(data, addr):
            self.unclaimed.append((data, addr))

    def data_received(self, peer: Address, data: bytes) -> None:
        self.received.append((peer, data))
        for item in list(self._waiting):
            if item[:2] == (peer, data):
                self._waiting.remove(item)
                item[2].callback(peer)

    def expect(self, peer: Address, data: bytes) -> Deferred:
        """
        Fires once C{data} from C{peer} has arrived (already or later).
        """
        d = Deferred()
        if (peer, data) in self.received:
            d.callback(peer)
        else:
            self._waiting.append((peer, data, d))
        return d.addTimeout(STEP_TIMEOUT, reactor)


class CoturnTestCase(TestCase):
    """
    Starts a coturn per test and stops it afterwards.
    """

    extra_arguments: tuple[str, ...] = ()

    @inlineCallbacks
    def setUp(self):
        _require_turnserver()
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        port = _free_udp_port()
        min_port = random.randrange(40000, 59000, 2)
        self.log_path = os.path.join(directory, "turnserver.log")
        command = turnserver_command(directory, port, min_port, min_port + 200, *self.extra_arguments)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.addCleanup(self._stop_process)
        self.server = Address("127.0.0.1", port)
        yield self._wait_ready()

    def _stop_process(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def _log_tail(self) -> str:
        with open(self.log_path, "rb") as log:
            return log.read()[-2000:].decode("utf-8", "replace")

    @inlineCallbacks
    def _wait_ready(self):
        """
        Send STUN Binding requests until coturn answers one.
        """
        probe = _Probe()
        port = reactor.listenUDP(0, probe, interface="127.0.0.1")
        try:
            deadline = time.monotonic() + STEP_TIMEOUT
            while not probe.answered.called:
                if self.process.poll() is not None:
                    self.fail(f"turnserver exited with {self.process.returncode}:\n{self._log_tail()}")
                if time.monotonic() > deadline:
                    self.fail(f"turnserver did not answer within {STEP_TIMEOUT}s:\n{self._log_tail()}")
                port.write(encode(StunMessage.request()), self.server.as_tuple())
                yield deferLater(reactor, 0.05, lambda: None)
        finally:
            yield port.stopListening()

    def open_socket(self, password: str = PASSWORD, **options) -> TurnSocket:
        """
        A TurnSocket on 127.0.0.1 whose client is closed and port stopped
        at the end of the test.
        """
        turn_socket = TurnSocket(self.server, password, **options)
        port = reactor.listenUDP(0, turn_socket, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: turn_socket.client.close().addTimeout(STEP_TIMEOUT, reactor))
        return turn_socket

    def allocate(self, turn_socket: TurnSocket) -> Deferred:
        return turn_socket.client.allocate().addTimeout(STEP_TIMEOUT, reactor)


class CoturnRelayTests(CoturnTestCase):
    @inlineCallbacks
    def test_relay_both_ways(self):
        """
        Two clients on two real sockets allocate on coturn, permit each
        other's relayed addresses, and exchange datagrams both ways, first
        with Send/Data indications and then over bound channels
        (ChannelData with a 4-byte header).
        """
        alice, bob = self.open_socket(), self.open_socket()
        alice_relayed = yield self.allocate(alice)
        bob_relayed = yield self.allocate(bob)
        self.assertEqual(alice_relayed.host, "127.0.0.1")
        self.assertNotEqual(alice_relayed, bob_relayed)
        # No NAT on loopback: the reflexive address is the socket's own.
        self.assertEqual(alice.client.mapped_address, Address("127.0.0.1", alice.transport.getHost().port))

        yield alice.client.create_permission(bob_relayed).addTimeout(STEP_TIMEOUT, reactor)
        yield bob.client.create_permission(alice_relayed).addTimeout(STEP_TIMEOUT, reactor)

        alice.client.send(bob_relayed, b"hello bob, via a Send indication")
        bob.client.send(alice_relayed, b"hello alice, via a Send indication")
        yield bob.expect(alice_relayed, b"hello bob, via a Send indication")
        yield alice.expect(bob_relayed, b"hello alice, via a Send indication")

        # Bob binds another channel first, so the two numbers differ.
        yield bob.client.bind_channel(Address("127.0.0.1", 9)).addTimeout(STEP_TIMEOUT, reactor)
        alice_channel = yield alice.client.bind_channel(bob_relayed).addTimeout(STEP_TIMEOUT, reactor)
        bob_channel = yield bob.client.bind_channel(alice_relayed).addTimeout(STEP_TIMEOUT, reactor)
        self.assertTrue(0x4000 <= alice_channel <= 0x7FFF)
        self.assertTrue(0x4000 <= bob_channel <= 0x7FFF)
        self.assertNotEqual(alice_channel, bob_channel)

        payload = bytes(range(7))  # not a multiple of 4: unpadded ChannelData
        alice.client.send(bob_relayed, payload)
        bob.client.send(alice_relayed, b"back over a channel")
        yield bob.expect(alice_relayed, payload)
        yield alice.expect(bob_relayed, b"back over a channel")
        self.assertEqual(alice.written[-1][:4], alice_channel.to_bytes(2, "big") + b"\x00\x07")
        self.assertEqual(len(alice.written[-1]), 11)

        # coturn relays to each client as ChannelData on the channel that
        # client bound to the sender.
        self.assertIn(alice_channel.to_bytes(2, "big") + b"\x00\x13back over a channel", alice.heard)
        self.assertIn(bob_channel.to_bytes(2, "big") + b"\x00\x07" + payload, bob.heard)
        self.assertEqual(alice.unclaimed, [])
        self.assertEqual(bob.unclaimed, [])

        yield alice.client.close().addTimeout(STEP_TIMEOUT, reactor)
        yield bob.client.close().addTimeout(STEP_TIMEOUT, reactor)
        self.assertEqual(alice.client.state, "closed")

    @inlineCallbacks
    def test_wrong_password(self):
        """
        A wrong password fails the allocation with an AuthenticationFailed
        carrying coturn's reason.
        """
        mallory = self.open_socket(password="not-the-password")
        error = yield self.assertFailure(self.allocate(mallory), TurnAuthenticationFailed)
        self.assertIsInstance(error, AuthenticationFailed)
        self.assertEqual(error.code, 401)
        self.assertIn("401", str(error))

    @inlineCallbacks
    def test_close_releases_allocation(self):
        """
        After close(), coturn has released the allocation: a new client on
        the same socket can allocate again (coturn refuses a second
        allocation on a 5-tuple with 437 while the first one lives, and
        frees a LIFETIME 0 allocation on its next once-a-second sweep).
        """
        first = self.open_socket()
        yield self.allocate(first)
        yield first.client.close().addTimeout(STEP_TIMEOUT, reactor)
        yield deferLater(reactor, 2.0, lambda: None)
        first.client = TurnClient(reactor, first.write, self.server, USER, PASSWORD)
        first.client.on_data = first.data_received
        relayed = yield self.allocate(first)
        self.assertEqual(relayed.host, "127.0.0.1")


class CoturnStaleNonceTests(CoturnTestCase):
    extra_arguments = ("--stale-nonce=1",)

    @inlineCallbacks
    def test_stale_nonce(self):
        """
        With nonces that expire after a second, a CreatePermission sent
        later gets 438 Stale Nonce and is repeated with the new nonce.
        """
        alice, bob = self.open_socket(), self.open_socket()
        yield self.allocate(alice)
        bob_relayed = yield self.allocate(bob)
        sent_before = len(alice.written)
        yield deferLater(reactor, 2.5, lambda: None)
        yield alice.client.create_permission(bob_relayed).addTimeout(STEP_TIMEOUT, reactor)
        requests = [decode(data) for data in alice.written[sent_before:] if looks_like_stun(data)]
        nonces = {message.get(Nonce) for message in requests}
        self.assertEqual(len(requests), 2, "expected a 438 and a retry")
        self.assertEqual(len(nonces), 2)
