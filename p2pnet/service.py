"""
The peer side as a Twisted service: L{PeerService} starts a
L{PeerEndpoint} (retrying with back-off while the introducer cannot be
reached), hosts a session and keeps it hosted, and stops cleanly; a twistd
game server needs only a C{.tac} file (see C{examples/game_server.tac}).

L{LobbyWatch} lists a game's sessions every few seconds for a lobby
screen.
"""

from __future__ import annotations

import random
from typing import Callable

from attrs import field, frozen
from twisted.application.internet import backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pnet._peertypes import HostedSession, Registration
from p2pnet.errors import P2PError

__all__ = ["LobbyWatch", "PeerService", "SessionSpec"]


def _properties(value) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(dict(value).items()))


@frozen
class SessionSpec:
    """
    The session a L{PeerService} hosts (see L{PeerEndpoint.host_session}).
    """

    name: str
    game_id: str = ""
    max_players: int = 8
    mesh: bool = False
    properties: tuple[tuple[str, str], ...] = field(default=(), converter=_properties)


class PeerService(Service):
    """
    Runs a L{PeerEndpoint} for as long as the service runs.

    Starting registers with the introducer; while that fails (introducer
    down, port closed, our port taken...) it tries again after a growing
    delay, logging why and when.  Once registered it hosts C{host} (if
    given), and checks every C{check_interval} seconds that the session is
    still hosted: the endpoint hosts it again itself after an introducer
    restart, and this service hosts it again if that failed.  Stopping
    withdraws the session, stops the endpoint and fires once its socket is
    closed; starting again registers and hosts again.

    @param endpoint: the L{PeerEndpoint} to run (not started).
    @param host: the session to host, or None.
    @param retry_delay: C{attempt -> seconds} before the next start
        attempt (C{attempt} counts failures from 1); the default grows
        from 1 s by half each time up to 60 s, with up to 1 s of jitter.
    @param check_interval: seconds between checks that C{host} is hosted.
    """

    log = Logger()

    def __init__(
        self,
        endpoint,
        host: SessionSpec | None = None,
        *,
        retry_delay: Callable[[int], float] | None = None,
        check_interval: float = 30.0,
    ) -> None:
        self.endpoint = endpoint
        self.host = host
        self.clock = endpoint.clock
        self.retry_delay = retry_delay if retry_delay is not None else backoffPolicy(jitter=random.Random().random)
        self.check_interval = check_interval
        #: The last L{Registration}, or None before the first.
        self.registration: Registration | None = None
        self._failures = 0
        self._retry = None
        self._check = None
        self._starting: Deferred | None = None
        self._hosting: Deferred | None = None
        self._waiting: list[Deferred] = []
        self._watches: list[LobbyWatch] = []
        self._generation = 0

    # -- what a game asks -------------------------------------------------

    @property
    def registered(self) -> bool:
        """
        Whether the endpoint is registered now (and, with C{host}, the
        session hosted).
        """
        return self.running and self.registration is not None and (self.host is None or self.session is not None)

    @property
    def session(self) -> HostedSession | None:
        """
        The hosted session as the introducer knows it now (its id changes
        when it is hosted again), or None.
        """
        if self.host is None or self.registration is None:
            return None
        for session in self.endpoint.hosted_sessions:
            if (session.name, session.game_id) == (self.host.name, self.host.game_id):
                return session
        return None

    def when_ready(self) -> Deferred:
        """
        @return: a Deferred firing with the endpoint once it is registered
            (and C{host} hosted); at once if it is.  It fails with
            L{P2PError} if the service stops first.
        """
        if self.registered:
            return succeed(self.endpoint)
        d = Deferred()
        self._waiting.append(d)
        return d

    def watch_lobby(
        self, callback: Callable[[list], None], game_id: str | None = None, interval: float = 5.0
    ) -> LobbyWatch:
        """
        Call C{callback(sessions)} with the sessions (of C{game_id}) every
        C{interval} seconds while registered (see L{LobbyWatch}).
        """
        watch = LobbyWatch(self, callback, game_id, interval)
        self._watches.append(watch)
        if self.running:
            watch.start()
        return watch

    # -- IService ---------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        self._generation += 1
        self._failures = 0
        self._attempt()
        for watch in self._watches:
            watch.start()

    def stopService(self) -> Deferred:
        """
        Withdraw the session, stop the endpoint.

        @return: a Deferred firing once the endpoint's socket is closed.
        """
        Service.stopService(self)
        self._generation += 1
        for call in (self._retry, self._check):
            if call is not None and call.active():
                call.cancel()
        self._retry = self._check = None
        for watch in self._watches:
            watch.pause()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(Failure(P2PError("the peer service stopped")))
        session = self.session
        if session is not None:
            self.endpoint.unhost_session(session)
        self.registration = None
        self._starting = self._hosting = None
        return self.endpoint.stop()

    # -- starting and hosting ---------------------------------------------

    def _attempt(self) -> None:
        self._retry = None
        generation = self._generation
        self.log.info(
            "registering with {introducer} as {peer_id}",
            introducer=str(self.endpoint.introducer),
            peer_id=self.endpoint.peer_id,
        )
        self._starting = d = self.endpoint.start()

        def started(registration: Registration) -> None:
            if generation != self._generation:
                return
            self._starting = None
            self._failures = 0
            self.registration = registration
            self._check = self.clock.callLater(self.check_interval, self._check_hosted)
            if self.host is not None:
                self._host(generation)
            else:
                self._ready()

        def failed(reason: Failure) -> None:
            if generation != self._generation:
                return
            self._starting = None
            self._failures += 1
            delay = self.retry_delay(self._failures)
            self.log.warn(
                "could not register with {introducer}: {error}; retrying in {delay:.1f} s (attempt {attempt})",
                introducer=str(self.endpoint.introducer),
                error=str(reason.value) or type(reason.value).__name__,
                delay=delay,
                attempt=self._failures + 1,
            )
            self._retry = self.clock.callLater(delay, self._attempt)

        d.addCallbacks(started, failed)

    def _host(self, generation: int) -> None:
        spec = self.host
        self._hosting = d = self.endpoint.host_session(
            spec.name, spec.game_id, spec.max_players, spec.mesh, dict(spec.properties)
        )

        def hosted(session: HostedSession) -> None:
            if generation != self._generation:
                return
            self._hosting = None
            self.log.info("hosting {name!r}", name=session.name)
            self._ready()

        def failed(reason: Failure) -> None:
            if generation != self._generation:
                return
            self._hosting = None
            self.log.warn(
                "could not host {name!r}: {error}; trying again in {delay:.0f} s",
                name=spec.name,
                error=str(reason.value),
                delay=self.check_interval,
            )

        d.addCallbacks(hosted, failed)

    def _check_hosted(self) -> None:
        generation = self._generation
        self._check = self.clock.callLater(self.check_interval, self._check_hosted)
        if self.host is None or self._hosting is not None or self.session is not None:
            return
        if not self.endpoint.is_registered:
            # Registering again (the introducer is away or restarted); the
            # endpoint hosts its sessions again itself once it is back.
            return
        self.log.info("{name!r} is no longer hosted; hosting it again", name=self.host.name)
        self._host(generation)

    def _ready(self) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(self.endpoint)


