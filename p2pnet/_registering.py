"""
The endpoint's registration with its introducer: register (with a proof
of our key when asked), confirm, heartbeat on a fixed schedule, notice the
introducer going and coming back, register and host again when it forgot
us; while the first registration waits, progress reports and a closed-port
check (L{p2pnet._reaching}).  A mixin of L{p2pnet.endpoint.PeerEndpoint}, which holds the state.
"""

from __future__ import annotations

import socket
from typing import Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from p2pnet import wire
from p2pnet._introclient import Prover
from p2pnet._peertypes import Registration, StatusEvent
from p2pnet._reaching import ReachingIntroducer
from p2pnet.address import Address
from p2pnet.errors import ConnectionClosed, IntroducerUnreachable, P2PError
from p2pnet.wire import ErrorCode


def introducer_addresses(given) -> tuple[Address, ...]:
    """
    The introducer addresses an endpoint was given: one L{Address} or
    C{"HOST:PORT"}, or several (at most L{MAX_INTRODUCERS}, no repeats).

    @raise ValueError: for none, too many, or one that does not parse.
    """
    if isinstance(given, (str, Address)):
        given = (given,)
    addresses = []
    for one in given:
        address = Address.parse(one) if isinstance(one, str) else one
        if not isinstance(address, Address):
            raise ValueError(f"not an introducer address: {one!r}")
        if address not in addresses:
            addresses.append(address)
    if not 1 <= len(addresses) <= MAX_INTRODUCERS:
        raise ValueError(f"give 1-{MAX_INTRODUCERS} introducer addresses")
    return tuple(addresses)


#: Most introducer addresses an endpoint takes.
MAX_INTRODUCERS = 16


