"""
A secure connection's connect request.  The joiner (the initiator) puts
its payload (a join token, a player name; at most 256 bytes) in the Noise
handshake message 1 its hellos carry, encrypted: the introducer and the
relays never see it.  The host asks its factory's C{accept_connection}
as soon as it reads that message, and answers with a sealed C{ACCEPT}
frame (right behind its answer to the hello: no extra round trip) or
closes with L{CloseCode.REFUSED} and the reason.  Neither side calls the
connection open (no C{connected} event, no Deferred, no protocol) before
that.  While it waits the joiner repeats the request in sealed
C{CONNECT} frames, which the host answers again once it has decided.

Insecure connections (no sealed frames) skip it: they open when the path
is up, a payload is refused at C{connect}, and the factory's
C{accept_connection} is not asked (docs/tutorial.md).
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pnet.errors import CloseCode, ConnectTimeout
from p2pnet.secure import _frames as frames


def reason_text(answer: object) -> str:
    """
    A refusal's text, cut to what a CLOSE frame holds (whole characters).
    """
    text = answer if isinstance(answer, str) else repr(answer)
    raw = text.encode("utf-8")[: frames.MAX_REASON]
    return raw.decode("utf-8", "ignore") or "refused"


class Admission:
    """
    One connection's connect request (see the module docstring).

    @param send: C{(frames, to) -> None}: seal these frames to C{to}
        (None: the connection's path).
    @param decide: C{(payload) -> Deferred} firing with None (accept) or
        a reason (refuse); called on the host only, once.
    @param opened: called once the connection is admitted and its path
        is up.
    @param refuse: C{(code, reason, to) -> None}: close the connection,
        telling the peer at C{to} (None: the path).
    @param timed_out: C{(error) -> None}: the joiner gives up.
    @param patience: how long the joiner asks, and how long the host
        waits for the request, once the path is up.
    """

    log = Logger()

    #: Gaps between the joiner's requests, the first sent as the path
    #: comes up; the last gap repeats.
    GAPS = (0.1, 0.15, 0.2, 0.25)

    def __init__(
        self,
        clock: IReactorTime,
        *,
        initiator: bool,
        payload: bytes,
        patience: float,
        peer_id: str,
        send: Callable[[list, object], None],
        decide: Callable[[bytes], Deferred],
        opened: Callable[[], None],
        refuse: Callable[[int, str, object], None],
        timed_out: Callable[[Exception], None],
    ) -> None:
        self._clock = clock
        self.initiator = initiator
        self.payload = payload
        self._patience = patience
        self._peer_id = peer_id
        self._send = send
        self._decide = decide
        self._opened = opened
        self._refuse = refuse
        self._timed_out = timed_out
        #: None (not yet), "deciding", "accepted" (host); the joiner's is
        #: "accepted" once the host said so.
        self.decision: str | None = None
        self._path_up = False
        self._reply_to: object = None
        self.ended = False
        self._resend: IDelayedCall | None = None
        self._deadline: IDelayedCall | None = None
        self._asked = 0
        self._skipped = False

    @property
    def pending(self) -> bool:
        """
        Whether the connection is not admitted (yet) and not ended.
        """
        return not self.ended and not (self._path_up and self.decision == "accepted")

    def path_up(self) -> None:
        """
        The connection's path is validated.
        """
        if self._path_up or self.ended:
            return
        self._path_up = True
        if self.decision == "accepted":
            if not self.initiator and not self._skipped:
                # A second copy, on the path now up (the first went out
                # when we decided, and may be lost).
                self._send([frames.Accept()], None)
            self._opened()
            return
        if self.decision is None:
            self._deadline = self._clock.callLater(self._patience, self._give_up)
        if self.initiator:
            self._ask()

    def _ask(self) -> None:
        self._send([frames.Connect(self.payload)], None)
        self._resend = self._clock.callLater(self.GAPS[min(self._asked, len(self.GAPS) - 1)], self._ask)
        self._asked += 1

    def _give_up(self) -> None:
        self._deadline = None
        if not self.pending:
            return
        if self.initiator:
            self._timed_out(ConnectTimeout(self._peer_id, self._patience))
        else:
            self._refuse(CloseCode.TIMED_OUT, "no connect request", None)

    # -- from the peer ------------------------------------------------------------

    def request(self, payload: bytes, reply_to: object) -> bool:
        """
        The joiner's request (its handshake message 1's payload, or a
        CONNECT frame) came from C{reply_to}; whether it was expected
        (False: counted and dropped by the caller).
        """
        if self.initiator or self.ended:
            return False
        if self.decision == "accepted":
            # Our ACCEPT was lost: say it again, twice (as likely lost),
            # on the path once it is up (not to wherever a copy came from).
            to = None if self._path_up else reply_to
            self._send([frames.Accept()], to)
            self._send([frames.Accept()], to)
        elif self.decision is None:
            self.decision = "deciding"
            self._reply_to = reply_to
            self._cancel("_deadline")
            self._decide(payload).addCallbacks(self._decided, self._decision_failed)
        return True

    def answered(self, to: object) -> None:
        """
        We sent the joiner a hello or an answer at C{to} (handshake
        message 2 rides in both): once accepted, an ACCEPT follows it, so
        the joiner has it as soon as it has the keys to read it.
        """
        if not self.initiator and not self.ended and not self._skipped and self.decision == "accepted":
            self._send([frames.Accept()], to)

    def accept_received(self) -> bool:
        """
        An ACCEPT frame; whether it was expected.
        """
        if not self.initiator or self.ended or self.decision is not None:
            return False
        self.decision = "accepted"
        self._stop_timers()
        if self._path_up:
            self._opened()
        return True

    # -- the host's decision ------------------------------------------------------

    def _decided(self, answer: object) -> None:
        if self.ended or self.decision != "deciding":
            return
        if answer is not None:
            self._refuse(CloseCode.REFUSED, reason_text(answer), None if self._path_up else self._reply_to)
            return
        self.decision = "accepted"
        self._send([frames.Accept()], None if self._path_up else self._reply_to)
        if self._path_up:
            self._opened()

    def _decision_failed(self, reason: Failure) -> None:
        self.log.failure("accept_connection failed; refusing {peer_id}", reason, peer_id=self._peer_id)
        self._decided("the host could not decide")

    # -- the end ----------------------------------------------------------------------

    def skip(self) -> None:
        """
        No request to make (insecure): admitted already.
        """
        self.decision = "accepted"
        self._skipped = True

    def stop(self) -> None:
        """
        The connection ended: no more requests, no more deadline.
        """
        self.ended = True
        self._stop_timers()

    def _stop_timers(self) -> None:
        self._cancel("_resend")
        self._cancel("_deadline")

    def _cancel(self, name: str) -> None:
        call = getattr(self, name)
        setattr(self, name, None)
        if call is not None and call.active():
            call.cancel()
