"""
C{p2pnet peer} as a user runs it: real processes on loopback, a real
introducer in this process.
"""

from __future__ import annotations

import json
import os
import stat
import sys

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from p2pnet._registry import Registry
from p2pnet.introducer import IntroducerProtocol, IntroducerService


class _Peer(ProcessProtocol):
    """
    A C{p2pnet peer --json} process: its events as they arrive.
    """

    def __init__(self):
        self.events = []
        self.buffer = b""
        self.waiting = []
        self.ended = defer.Deferred()
        self.stderr = b""

    def outReceived(self, data):
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            for kind, d in list(self.waiting):
                if event.get("event") == kind:
                    self.waiting.remove((kind, d))
                    d.callback(event)

    def errReceived(self, data):
        self.stderr += data

    def wait_for(self, kind: str) -> defer.Deferred:
        for event in self.events:
            if event.get("event") == kind:
                return defer.succeed(event)
        d = defer.Deferred()
        self.waiting.append((kind, d))
        return d

    def processEnded(self, reason):
        for kind, d in self.waiting:
            d.errback(AssertionError(f"peer ended before {kind!r}: {self.events} {self.stderr[-2000:]!r}"))
        self.waiting = []
        self.ended.callback(None)


class PeerCommandTests(TestCase):
    timeout = 60

    def setUp(self):
        self.registry = Registry(3.0, os.urandom)
        self.service = IntroducerService(reactor, IntroducerProtocol(reactor, self.registry), 0, "127.0.0.1")
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.introducer = f"127.0.0.1:{self.service.port.getHost().port}"
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    def peer(self, *args: str) -> tuple[_Peer, object]:
        protocol = _Peer()
        argv = [sys.executable, "-m", "p2pnet", "peer", "--json", "--introducer", self.introducer,
                "--bind", "127.0.0.1", *args]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.getcwd() + os.pathsep + os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        process = reactor.spawnProcess(protocol, sys.executable, argv, env=env, path=self.directory)

        def cleanup():
            if not protocol.ended.called:
                process.signalProcess("KILL")
            return protocol.ended

        self.addCleanup(cleanup)
        return protocol, process

    @defer.inlineCallbacks
    def test_name_reclaimed_after_kill_9(self):
        """
        A host killed with SIGKILL and started again with the same
        --identity file registers at once (its key takes its name back; it
        used to wait about 60 s for "peer id is taken"), and hosts again.
        The identity file is created with mode 0600.
        """
        identity = os.path.join(self.directory, "host.key")
        first, process = self.peer("--name", "host", "--heartbeat", "0.5", "--identity", identity, "--host-session", "Den")
        yield first.wait_for("hosting")
        self.assertEqual(stat.S_IMODE(os.stat(identity).st_mode), 0o600)
        process.signalProcess("KILL")
        yield first.ended
        second, _ = self.peer("--name", "host", "--heartbeat", "0.5", "--identity", identity, "--host-session", "Den")
        hosting = yield second.wait_for("hosting")
        self.assertEqual(hosting["session"], "Den")
        self.assertEqual([e for e in second.events if e["event"] == "error"], [])

    @defer.inlineCallbacks
    def test_trust_file_pins_and_refuses_a_changed_key(self):
        """
        With --trust-file, the first connection pins the host's key; when
        the host's name is later held by another key, the player refuses to
        connect, with PeerKeyMismatch naming the peer.
        """
        trust = os.path.join(self.directory, "known-peers")
        host, host_process = self.peer("--name", "host", "--heartbeat", "0.5")
        yield host.wait_for("registered")
        player, _ = self.peer("--name", "player", "--trust-file", trust, "--connect", "host", "--exit-after", "2")
        connected = yield player.wait_for("connected")
        self.assertIn("secure session", connected["detail"])
        yield player.ended
        with open(trust) as f:
            self.assertEqual(sorted(json.load(f)["peers"]), ["host"])
        host_process.signalProcess("KILL")
        yield host.ended
        # The registration expires (lifetime 3 s here); another key takes
        # the name.
        yield task.deferLater(reactor, 4.0, lambda: None)
        impostor, _ = self.peer("--name", "host", "--heartbeat", "0.5")
        yield impostor.wait_for("registered")
        player, _ = self.peer("--name", "player", "--trust-file", trust, "--connect", "host", "--retry", "1")
        error = yield player.wait_for("error")
        self.assertEqual(error["error"], "PeerKeyMismatch")
        self.assertIn("host", error["message"])
        self.assertEqual([e for e in player.events if e["event"] == "connected"], [])

    @defer.inlineCallbacks
    def test_send_file(self):
        """
        --send-file sends the file as one reliable message once connected;
        the receiver prints a 'message' event with its size and sha256 and,
        with --save-dir, writes it there; both print 'stats' events.
        """
        import hashlib

        blob = hashlib.sha256(b"file").digest() * (2 * 1024 * 1024 // 32)  # 2 MiB
        path = os.path.join(self.directory, "level.bin")
        with open(path, "wb") as f:
            f.write(blob)
        saved = os.path.join(self.directory, "inbox")
        os.makedirs(saved)
        host, _ = self.peer("--name", "host", "--save-dir", saved, "--stats-interval", "0.5", "--host-session", "Den")
        yield host.wait_for("hosting")
        player, _ = self.peer("--name", "player", "--send-file", path, "--join", "Den", "--stats-interval", "0.5")
        message = yield host.wait_for("message")
        digest = hashlib.sha256(blob).hexdigest()
        self.assertEqual((message["peer"], message["channel"], message["size"], message["sha256"]),
                         ("player", 0, len(blob), digest))
        with open(os.path.join(saved, digest + ".bin"), "rb") as f:
            self.assertEqual(f.read(), blob)
        stats = yield player.wait_for("stats")
        self.assertEqual(stats["peer"], "host")
        self.assertGreater(stats["srtt"], 0)

    def test_send_file_unreadable(self):
        """
        An unreadable --send-file is a one-line usage error, not a
        traceback.
        """
        from twisted.python import usage

        from p2pnet._peercli import Options

        options = Options()
        error = self.assertRaises(usage.UsageError, options.parseOptions, [
            "--introducer", "127.0.0.1:9", "--name", "a", "--send-file", "/nonexistent/file"])
        self.assertIn("--send-file", str(error))


class JoinByTitleTests(SynchronousTestCase):
    def test_missing_title_is_not_an_introducer_refusal(self):
        """
        C{--join TITLE} with no such session listed fails with
        L{SessionNotFound}, which says what happened (the introducer
        refused nothing) and is retried like an unknown peer.
        """
        from p2pnet._peercli import _join, _retrying
        from p2pnet.errors import IntroducerError, SessionNotFound
        from p2pnet.wire import SessionInfo

        class Lobby:
            def list_sessions(self):
                return defer.succeed([SessionInfo(b"s" * 8, "Other Room", "", "host", 0, 4)])

        failure = self.failureResultOf(_join(Lobby(), "Den", None, None), SessionNotFound)
        self.assertNotIsInstance(failure.value, IntroducerError)
        self.assertEqual(str(failure.value), "no session titled 'Den' is listed (1 sessions listed)")
        clock = task.Clock()
        attempts = []

        def attempt():
            attempts.append(clock.seconds())
            return _join(Lobby(), "Den", None, None)

        d = _retrying(clock, 2.5, attempt)
        clock.pump([1.0] * 3)
        self.failureResultOf(d, SessionNotFound)
        self.assertEqual(attempts, [0.0, 1.0, 2.0, 3.0])


class NatCheckOptionTests(TestCase):
    """
    Against an introducer as C{p2pnet introducer} runs it (STUN on its
    port and a second port): C{p2pnet peer} checks its NAT by default;
    C{--no-nat-check} switches that off.
    """

    def setUp(self):
        from p2pnet import introducer_tap

        options = introducer_tap.Options()
        options.parseOptions(["--port", str(_free_port()), "--interface", "127.0.0.1", "--no-relay"])
        self.service = introducer_tap.makeService(options, reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        [self.protocol] = [s.protocol for s in self.service if isinstance(getattr(s, "protocol", None), IntroducerProtocol)]
        self.introducer = f"127.0.0.1:{options['port']}"
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    timeout = 60
    peer = PeerCommandTests.peer

    @defer.inlineCallbacks
    def test_nat_check_by_default(self):
        """
        A plain C{p2pnet peer} reports its NAT check (on loopback: no NAT).
        """
        peer, _ = self.peer("--name", "plain")
        checked = yield peer.wait_for("nat-checked")
        self.assertEqual(checked["detail"], "no NAT in the way: direct connections should work with most peers")
        self.assertGreater(self.protocol.stun_server.answered, 0)

    @defer.inlineCallbacks
    def test_no_nat_check(self):
        """
        With --no-nat-check no STUN request reaches the introducer (the
        check would have been answered before the registration).
        """
        peer, _ = self.peer("--name", "plain", "--no-nat-check")
        yield peer.wait_for("registered")
        self.assertEqual(self.protocol.stun_server.answered, 0)
        self.assertNotIn("nat-checked", [e.get("event") for e in peer.events])


def _free_port() -> int:
    import socket

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port
