"""
The lobby: the hosted sessions in a stable order, one index per game, and
the pages of it one L{wire.SessionList} answer holds.

A page is asked for with a L{LobbyQuery}: a game (or all games), a
I{cursor} (where the previous page stopped; None for the first page) and
filters.  A page costs the same however many sessions the lobby holds: the
index finds the cursor by bisection, and one request looks at no more than
L{SCAN_LIMIT} sessions.

The semantics every lobby keeps (the in-memory L{MemoryLobby} here, and a
shared one, for example on Redis):

 - Order: each session gets a sequence number when it is added, larger
   than every earlier one's (its I{key}); a game's sessions are listed in
   ascending key order, which is creation order.  A key never changes and
   is never reused.
 - Cursor: opaque bytes (1 to L{wire.MAX_CURSOR}) that name the last key
   the previous page I{looked at}, matched or not.  The next page starts
   just after it.  Paging from the first page to the one without a cursor
   therefore lists every session that existed throughout exactly once
   (sessions added or removed meanwhile may or may not appear), never
   repeats one and never skips one.  A cursor that does not parse is
   refused with C{BAD_REQUEST}; a well-formed forged one only moves where
   the listing starts (the lobby is public).  A cursor is the same for
   every game and filter, so it needs nothing to authenticate it.
 - Filters, all of which a listed session matches: C{properties} (each
   C{(key, value)} pair is one of the session's properties; at most
   L{MAX_PROPERTY_FILTERS}), C{name_prefix} (its name starts with it,
   case-sensitively), C{open_only} (players plus unexpired join
   reservations below its maximum), C{limit} (at most this many sessions
   in this page, 1 to L{MAX_LIMIT}).
 - Bounded work: at most L{SCAN_LIMIT} sessions are looked at per page.
   When filters reject them all, the page is empty and still has a cursor;
   only a page without a cursor ends the listing.
 - Size: a page holds the matching sessions, in order, while their encoded
   entries (3 + len(entry.encode_value()) bytes each) fit the byte budget
   it is given.  If the first match does not fit, the request is refused
   with C{BAD_REQUEST} (an empty page would read as "nothing matched").
 - C{total} is the number of sessions of the game (or of all games),
   before filtering.
 - Entries are current: a listed session's player count is the one at
   the time of the page (it changes as players join and leave; the
   in-memory lobby reads it from the session, a shared one must store
   it).
"""

from __future__ import annotations

import struct
from typing import Iterator, Protocol

from attrs import field, frozen

from p2pnet import wire
from p2pnet._ordered import OrderedIndex
from p2pnet.wire import ErrorCode

#: Most sessions one page looks at (matched or not).
SCAN_LIMIT = 256
#: Most C{(key, value)} property filters in one query.
MAX_PROPERTY_FILTERS = 4
#: Largest C{limit} (the encoding allows 65,535; no page holds more).
MAX_LIMIT = 1024

_CURSOR = struct.Struct("!Q")
_U16 = struct.Struct("!H")


class LobbyError(Exception):
    """
    A query the lobby refuses: C{code} (an L{ErrorCode}) and a short reason
    for the requester.  (The introducer answers it as it answers a
    L{p2pnet._registry.RegistryError}.)
    """

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


