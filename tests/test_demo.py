"""
C{p2pnet demo} (the simulated one): every scenario ends as the product
answers it, with the timeline that shows how: the relay fallback (and the
move back to a direct path once one opens), the birthday search, and the
relay at once for two symmetric NATs.  None ends without a path.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from p2pnet._demo import run_demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sections(text: str) -> dict[str, str]:
    """
    The demo's output by scenario title.
    """
    parts = text.split("\n== ")[1:]
    return {part.split(" ==\n", 1)[0]: part.split(" ==\n", 1)[1] for part in parts}


class DemoTests(SynchronousTestCase):
    def setUp(self) -> None:
        out = io.StringIO()
        self.code = run_demo(out)
        self.text = out.getvalue()
        self.scenarios = sections(self.text)

    def test_all_as_expected(self):
        """
        Every scenario ends connected and as expected; none says there is
        no path.
        """
        self.assertEqual(self.code, 0, self.text)
        self.assertIn("Every scenario ended as expected.", self.text)
        outcomes = [line.strip() for line in self.text.splitlines() if line.strip().startswith("=> ")]
        self.assertEqual(len(outcomes), 8)
        self.assertEqual([line for line in outcomes if not line.startswith("=> connected over ")], [])
        self.assertEqual(len(self.scenarios), 8)

    def test_relay_fallback(self):
        """
        The poisoned NAT without warm-up: after 3 s without a direct path
        both sides ask for the relay and connect through it.
        """
        text = self.scenarios["the same NAT without warm-up"]
        self.assertIn("A  asks the introducer's relay for a path", text)
        self.assertIn("connected to B via relayed relay 192.0.2.10:3479", text)
        self.assertIn("=> connected over relayed in 3", text)

    def test_upgrade_to_direct(self):
        """
        A firewall between the sites: relayed first; when it opens (shown
        in the timeline) the path moves to direct on both sides.
        """
        text = self.scenarios["a firewall between the sites, opened later"]
        lines = text.splitlines()
        relayed = next(i for i, line in enumerate(lines) if "A  connected to B via relayed" in line)
        opened = next(i for i, line in enumerate(lines) if "the firewall between the sites opens" in line)
        moved = next(i for i, line in enumerate(lines) if "A  path moved to direct-public" in line)
        self.assertLess(relayed, opened)
        self.assertLess(opened, moved)
        self.assertIn("B  path moved to direct-public", text)
        self.assertIn("=> connected over relayed in", text)
        self.assertIn("then moved to direct-public", text)

    def test_birthday(self):
        """
        Symmetric <-> port-restricted: both sides start the birthday search
        and connect directly.
        """
        text = self.scenarios["symmetric NAT against a port-restricted NAT"]
        for side in "AB":
            self.assertIn(f"{side}  birthday search", text)
        self.assertIn("=> connected over direct-public", text)

    def test_symmetric_pair_relayed_at_once(self):
        """
        Two symmetric NATs: the relay is asked for at the introduction and
        the pair connects through it within a fraction of a second.
        """
        text = self.scenarios["two symmetric NATs"]
        self.assertIn("0.075s  A  asks the introducer's relay for a path", text)
        self.assertIn("=> connected over relayed in 90 ms", text)


class DemoCommandTests(SynchronousTestCase):
    def test_command(self):
        """
        C{p2pnet demo --quiet} exits 0 with one outcome line per scenario.
        """
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        done = subprocess.run([sys.executable, "-m", "p2pnet", "demo", "--quiet"], env=env,
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        outcomes = [line for line in done.stdout.splitlines() if line.strip().startswith("=> ")]
        self.assertEqual(len(outcomes), 8, done.stdout)
        self.assertEqual(sum("relayed" in line for line in outcomes), 3, done.stdout)
