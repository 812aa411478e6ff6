"""
The command line as a new user meets it: mistakes get one line saying what
is wrong (no traceback, no wall of help), ports in use are reported, the
introducer runs a relay unless told not to, and C{p2pnet sessions} lists
the lobby.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time

from twisted.internet import defer, reactor
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase

from p2pnet import _peercli, _sessionscli, cli, introducer_tap
from p2pnet._registry import Registry
from p2pnet.address import Address
from p2pnet.endpoint import PeerEndpoint
from p2pnet.introducer import IntroducerProtocol, IntroducerService

from .test_tap import FakeUDPReactor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_command(test, *argv, timeout=30):
    """
    Run a command with this checkout first on the path, in a scratch
    directory; returns (exit status, stdout + stderr).
    """
    cwd = test.mktemp()
    os.makedirs(cwd)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def held_port(test) -> int:
    """
    A loopback UDP port held by another socket for the test's duration.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    test.addCleanup(sock.close)
    return sock.getsockname()[1]


class CaptureStderr:
    def capture(self):
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        return err


class TopLevelTests(CaptureStderr, SynchronousTestCase):
    def test_no_arguments_is_a_usage_error(self):
        """
        C{p2pnet} alone exits 2 with the usage on stderr (it used to exit 0).
        """
        err = self.capture()
        self.assertEqual(cli.main([]), 2)
        self.assertIn("usage: p2pnet COMMAND", err.getvalue())
        self.assertIn("sessions", err.getvalue())

    def test_unknown_command_one_line(self):
        """
        An unknown command is one line naming it and the commands.
        """
        err = self.capture()
        self.assertEqual(cli.main(["peers"]), 2)
        lines = err.getvalue().strip().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertIn("'peers'", lines[0])
        self.assertIn("sessions", lines[0])


class UsageErrorTests(CaptureStderr, SynchronousTestCase):
    def peer_error(self, *argv):
        err = self.capture()
        self.assertEqual(_peercli.main(list(argv)), 2)
        return err.getvalue()

    def test_one_line_and_a_hint(self):
        """
        A usage error prints the mistake and where help is, not the whole
        help text first.
        """
        text = self.peer_error("--introducer", "127.0.0.1:3478", "--name", "a", "--port", "http")
        lines = text.strip().splitlines()
        self.assertEqual(len(lines), 2, text)
        self.assertTrue(lines[0].startswith("p2pnet peer: "), text)
        self.assertIn("port must be a number", lines[0])
        self.assertIn("p2pnet peer --help", lines[1])
        self.assertNotIn("--keepalive", text)

    def test_long_name(self):
        """
        A 65-character --name is a usage error, not a traceback.
        """
        text = self.peer_error("--introducer", "127.0.0.1:3478", "--name", "a" * 65)
        self.assertIn("65 bytes", text)
        self.assertNotIn("Traceback", text)

    def test_names_with_newlines(self):
        """
        --name, --host-session, --join and --connect refuse newlines.
        """
        for option in ("--name", "--host-session", "--join", "--connect"):
            argv = ["--introducer", "127.0.0.1:3478", "--name", "a", option, "x\ny"]
            error = self.assertRaises(UsageError, _peercli.Options().parseOptions, argv)
            self.assertIn("newline", str(error))
            self.assertIn(option, str(error))

    def test_mesh_needs_host_session(self):
        """
        --mesh without --host-session is a usage error saying so.
        """
        argv = ["--introducer", "127.0.0.1:3478", "--name", "a", "--mesh"]
        error = self.assertRaises(UsageError, _peercli.Options().parseOptions, argv)
        self.assertIn("--host-session", str(error))
        _peercli.Options().parseOptions(argv + ["--host-session", "Mesh"])

    def test_not_an_ip_address(self):
        """
        300.1.1.1 is "not an IP address", not "cannot resolve".
        """
        for bad in ("300.1.1.1:3478", "1.2.3:3478", "1.2.3.4.5:3478"):
            error = self.assertRaises(ValueError, _peercli._address, bad)
            self.assertIn("not an IP address", str(error))
        self.assertEqual(_peercli._address("127.0.0.1:3478"), Address("127.0.0.1", 3478))
        text = self.peer_error("--introducer", "300.1.1.1:3478", "--name", "a")
        self.assertIn("not an IP address", text)


