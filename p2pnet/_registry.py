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

from p2pnet._lobby import Lobby, MemoryLobby
from p2pnet._names import name_problem
from p2pnet.address import Address
from p2pnet.wire import CHALLENGE_SIZE, MAX_CURSOR, MAX_DATAGRAM, MAX_STRING, ErrorCode, SessionInfo, proof_tag

MAX_LOCAL_ADDRESSES = 8
MAX_PEER_ID = 64
MAX_PROPERTIES = 16
#: The largest encoded session entry: one always fits a full page (a
#: 1,200-byte SessionList with its fixed fields and an AUTH field).
#: (Fixed fields: the header, TOTAL and the longest CURSOR.)
MAX_SESSION_ENTRY = MAX_DATAGRAM - (10 + 7 + 3 + MAX_CURSOR) - 19 - 3

#: Seconds a challenge can be answered, and how many may wait at once
#: (in all, and per peer id).
CHALLENGE_LIFETIME = 10.0
MAX_CHALLENGES = 4096
MAX_CHALLENGES_PER_PEER = 4


def _bounded(reason: str) -> str:
    """
    C{reason} cut to fit a wire string (255 bytes of UTF-8).
    """
    raw = reason.encode("utf-8")
    if len(raw) <= MAX_STRING:
        return reason
    return raw[: MAX_STRING - 3].decode("utf-8", "ignore") + "..."


class RegistryError(Exception):
    """
    A request the registry refuses.

    @ivar code: an L{ErrorCode}.
    @ivar reason: a short explanation for the requester.
    """

    def __init__(self, code: ErrorCode, reason: str) -> None:
        reason = _bounded(reason)
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ChallengeNeeded(RegistryError):
    """
    The request would move a registration to a new address, or take a
    name back after a restart: nothing changed; the requester must answer
    a challenge from that address first (L{Registry.challenge}).

    @ivar registration: the registration concerned.
    @ivar kind: C{"move"} (the cookie was right; C{"alternate"}: from the
        other family), C{"reclaim"} (same key, no or a stale cookie).
    """

    def __init__(
        self,
        registration: Registration,
        kind: str,
        local: tuple[Address, ...] = (),
        nat: int | None = None,
    ) -> None:
        super().__init__(ErrorCode.NOT_AUTHORISED, "prove your key from your new address")
        self.registration = registration
        self.kind = kind
        self.local = local
        self.nat = nat


@define(slots=True, eq=False)
class PendingChallenge:
    """
    A challenge sent and not yet answered.
    """

    peer_id: str
    address: Address
    kind: str
    registration: Registration
    local: tuple[Address, ...]
    nat: int | None
    sent: float


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
    @ivar peer_key: the static X25519 public key the peer id is bound to
        while this registration lives, or None (a registration without a
        key: its cookie is its only proof).
    @ivar proof_key: the key proofs are checked with, computed on the
        first proof (the X25519 shared secret is not computed per
        heartbeat).
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
    peer_key: bytes | None = field(default=None, repr=False)
    proof_key: bytes | None = field(default=None, repr=False)
    alternate: Address | None = None  #: its proven address of the other family (docs/ipv6.md)


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
    #: Joiners that have not yet acknowledged their introduction: peer id
    #: -> when their reservation lapses.  They hold a slot until then.
    pending: dict[str, float] = field(factory=dict)
    #: The source IP of the host when it hosted (for the per-IP cap).
    ip: str = ""
    #: Its place in the lobby's order (set by the L{Lobby}; None unlisted).
    lobby_key: int | None = None
    #: Its encoded lobby entry around the player count (the lobby's cache).
    lobby_entry: tuple[bytes, bytes] | None = field(default=None, repr=False)
    #: The host is relay-only: joiners are not told its addresses.
    relay_only: bool = False

    @property
    def players(self) -> int:
        return 1 + len(self.members)