class LobbyWatch:
    """
    Lists sessions every C{interval} seconds while its L{PeerService} is
    registered, and calls C{callback(sessions)} with each list (a failed
    listing is logged and skipped; one listing at a time).  Made by
    L{PeerService.watch_lobby}; L{stop} ends it.
    """

    log = Logger()

    def __init__(self, service: PeerService, callback, game_id: str | None, interval: float) -> None:
        self.service = service
        self.callback = callback
        self.game_id = game_id
        self.interval = interval
        self._call = None
        self._listing = False
        self._stopped = False

    def start(self) -> None:
        if not self._stopped and self._call is None:
            self._call = self.service.clock.callLater(0, self._tick)

    def pause(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def stop(self) -> None:
        """
        No more listings.
        """
        self._stopped = True
        self.pause()
        if self in self.service._watches:
            self.service._watches.remove(self)

    def _tick(self) -> None:
        self._call = self.service.clock.callLater(self.interval, self._tick)
        if self._listing or not self.service.registered:
            return
        self._listing = True
        d = self.service.endpoint.list_sessions(self.game_id)

        def listed(sessions: list) -> None:
            if self._call is not None:
                self.callback(sessions)

        def failed(reason: Failure) -> None:
            self.log.info("could not list sessions: {error}", error=str(reason.value))

        d.addCallbacks(listed, failed)
        d.addBoth(lambda _: setattr(self, "_listing", False))