class PortInUseTests(SynchronousTestCase):
    def test_peer(self):
        """
        C{p2pnet peer} on a port in use says so in one line and exits 1,
        without a traceback.
        """
        port = held_port(self)
        status, output = run_command(
            self, sys.executable, "-m", "p2pnet", "peer", "--introducer", "127.0.0.1:9",
            "--name", "a", "--bind", "127.0.0.1", "--port", str(port),
        )
        self.assertEqual(status, 1, output)
        self.assertIn(f"cannot listen on UDP 127.0.0.1:{port}", output)
        self.assertNotIn("Traceback", output)

    def test_twistd_introducer(self):
        """
        C{twistd -n p2pnet-introducer} on a port in use says so in one line
        and exits 1, without a traceback.
        """
        port = held_port(self)
        status, output = run_command(
            self, sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
            "p2pnet-introducer", "--port", str(port), "--interface", "127.0.0.1", "--no-relay",
        )
        self.assertEqual(status, 1, output)
        self.assertIn(f"cannot listen on UDP 127.0.0.1:{port}", output)
        self.assertNotIn("Traceback", output)

    def test_p2pnet_introducer_relay_port_in_use(self):
        """
        C{p2pnet introducer} whose (default) relay port is taken says which
        port, without a traceback.
        """
        relay = held_port(self)
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        options = ["--port", str(relay - 1), "--interface", "127.0.0.1"]
        parsed = introducer_tap.Options()
        parsed.parseOptions(options)
        service = introducer_tap.makeService(parsed, reactor)
        error = self.assertRaises(SystemExit, service.startService)
        self.assertIn(f"cannot listen on UDP 127.0.0.1:{relay}", str(error.code))
        service.stopService()


class DefaultRelayTests(SynchronousTestCase):
    def service(self, *argv):
        options = introducer_tap.Options()
        options.parseOptions(list(argv))
        reactor = FakeUDPReactor()
        service = introducer_tap.makeService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        protocols = {port: protocol for port, protocol, _ in reactor.listened}
        introducer = [p for p in protocols.values() if isinstance(p, IntroducerProtocol)][0]
        return reactor.listened, introducer

    def test_relay_by_default(self):
        """
        A default introducer runs a relay on its port + 1 and offers it
        (and a second STUN port on port + 2).
        """
        listened, introducer = self.service("--port", "3478")
        self.assertEqual(sorted(port for port, _, _ in listened), [3478, 3479, 3480])
        self.assertIsNotNone(introducer.relay)
        self.assertEqual(introducer.relay.offer_address().port, 3479)

    def test_relay_port_offered(self):
        """
        The offer names the relay's bound port.
        """
        listened, introducer = self.service("--port", "0")
        self.assertEqual(sorted(port for port, _, _ in listened), [0, 0])
        self.assertIsNotNone(introducer.relay)

    def test_no_relay(self):
        """
        --no-relay runs none and offers none.
        """
        listened, introducer = self.service("--port", "3478", "--no-relay", "--no-stun-alternate")
        self.assertEqual([port for port, _, _ in listened], [3478])
        self.assertIsNone(introducer.relay)

    def test_several_relays(self):
        """
        --relay given twice hands out allocations on both (no relay in this
        process unless --relay-port asks for one alongside), and a monitor
        socket probes them; the same relay twice is a usage error.
        """
        secret = self.mktemp()
        with open(secret, "wb") as f:
            f.write(b"relay fleet secret")
        relays = ["--relay", "192.0.2.41:3479", "--relay", "192.0.2.42:3479", "--relay-secret-file", secret]
        listened, introducer = self.service("--port", "3478", *relays)
        # 3480: the second STUN port, on by default.
        self.assertEqual(sorted(port for port, _, _ in listened), [0, 3478, 3480])
        offered = [relay.settings.offer_address() for relay in introducer.relays.relays]
        self.assertEqual([str(a) for a in offered], ["192.0.2.41:3479", "192.0.2.42:3479"])
        listened, introducer = self.service("--port", "3478", "--relay-port", "3479", *relays)
        self.assertEqual(sorted(port for port, _, _ in listened), [0, 3478, 3479, 3480])
        self.assertEqual([r.settings.offer_address().port for r in introducer.relays.relays], [3479, 3479, 3479])
        error = self.assertRaises(
            UsageError, introducer_tap.Options().parseOptions,
            ["--relay", "192.0.2.41:3479", "--relay", "192.0.2.41:3479", "--relay-secret-file", secret],
        )
        self.assertIn("same relay twice", str(error))

    def test_no_relay_contradictions(self):
        """
        --no-relay with --relay-port or --relay is a usage error.
        """
        for extra in (["--relay-port", "4000"], ["--relay", "192.0.2.1:3479", "--relay-secret-file", "/x"]):
            error = self.assertRaises(UsageError, introducer_tap.Options().parseOptions, ["--no-relay"] + extra)
            self.assertIn("--no-relay", str(error))

    def test_default_relay_port(self):
        """
        Port + 1, skipping the STUN alternate port; any port when there is
        no next one or the introducer's is 0.
        """
        self.assertEqual(introducer_tap.default_relay_port(3478), 3479)
        self.assertEqual(introducer_tap.default_relay_port(3478, 3479), 3480)
        self.assertEqual(introducer_tap.default_relay_port(65535), 0)
        self.assertEqual(introducer_tap.default_relay_port(0), 0)
        options = introducer_tap.Options()
        options.parseOptions(["--port", "5000", "--interface", "127.0.0.1", "--stun-alternate-port", "5001"])
        self.assertEqual(options["relay-port"], 5002)


