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

from twisted.internet.defer import Deferred, succeed

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

    def page(self, query: LobbyQuery, budget: int, now: float) -> Deferred:
        after = decode_cursor(query.cursor)
        index = S.LOBBY_ALL if query.game_id is None else S.LOBBY_GAME + query.game_id
        store = self.node.store
        start = "-inf" if after is None else f"({after}"
        ids = store.execute("ZRANGEBYSCORE", index, start, "+inf", "WITHSCORES", "LIMIT", 0, SCAN_LIMIT + 1)
        total = store.execute("ZCARD", index)
        self.node.stats["redis-reads"] += 1

        def read(flat):
            members = [(flat[i], int(float(flat[i + 1]))) for i in range(0, len(flat), 2)]
            more = len(members) > SCAN_LIMIT
            members = members[:SCAN_LIMIT]
            keys = [S.SESSION + m.decode() for m, _ in members]
            records = store.eval(S.READ_SESSIONS, keys, []) if keys else succeed([])
            return records.addCallback(lambda rows: total.addCallback(
                lambda count: self._page(query, budget, now, members, rows, more, int(count), index)))

        d = ids.addCallback(read)

        def down(reason):
            reason.trap(RedisDown)
            raise LobbyError(ErrorCode.RATE_LIMITED, "the lobby is unavailable; retry")

        return d.addErrback(down)

    def _page(self, query, budget, now, members, rows, more, total, index) -> LobbyPage:
        limit = query.limit or MAX_LIMIT
        filtered = bool(query.properties or query.name_prefix or query.open_only)
        page: list[wire.SessionInfo] = []
        last = decode_cursor(query.cursor)
        stale = []
        for (member, key), row in zip(members, rows):
            if len(page) >= limit:
                return LobbyPage(tuple(page), encode_cursor(last), total)
            if not row:
                stale.append(member)
                last = key
                continue
            try:
                session, _ = read_session(bytes.fromhex(member.decode()), row[1])
            except (BadRecord, ValueError, UnicodeDecodeError):
                self.node.stats["bad-records"] += 1
                last = key
                continue
            if (query.game_id is not None and session.game_id != query.game_id) or (
                filtered and not query.matches(session, now)
            ):
                last = key
                continue
            info = session_info(session)
            cost = 3 + len(info.encode_value())
            if cost > budget:
                if not page:
                    raise LobbyError(
                        ErrorCode.BAD_REQUEST,
                        "the next session does not fit this request's answer: pad it to 1200 bytes",
                    )
                return LobbyPage(tuple(page), encode_cursor(last), total)
            budget -= cost
            page.append(info)
            last = key
        if stale:
            self.node.store.execute("ZREM", index, *stale).addErrback(lambda f: None)
        return LobbyPage(tuple(page), encode_cursor(last) if more else None, total)

