"""
Requests to the introducer with retransmission, matched by transaction id.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from p2pnet import wire
from p2pnet.address import Address
from p2pnet.errors import (
    IntroducerError,
    IntroducerUnreachable,
    NotAuthorised,
    RateLimited,
    SessionFull,
    UnknownPeer,
)
from p2pnet.wire import ErrorCode

_ERRORS: dict[int, type[IntroducerError]] = {
    ErrorCode.SESSION_FULL: SessionFull,
    ErrorCode.UNKNOWN_PEER: UnknownPeer,
    ErrorCode.UNKNOWN_SESSION: UnknownPeer,
    ErrorCode.NOT_AUTHORISED: NotAuthorised,
    ErrorCode.RATE_LIMITED: RateLimited,
}


def error_for(message: wire.Error) -> IntroducerError:
    """
    The exception for an introducer's L{wire.Error} answer.
    """
    return _ERRORS.get(message.code, IntroducerError)(message.code, message.reason)


class _Pending:
    __slots__ = ("deferred", "raw", "timer", "attempt", "rto")

    def __init__(self, deferred: Deferred, raw: bytes, rto: float) -> None:
        self.deferred = deferred
        self.raw = raw
        self.timer: IDelayedCall | None = None
        self.attempt = 1
        self.rto = rto


class IntroducerClient:
    """
    Sends requests to the introducer and matches answers by transaction id.

    A request is retransmitted with doubling timeouts (C{rto}, 2 C{rto}, ... at most L{MAX_RTO})
    up to C{attempts} sends; then its Deferred fails with
    L{IntroducerUnreachable}.  An L{wire.Error} answer fails it with the
    matching L{IntroducerError} subclass.

    @param write: C{(bytes, (host, port)) -> None}, the socket's write.
    @param secret: sign requests with this shared secret, or None.
    """

    #: Retransmit timeouts double up to this many seconds.
    MAX_RTO = 2.0

    def __init__(
        self,
        clock: IReactorTime,
        write: Callable[[bytes, tuple], None],
        address: Address,
        random_bytes: Callable[[int], bytes],
        secret: bytes | None = None,
        rto: float = 0.5,
        attempts: int = 10,
    ) -> None:
        self._clock = clock
        self._write = write
        self.address = address
        self._random_bytes = random_bytes
        self._secret = secret
        self._rto = rto
        self._attempts = attempts
        self._pending: dict[bytes, _Pending] = {}

    def new_txid(self) -> bytes:
        return self._random_bytes(wire.TXID_SIZE)

    def send(self, message: wire.Message) -> None:
        """
        Send a message that expects no answer.
        """
        self._write(wire.encode(wire.padded(message), self._secret), self.address.as_tuple())

    def request(self, message: wire.Message, attempts: int | None = None) -> Deferred:
        """
        Send a request; the Deferred fires with the answer message.
        """
        raw = wire.encode(wire.padded(message), self._secret)
        d = Deferred(lambda _: self._forget(message.txid))
        pending = _Pending(d, raw, self._rto)
        self._pending[message.txid] = pending
        limit = attempts if attempts is not None else self._attempts
        self._transmit(message.txid, pending, limit)
        return d

    def _transmit(self, txid: bytes, pending: _Pending, limit: int) -> None:
        self._write(pending.raw, self.address.as_tuple())
        if pending.attempt >= limit:
            delay = pending.rto
            pending.timer = self._clock.callLater(delay, self._give_up, txid, limit)
            return
        delay = pending.rto
        pending.rto = min(pending.rto * 2, self.MAX_RTO)
        pending.attempt += 1
        pending.timer = self._clock.callLater(delay, self._transmit, txid, pending, limit)

    def _give_up(self, txid: bytes, limit: int) -> None:
        pending = self._pending.pop(txid, None)
        if pending is not None:
            pending.deferred.errback(
                IntroducerUnreachable(
                    f"no answer from the introducer at {self.address} after {limit} tries"
                )
            )

    def _forget(self, txid: bytes) -> None:
        pending = self._pending.pop(txid, None)
        if pending is not None and pending.timer is not None and pending.timer.active():
            pending.timer.cancel()

    def answer(self, message: wire.Message) -> bool:
        """
        Deliver an answer; True if it matched an outstanding request.
        """
        pending = self._pending.pop(message.txid, None)
        if pending is None:
            return False
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        if isinstance(message, wire.Error):
            pending.deferred.errback(error_for(message))
        else:
            pending.deferred.callback(message)
        return True

    def cancel_all(self, error: Exception) -> None:
        """
        Fail every outstanding request with C{error}.
        """
        pending, self._pending = self._pending, {}
        for item in pending.values():
            if item.timer is not None and item.timer.active():
                item.timer.cancel()
            item.deferred.errback(error)