class Registry:
    """
    Registrations keyed by peer id, and the sessions they host.

    Registrations expire C{lifetime} seconds after their last refresh.  All
    share one lifetime, so insertion order (refreshed ones move to the end)
    is expiry order and L{expire} only looks at the ones that are due.

    A registration moves to a new address only after a challenge answered
    from there (L{challenge}, L{prove}): a request from elsewhere, even
    with the right cookie, moves nothing by itself.

    Registrations are capped in all (C{max_registrations}) and per source
    IP (C{max_per_ip}).  At a cap, the oldest unconfirmed registration (one
    that never showed it receives at its address: a spoofed source, or a
    host one round trip into registering) makes room; confirmed ones are
    never evicted, and when there is nothing to evict the new one is
    refused with C{RATE_LIMITED}.

    @param lifetime: seconds a registration lives without a heartbeat.
    @param random_bytes: C{n -> bytes}, the source of cookies and ids
        (tests pass a seeded one).
    @param lobby: where hosted sessions are listed (default: a
        L{MemoryLobby}).
    """

    def __init__(
        self,
        lifetime: float,
        random_bytes: Callable[[int], bytes],
        max_sessions_per_peer: int = 4,
        max_registrations: int = 200_000,
        max_per_ip: int = 1024,
        max_sessions: int = 50_000,
        max_sessions_per_ip: int = 64,
        lobby: Lobby | None = None,
    ) -> None:
        self.lifetime = lifetime
        self._random_bytes = random_bytes
        self._max_sessions_per_peer = max_sessions_per_peer
        self.max_registrations = max_registrations
        self.max_per_ip = max_per_ip
        self.max_sessions = max_sessions
        self.max_sessions_per_ip = max_sessions_per_ip
        self._sessions_per_ip: dict[str, int] = {}
        self.lobby: Lobby = lobby if lobby is not None else MemoryLobby()
        self._peers: OrderedDict[str, Registration] = OrderedDict()
        self._sessions: dict[bytes, Session] = {}
        # Unconfirmed registrations, oldest first.
        self._unverified: OrderedDict[str, Registration] = OrderedDict()
        self._per_ip: dict[str, int] = {}
        self._challenges: OrderedDict[bytes, PendingChallenge] = OrderedDict()
        # Proven challenges: value -> (peer id, address, registration, kind).
        self._answered: OrderedDict[bytes, tuple] = OrderedDict()
        self._challenges_per_peer: dict[str, int] = {}
        self._peak = 0

    def __len__(self) -> int:
        return len(self._peers)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def challenge_count(self) -> int:
        return len(self._challenges)

    # -- registrations --------------------------------------------------

    def register(
        self,
        peer_id: str,
        public: Address,
        local: tuple[Address, ...],
        cookie: bytes | None,
        now: float,
        peer_key: bytes | None = None,
        nat: int | None = None,
    ) -> Registration:
        """
        Add or refresh a registration.

        A live registration refreshes from its own address with its cookie,
        or, without a key, from its own address without the cookie (a
        restarted client).  From another address, or with the same key but
        no cookie (a restarted host), L{ChallengeNeeded} is raised: the
        name moves once the challenge is answered.  A live, confirmed
        registration bound to another key (or without a key, to anyone
        without its cookie) is refused C{PEER_ID_TAKEN}; an unconfirmed one
        gives way to the new registration.

        @raise RegistryError: C{BAD_REQUEST}, C{PEER_ID_TAKEN},
            C{RATE_LIMITED} (caps), or L{ChallengeNeeded}.
        """
        if name_problem(peer_id, "peer id", MAX_PEER_ID) is not None:
            # Control characters too: a newline in a name would forge log lines.
            raise RegistryError(ErrorCode.BAD_REQUEST, "peer id must be 1-64 bytes of UTF-8, no control characters")
        if len(local) > MAX_LOCAL_ADDRESSES:
            raise RegistryError(ErrorCode.BAD_REQUEST, "too many local addresses")
        existing = self._live(peer_id, now)
        if existing is not None:
            owner = cookie is not None and hmac.compare_digest(cookie, existing.cookie)
            same_key = existing.peer_key == peer_key
            here = existing.public == public
            # The same key and address, not yet confirmed: our answer was
            # lost; answer again (nothing moves).
            retransmitted = same_key and here and not existing.verified
            if same_key and here and (owner or peer_key is None or retransmitted):
                existing.local = local
                if nat is not None:
                    existing.nat = nat
                existing.refreshed = now
                self._peers.move_to_end(peer_id)
                return existing
            if same_key and (owner or peer_key is not None):
                raise ChallengeNeeded(existing, "move" if owner else "reclaim", local, nat)
            if existing.verified or owner:
                raise RegistryError(ErrorCode.PEER_ID_TAKEN, f"peer id {peer_id!r} is taken")
            # An unconfirmed holder (perhaps a spoofed Register) gives way.
            self._remove(existing)
        self._make_room(public.host)
        registration = Registration(
            peer_id=peer_id,
            public=public,
            local=local,
            cookie=self._random_bytes(8),
            refreshed=now,
            nat=nat,
            peer_key=peer_key,
        )
        self._add(registration)
        return registration

    #: How many of the oldest unconfirmed registrations are searched for
    #: one from an IP at its cap.
    EVICTION_SCAN = 256

    def _make_room(self, ip: str) -> None:
        if self._per_ip.get(ip, 0) >= self.max_per_ip:
            for _, registration in zip(range(self.EVICTION_SCAN), self._unverified.values()):
                if registration.public.host == ip:
                    self._remove(registration)
                    break
            else:
                raise RegistryError(ErrorCode.RATE_LIMITED, "too many registrations from your address")
        if len(self._peers) >= self.max_registrations:
            if not self._unverified:
                raise RegistryError(ErrorCode.RATE_LIMITED, "the introducer is full")
            self._remove(next(iter(self._unverified.values())))

    def _add(self, registration: Registration) -> None:
        peer_id = registration.peer_id
        ip = registration.public.host
        self._peers[peer_id] = registration
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        if not registration.verified:
            self._unverified[peer_id] = registration
        if len(self._peers) > self._peak:
            self._peak = len(self._peers)

    def _confirm(self, registration: Registration) -> None:
        """
        Mark a registration confirmed: it is no longer evictable.
        """
        if registration.verified:
            return
        registration.verified = True
        self._forget_unverified(registration)

    def _forget_unverified(self, registration: Registration) -> None:
        self._unverified.pop(registration.peer_id, None)

    def _move(self, registration: Registration, public: Address) -> None:
        old_ip, new_ip = registration.public.host, public.host
        if old_ip != new_ip:
            self._uncount(old_ip)
            self._per_ip[new_ip] = self._per_ip.get(new_ip, 0) + 1
        registration.public = public
        if registration.alternate is not None and registration.alternate.is_ipv6 == public.is_ipv6:
            registration.alternate = None

    def _uncount(self, ip: str) -> None:
        left = self._per_ip.get(ip, 0) - 1
        if left > 0:
            self._per_ip[ip] = left
        else:
            self._per_ip.pop(ip, None)

    def authenticate(self, peer_id: str, cookie: bytes, source: Address, now: float) -> Registration:
        """
        The live registration C{peer_id}, if C{cookie} is its cookie and
        C{source} its address.

        A request with the right cookie from the registered address proves
        the host receives there: the registration is marked verified.

        @raise RegistryError: C{NOT_REGISTERED} if unknown or expired,
            C{NOT_AUTHORISED} for a wrong cookie, L{ChallengeNeeded} from
            another address.
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
            raise ChallengeNeeded(registration, "move")
        self._confirm(registration)
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
        L{heartbeat}, which explains the refusal or asks for a proof).
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
            self._confirm(registration)
            registration.rtt = _round_trip(registration.refreshed, now)
        registration.refreshed = now
        self._peers.move_to_end(peer_id)
        return registration

    # -- moving a registration: challenge and proof ------------------------

    def challenge(self, needed: ChallengeNeeded, address: Address, now: float) -> bytes:
        """
        A fresh single-use challenge for C{needed}, to be sent to
        C{address} (the request's source).  At most
        L{MAX_CHALLENGES_PER_PEER} wait per peer id and L{MAX_CHALLENGES}
        in all; the oldest give way.
        """
        self._expire_challenges(now)
        peer_id = needed.registration.peer_id
        if self._challenges_per_peer.get(peer_id, 0) >= MAX_CHALLENGES_PER_PEER:
            for value, entry in self._challenges.items():
                if entry.peer_id == peer_id:
                    self._drop_challenge(value)
                    break
        while len(self._challenges) >= MAX_CHALLENGES:
            self._drop_challenge(next(iter(self._challenges)))
        value = self._random_bytes(CHALLENGE_SIZE)
        self._challenges[value] = PendingChallenge(
            peer_id, address, needed.kind, needed.registration, needed.local, needed.nat, now
        )
        self._challenges_per_peer[peer_id] = self._challenges_per_peer.get(peer_id, 0) + 1
        return value

    def _drop_challenge(self, value: bytes) -> PendingChallenge | None:
        entry = self._challenges.pop(value, None)
        if entry is not None:
            left = self._challenges_per_peer.get(entry.peer_id, 0) - 1
            if left > 0:
                self._challenges_per_peer[entry.peer_id] = left
            else:
                self._challenges_per_peer.pop(entry.peer_id, None)
        return entry

    def _expire_challenges(self, now: float) -> None:
        deadline = now - CHALLENGE_LIFETIME
        challenges = self._challenges
        while challenges:
            value, entry = next(iter(challenges.items()))
            if entry.sent > deadline:
                break
            self._drop_challenge(value)

    def prove(
        self,
        peer_id: str,
        challenge: bytes,
        proof: bytes,
        source: Address,
        now: float,
        exchange: Callable[[bytes], bytes] | None,
    ) -> tuple[Registration, str]:
        """
        Check the answer to a challenge and, if right, carry out what it
        was for: move the registration to C{source} (keeping its cookie and
        sessions), or, for a reclaim, replace it by a fresh registration
        (new cookie) bound to the same key.

        @param exchange: C{peer public key -> X25519 shared secret} with
            the introducer's static key; None if the introducer has none.
        @return: the registration and the challenge's kind.
        @raise RegistryError: C{NOT_AUTHORISED} for an unknown, expired,
            used or misdirected challenge or a wrong proof.
        """
        self._expire_challenges(now)
        entry = self._challenges.get(challenge)
        if entry is None:
            done = self._answered.get(challenge)
            if (
                done is not None
                and done[0] == peer_id
                and done[1] == source
                and done[2] is self._live(peer_id, now)
                and source in (done[2].public, done[2].alternate)
            ):
                # The same proof again (our answer to it was lost): the
                # result again, nothing changes.
                key = self._proof_key(done[2], exchange)
                if hmac.compare_digest(proof, proof_tag(key, challenge, peer_id, source)):
                    return done[2], done[3]
        if entry is None or entry.peer_id != peer_id or entry.address != source:
            raise RegistryError(ErrorCode.NOT_AUTHORISED, "unknown or expired challenge")
        registration = self._live(peer_id, now)
        if registration is not entry.registration:
            self._drop_challenge(challenge)
            raise RegistryError(ErrorCode.NOT_AUTHORISED, "the registration changed")
        key = self._proof_key(registration, exchange)
        if not hmac.compare_digest(proof, proof_tag(key, challenge, peer_id, source)):
            raise RegistryError(ErrorCode.NOT_AUTHORISED, "wrong proof")
        self._drop_challenge(challenge)
        rtt = _round_trip(entry.sent, now)
        if entry.kind == "alternate":
            registration.alternate = source
            self._remember_answered(challenge, peer_id, source, registration, entry.kind)
            return registration, entry.kind
        if entry.kind == "move":
            self._move(registration, source)
            self._confirm(registration)
            registration.refreshed = now
            self._peers.move_to_end(peer_id)
            self._remember_answered(challenge, peer_id, source, registration, entry.kind)
            return registration, entry.kind
        self._remove(registration)
        fresh = Registration(
            peer_id=peer_id,
            public=source,
            local=entry.local,
            cookie=self._random_bytes(8),
            refreshed=now,
            verified=True,
            nat=entry.nat,
            rtt=rtt,
            peer_key=registration.peer_key,
            proof_key=registration.proof_key,
        )
        self._add(fresh)
        self._remember_answered(challenge, peer_id, source, fresh, entry.kind)
        return fresh, entry.kind

    def _remember_answered(self, challenge: bytes, peer_id: str, source: Address, registration, kind: str) -> None:
        """
        Keep a proven challenge's result (capped like the challenges), so
        that the same proof sent again gets the same answer.
        """
        answered = self._answered
        while len(answered) >= MAX_CHALLENGES:
            answered.popitem(last=False)
        answered[challenge] = (peer_id, source, registration, kind)

    def _proof_key(self, registration: Registration, exchange: Callable[[bytes], bytes] | None) -> bytes:
        if registration.peer_key is None:
            return registration.cookie
        if registration.proof_key is None:
            if exchange is None:
                raise RegistryError(ErrorCode.NOT_AUTHORISED, "this introducer has no key")
            try:
                registration.proof_key = exchange(registration.peer_key)
            except ValueError:
                raise RegistryError(ErrorCode.NOT_AUTHORISED, "unusable peer key") from None
        return registration.proof_key

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
        Tables that shrank to a quarter of their peak are rebuilt, so the
        memory of a flood is given back once it expires.
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
        self._expire_challenges(now)
        if self._peak > 1024 and len(self._peers) * 4 < self._peak:
            self._compact()
        return expired

    def _compact(self) -> None:
        # Python dicts never shrink when emptied; copies are sized to fit.
        self._peers = OrderedDict(self._peers)
        self._unverified = OrderedDict(self._unverified)
        self._per_ip = dict(self._per_ip)
        self._sessions = dict(self._sessions)
        self._sessions_per_ip = dict(self._sessions_per_ip)
        self._challenges = OrderedDict(self._challenges)
        self._challenges_per_peer = dict(self._challenges_per_peer)
        self._peak = len(self._peers)

    def _live(self, peer_id: str, now: float) -> Registration | None:
        registration = self._peers.get(peer_id)
        if registration is None:
            return None
        if registration.refreshed <= now - self.lifetime:
            self._remove(registration)
            return None
        return registration

    def _remove(self, registration: Registration) -> None:
        if self._peers.get(registration.peer_id) is not registration:
            return
        del self._peers[registration.peer_id]
        self._forget_unverified(registration)
        self._uncount(registration.public.host)
        for session_id in list(registration.sessions or ()):
            self._drop_session(session_id)
        for session_id in registration.joined or ():
            session = self._sessions.get(session_id)
            if session is not None:
                session.pending.pop(registration.peer_id, None)
                if registration.peer_id in session.members:
                    session.members.remove(registration.peer_id)

    def _drop_session(self, session_id: bytes) -> Session | None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self.lobby.remove(session)
            left = self._sessions_per_ip.get(session.ip, 0) - 1
            if left > 0:
                self._sessions_per_ip[session.ip] = left
            else:
                self._sessions_per_ip.pop(session.ip, None)
        return session

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
        if name_problem(name, "session name", MAX_STRING) is not None or (
            game_id and name_problem(game_id, "game id", MAX_STRING) is not None
        ):
            raise RegistryError(ErrorCode.BAD_REQUEST, "session name or game id holds control characters")
        if not 2 <= max_players <= 1024:
            raise RegistryError(ErrorCode.BAD_REQUEST, "max players must be 2-1024")
        if len(properties) > MAX_PROPERTIES:
            raise RegistryError(ErrorCode.BAD_REQUEST, "too many properties")
        try:
            size = len(SessionInfo(bytes(8), name, game_id, host.peer_id, 1, max_players, mesh, properties).encode_value())
        except ValueError:
            raise RegistryError(ErrorCode.BAD_REQUEST, "a session field is too long") from None
        if size > MAX_SESSION_ENTRY:
            raise RegistryError(
                ErrorCode.BAD_REQUEST,
                f"session entry too large to list: {size} bytes of name, game and properties "
                f"(at most {MAX_SESSION_ENTRY})",
            )
        if host.sessions is None:
            host.sessions = set()
        if len(host.sessions) >= self._max_sessions_per_peer:
            raise RegistryError(ErrorCode.TOO_MANY_SESSIONS, "too many sessions hosted")
        ip = host.public.host
        if self._sessions_per_ip.get(ip, 0) >= self.max_sessions_per_ip:
            raise RegistryError(ErrorCode.TOO_MANY_SESSIONS, "too many sessions hosted from your address")
        if len(self._sessions) >= self.max_sessions:
            raise RegistryError(ErrorCode.TOO_MANY_SESSIONS, "the introducer holds too many sessions")
        session_id = self._random_bytes(8)
        while session_id in self._sessions:
            session_id = self._random_bytes(8)
        session = Session(session_id, host.peer_id, name, game_id, max_players, mesh, properties, ip=ip)
        self._sessions[session_id] = session
        self._sessions_per_ip[ip] = self._sessions_per_ip.get(ip, 0) + 1
        self.lobby.add(session)
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
        self._drop_session(session_id)
        if host.sessions is not None:
            host.sessions.discard(session_id)
        return session

    def sessions(self, game_id: str | None = None) -> Iterator[Session]:
        """
        Hosted sessions in creation order, optionally of one game.
        """
        if game_id is None:
            return iter(list(self._sessions.values()))
        return iter([s for s in self._sessions.values() if s.game_id == game_id])

    #: Seconds a joiner holds its slot before acknowledging its
    #: introduction (L{confirm_join}).
    RESERVATION = 10.0

    def join(self, joiner: Registration, session_id: bytes, now: float) -> tuple[Session, list[Registration]]:
        """
        Add C{joiner} to a session and say who it must be introduced to:
        the host only, or in a mesh session every member (confirmed or
        pending) and the host.  The joiner holds a slot for
        L{RESERVATION} seconds until L{confirm_join}; members whose
        registration expired no longer count.

        @raise RegistryError: C{UNKNOWN_SESSION} or C{SESSION_FULL}.
        """
        session = self._sessions.get(session_id)
        if session is None:
            raise RegistryError(ErrorCode.UNKNOWN_SESSION, "no such session")
        host = self._live(session.host, now)
        if host is None or self._sessions.get(session_id) is not session:
            raise RegistryError(ErrorCode.UNKNOWN_SESSION, "the session's host is gone")
        members = [m for m in (self._live(member_id, now) for member_id in list(session.members)) if m is not None]
        for peer_id, until in list(session.pending.items()):
            if until <= now or self._live(peer_id, now) is None:
                del session.pending[peer_id]
                self._leave(peer_id, session_id)
        known = joiner.peer_id in session.pending or joiner.peer_id in session.members
        if not known and joiner.peer_id != session.host:
            taken = session.players + len(session.pending)
            if taken >= session.max_players:
                raise RegistryError(
                    ErrorCode.SESSION_FULL,
                    f"session is full ({taken}/{session.max_players})",
                )
            session.pending[joiner.peer_id] = now + self.RESERVATION
            if joiner.joined is None:
                joiner.joined = set()
            joiner.joined.add(session_id)
        targets = [host]
        if session.mesh:
            targets.extend(members)
            for peer_id in session.pending:
                pending = self._live(peer_id, now)
                if pending is not None:
                    targets.append(pending)
        return session, [t for t in targets if t is not joiner]

    def _leave(self, peer_id: str, session_id: bytes) -> None:
        registration = self._peers.get(peer_id)
        if registration is not None and registration.joined is not None:
            registration.joined.discard(session_id)

    def confirm_join(self, session_id: bytes, peer_id: str, now: float) -> bool:
        """
        A pending joiner acknowledged its introduction: it becomes a member
        (and keeps its slot).  False if it was not pending.
        """
        session = self._sessions.get(session_id)
        if session is None or session.pending.pop(peer_id, None) is None:
            return False
        if self._live(peer_id, now) is None:
            return False
        session.members.append(peer_id)
        return True
