"""
The lobby in Redis, with the semantics of L{p2pnet._lobby} (see its
docstring): a sorted set per game (and one of all games) scored by a
lobby key from a shared counter, so a page is a bounded range read after
the cursor's key, whatever the lobby's size.

A session whose record expired (its node died and nobody took it over
within a lifetime) is skipped and removed from the sets by the page that
finds it; C{total} counts the set, so it may include such sessions until
a page passes them.
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred

from p2pnet import wire
from p2pnet._lobby import SCAN_LIMIT, LobbyError, LobbyPage, LobbyQuery, MAX_LIMIT, decode_cursor, encode_cursor, session_info
from p2pnet.cluster import _scripts as S
from p2pnet.cluster._records import BadRecord, read_session
from p2pnet.cluster._store import RedisDown
from p2pnet.wire import ErrorCode


class RedisLobby:
    """
    Implements L{p2pnet._lobby.Lobby} on a L{ClusterNode}'s Redis.
    """

    def __init__(self) -> None:
        self.node = None

    def add(self, session) -> None:
        if self.node is not None:
            self.node.session_changed(session)

    def remove(self, session) -> None:
        if self.node is not None:
            self.node.session_gone(session)

    #: Sessions read per round trip (a page that is not full reads on,
    #: up to L{SCAN_LIMIT} looked at).
    CHUNK = 32

    def page(self, query: LobbyQuery, budget: int, now: float) -> Deferred:
        after = decode_cursor(query.cursor)
        index = S.LOBBY_ALL if query.game_id is None else S.LOBBY_GAME + query.game_id
        state = _Paging(query, budget, after)
        d = self._chunk(index, state, now)

        def down(reason):
            reason.trap(RedisDown)
            raise LobbyError(ErrorCode.RATE_LIMITED, "the lobby is unavailable; retry")

        return d.addErrback(down)

    def _chunk(self, index: str, state: "_Paging", now: float) -> Deferred:
        count = min(SCAN_LIMIT - state.scanned, max(self.CHUNK, state.limit - len(state.page)))
        start = "-inf" if state.last is None else f"({state.last}"
        self.node.stats["redis-reads"] += 1
        d = self.node.store.eval(S.PAGE, [index], [start, count, S.SESSION])

        def read(reply) -> LobbyPage | Deferred:
            try:
                flat = json.loads(reply)
                total = int(flat[0])
                rows = [(flat[i].encode(), int(float(flat[i + 1])), flat[i + 2]) for i in range(1, len(flat) - 2, 3)]
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                self.node.stats["bad-records"] += 1
                raise LobbyError(ErrorCode.RATE_LIMITED, "the lobby is unavailable; retry") from None
            page = self._fill(state, rows, now, index)
            if page is not None:
                return LobbyPage(tuple(state.page), encode_cursor(state.last), total)
            if len(rows) < count:
                return LobbyPage(tuple(state.page), None, total)
            if state.scanned >= SCAN_LIMIT:
                return LobbyPage(tuple(state.page), encode_cursor(state.last), total)
            return self._chunk(index, state, now)

        return d.addCallback(read)

    def _fill(self, state: "_Paging", rows, now: float, index: str) -> bool | None:
        """
        Add the matching sessions of C{rows} to the page; True (and the
        cursor at the last one taken) once the page is full.
        """
        query = state.query
        stale = []
        try:
            for member, key, record in rows:
                if len(state.page) >= state.limit:
                    return True
                if not record:
                    stale.append(member)
                    state.scanned += 1
                    state.last = key
                    continue
                try:
                    session, _ = read_session(bytes.fromhex(member.decode()), record)
                except (BadRecord, ValueError, UnicodeDecodeError):
                    self.node.stats["bad-records"] += 1
                    state.scanned += 1
                    state.last = key
                    continue
                if (query.game_id is not None and session.game_id != query.game_id) or (
                    state.filtered and not query.matches(session, now)
                ):
                    state.scanned += 1
                    state.last = key
                    continue
                info = session_info(session)
                cost = 3 + len(info.encode_value())
                if cost > state.budget:
                    if not state.page:
                        raise LobbyError(
                            ErrorCode.BAD_REQUEST,
                            "the next session does not fit this request's answer: pad it to 1200 bytes",
                        )
                    return True
                state.budget -= cost
                state.page.append(info)
                state.scanned += 1
                state.last = key
            return None
        finally:
            if stale:
                self.node.store.execute("ZREM", index, *stale).addErrback(lambda f: None)


class _Paging:
    """
    One page being read: the query, what is left of the byte budget, the
    sessions taken, how many were looked at and the last key looked at.
    """

    def __init__(self, query: LobbyQuery, budget: int, after: int | None) -> None:
        self.query = query
        self.budget = budget
        self.limit = query.limit or MAX_LIMIT
        self.filtered = bool(query.properties or query.name_prefix or query.open_only)
        self.page: list[wire.SessionInfo] = []
        self.scanned = 0
        self.last = after
