"""
A host killed with SIGKILL and restarted, as real processes on loopback
(C{p2pnet introducer}, C{p2pnet peer}, C{p2pnet sessions}): the connected
client notices within 5 s, a new joiner learns within 3 s that the host is
gone, the session leaves the lobby within a second of the registration
expiring, and the restarted host gets its name back at once.

The introducer runs with a 10 s registration lifetime (a heartbeat every
2.5 s is what it expects: silent for 3.75 s means gone); the host
heartbeats every second.  Nothing sleeps: every step waits for a line.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path as FilePath

from twisted.trial.unittest import SynchronousTestCase

import p2pnet

ROOT = FilePath(p2pnet.__file__).resolve().parent.parent
LIFETIME = 10.0


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """
    A C{p2pnet} command whose output lines are read as they come.
    """

    def __init__(self, test, *argv: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "p2pnet", *argv], cwd=str(ROOT), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._queue: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        test.addCleanup(self.stop)

    def _read(self) -> None:
        for line in self.popen.stdout:
            self._queue.put((time.monotonic(), line.rstrip("\n")))
        self._queue.put(None)

    def wait_for(self, predicate, timeout: float):
        """
        The first line (C{(time, text)}) satisfying C{predicate} within
        C{timeout} seconds, or None.
        """
        deadline = time.monotonic() + timeout
        for seen in self.lines:
            if predicate(seen[1]):
                return seen
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                return None
            if item is None:
                self._queue.put(None)
                return None
            self.lines.append(item)
            if predicate(item[1]):
                return item

    def event(self, kind: str, timeout: float):
        """
        The first JSON event of C{kind}: C{(time, record)}, or None.
        """
        def match(line: str) -> bool:
            return line.startswith("{") and json.loads(line).get("event") == kind

        seen = self.wait_for(match, timeout)
        return None if seen is None else (seen[0], json.loads(seen[1]))

    def kill(self) -> float:
        self.popen.send_signal(signal.SIGKILL)
        return time.monotonic()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        self.popen.stdout.close()

    def output(self) -> str:
        return "\n".join(text for _, text in self.lines)


class CrashRestartTests(SynchronousTestCase):
    def peer(self, name: str, *argv: str) -> Process:
        return Process(
            self, "peer", "--introducer", f"127.0.0.1:{self.port}", "--name", name, "--bind", "127.0.0.1",
            "--no-port-mapping", "--json", *argv,
        )

    def test_kill_and_restart(self):
        """
        kill -9 of a host with a streaming client: the client reports the
        connection lost within 5 s; joiners asking for the host at once
        (its heartbeat is still recent) and after the client noticed are
        each told it is gone within 3 s of registering; the session leaves the lobby
        within a second of the registration expiring; the restarted host
        (same identity) registers and hosts at once.
        """
        self.port = _free_udp_port()
        identity = os.path.abspath(self.mktemp())
        introducer = Process(
            self, "introducer", "--port", str(self.port), "--interface", "127.0.0.1",
            "--registration-lifetime", str(LIFETIME), "--no-relay",
        )
        self.assertTrue(introducer.wait_for(lambda line: "listening" in line, 30), introducer.output())
        host_args = ("--host-session", "game", "--heartbeat", "1", "--send", "tick", "--identity", identity)
        host = self.peer("host", *host_args)
        self.assertTrue(host.event("hosting", 30), host.output())
        client = self.peer("client", "--join", "game", "--heartbeat", "1", "--send", "tick")
        self.assertTrue(client.event("connected", 30), client.output())
        self.assertTrue(client.event("datagram", 10), client.output())

        killed = host.kill()
        # A joiner right away: the host's heartbeat is recent, but it does
        # not take its introduction.
        early = self.peer("early", "--connect", "host", "--retry", "0.1")
        lost = client.event("lost", 15)
        self.assertTrue(lost, client.output())
        lost_after = lost[0] - killed
        self.assertLessEqual(lost_after, 5.5, f"lost after {lost_after:.2f}s: {lost[1]}")
        self.assertIn("while sending", lost[1]["reason"])

        early_registered = early.event("registered", 30)
        early_error = early.event("error", 10)
        self.assertTrue(early_registered and early_error, early.output())
        self.assertEqual(early_error[1]["error"], "HostGone", early_error[1])
        early_after = early_error[1]["t"] - early_registered[1]["t"]
        self.assertLessEqual(early_after, 3.0)

        late = self.peer("late", "--connect", "host", "--retry", "0.1")
        registered = late.event("registered", 30)
        self.assertTrue(registered, late.output())
        error = late.event("error", 10)
        self.assertTrue(error, late.output())
        self.assertEqual(error[1]["error"], "HostGone", error[1])
        # (The peer's own clock: its lines come in one read.)
        host_gone_after = error[1]["t"] - registered[1]["t"]
        self.assertLessEqual(host_gone_after, 3.0)

        expired = introducer.wait_for(lambda line: "registration of host" in line and "expired" in line, 30)
        self.assertTrue(expired, introducer.output())
        # The host's last heartbeat came at most 1 s before the kill.
        self.assertLessEqual(expired[0] - killed, LIFETIME + 1.0 + 0.5)
        self.assertEqual(self.listed(), [])

        again = self.peer("host", *host_args)
        self.assertTrue(again.event("hosting", 30), again.output())
        self.assertEqual(self.listed(), ["game"])
        # Killed and restarted before its registration expires: the same
        # identity takes the name back at once and the dead session goes.
        again.kill()
        third = self.peer("host", *host_args)
        self.assertTrue(third.event("hosting", 30), third.output())
        self.assertNotIn("taken", again.output() + third.output())
        self.assertEqual(self.listed(), ["game"])
        print(json.dumps({
            "lost_after": round(lost_after, 3), "host_gone_after": round(host_gone_after, 3), "early_host_gone_after": round(early_after, 3),
            "expired_after_kill": round(expired[0] - killed, 3),
        }))

    def listed(self) -> list[str]:
        listing = subprocess.run(
            [sys.executable, "-m", "p2pnet", "sessions", "--introducer", f"127.0.0.1:{self.port}", "--json"],
            cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=30,
        )
        self.assertEqual(listing.returncode, 0, listing.stderr)
        return [json.loads(line)["name"] for line in listing.stdout.splitlines() if line.startswith("{")]
