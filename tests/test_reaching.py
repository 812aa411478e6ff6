"""
The closed-port probe (L{p2pnet._reaching}) against forged ICMP errors: one
refused probe socket is not believed, a second one on a fresh port must be
refused too.  Sockets are fakes driven by a L{Clock}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from p2pnet._reaching import ReachingIntroducer
from p2pnet.address import Address


class FakeSocket:
    """
    A connected UDP socket; when C{refused}, C{recv} raises
    C{ConnectionRefusedError} once a datagram was sent (as after an ICMP
    port unreachable, real or forged).
    """

    def __init__(self, refused: bool) -> None:
        self.refused = refused
        self.sent: list[bytes] = []
        self.closed = False
        self.connected_to = None

    def setblocking(self, flag: bool) -> None:
        pass

    def bind(self, address) -> None:
        pass

    def connect(self, address) -> None:
        self.connected_to = address

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv(self, size: int) -> bytes:
        if self.refused and self.sent:
            raise ConnectionRefusedError()
        raise BlockingIOError()

    def close(self) -> None:
        self.closed = True


class Factory:
    """
    Hands out fake sockets; C{refusals} says, per socket in order, whether
    it is refused (a missing entry: not refused).
    """

    def __init__(self, *refusals: bool) -> None:
        self.refusals = list(refusals)
        self.made: list[FakeSocket] = []

    def __call__(self, family: int, kind: int) -> FakeSocket:
        refused = self.refusals[len(self.made)] if len(self.made) < len(self.refusals) else False
        sock = FakeSocket(refused)
        self.made.append(sock)
        return sock


class ForgedRefusalTests(TestCase):
    def reaching(self, factory: Factory) -> tuple[Clock, list[str]]:
        clock = Clock()
        seen: list[str] = []
        reaching = ReachingIntroducer(
            clock, Address("192.0.2.1", 3478), lambda elapsed: seen.append("progress"),
            lambda: seen.append("refused"), probe=True, socket_factory=factory,
        )
        self.addCleanup(reaching.stop)
        return clock, seen

    def advance(self, clock: Clock, seconds: float, step: float = 0.05) -> None:
        for _ in range(round(seconds / step)):
            clock.advance(step)

    def test_one_forged_refusal_is_not_believed(self):
        """
        The first probe socket is refused (as a forged ICMP error would
        make it), the second is not: no verdict, and probing goes on from
        a new socket.
        """
        factory = Factory(True, False)
        clock, seen = self.reaching(factory)
        self.advance(clock, 1.9)
        self.assertNotIn("refused", seen)
        self.assertEqual(len(factory.made), 2)
        self.assertTrue(factory.made[0].closed)
        self.assertFalse(factory.made[1].closed)
        self.assertEqual(factory.made[1].connected_to, ("192.0.2.1", 3478))
        # The second socket keeps sending probes (every 0.5 s).
        self.assertGreaterEqual(len(factory.made[1].sent), 3)

    def test_two_refusals_are_a_closed_port(self):
        """
        Two probe sockets refused in turn: the port is closed, said once,
        within a fraction of a second, and every socket is closed.
        """
        factory = Factory(True, True)
        clock, seen = self.reaching(factory)
        self.advance(clock, 0.3)
        self.assertEqual(seen, ["refused"])
        self.assertEqual(len(factory.made), 2)
        self.assertTrue(all(sock.closed for sock in factory.made))
        self.advance(clock, 3.0)
        self.assertEqual(seen, ["refused"])

    def test_not_refused_never_says_closed(self):
        """
        A port that never refuses gets progress reports, not a verdict.
        """
        factory = Factory(False)
        clock, seen = self.reaching(factory)
        self.advance(clock, 4.5)
        self.assertEqual(seen, ["progress", "progress"])
        self.assertEqual(len(factory.made), 1)
