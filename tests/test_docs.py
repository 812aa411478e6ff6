"""
The snippets in README.md and docs/tutorial.md run as written, and the
tutorial imports nothing private.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks(path: str) -> list[str]:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


# Runs the README's host snippet, then (a second later, once the session is
# hosted) its player snippet, against a loopback introducer; exits 0 once
# the player printed its connection's path.
_HARNESS = r'''
import os, sys
from twisted.internet import reactor
from p2pnet import IntroducerProtocol, IntroducerService, Registry

host_code, player_code = sys.argv[1], sys.argv[2]
service = IntroducerService(reactor, IntroducerProtocol(reactor, Registry(30.0, os.urandom)), 0, "127.0.0.1")
service.startService()
address = f"127.0.0.1:{service.port.getHost().port}"

def code(text):
    text = text.replace("203.0.113.5:3478", address)
    return "\n".join(line for line in text.splitlines() if line.strip() != "reactor.run()")

printed = []

def record(*args):
    printed.append(" ".join(map(str, args)))
    if printed[-1].startswith("Path."):
        reactor.stop()

namespace = {"__name__": "readme", "print": record}
exec(code(host_code), namespace)
reactor.callLater(1.0, exec, code(player_code), namespace)
reactor.callLater(15.0, reactor.stop)
reactor.run()
sys.stdout.write("\n".join(printed) + "\n")
sys.exit(0 if any(p.startswith("Path.") for p in printed) else 1)
'''


class ReadmeTests(SynchronousTestCase):
    def test_snippets_run(self):
        """
        The host and player snippets of "In a game" connect over loopback
        as written (the player's used to lack start()).
        """
        blocks = [b for b in python_blocks("README.md") if "PeerEndpoint(" in b]
        host, player = blocks[0], blocks[1]
        self.assertIn("host_session", host)
        self.assertIn("join", player)
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        done = subprocess.run(
            [sys.executable, "-c", _HARNESS, host, player], env=env, capture_output=True, text=True, timeout=60
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr[-3000:])


class TutorialTests(SynchronousTestCase):
    def test_no_private_imports(self):
        """
        No tutorial snippet imports a private module (p2pnet._anything).
        """
        for block in python_blocks("docs/tutorial.md"):
            for line in block.splitlines():
                if "import" in line:
                    self.assertNotRegex(line, r"p2pnet(\.\w+)*\._", line)

    def test_testing_example_runs(self):
        """
        The tutorial's trial test runs and passes as it stands.
        """
        [block] = [b for b in python_blocks("docs/tutorial.md") if "class MyGameTests" in b]
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "test_mygame.py"), "w", encoding="utf-8") as f:
            f.write(block)
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        done = subprocess.run(
            [sys.executable, "-m", "twisted.trial", "test_mygame"],
            cwd=directory, env=env, capture_output=True, text=True, timeout=120,
        )
        self.assertEqual(done.returncode, 0, done.stdout[-3000:] + done.stderr[-3000:])
        self.assertIn("PASSED", done.stdout)


class ImportsTests(SynchronousTestCase):
    def test_imports_work(self):
        """
        Every p2pnet import line in the README's and the tutorial's
        snippets imports names that exist, all public.
        """
        checked = 0
        for path in ("README.md", "docs/tutorial.md"):
            for block in python_blocks(path):
                for line in block.splitlines():
                    line = line.strip()
                    if line.startswith(("from p2pnet", "import p2pnet")):
                        self.assertNotRegex(line, r"p2pnet(\.\w+)*\._|import .*\b_\w", (path, line))
                        exec(line, {})
                        checked += 1
        self.assertGreater(checked, 5)


class ConnectionDocsTests(SynchronousTestCase):
    def public_names(self):
        from p2pnet import PeerConnection

        names = {n for n in dir(PeerConnection) if not n.startswith("_")}
        # Instance attributes set in __init__.
        with open(os.path.join(ROOT, "p2pnet", "connection.py"), encoding="utf-8") as f:
            source = f.read().split("class PeerConnection", 1)[1].split("\nclass ", 1)[0]
        names |= set(re.findall(r"^        self\.([a-z]\w*)\s*(?::[^=]*)?=", source, re.M))
        return names

    def test_public_surface_documented(self):
        """
        Every public name of a connection is in the tutorial's connection
        table, and the handshake's plumbing is not public.
        """
        with open(os.path.join(ROOT, "docs", "tutorial.md"), encoding="utf-8") as f:
            tutorial = f.read()
        table = tutorial.split("### The connection: `PeerConnection`", 1)[1].split("Close codes", 1)[0]
        names = self.public_names()
        for plumbing in ("send_hello", "send_probe", "request_relay", "machine"):
            self.assertNotIn(plumbing, names)
        for name in names - {"log", "EARLY_LIMIT", "introduced_at", "remote_conn_id"}:
            self.assertRegex(table, r"`%s\b" % name, name)

    def test_snippets_use_public_names(self):
        """
        What the README's and the tutorial's snippets call on a connection
        exists and is public.
        """
        names = self.public_names()
        for path in ("README.md", "docs/tutorial.md"):
            for block in python_blocks(path):
                for name in re.findall(r"\b(?:connection|connection_to_host|c|self\.connection)\.(\w+)", block):
                    self.assertIn(name, names, (path, name))
