"""
Peer ids and session names: what is refused and why (a newline in a name
would let a peer forge the introducer's and other peers' log lines).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from p2pnet._names import name_problem
from p2pnet._registry import Registry, RegistryError
from p2pnet.address import Address
from p2pnet.wire import ErrorCode

from .helpers import seeded_bytes

PUBLIC = Address("203.0.113.5", 40000)


class NameProblemTests(SynchronousTestCase):
    def test_accepted(self):
        """
        Letters of any script, spaces, punctuation and emoji (with joiners)
        are fine, up to 64 bytes.
        """
        for name in ("keith", "Zoë", "日本語の名前", "Keith's Server #2", "👩\u200d💻", "a" * 64):
            self.assertIsNone(name_problem(name), name)

    def test_refused(self):
        """
        Empty, too long, and control characters (C0, C1, line and
        paragraph separators, bidi overrides) are refused with a reason.
        """
        cases = [
            ("", "empty"),
            ("a" * 65, "65 bytes"),
            ("é" * 33, "66 bytes"),
            ("a\nb", "control"),
            ("a\rb", "control"),
            ("a\x00b", "control"),
            ("a\x1bb", "control"),
            ("a\x85b", "control"),
            ("a\u2028b", "control"),
            ("a\u2029b", "control"),
            ("a\u202eb", "control"),
            ("a\u2066b", "control"),
        ]
        for name, why in cases:
            problem = name_problem(name, "--name")
            self.assertIsNotNone(problem, repr(name))
            self.assertIn(why, problem)
            self.assertIn("--name", problem)

    def test_limit(self):
        """
        Session names may be longer (the wire's 255 bytes) but not hold
        control characters.
        """
        self.assertIsNone(name_problem("x" * 255, "title", 255))
        self.assertIsNotNone(name_problem("x" * 256, "title", 255))
        self.assertIsNotNone(name_problem("x\ny", "title", 255))


class IntroducerRefusesTests(SynchronousTestCase):
    """
    A client that skips the endpoint's checks (a forged datagram) meets the
    same rules at the introducer.
    """

    def setUp(self):
        self.registry = Registry(30.0, seeded_bytes())

    def test_peer_id_with_newline(self):
        error = self.assertRaises(
            RegistryError, self.registry.register, "eve\n2026 [introducer] registered admin", PUBLIC, (), None, 0.0
        )
        self.assertEqual(error.code, ErrorCode.BAD_REQUEST)
        self.assertEqual(len(self.registry), 0)

    def test_session_name_with_newline(self):
        host = self.registry.register("keith", PUBLIC, (), None, 0.0)
        for name, game in (("Fake\nline", "g"), ("Fine", "g\u2028")):
            error = self.assertRaises(RegistryError, self.registry.host_session, host, name, game, 4, False, ())
            self.assertEqual(error.code, ErrorCode.BAD_REQUEST)
        self.assertEqual(list(self.registry.sessions()), [])
        self.registry.host_session(host, "Fine", "g", 4, False, ())
