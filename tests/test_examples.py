"""
The examples, run for real: an in-process introducer on loopback UDP and the
example scripts as child processes, checked by what they print.

No sleeps: each step waits for a line of output, with a deadline on the
reactor; a process that overstays is killed and the test fails with what it
printed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

from p2pnet._registry import Registry
from p2pnet.introducer import IntroducerProtocol, IntroducerService

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

#: Seconds any one step may take before the test gives up.
STEP = 8.0


class Example(ProcessProtocol):
    """
    A running example script: collects its output lines, lets a test wait
    for a line containing some text, write to its stdin, and wait for it
    to exit.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.errors = b""
        self._partial = b""
        self._waiting: list[tuple[str, defer.Deferred]] = []
        self.ended: defer.Deferred = defer.Deferred()
        self.exit_code: int | None = None

    def outReceived(self, data: bytes) -> None:
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            for entry in list(self._waiting):
                if entry[0] in line:
                    self._waiting.remove(entry)
                    entry[1].callback(line)

    def errReceived(self, data: bytes) -> None:
        self.errors += data

    def processEnded(self, reason) -> None:
        self.exit_code = reason.value.exitCode
        waiting, self._waiting = self._waiting, []
        for text, d in waiting:
            d.errback(AssertionError(f"{self.name} exited before printing {text!r}\n{self.transcript()}"))
        self.ended.callback(self.exit_code)

    def transcript(self) -> str:
        return (
            f"--- {self.name} stdout:\n" + "\n".join(self.lines)
            + f"\n--- {self.name} stderr:\n" + self.errors.decode("utf-8", "replace")
        )

    def wait_for(self, text: str, timeout: float = STEP) -> defer.Deferred:
        """
        Fire with the first line (already printed or still to come) that
        contains C{text}.
        """
        for line in self.lines:
            if text in line:
                return defer.succeed(line)
        if self.ended.called:
            return defer.fail(AssertionError(f"{self.name} exited before printing {text!r}\n{self.transcript()}"))
        d = defer.Deferred()
        self._waiting.append((text, d))
        return _deadline(d, timeout, lambda: f"{self.name} did not print {text!r} in {timeout}s\n{self.transcript()}")

    def wait_exit(self, timeout: float = STEP) -> defer.Deferred:
        """
        Fire with the exit code once the process ends.
        """
        if self.ended.called:
            return defer.succeed(self.exit_code)
        d = defer.Deferred()
        self.ended.addBoth(lambda code: (d.called or d.callback(code), code)[1])
        return _deadline(d, timeout, lambda: f"{self.name} did not exit in {timeout}s\n{self.transcript()}")

    def kill(self) -> None:
        if not self.ended.called:
            self.transport.signalProcess("KILL")


def _deadline(d: defer.Deferred, timeout: float, message) -> defer.Deferred:
    def expire() -> None:
        if not d.called:
            d.errback(AssertionError(message()))

    call = reactor.callLater(timeout, expire)

    def done(result):
        if call.active():
            call.cancel()
        return result

    return d.addBoth(done)