class SessionsCommandTests(TestCase):
    timeout = 20

    @defer.inlineCallbacks
    def introducer_with_a_session(self):
        service = IntroducerService(reactor, IntroducerProtocol(reactor, Registry(30.0, os.urandom)), 0, "127.0.0.1")
        service.startService()
        self.addCleanup(service.stopService)
        address = Address("127.0.0.1", service.port.getHost().port)
        host = PeerEndpoint(reactor, address, "keith", interface="127.0.0.1")
        self.addCleanup(host.stop)
        yield host.start()
        yield host.host_session("Keith's Server", "race", 4, properties={"map": "oval"})
        yield host.host_session("Other game", "chess", 2)
        return address

    def options(self, *argv):
        options = _sessionscli.Options()
        options.parseOptions(list(argv))
        return options

    @defer.inlineCallbacks
    def test_lists_sessions(self):
        """
        C{p2pnet sessions --introducer ... --game race} prints the race
        sessions with their host, players and properties.
        """
        address = yield self.introducer_with_a_session()
        out, err = io.StringIO(), io.StringIO()
        code = yield _sessionscli.run(
            reactor, self.options("--introducer", str(address), "--game", "race", "--bind", "127.0.0.1"), out, err
        )
        self.assertEqual(code, 0, err.getvalue())
        self.assertEqual(out.getvalue(), '"Keith\'s Server" [race] hosted by keith: 1/4 players map=oval\n')

    @defer.inlineCallbacks
    def test_json(self):
        """
        --json prints one object per session.
        """
        address = yield self.introducer_with_a_session()
        out, err = io.StringIO(), io.StringIO()
        code = yield _sessionscli.run(reactor, self.options("--introducer", str(address), "--json"), out, err)
        self.assertEqual(code, 0, err.getvalue())
        records = sorted((json.loads(line) for line in out.getvalue().splitlines()), key=lambda r: r["name"])
        self.assertEqual(
            records,
            [
                {"name": "Keith's Server", "game": "race", "host": "keith", "players": 1, "max_players": 4,
                 "mesh": False, "properties": {"map": "oval"}},
                {"name": "Other game", "game": "chess", "host": "keith", "players": 1, "max_players": 2,
                 "mesh": False, "properties": {}},
            ],
        )

    @defer.inlineCallbacks
    def test_filters(self):
        """
        --property, --name-prefix, --open and --limit are applied by the
        introducer: only the matching sessions are printed.
        """
        address = yield self.introducer_with_a_session()
        host = PeerEndpoint(reactor, address, "zed", interface="127.0.0.1")
        self.addCleanup(host.stop)
        yield host.start()
        yield host.host_session("Zed's Oval", "race", 4, properties={"map": "oval", "mode": "ffa"})
        yield host.host_session("Zed's Dunes", "race", 4, properties={"map": "dunes"})

        @defer.inlineCallbacks
        def names(*argv):
            out, err = io.StringIO(), io.StringIO()
            code = yield _sessionscli.run(
                reactor, self.options("--introducer", str(address), "--json", "--bind", "127.0.0.1", *argv), out, err
            )
            self.assertEqual(code, 0, err.getvalue())
            return [json.loads(line)["name"] for line in out.getvalue().splitlines()]

        self.assertEqual((yield names("--property", "map=oval")), ["Keith's Server", "Zed's Oval"])
        self.assertEqual((yield names("-p", "map=oval", "-p", "mode=ffa")), ["Zed's Oval"])
        self.assertEqual((yield names("--name-prefix", "Zed")), ["Zed's Oval", "Zed's Dunes"])
        self.assertEqual((yield names("--game", "race", "--limit", "2")), ["Keith's Server", "Zed's Oval"])
        self.assertEqual((yield names("--open", "--game", "chess")), ["Other game"])

    def test_filter_usage_errors(self):
        """
        A --property without '=', more than four, or a limit below 1 is a
        usage error, before anything is sent.
        """
        for argv, says in [
            (["--property", "map"], "KEY=VALUE"),
            (["-p", "a=1", "-p", "b=2", "-p", "c=3", "-p", "d=4", "-p", "e=5"], "at most 4"),
            (["--limit", "0"], "limit"),
        ]:
            error = self.assertRaises(UsageError, self.options, "--introducer", "127.0.0.1:3478", *argv)
            self.assertIn(says, str(error))

    @defer.inlineCallbacks
    def test_closed_port(self):
        """
        An introducer port that is closed fails fast with exit status 1.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        out, err = io.StringIO(), io.StringIO()
        began = reactor.seconds()
        code = yield _sessionscli.run(
            reactor, self.options("--introducer", f"127.0.0.1:{port}", "--bind", "127.0.0.1"), out, err
        )
        self.assertEqual(code, 1)
        self.assertLess(reactor.seconds() - began, 3.0)
        self.assertIn("closed", err.getvalue())


class ClosedIntroducerTests(SynchronousTestCase):
    def test_peer_reports_closed_port(self):
        """
        C{p2pnet peer} pointed at a closed port says so and exits 1 within
        a few seconds (it used to wait 17.5 s in silence).
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        began = time.monotonic()
        status, output = run_command(
            self, sys.executable, "-m", "p2pnet", "peer", "--introducer", f"127.0.0.1:{port}",
            "--name", "a", "--bind", "127.0.0.1", "--json",
        )
        self.assertLess(time.monotonic() - began, 8.0)  # 3 s, plus starting Python twice over
        self.assertEqual(status, 1, output)
        [error] = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        self.assertEqual(error["error"], "IntroducerUnreachable")
        self.assertIn("closed", error["message"])
        self.assertLess(error["t"], 3.0)


class NatcheckAddressTests(CaptureStderr, SynchronousTestCase):
    def test_not_an_ip_address(self):
        """
        C{p2pnet natcheck --stun 300.1.1.1:3478} is a usage error ("not an
        IP address"), not a failed DNS lookup.
        """
        from p2pnet import natcheck

        err = self.capture()
        self.assertEqual(natcheck.main(["--stun", "300.1.1.1:3478"]), 2)
        self.assertIn("'300.1.1.1' is not an IP address", err.getvalue())
        self.assertEqual(natcheck._split_target("stun.example.net:3478"), ("stun.example.net", 3478))
