"""
The client side of the lobby: one page of sessions, or every page, asked
for within the introducer's rate limit.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from p2pnet import wire
from p2pnet._lobby import MAX_LIMIT, MAX_PROPERTY_FILTERS, LobbyPage, LobbyQuery
from p2pnet.errors import IntroducerError, RateLimited
from p2pnet.wire import ErrorCode


def make_query(
    game_id: str | None = None,
    properties: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    name_prefix: str | None = None,
    open_only: bool = False,
    limit: int | None = None,
    cursor: bytes | None = None,
) -> LobbyQuery:
    """
    A lobby query from the public API's arguments.

    @raise ValueError: for more property filters than the introducer
        accepts, a limit outside 1 to L{MAX_LIMIT} (the cap of one page;
        L{SessionLister.list} takes any positive limit), or a cursor that is
        not bytes of the right length.
    """
    if properties is None:
        pairs: tuple[tuple[str, str], ...] = ()
    elif isinstance(properties, Mapping):
        pairs = tuple(properties.items())
    else:
        pairs = tuple(properties)
    if len(pairs) > MAX_PROPERTY_FILTERS:
        raise ValueError(f"at most {MAX_PROPERTY_FILTERS} property filters")
    for key, value in pairs:
        if not isinstance(key, str) or not isinstance(value, str) or "\0" in key:
            raise ValueError("property filters are (str, str) pairs, the name without NUL")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"a page's limit is 1-{MAX_LIMIT}")
    if cursor is not None and not (isinstance(cursor, bytes) and 1 <= len(cursor) <= wire.MAX_CURSOR):
        raise ValueError("a cursor is the bytes a previous page gave")
    query = LobbyQuery(game_id, cursor, pairs, name_prefix or "", bool(open_only), limit)
    # Fail here, not in the reactor: too long a name or property.
    wire.encode(query.to_message(bytes(wire.TXID_SIZE)))
    return query


class SessionLister:
    """
    Fetches hosted sessions page by page, within the introducer's rate
    limit: one page every C{interval} seconds; a C{RATE_LIMITED} refusal is
    retried after C{backoff} seconds (doubling, at most C{retries} times in
    a row); any other refusal fails the listing rather than silently
    cutting it short.  Only a page without a cursor ends a listing (a page
    may be empty when the filters matched nothing among the sessions the
    introducer looked at).

    @param request: C{message -> Deferred}, the client's
        L{p2pnet._introclient.IntroducerClient.request}.
    @param new_txid: C{() -> bytes}.
    """

    #: Most pages fetched for one listing.
    MAX_PAGES = 10_000

    def __init__(
        self,
        clock: IReactorTime,
        request: Callable[[wire.Message], Deferred],
        new_txid: Callable[[], bytes],
        interval: float = 0.05,
        backoff: float = 1.0,
        retries: int = 6,
    ) -> None:
        self._clock = clock
        self._request = request
        self._new_txid = new_txid
        self.interval = interval
        self.backoff = backoff
        self.retries = retries

    def page(self, query: LobbyQuery) -> Deferred:
        """
        One page of C{query}, a C{RATE_LIMITED} refusal retried as above.

        @return: a Deferred firing with a L{LobbyPage}.
        """
        result: Deferred = Deferred()
        refusals = [0]

        def ask() -> None:
            d = self._request(query.to_message(self._new_txid()))
            d.addCallbacks(got, refused)
            d.addErrback(result.errback)

        def got(answer: wire.SessionList) -> None:
            result.callback(LobbyPage(answer.sessions, answer.cursor, answer.total))

        def refused(reason):
            if reason.check(RateLimited) and refusals[0] < self.retries:
                refusals[0] += 1
                self._clock.callLater(self.backoff * 2 ** (refusals[0] - 1), ask)
                return None
            return reason

        ask()
        return result

    def list(self, query: LobbyQuery | None = None, total_limit: int | None = None) -> Deferred:
        """
        Every session C{query} matches (its cursor is where to start), or
        the first C{total_limit} of them.

        @return: a Deferred firing with a list of L{wire.SessionInfo}.
        """
        query = query if query is not None else LobbyQuery()
        if total_limit is not None and total_limit < 1:
            raise ValueError("a limit is at least 1")
        found: list[wire.SessionInfo] = []
        result: Deferred = Deferred()
        pages = [0]

        def ask(cursor: bytes | None) -> None:
            pages[0] += 1
            limit = query.limit
            if total_limit is not None:
                limit = min(limit or MAX_LIMIT, total_limit - len(found), MAX_LIMIT)
            d = self.page(_evolve(query, cursor, limit))
            d.addCallback(got)
            d.addErrback(result.errback)

        def got(page: LobbyPage) -> None:
            found.extend(page.sessions)
            if total_limit is not None and len(found) >= total_limit:
                result.callback(found[:total_limit])
            elif page.cursor is None:
                result.callback(found)
            elif pages[0] >= self.MAX_PAGES:
                result.errback(IntroducerError(ErrorCode.BAD_REQUEST, "too many pages of sessions"))
            else:
                self._clock.callLater(self.interval, ask, page.cursor)

        ask(query.cursor)
        return result


def _evolve(query: LobbyQuery, cursor: bytes | None, limit: int | None) -> LobbyQuery:
    return LobbyQuery(query.game_id, cursor, query.properties, query.name_prefix, query.open_only, limit)