class Registering:
    """
    Registration and heartbeats (see the module docstring).
    """

    def _reaching(self, refused_with: Callable[[IntroducerUnreachable], None]) -> ReachingIntroducer:
        """
        Progress lines while the introducer does not answer, and an early
        failure when its port is closed (see L{p2pnet._reaching}).
        """

        def progress(elapsed: float) -> None:
            detail = f"no answer from the introducer at {self.introducer} yet ({elapsed:.0f} s); retrying"
            self.log.info("{detail}", detail=detail)
            self.emit(StatusEvent("registering", address=self.introducer, detail=detail))

        def refused() -> None:
            error = IntroducerUnreachable(
                f"the introducer's port {self.introducer} is closed (ICMP port unreachable): "
                "is the introducer running, on that host and port?",
                port_closed=True,
            )
            self.log.warn("{error}", error=str(error))
            refused_with(error)
            if self._client is not None:
                self._client.cancel_all(error)

        handle = getattr(self.transport, "getHandle", lambda: None)()
        return ReachingIntroducer(
            self.clock, self.introducer, progress, refused,
            probe=isinstance(handle, socket.socket), interface=self._interface,
        )

    def _register(self) -> Deferred:
        # With an identity, the registration is bound to its key: the
        # client proves it when the introducer challenges a move or a
        # restart (see _introclient.Prover).
        identity = self.identity
        if self._client.prover is None:
            self._client.prover = Prover(self.peer_id, identity)
        self._registered_local = self.advertised_local()
        self._registered_nat = self._nat
        message = wire.Register(
            self.new_txid(),
            self.peer_id,
            self._registered_local,
            self._cookie,
            self._nat,
            peer_key=identity.public if identity is not None else None,
        )
        d = self._client.request(message)

        def registered(answer: wire.Message) -> Registration:
            if not isinstance(answer, wire.Registered):
                raise P2PError(f"unexpected answer to a registration: {type(answer).__name__}")
            self._cookie = answer.cookie
            self.public_address = answer.public
            registration = Registration(answer.public, self.local_addresses)
            # Confirm we receive at this address (the introducer only sends
            # introductions we did not ask for to confirmed addresses); the
            # registration counts once the confirmation is answered.
            confirm = self._client.request(wire.Heartbeat(self.new_txid(), self.peer_id, answer.cookie))
            return confirm.addCallback(lambda _: self._registered(registration))

        return d.addCallback(registered)

    def _registered(self, registration: Registration) -> Registration:
        self.log.info(
            "registered with {introducer} as {peer_id}: public {public}",
            introducer=str(self.introducer),
            peer_id=self.peer_id,
            public=str(registration.public),
        )
        self.emit(StatusEvent("registered", address=registration.public, candidates=registration.local))
        return registration

    def _schedule_heartbeat(self) -> None:
        if not self._stopping:
            self._heartbeat_call = self.clock.callLater(self.config.heartbeat_interval, self._heartbeat)

    def _heartbeat(self) -> None:
        # Heartbeats keep a fixed schedule whatever became of the last one,
        # so a restarted introducer hears from us within one period.
        self._heartbeat_call = None
        self._schedule_heartbeat()
        if self._reregistering:
            return
        if self._cookie is None:
            self._reregister()
            return
        sent_to = self.introducer
        d = self._client.request(
            wire.Heartbeat(self.new_txid(), self.peer_id, self._cookie), attempts=3
        )
        self._heartbeat6()

        def acked(answer: wire.Message) -> None:
            self._introducer_back()
            if isinstance(answer, wire.HeartbeatAck) and answer.public != self.public_address:
                self.public_address = answer.public
                self.emit(StatusEvent("public-changed", address=answer.public))

        def refused(reason: Failure) -> None:
            if self._stopping:
                return None
            error = reason.value
            if sent_to != self.introducer:
                # An answer from an introducer we already left.
                return None
            if getattr(error, "code", None) in (ErrorCode.NOT_REGISTERED, ErrorCode.NOT_AUTHORISED):
                # The introducer forgot us (restarted, or our registration
                # expired while it was unreachable): register again and
                # re-host our sessions.
                self.log.info("introducer forgot us; registering again")
                self._cookie = None
                self._reregister()
                return None
            if reason.check(IntroducerUnreachable):
                if sent_to == self.introducer:
                    # (Not a heartbeat to an introducer we already left.)
                    self._introducer_gone(error)
                return None
            return reason

        d.addCallbacks(acked, refused)
        d.addErrback(self._ignore_when_stopping)

    def _reregister(self) -> None:
        self._reregistering = True
        d = self._register()
        d.addCallback(lambda _: (self._introducer_back(), self._rehost()))

        def failed(reason: Failure) -> None:
            if self._stopping:
                return None
            if reason.check(IntroducerUnreachable):
                self._reregistering = False
                self._introducer_gone(reason.value)
                return None
            return reason

        d.addErrback(failed)
        d.addErrback(self._ignore_when_stopping)
        d.addBoth(lambda _: setattr(self, "_reregistering", False) if d is self._reregistration else None)
        self._reregistration = d

    def _introducer_back(self) -> None:
        if self._introducer_lost:
            self._introducer_lost = False
            self.emit(StatusEvent("introducer-back", address=self.introducer))

    def _introducer_gone(self, error: Exception) -> None:
        if not self._introducer_lost:
            self._introducer_lost = True
            self.log.warn("{error}; connections stay up, retrying", error=str(error))
            self.emit(StatusEvent("introducer-lost", address=self.introducer, detail=str(error)))
        self._fail_over()

    def _fail_over(self) -> None:
        """
        With several introducer addresses (nodes of one cluster), move to
        the next one and register (and host) there at once.
        """
        introducers = self.introducers
        if len(introducers) < 2 or self._stopping or self._client is None:
            return
        position = introducers.index(self.introducer) if self.introducer in introducers else -1
        # What is still outstanding was for the introducer we leave (its
        # retransmissions would reach the next one with a stale cookie).
        self._client.cancel_all(IntroducerUnreachable(f"left the introducer at {self.introducer}"))
        self.introducer = introducers[(position + 1) % len(introducers)]
        self._client.address = self.introducer
        self._cookie = None
        self.log.info("moving to the introducer at {introducer}", introducer=str(self.introducer))
        self.emit(StatusEvent("registering", address=self.introducer, detail="moving to another introducer"))
        if not self._reregistering:
            self._reregister()

    def _ignore_when_stopping(self, reason: Failure) -> None:
        if not (self._stopping or reason.check(ConnectionClosed)):
            self.log.failure("heartbeat failed", reason)

    def _rehost(self) -> None:
        hosted, self._hosted = self._hosted, {}
        for session in hosted.values():
            self.host_session(
                session.name, session.game_id, session.max_players, session.mesh, dict(session.properties)
            ).addErrback(lambda f: self.log.failure("could not host a session again", f))