@frozen
class LobbyQuery:
    """
    What one C{ListSessions} asks for; see the module docstring for the
    meaning of each part.  Build it with L{LobbyQuery.from_message}, which
    checks the caps.
    """

    game_id: str | None = None
    cursor: bytes | None = None
    properties: tuple[tuple[str, str], ...] = field(default=(), converter=tuple)
    name_prefix: str = ""
    open_only: bool = False
    limit: int | None = None

    @classmethod
    def from_message(cls, message: wire.ListSessions) -> LobbyQuery:
        """
        The query a request makes.

        @raise LobbyError: C{BAD_REQUEST} for more than
            L{MAX_PROPERTY_FILTERS} property filters or a limit outside 1 to
            L{MAX_LIMIT}.
        """
        if len(message.properties) > MAX_PROPERTY_FILTERS:
            raise LobbyError(ErrorCode.BAD_REQUEST, f"at most {MAX_PROPERTY_FILTERS} property filters")
        if message.limit is not None and not 1 <= message.limit <= MAX_LIMIT:
            raise LobbyError(ErrorCode.BAD_REQUEST, f"a limit is 1-{MAX_LIMIT}")
        return cls(
            game_id=message.game_id,
            cursor=message.cursor,
            properties=message.properties,
            name_prefix=message.name_prefix or "",
            open_only=bool((message.flags or 0) & wire.FLAG_OPEN),
            limit=message.limit,
        )

    def to_message(self, txid: bytes) -> wire.ListSessions:
        """
        The request that asks for this query (unpadded).
        """
        return wire.ListSessions(
            txid,
            self.game_id,
            self.cursor,
            self.properties,
            self.name_prefix or None,
            wire.FLAG_OPEN if self.open_only else None,
            self.limit,
        )

    def matches(self, session, now: float) -> bool:
        """
        Whether C{session} (a L{p2pnet._registry.Session}) passes the
        filters at C{now}.
        """
        if self.name_prefix and not session.name.startswith(self.name_prefix):
            return False
        if self.properties:
            have = session.properties
            for pair in self.properties:
                if pair not in have:
                    return False
        return not self.open_only or has_room(session, now)


def has_room(session, now: float) -> bool:
    """
    Whether C{session} has a free slot at C{now}: its players and its
    unexpired join reservations are fewer than its maximum.
    """
    taken = session.players
    for until in session.pending.values():
        if until > now:
            taken += 1
    return taken < session.max_players


@frozen
class LobbyPage:
    """
    One page: the sessions, the cursor of the next page (None: the last),
    and how many sessions the game has before filtering.
    """

    #: L{wire.SessionInfo}s, or anything with their C{encode_value} (the
    #: in-memory lobby gives L{ListedSession}s).
    sessions: tuple
    cursor: bytes | None
    total: int


class Lobby(Protocol):
    """
    Where the introducer keeps hosted sessions for listing (the module
    docstring states the semantics every implementation keeps).

    The registry calls L{add} when a session is hosted and L{remove} when
    it ends; the introducer calls L{page} for each C{ListSessions}.  A
    shared lobby may return a C{Deferred} firing with the L{LobbyPage} (or
    failing with L{LobbyError}) from L{page}; the introducer handles both.
    """

    def add(self, session) -> None:
        """
        List C{session} (it gets the next key).
        """

    def remove(self, session) -> None:
        """
        Stop listing C{session} (nothing if it is not listed).
        """

    def page(self, query: LobbyQuery, budget: int, now: float):
        """
        One page of C{query} whose entries fit in C{budget} bytes.

        @raise LobbyError: C{BAD_REQUEST} for a cursor that does not parse,
            or if the first match does not fit C{budget}.
        """