class ExamplesTests(TestCase):
    timeout = 40

    def setUp(self) -> None:
        protocol = IntroducerProtocol(reactor, Registry(60.0, os.urandom))
        self.service = IntroducerService(reactor, protocol, 0, "127.0.0.1")
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.introducer = f"127.0.0.1:{self.service.port.getHost().port}"

    def start(self, script: str, *args: str, argv: list[str] | None = None, env: dict | None = None) -> Example:
        """
        Run C{examples/<script>} with this test's introducer (or C{argv},
        with C{env} added to the environment); killed (and waited for) at
        cleanup if still running.
        """
        example = Example(f"{script} {' '.join(args)}")
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), **(env or {}))
        argv = argv or [sys.executable, str(EXAMPLES / script), *args]
        reactor.spawnProcess(example, sys.executable, argv, env=env, path=str(ROOT))

        def cleanup() -> defer.Deferred:
            example.kill()
            return example.ended

        self.addCleanup(cleanup)
        return example

    @defer.inlineCallbacks
    def test_chat(self):
        """
        Two chats meet through the introducer: a line typed into one is
        printed by the other, both ways, and closing stdin ends both.
        """
        ann = self.start("chat.py", "--introducer", self.introducer, "--name", "ann", "--exit-after", "20")
        yield ann.wait_for("* registered")
        bob = self.start(
            "chat.py", "--introducer", self.introducer, "--name", "bob", "--connect", "ann",
            "--exit-after", "20",
        )
        yield bob.wait_for("* connected ann via direct-")
        yield ann.wait_for("* connected bob via direct-")
        bob.transport.write(b"hello ann\n")
        line = yield ann.wait_for("<bob>")
        self.assertEqual(line, "<bob> hello ann")
        ann.transport.write(b"hi bob\n")
        line = yield bob.wait_for("<ann>")
        self.assertEqual(line, "<ann> hi bob")
        bob.transport.closeStdin()
        self.assertEqual((yield bob.wait_exit()), 0, bob.transcript())
        yield ann.wait_for("* bob left")
        ann.transport.closeStdin()
        self.assertEqual((yield ann.wait_exit()), 0, ann.transcript())
        self.assertEqual(bob.lines[-1], "* bye")

    @defer.inlineCallbacks
    def test_game(self):
        """
        A joiner finds the hosted session by title (with its properties),
        joins it, receives the host's position datagrams and leaves; the
        host, hosting with --once, sees it leave and stops too.
        """
        title = "Keith's Server"
        host = self.start(
            "game.py", "host", "--introducer", self.introducer, "--name", "keith",
            "--title", title, "--map", "docks", "--once", "--exit-after", "20",
        )
        yield host.wait_for("hosting")
        joiner = self.start(
            "game.py", "join", "--introducer", self.introducer, "--name", "ann",
            "--title", title, "--positions", "3", "--exit-after", "20",
        )
        found = yield joiner.wait_for("found")
        self.assertIn("hosted by keith", found)
        self.assertIn("map=docks, mode=race", found)
        self.assertEqual((yield joiner.wait_exit()), 0, joiner.transcript())
        self.assertEqual((yield host.wait_exit()), 0, host.transcript())
        positions = [line for line in joiner.lines if line.startswith("position from keith: #")]
        self.assertEqual(len(positions), 3, joiner.transcript())
        self.assertIn("[status] connected keith via direct-public", joiner.lines)
        self.assertIn("[status] connected ann via direct-public", host.lines)
        self.assertTrue(any(line.startswith("position from ann: #") for line in host.lines), host.transcript())
        self.assertIn(
            "ann left: connection to 'ann' lost: the peer closed the connection: "
            "stopped (3): the endpoint was stopped",
            host.lines,
        )
        self.assertEqual(joiner.lines[-1], "bye")
        self.assertEqual(host.lines[-1], "bye")

    @defer.inlineCallbacks
    def test_game_session_not_found(self):
        """
        Joining a title nobody hosts fails after --retry with a readable
        error and exit status 1.
        """
        joiner = self.start(
            "game.py", "join", "--introducer", self.introducer, "--name", "zed",
            "--title", "Nobody's Server", "--retry", "0.5",
        )
        self.assertEqual((yield joiner.wait_exit()), 1, joiner.transcript())
        self.assertIn(
            "error: SessionNotFound: no session titled \"Nobody's Server\" is listed (0 sessions listed)",
            joiner.lines,
        )

    @defer.inlineCallbacks
    def test_game_server_tac(self):
        """
        C{twistd -ny examples/game_server.tac} registers, hosts its session
        (found by examples/game.py by title), sends a player's positions
        back, and withdraws the session when twistd stops (SIGTERM).
        """
        server = self.start(
            "game_server.tac",
            argv=[sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                  "--pidfile=", "-ny", str(EXAMPLES / "game_server.tac")],
            env={"P2PNET_INTRODUCER": self.introducer, "P2PNET_NAME": "tacserver", "P2PNET_TITLE": "Tac Server"},
        )
        yield server.wait_for("hosting 'Tac Server'")
        joiner = self.start(
            "game.py", "join", "--introducer", self.introducer, "--name", "ann",
            "--title", "Tac Server", "--positions", "3", "--exit-after", "20",
        )
        found = yield joiner.wait_for("found")
        self.assertIn("hosted by tacserver", found)
        self.assertEqual((yield joiner.wait_exit()), 0, joiner.transcript())
        positions = [line for line in joiner.lines if line.startswith("position from tacserver: #")]
        self.assertEqual(len(positions), 3, joiner.transcript())
        registry = self.service.protocol.registry
        self.assertEqual([s.name for s in registry.sessions()], ["Tac Server"])
        server.transport.signalProcess("TERM")
        # twistd ends by its signal once shut down (no exit status).
        yield server.wait_exit()
        self.assertTrue(server.lines[-1].endswith("Server Shut Down."), server.transcript())
        self.assertEqual(list(registry.sessions()), [])
        self.assertIsNone(registry.lookup("tacserver", reactor.seconds()))


class TacTests(TestCase):
    def test_tac_builds_application(self):
        """
        examples/game_server.tac defines an C{application} holding a
        stopped L{PeerService} that hosts the example game's session at the
        introducer named by P2PNET_INTRODUCER.
        """
        from twisted.application.service import IServiceCollection, loadApplication

        from p2pnet import PeerService

        saved = os.environ.get("P2PNET_INTRODUCER")
        os.environ["P2PNET_INTRODUCER"] = "127.0.0.1:3999"
        self.addCleanup(
            lambda: os.environ.pop("P2PNET_INTRODUCER") if saved is None
            else os.environ.__setitem__("P2PNET_INTRODUCER", saved)
        )
        application = loadApplication(str(EXAMPLES / "game_server.tac"), "python")
        (peer,) = list(IServiceCollection(application))
        self.assertIsInstance(peer, PeerService)
        self.assertFalse(peer.running)
        self.assertEqual(str(peer.endpoint.introducer), "127.0.0.1:3999")
        self.assertEqual((peer.host.name, peer.host.game_id), ("Twisted Server", "p2pnet-example-race"))
