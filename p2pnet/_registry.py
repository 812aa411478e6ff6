"""
The introducer's registry: registrations, sessions and who to introduce.

Pure bookkeeping: no I/O, no clock.  Every call that depends on time takes
C{now}; the introducer protocol passes its clock's time.  Refusals raise
L{RegistryError} with a wire error code and a short reason.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from typing import Callable, Iterator

from attrs import define, field

from p2pnet.address import Address
from p2pnet.wire import ErrorCode

MAX_LOCAL_ADDRESSES = 8
MAX_PEER_ID = 64
MAX_PROPERTIES = 16


class RegistryError(Exception):
    """
    A request the registry refuses.

    @ivar code: an L{ErrorCode}.
    @ivar reason: a short explanation for the requester.
    """

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


#: Round trips measured longer than this are taken for a lost and
#: retransmitted confirmation, not the path, and are not kept.
MAX_RTT = 2.0


def _round_trip(registered: float, confirmed: float) -> float | None:
    rtt = confirmed - registered
    return rtt if 0.0 <= rtt <= MAX_RTT else None


@define(slots=True, eq=False)
class Registration:
    """
    One registered host.

    @ivar public: the source address of its latest registration or
        heartbeat, as seen in the UDP header.
    @ivar verified: whether the host has shown it receives at C{public}
        (it echoed its cookie from there); only verified hosts are sent
        introductions they did not ask for.
    @ivar rtt: seconds from its latest registration to the heartbeat that
        confirmed it (the client sends that at once): the host's round
        trip to the introducer, or None if not measured (or implausible).
    @ivar sessions: ids of the sessions it hosts, or None.
    @ivar joined: ids of the sessions it joined, or None.
    """

    peer_id: str
    public: Address
    local: tuple[Address, ...]
    cookie: bytes
    refreshed: float
    verified: bool = False
    nat: int | None = None
    rtt: float | None = None
    sessions: set[bytes] | None = None
    joined: set[bytes] | None = None
    #: The introducer's cache for answering heartbeats: the answer's bytes
    #: after the transaction id, valid while C{public} is C{ack_for} (the
    #: same object; two slots cost less memory than a tuple).
    ack_for: Address | None = field(default=None, repr=False)
    ack_tail: bytes = field(default=b"", repr=False)


@define(slots=True, eq=False)
class Session:
    """
    A hosted session.  C{members} excludes the host.
    """

    session_id: bytes
    host: str
    name: str
    game_id: str
    max_players: int
    mesh: bool
    properties: tuple[tuple[str, str], ...]
    members: list[str] = field(factory=list)

    @property
    def players(self) -> int:
        return 1 + len(self.members)


class Registry:
    """
    Registrations keyed by peer id, and the sessions they host.

    Registrations expire C{lifetime} seconds after their last refresh.  All
    share one lifetime, so insertion order (refreshed ones move to the end)
    is expiry order and L{expire} only looks at the ones that are due.

    @param lifetime: seconds a registration lives without a heartbeat.
    @param random_bytes: C{n -> bytes}, the source of cookies and ids
        (tests pass a seeded one).
    """

    def __init__(
        self,
        lifetime: float,
        random_bytes: Callable[[int], bytes],
        max_sessions_per_peer: int = 4,
    ) -> None:
        self.lifetime = lifetime
        self._random_bytes = random_bytes
        self._max_sessions_per_peer = max_sessions_per_peer
        self._peers: OrderedDict[str, Registration] = OrderedDict()
        self._sessions: dict[bytes, Session] = {}

    def __len__(self) -> int:
        return len(self._peers)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    # -- registrations --------------------------------------------------

    def register(
        self,
        peer_id: str,
        public: Address,
        local: tuple[Address, ...],
        cookie: bytes | None,
        now: float,
    ) -> Registration:
        """
        Add or refresh a registration.

        A peer id already registered from another public address may only
        be taken over with its cookie (the host's NAT rebinding); its
        sessions survive.  A live registration from the same address may
        re-register without the cookie (a restarted client).

        @raise RegistryError: C{BAD_REQUEST} or C{PEER_ID_TAKEN}.
        """
        if not peer_id or len(peer_id.encode("utf-8")) > MAX_PEER_ID:
            raise RegistryError(ErrorCode.BAD_REQUEST, "peer id must be 1-64 bytes of UTF-8")
        if len(local) > MAX_LOCAL_ADDRESSES:
            raise RegistryError(ErrorCode.BAD_REQUEST, "too many local addresses")
        existing = self._live(peer_id, now)
        if existing is not None:
            owner = cookie is not None and hmac.compare_digest(cookie, existing.cookie)
            if not owner and existing.public != public:
                raise RegistryError(ErrorCode.PEER_ID_TAKEN, f"peer id {peer_id!r} is taken")
            if existing.public != public:
                existing.public = public
                existing.verified = owner
            existing.local = local
            existing.refreshed = now
            self._peers.move_to_end(peer_id)
            return existing
        registration = Registration(
            peer_id=peer_id,
            public=public,
            local=local,
            cookie=self._random_bytes(8),
            refreshed=now,
        )
        self._peers[peer_id] = registration
        return registration

    def authenticate(self, peer_id: str, cookie: bytes, source: Address, now: float) -> Registration:
        """
        The live registration C{peer_id}, if C{cookie} is its cookie.

        A request with the right cookie from C{source} proves the host
        receives there: the registration is marked verified and, if C{source}
        differs from the recorded public address, re-bound to it.

        @raise RegistryError: C{NOT_REGISTERED} if unknown or expired,
            C{NOT_AUTHORISED} for a wrong cookie.
        """
        return self._admit(self._live(peer_id, now), peer_id, cookie, source)

    def _admit(
        self, registration: Registration | None, peer_id: str, cookie: bytes, source: Address
    ) -> Registration:
        """
        L{authenticate}'s checks and updates, on the live registration
        already looked up.
        """
        if registration is None:
            raise RegistryError(ErrorCode.NOT_REGISTERED, f"{peer_id!r} is not registered")
        if not hmac.compare_digest(cookie, registration.cookie):
            raise RegistryError(ErrorCode.NOT_AUTHORISED, "wrong cookie")
        if registration.public != source:
            registration.public = source
        registration.verified = True
        return registration

    def heartbeat(self, peer_id: str, cookie: bytes, source: Address, now: float) -> Registration:
        """
        Refresh a registration (see L{authenticate} for the checks).
        """
        registration = self._live(peer_id, now)
        confirming = registration is not None and not registration.verified
        registration = self._admit(registration, peer_id, cookie, source)
        if confirming:
            registration.rtt = _round_trip(registration.refreshed, now)
        registration.refreshed = now
        self._peers.move_to_end(peer_id)
        return registration

    def refresh(self, peer_id: str, cookie: bytes, host: str, port: int, now: float) -> Registration | None:
        """
        L{heartbeat} for the common case only: a live registration, the
        right cookie, from the public address on record.  Returns None,
        changing nothing, for anything else (the caller then uses
        L{heartbeat}, which explains the refusal or re-binds the address).
        """
        registration = self._peers.get(peer_id)
        if (
            registration is None
            or registration.refreshed <= now - self.lifetime
            or registration.public.port != port
            or registration.public.host != host
            or not hmac.compare_digest(cookie, registration.cookie)
        ):
            return None
        if not registration.verified:
            registration.verified = True
            registration.rtt = _round_trip(registration.refreshed, now)
        registration.refreshed = now
        self._peers.move_to_end(peer_id)
        return registration

    def unregister(self, peer_id: str, cookie: bytes, source: Address, now: float) -> Registration:
        """
        Remove a registration and everything it hosts or joined.
        """
        registration = self.authenticate(peer_id, cookie, source, now)
        self._remove(registration)
        return registration

    def lookup(self, peer_id: str, now: float) -> Registration | None:
        """
        The live registration for C{peer_id}, or None.
        """
        return self._live(peer_id, now)

    def expire(self, now: float) -> list[Registration]:
        """
        Remove and return the registrations whose lifetime has run out.
        """
        expired = []
        deadline = now - self.lifetime
        peers = self._peers
        while peers:
            registration = next(iter(peers.values()))
            if registration.refreshed > deadline:
                break
            self._remove(registration)
            expired.append(registration)
        return expired

    def _live(self, peer_id: str, now: float) -> Registration | None:
        registration = self._peers.get(peer_id)
        if registration is None:
            return None
        if registration.refreshed <= now - self.lifetime:
            self._remove(registration)
            return None
        return registration

    def _remove(self, registration: Registration) -> None:
        self._peers.pop(registration.peer_id, None)
        for session_id in list(registration.sessions or ()):
            self._sessions.pop(session_id, None)
        for session_id in registration.joined or ():
            session = self._sessions.get(session_id)
            if session is not None and registration.peer_id in session.members:
                session.members.remove(registration.peer_id)

    # -- sessions -------------------------------------------------------

    def host_session(
        self,
        host: Registration,
        name: str,
        game_id: str,
        max_players: int,
        mesh: bool,
        properties: tuple[tuple[str, str], ...],
    ) -> Session:
        """
        Create a session hosted by an authenticated registration.

        @raise RegistryError: C{BAD_REQUEST} or C{TOO_MANY_SESSIONS}.
        """
        if not name:
            raise RegistryError(ErrorCode.BAD_REQUEST, "session name is empty")
        if not 2 <= max_players <= 1024:
            raise RegistryError(ErrorCode.BAD_REQUEST, "max players must be 2-1024")
        if len(properties) > MAX_PROPERTIES:
            raise RegistryError(ErrorCode.BAD_REQUEST, "too many properties")
        if host.sessions is None:
            host.sessions = set()
        if len(host.sessions) >= self._max_sessions_per_peer:
            raise RegistryError(ErrorCode.TOO_MANY_SESSIONS, "too many sessions hosted")
        session_id = self._random_bytes(8)
        while session_id in self._sessions:
            session_id = self._random_bytes(8)
        session = Session(session_id, host.peer_id, name, game_id, max_players, mesh, properties)
        self._sessions[session_id] = session
        host.sessions.add(session_id)
        return session

    def unhost(self, host: Registration, session_id: bytes) -> Session:
        """
        Withdraw a session its host hosts.

        @raise RegistryError: C{UNKNOWN_SESSION}.
        """
        session = self._sessions.get(session_id)
        if session is None or session.host != host.peer_id:
            raise RegistryError(ErrorCode.UNKNOWN_SESSION, "no such session hosted by you")
        del self._sessions[session_id]
        if host.sessions is not None:
            host.sessions.discard(session_id)
        return session

    def sessions(self, game_id: str | None = None) -> Iterator[Session]:
        """
        Hosted sessions in creation order, optionally of one game.
        """
        for session in self._sessions.values():
            if game_id is None or session.game_id == game_id:
                yield session

    def join(self, joiner: Registration, session_id: bytes, now: float) -> tuple[Session, list[Registration]]:
        """
        Add C{joiner} to a session and say who it must be introduced to:
        the host only, or in a mesh session every member and the host.

        @raise RegistryError: C{UNKNOWN_SESSION} or C{SESSION_FULL}.
        """
        session = self._sessions.get(session_id)
        if session is None:
            raise RegistryError(ErrorCode.UNKNOWN_SESSION, "no such session")
        host = self._live(session.host, now)
        if host is None:
            raise RegistryError(ErrorCode.UNKNOWN_SESSION, "the session's host is gone")
        if session_id not in (joiner.joined or ()) and joiner.peer_id != session.host:
            if session.players >= session.max_players:
                raise RegistryError(
                    ErrorCode.SESSION_FULL,
                    f"session is full ({session.players}/{session.max_players})",
                )
            session.members.append(joiner.peer_id)
            if joiner.joined is None:
                joiner.joined = set()
            joiner.joined.add(session_id)
        targets = [host]
        if session.mesh:
            for member_id in list(session.members):
                member = self._live(member_id, now)
                if member is not None and member is not joiner:
                    targets.append(member)
        return session, [t for t in targets if t is not joiner]