class ListedSession:
    """
    A session entry as a page carries it: its encoding, made once.  Goes
    into L{wire.SessionList.sessions} like a L{wire.SessionInfo} (the codec
    only calls C{encode_value}); L{info} decodes it.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def encode_value(self) -> bytes:
        return self.raw

    @property
    def info(self) -> wire.SessionInfo:
        return wire.SessionInfo.decode_value(self.raw)


_PLAYERS_FIELD = bytes((wire.Tag.PLAYERS, 0, 2))


def entry_parts(session) -> tuple[bytes, bytes]:
    """
    A session's encoded entry before and after its C{PLAYERS} field (the
    one part that changes while it is listed).  The fields before it are
    C{SESSION_ID}, C{NAME}, C{GAME_ID} and C{PEER_ID}
    (L{wire.SessionInfo.encode_value}).
    """
    raw = session_info(session).encode_value()
    head = 4 * 3 + 8 + sum(len(text.encode("utf-8")) for text in (session.name, session.game_id, session.host))
    return raw[:head], raw[head + 5 :]


def session_info(session) -> wire.SessionInfo:
    """
    How a L{p2pnet._registry.Session} is listed.
    """
    return wire.SessionInfo(
        session.session_id,
        session.name,
        session.game_id,
        session.host,
        session.players,
        session.max_players,
        session.mesh,
        session.properties,
    )


def encode_cursor(key: int) -> bytes:
    """
    The cursor that resumes after C{key}.
    """
    return _CURSOR.pack(key)


def decode_cursor(cursor: bytes | None) -> int | None:
    """
    The key a cursor names (None for None).

    @raise LobbyError: C{BAD_REQUEST} if it is not one of ours.
    """
    if cursor is None:
        return None
    if len(cursor) != _CURSOR.size:
        raise LobbyError(ErrorCode.BAD_REQUEST, "bad cursor: pass back the one the previous page gave")
    return _CURSOR.unpack(cursor)[0]


class MemoryLobby:
    """
    The lobby in this process: an L{OrderedIndex} per game and one of all
    sessions, keyed by a counter (kept in the session's C{lobby_key}).
    Implements L{Lobby}.

    @param chunk: the indexes' chunk size (see L{OrderedIndex}).
    """

    def __init__(self, chunk: int = 512) -> None:
        self._chunk = chunk
        self._next_key = 1
        self._all: OrderedIndex = OrderedIndex(chunk)
        self._games: dict[str, OrderedIndex] = {}

    def __len__(self) -> int:
        return len(self._all)

    def add(self, session) -> None:
        if session.lobby_key is not None:
            return
        key = session.lobby_key = self._next_key
        self._next_key += 1
        session.lobby_entry = entry_parts(session)
        self._all.insert(key, session)
        game = self._games.get(session.game_id)
        if game is None:
            game = self._games[session.game_id] = OrderedIndex(self._chunk)
        game.insert(key, session)

    def remove(self, session) -> None:
        key = session.lobby_key
        if key is None:
            return
        session.lobby_key = None
        self._all.remove(key)
        game = self._games[session.game_id]
        game.remove(key)
        if not game:
            del self._games[session.game_id]

    def sessions(self, game_id: str | None = None) -> Iterator:
        """
        The listed sessions (of C{game_id}, if given), in key order.
        """
        index = self._index(game_id)
        return iter([] if index is None else [session for _, session in index.after(None)])

    def _index(self, game_id: str | None) -> OrderedIndex | None:
        return self._all if game_id is None else self._games.get(game_id)

    def page(self, query: LobbyQuery, budget: int, now: float) -> LobbyPage:
        after = decode_cursor(query.cursor)
        index = self._index(query.game_id)
        if index is None:
            return LobbyPage((), None, 0)
        limit = query.limit or MAX_LIMIT
        prefix = query.name_prefix
        pairs = query.properties
        open_only = query.open_only
        page: list[ListedSession] = []
        scanned = 0
        last = after
        pack = _U16.pack
        # (The filters are inlined: this loop is a page's whole cost.)
        for keys, sessions, start in index.runs_after(after):
            for i in range(start, len(keys)):
                if scanned >= SCAN_LIMIT or len(page) >= limit:
                    return LobbyPage(tuple(page), encode_cursor(last), len(index))
                scanned += 1
                session = sessions[i]
                if (
                    (prefix and not session.name.startswith(prefix))
                    or (pairs and not all(pair in session.properties for pair in pairs))
                    or (open_only and not has_room(session, now))
                ):
                    last = keys[i]
                    continue
                head, tail = session.lobby_entry
                raw = head + _PLAYERS_FIELD + pack(session.players) + tail
                cost = 3 + len(raw)
                if cost > budget:
                    if not page:
                        raise LobbyError(
                            ErrorCode.BAD_REQUEST,
                            "the next session does not fit this request's answer: pad it to 1200 bytes",
                        )
                    return LobbyPage(tuple(page), encode_cursor(last), len(index))
                budget -= cost
                page.append(ListedSession(raw))
                last = keys[i]
        return LobbyPage(tuple(page), None, len(index))

def list_answer(lobby: Lobby, message: wire.ListSessions, budget: int, now: float):
    """
    The L{wire.SessionList} that answers C{message} within C{budget} bytes
    of entries, or a C{Deferred} firing with it (from a shared lobby).

    @raise LobbyError: C{BAD_REQUEST} (see L{LobbyQuery.from_message} and
        L{Lobby.page}).
    """
    page = lobby.page(LobbyQuery.from_message(message), budget, now)
    if isinstance(page, LobbyPage):
        return wire.SessionList(message.txid, page.sessions, page.cursor, page.total)
    return page.addCallback(lambda page: wire.SessionList(message.txid, page.sessions, page.cursor, page.total))
