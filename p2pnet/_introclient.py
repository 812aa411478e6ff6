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
    HostGone,
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
    ErrorCode.HOST_GONE: HostGone,
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


class Prover:
    """
    Answers the introducer's challenges for one peer id (see
    L{wire.Challenge}): with the X25519 shared secret of C{identity} and
    the introducer's key, or, without an identity, with the cookie.

    @ivar cookie: the registration's cookie, once registered.
    @ivar introducer_key: the introducer's static public key, once told.
    """

    def __init__(self, peer_id: str, identity: object | None = None) -> None:
        self.peer_id = peer_id
        self.identity = identity
        self.cookie: bytes | None = None
        self.introducer_key: bytes | None = None
        self._shared: tuple[bytes, bytes] | None = None

    def _key(self) -> bytes | None:
        if self.identity is None:
            return self.cookie
        if self.introducer_key is None:
            return None
        if self._shared is None or self._shared[0] != self.introducer_key:
            try:
                self._shared = (self.introducer_key, self.identity.exchange(self.introducer_key))
            except ValueError:
                return None
        return self._shared[1]

    def learn(self, message: wire.Message) -> None:
        """
        Keep what an answer tells: the cookie and the introducer's key.
        """
        if isinstance(message, wire.Registered):
            self.cookie = message.cookie
        if isinstance(message, (wire.Registered, wire.Challenge)) and message.introducer_key is not None:
            self.introducer_key = message.introducer_key

    def answer(self, challenge: wire.Challenge, txid: bytes) -> wire.Proof | None:
        """
        The L{wire.Proof} for C{challenge}, or None if we cannot make one.
        """
        key = self._key()
        if key is None:
            return None
        proof = wire.proof_tag(key, challenge.challenge, self.peer_id, challenge.public)
        return wire.Proof(txid, self.peer_id, challenge.challenge, proof)


class _Pending:
    __slots__ = ("deferred", "raw", "timer", "attempt", "rto", "message", "max_rto")

    def __init__(self, deferred: Deferred, raw: bytes, rto: float, message: wire.Message | None = None) -> None:
        self.deferred = deferred
        self.raw = raw
        self.message = message
        self.timer: IDelayedCall | None = None
        self.attempt = 1
        self.rto = rto
        self.max_rto = IntroducerClient.MAX_RTO


class IntroducerClient:
    """
    Sends requests to the introducer and matches answers by transaction id.

    A request is retransmitted with doubling timeouts (C{rto}, 2 C{rto}, ... at most L{MAX_RTO})
    up to C{attempts} sends; then its Deferred fails with
    L{IntroducerUnreachable}.  An L{wire.Error} answer fails it with the
    matching L{IntroducerError} subclass.

    A L{wire.Challenge} answer (the request would have moved our
    registration: our address changed, or we restarted) is answered with
    C{prover}'s L{wire.Proof}; the request's Deferred then fires with the
    proof's answer (a registration or heartbeat) or, for other requests,
    with the answer to the request sent again.

    @param write: C{(bytes, (host, port)) -> None}, the socket's write.
    @param secret: sign requests with this shared secret, or None.
    @ivar prover: a L{Prover}, or None to fail challenged requests.
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
        self.prover: Prover | None = None

    def new_txid(self) -> bytes:
        return self._random_bytes(wire.TXID_SIZE)

    def send(self, message: wire.Message) -> None:
        """
        Send a message that expects no answer.
        """
        self._write(wire.encode(wire.padded(message), self._secret), self.address.as_tuple())

    def request(self, message: wire.Message, attempts: int | None = None, max_rto: float | None = None) -> Deferred:
        """
        Send a request; the Deferred fires with the answer message.

        @param max_rto: the longest gap between retransmits (default
            L{MAX_RTO}); an introduction, whose other side is already
            punching, retransmits at the first timeout without backing off:
            the introducer sends our copy again only when our request pays
            for it.
        """
        raw = wire.encode(wire.padded(message), self._secret)
        d = Deferred(lambda _: self._forget(message.txid))
        pending = _Pending(d, raw, self._rto, message)
        pending.max_rto = self.MAX_RTO if max_rto is None else max_rto
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
        pending.rto = min(pending.rto * 2, pending.max_rto)
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
        if self.prover is not None:
            self.prover.learn(message)
        if isinstance(message, wire.Challenge):
            self._challenged(pending, message)
        elif isinstance(message, wire.Error):
            pending.deferred.errback(error_for(message))
        else:
            pending.deferred.callback(message)
        return True

    def _challenged(self, pending: _Pending, challenge: wire.Challenge) -> None:
        original = pending.message
        proof = None
        if self.prover is not None and not isinstance(original, wire.Proof):
            proof = self.prover.answer(challenge, self.new_txid())
        if proof is None:
            pending.deferred.errback(
                NotAuthorised(ErrorCode.NOT_AUTHORISED, "cannot answer the introducer's challenge")
            )
            return
        d = self.request(proof)
        if not isinstance(original, (wire.Register, wire.Heartbeat)):
            d.addCallback(lambda _: self.request(original))
        d.chainDeferred(pending.deferred)

    def cancel_all(self, error: Exception) -> None:
        """
        Fail every outstanding request with C{error}.
        """
        pending, self._pending = self._pending, {}
        for item in pending.values():
            if item.timer is not None and item.timer.active():
                item.timer.cancel()
            item.deferred.errback(error)
