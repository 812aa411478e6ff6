"""
The registry of one cluster node: the in-memory L{Registry} for the peers
registered here (they authenticate here: cookies never leave the node),
telling a L{ClusterNode} what changed so that other nodes can find them;
stand-ins for peers registered elsewhere that joined sessions hosted
here; and sessions taken over from a node that died.
"""

from __future__ import annotations

from collections import OrderedDict

from p2pnet._registry import Registration, Registry, RegistryError, Session
from p2pnet.wire import ErrorCode

#: Most stand-ins for peers of other nodes, and most peers whose sessions
#: may be taken over, held at once (the oldest give way).
MAX_REMOTE = 65536
MAX_ADOPTABLE = 4096
#: Seconds a fetched list of sessions to take over stays usable.
ADOPT_WINDOW = 30.0


class ClusterRegistry(Registry):
    """
    A L{Registry} whose changes a node mirrors to Redis (C{observer}: an
    object with C{peer_changed(registration)} and
    C{peer_gone(registration)}; sessions reach Redis through the lobby).
    """

    def __init__(self, lifetime, random_bytes, **kwargs) -> None:
        super().__init__(lifetime, random_bytes, **kwargs)
        self.observer = None
        #: Sessions hosted again here under their old id.
        self.adopted = 0
        self.adoption_misses = 0
        # peer id -> (stand-in, its node, when last seen)
        self.remote: OrderedDict[str, tuple[Registration, str, float]] = OrderedDict()
        # peer id -> (when fetched, [(session id, record session, key)])
        self.adoptable: OrderedDict[str, tuple[float, list]] = OrderedDict()

    # -- what other nodes see ----------------------------------------------

    def _add(self, registration: Registration) -> None:
        super()._add(registration)
        if self.observer is not None:
            self.observer.peer_changed(registration)

    def _confirm(self, registration: Registration) -> None:
        was = registration.verified
        super()._confirm(registration)
        if not was and self.observer is not None:
            self.observer.peer_changed(registration)

    def _move(self, registration: Registration, public) -> None:
        super()._move(registration, public)
        if self.observer is not None:
            self.observer.peer_changed(registration)

    def _remove(self, registration: Registration) -> None:
        held = self._peers.get(registration.peer_id) is registration
        super()._remove(registration)
        if held and self.observer is not None:
            self.observer.peer_gone(registration)
            for session_id in registration.joined or ():
                self._relist(session_id)

    def _relist(self, session_id: bytes) -> None:
        """
        Write a session's listing again (its players changed): a shared
        lobby's entries are current, as in memory.
        """
        session = self._sessions.get(session_id)
        if session is not None:
            self.lobby.add(session)

    def local_peers(self):
        """
        The live registrations held here (a snapshot).
        """
        return list(self._peers.values())

    def local_sessions(self):
        return list(self._sessions.values())

    def holds_session(self, session_id: bytes) -> bool:
        return session_id in self._sessions

    def holds(self, registration: Registration) -> bool:
        return self._peers.get(registration.peer_id) is registration

    # -- peers of other nodes ------------------------------------------------

    def remember_remote(self, registration: Registration, node: str, now: float) -> None:
        """
        Keep a stand-in for a peer of node C{node} (a member of a session
        held here), seen at C{now}.
        """
        remote = self.remote
        remote.pop(registration.peer_id, None)
        while len(remote) >= MAX_REMOTE:
            remote.popitem(last=False)
        remote[registration.peer_id] = (registration, node, now)

    def node_of(self, registration: Registration) -> str | None:
        """
        The node of a stand-in, or None for a registration held here.
        """
        entry = self.remote.get(registration.peer_id)
        if entry is not None and entry[0] is registration:
            return entry[1]
        return None

    def _member(self, peer_id: str, now: float) -> Registration | None:
        local = self._live(peer_id, now)
        if local is not None:
            return local
        entry = self.remote.get(peer_id)
        if entry is None:
            return None
        if entry[2] <= now - self.lifetime:
            del self.remote[peer_id]
            return None
        return entry[0]

    # -- sessions of a host that moved here --------------------------------

    def offer_adoption(self, peer_id: str, sessions: list, now: float) -> None:
        """
        C{sessions} (C{(session id, record session, host key)}) were
        hosted by C{peer_id} through another node: if it hosts one of them
        again here soon, under the same key, it gets the same id back
        (the lobby keeps its place).
        """
        adoptable = self.adoptable
        adoptable.pop(peer_id, None)
        while len(adoptable) >= MAX_ADOPTABLE:
            adoptable.popitem(last=False)
        adoptable[peer_id] = (now, sessions)

    def host_session(self, host, name, game_id, max_players, mesh, properties) -> Session:
        offered = self.adoptable.get(host.peer_id)
        if offered is not None and host.peer_key is not None:
            for i, (session_id, old, key) in enumerate(offered[1]):
                if (
                    key == host.peer_key
                    and session_id not in self._sessions
                    and (old.name, old.game_id, old.max_players, old.mesh, old.properties)
                    == (name, game_id, max_players, mesh, tuple(properties))
                ):
                    del offered[1][i]
                    self.adopted += 1
                    chosen = session_id
                    random_bytes = self._random_bytes
                    self._random_bytes = lambda n: chosen if n == len(chosen) else random_bytes(n)
                    try:
                        return super().host_session(host, name, game_id, max_players, mesh, properties)
                    finally:
                        self._random_bytes = random_bytes
        self.adoption_misses += 1
        return super().host_session(host, name, game_id, max_players, mesh, properties)

    # -- joins with members on other nodes ---------------------------------

    def join(self, joiner: Registration, session_id: bytes, now: float) -> tuple[Session, list[Registration]]:
        """
        L{Registry.join}, with members (and the joiner) that may be
        stand-ins for peers of other nodes.
        """
        session = self._sessions.get(session_id)
        if session is None:
            raise RegistryError(ErrorCode.UNKNOWN_SESSION, "no such session")
        host = self._live(session.host, now)
        if host is None or self._sessions.get(session_id) is not session:
            raise RegistryError(ErrorCode.UNKNOWN_SESSION, "the session's host is gone")
        members = [m for m in (self._member(member_id, now) for member_id in list(session.members)) if m is not None]
        # Members of other nodes leave when their stand-in lapses.
        session.members[:] = [m.peer_id for m in members]
        for peer_id, until in list(session.pending.items()):
            if until <= now or self._member(peer_id, now) is None:
                del session.pending[peer_id]
                self._leave(peer_id, session_id)
        known = joiner.peer_id in session.pending or joiner.peer_id in session.members
        if not known and joiner.peer_id != session.host:
            taken = session.players + len(session.pending)
            if taken >= session.max_players:
                raise RegistryError(ErrorCode.SESSION_FULL, f"session is full ({taken}/{session.max_players})")
            session.pending[joiner.peer_id] = now + self.RESERVATION
            if joiner.joined is None:
                joiner.joined = set()
            joiner.joined.add(session_id)
        self._relist(session_id)
        targets = [host]
        if session.mesh:
            targets.extend(members)
            for peer_id in session.pending:
                pending = self._member(peer_id, now)
                if pending is not None:
                    targets.append(pending)
        return session, [t for t in targets if t.peer_id != joiner.peer_id]

    def confirm_join(self, session_id: bytes, peer_id: str, now: float) -> bool:
        session = self._sessions.get(session_id)
        if session is None or session.pending.pop(peer_id, None) is None:
            return False
        if self._member(peer_id, now) is None:
            return False
        session.members.append(peer_id)
        self._relist(session_id)
        return True
