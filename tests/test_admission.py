"""
The connect request's machine, L{p2pnet._admission.Admission}, driven by a
clock with fake outputs.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from p2pnet._admission import Admission, reason_text
from p2pnet.errors import CloseCode, ConnectTimeout
from p2pnet.secure._frames import Accept, Connect


class Outputs:
    def __init__(self, decision=None) -> None:
        self.log: list = []
        self.decision = decision
        self.asked: list[bytes] = []

    def send(self, frames, to) -> None:
        self.log.append(("send", frames, to))

    def decide(self, payload: bytes) -> Deferred:
        self.asked.append(payload)
        return self.decision if isinstance(self.decision, Deferred) else succeed(self.decision)

    def opened(self) -> None:
        self.log.append(("opened",))

    def refuse(self, code, reason, to) -> None:
        self.log.append(("refuse", code, reason, to))

    def timed_out(self, error) -> None:
        self.log.append(("timed-out", error))


def make(initiator: bool, decision=None, payload: bytes = b"tok"):
    clock = Clock()
    out = Outputs(decision)
    admission = Admission(
        clock, initiator=initiator, payload=payload, patience=10.0, peer_id="host",
        send=out.send, decide=out.decide, opened=out.opened, refuse=out.refuse, timed_out=out.timed_out,
    )
    return clock, out, admission


class JoinerTests(SynchronousTestCase):
    def test_asks_until_accepted(self) -> None:
        """
        The joiner sends its request as its path comes up, then after
        0.1, 0.15, 0.2 and every 0.25 s, and opens once on ACCEPT, with no
        timer left.
        """
        clock, out, admission = make(True)
        admission.path_up()
        self.assertEqual(out.log, [("send", [Connect(b"tok")], None)])
        for gap in [0.1, 0.15, 0.2, 0.25, 0.25]:
            sent = len(out.log)
            clock.advance(gap - 0.001)
            self.assertEqual(len(out.log), sent, gap)
            clock.advance(0.001)
            self.assertEqual(out.log[sent:], [("send", [Connect(b"tok")], None)], gap)
        self.assertTrue(admission.pending)
        self.assertTrue(admission.accept_received())
        self.assertEqual(out.log[-1], ("opened",))
        self.assertFalse(admission.pending)
        self.assertFalse(admission.accept_received())
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_accept_before_path(self) -> None:
        """
        An ACCEPT read before the joiner's path is up opens it when the
        path comes up, without asking.
        """
        clock, out, admission = make(True)
        self.assertTrue(admission.accept_received())
        self.assertEqual(out.log, [])
        admission.path_up()
        self.assertEqual(out.log, [("opened",)])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_gives_up(self) -> None:
        """
        Without an answer within the patience, the joiner fails with
        L{ConnectTimeout}.
        """
        clock, out, admission = make(True)
        admission.path_up()
        clock.pump([1.0] * 9)
        self.assertFalse([e for e in out.log if e[0] == "timed-out"])
        clock.advance(1.0)
        [(kind, error)] = [e for e in out.log if e[0] == "timed-out"]
        self.assertIsInstance(error, ConnectTimeout)
        admission.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_joiner_ignores_requests(self) -> None:
        """
        A CONNECT to the joiner is unexpected.
        """
        clock, out, admission = make(True)
        self.assertFalse(admission.request(b"x", "somewhere"))
        self.assertEqual(out.asked, [])


class HostTests(SynchronousTestCase):
    def test_accepts_once(self) -> None:
        """
        The host asks once, answers ACCEPT where the request came from,
        opens once its path is up (with another ACCEPT on the path), and
        answers repeats twice on the path.
        """
        decision = Deferred()
        clock, out, admission = make(False, decision)
        self.assertTrue(admission.request(b"tok", "first-source"))
        self.assertTrue(admission.request(b"other", "second-source"))
        self.assertEqual(out.asked, [b"tok"])
        decision.callback(None)
        self.assertEqual(out.log, [("send", [Accept()], "first-source")])
        admission.answered("hello-source")
        self.assertEqual(out.log[-1], ("send", [Accept()], "hello-source"))
        admission.path_up()
        self.assertEqual(out.log[-2:], [("send", [Accept()], None), ("opened",)])
        del out.log[:]
        admission.request(b"tok", "third-source")
        self.assertEqual(out.log, [("send", [Accept()], None)] * 2)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_refuses(self) -> None:
        """
        A reason refuses with L{CloseCode.REFUSED}, told to where the
        request came from while the path is not up; long reasons are cut
        to 255 bytes of whole characters.
        """
        clock, out, admission = make(False, "full")
        admission.request(b"tok", "source")
        self.assertEqual(out.log, [("refuse", CloseCode.REFUSED, "full", "source")])
        self.assertEqual(len(reason_text("\u00e9" * 200).encode("utf-8")), 254)
        self.assertEqual(reason_text(""), "refused")

    def test_no_request(self) -> None:
        """
        A host that hears no request within the patience of its path
        coming up closes with L{CloseCode.TIMED_OUT}.
        """
        clock, out, admission = make(False)
        admission.path_up()
        clock.advance(9.9)
        self.assertEqual(out.log, [])
        clock.advance(0.1)
        self.assertEqual(out.log, [("refuse", CloseCode.TIMED_OUT, "no connect request", None)])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_host_ignores_accept(self) -> None:
        """
        An ACCEPT to the host is unexpected; nothing after the end is.
        """
        clock, out, admission = make(False)
        self.assertFalse(admission.accept_received())
        admission.stop()
        self.assertFalse(admission.request(b"tok", "source"))
        self.assertEqual(out.asked, [])
