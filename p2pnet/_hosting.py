"""
The endpoint's side of the lobby: hosting sessions, withdrawing them and
listing what others host (a mixin of L{p2pnet.endpoint.PeerEndpoint}).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed

from p2pnet import wire
from p2pnet._names import name_problem
from p2pnet._peertypes import HostedSession
from p2pnet.errors import P2PError


class Hosting:
    """
    Host, withdraw and list sessions; needs the endpoint's introducer
    client, cookie and C{_hosted} table.
    """

    @property
    def hosted_sessions(self) -> tuple[HostedSession, ...]:
        """
        The sessions we host now (as the introducer knows them: a session
        hosted again after an introducer restart has a new id).
        """
        return tuple(self._hosted.values())

    def host_session(
        self,
        name: str,
        game_id: str = "",
        max_players: int = 8,
        mesh: bool = False,
        properties: dict[str, str] | None = None,
    ) -> Deferred:
        """
        Offer a named session others can list and join.

        @param mesh: every member connects to every other member (not only
            to the host).
        @return: a Deferred firing with a L{HostedSession}.
        """
        try:
            self._require_registered()
            problem = name_problem(name, "the session name", wire.MAX_STRING)
            if problem is not None:
                raise ValueError(problem)
            props = tuple(sorted((properties or {}).items()))
            message = wire.HostSession(
                self.new_txid(),
                self.peer_id,
                self._cookie,
                name,
                game_id,
                max_players,
                (wire.FLAG_MESH if mesh else 0) | (wire.FLAG_RELAY_ONLY if self.config.handshake.relay_only else 0),
                props,
            )
            wire.encode(message)  # refuse unrepresentable values here
        except (P2PError, ValueError) as e:
            return fail(e)

        def hosted(answer: wire.SessionHosted) -> HostedSession:
            session = HostedSession(answer.session_id, name, game_id, max_players, mesh, props)
            self._hosted[answer.session_id] = session
            return session

        return self._client.request(message).addCallback(hosted)

    def unhost_session(self, session: HostedSession) -> Deferred:
        """
        Withdraw a hosted session (existing connections stay up).

        @return: a Deferred firing with None once the withdrawal is sent
            (the introducer does not answer it; a session whose withdrawal
            is lost ends with our registration); withdrawing a session
            twice, or one we do not host, does nothing.
        """
        if self._hosted.pop(session.session_id, None) is not None and self._cookie is not None and not self._stopping:
            self._client.send(wire.Unhost(self.new_txid(), self.peer_id, self._cookie, session.session_id))
        return succeed(None)

    def list_sessions(
        self,
        game_id: str | None = None,
        *,
        properties=None,
        name_prefix: str | None = None,
        open_only: bool = False,
        limit: int | None = None,
        cursor: bytes | None = None,
        all_pages: bool = True,
    ) -> Deferred:
        """
        Hosted sessions (of C{game_id}, if given) that match every filter
        given: C{properties} (a mapping or C{(key, value)} pairs, at most
        4, that each session has), C{name_prefix}, C{open_only} (a free
        slot).  The introducer applies the filters.

        @param limit: at most this many sessions.
        @param cursor: start after this page (a L{LobbyPage.cursor}).
        @param all_pages: fetch page after page until the last (or the
            limit); False fetches one page.
        @return: a Deferred firing with a list of L{wire.SessionInfo}, or
            with one L{p2pnet._lobby.LobbyPage} (C{sessions}, C{cursor} of
            the next page or None, C{total}) if not C{all_pages}.
        @raise ValueError: for filters the introducer would refuse.
        """
        if self._client is None:
            return fail(P2PError("the endpoint is not started: call start() first"))
        # Paced within the introducer's rate limit; refusals are retried or
        # reported, never taken for the end of the list.
        from p2pnet._lister import SessionLister, make_query

        page_limit = None if all_pages or limit is None else min(limit, 1024)
        query = make_query(game_id, properties, name_prefix, open_only, page_limit, cursor)
        lister = SessionLister(self.clock, self._client.request, self.new_txid)
        return lister.list(query, limit) if all_pages else lister.page(query)
