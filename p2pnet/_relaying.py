"""
The endpoint's relayed paths: asking the introducer for a p2pnet relay,
taking the offers that come back (capped per connection), a standard TURN
allocation on the endpoint's own socket, and the datagrams that arrive
through either.  A mixin of L{p2pnet.endpoint.PeerEndpoint}, which holds
the state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from p2pnet import wire
from p2pnet._relayclient import answer_challenge as answer_relay_challenge
from p2pnet._relayclient import is_challenge as is_relay_challenge
from p2pnet.address import Address, RelayRoute, TurnRoute
from p2pnet.errors import ConnectionClosed

if TYPE_CHECKING:
    from p2pnet.connection import PeerConnection


class Relaying:
    """
    Relay and TURN paths (see the module docstring).
    """

    def turn_send(self, peer: Address, raw: bytes) -> None:
        if self._turn is not None and self._turn.relayed_address is not None:
            self._turn.send(peer, raw)

    def _turn_relay(self, connection: PeerConnection) -> None:
        """
        Allocate on the TURN server (once per endpoint), permit the peer,
        offer our TURN path to the connection, and send our relayed
        address to the peer through the introducer.
        """
        if self._turn_allocation is None:
            self._turn_allocation = self._turn.allocate()
            self._turn_allocation.addErrback(self._turn_failed)
        peer_public = connection.peer_public

        def allocated(relayed: Address | None):
            if relayed is None or connection.ended or peer_public is None:
                return None
            connection.log.info("TURN allocation {relayed} for {peer_id}", relayed=str(relayed), peer_id=connection.peer_id)
            d = self._turn.create_permission(peer_public)
            d.addCallback(lambda _: connection._turn_ready(TurnRoute(peer_public)))
            offer = wire.CandidateOffer(
                self.new_txid(), self.peer_id, self._cookie, connection.peer_id, connection.intro_id, relayed
            )
            self._client.request(offer).addErrback(
                lambda f: self.log.info("could not send our TURN address: {error}", error=str(f.value))
            )
            return d

        # Each connection waits on its own Deferred, so the shared
        # allocation's result stays the relayed address for the next one.
        waiter = Deferred()

        def share(relayed: Address | None) -> Address | None:
            waiter.callback(relayed)
            return relayed

        self._turn_allocation.addCallback(share)
        waiter.addCallback(allocated).addErrback(
            lambda f: connection.log.info("TURN relay for {peer_id} failed: {error}", peer_id=connection.peer_id, error=str(f.value))
        )

    def _turn_failed(self, reason: Failure) -> None:
        self.log.warn("TURN allocation failed: {error}", error=str(reason.value))
        self._turn_allocation = None
        return None

    def _from_turn(self, peer: Address, data: bytes) -> None:
        self._guarded(peer, self._relayed_datagram, data, TurnRoute(peer))

    def request_relay(self, connection: PeerConnection) -> None:
        if self._cookie is None or self._stopping:
            return
        if self._turn is not None:
            self._turn_relay(connection)
            return
        self.note("relay", connection.log.info, "asking the introducer for a relay to {peer_id}",
                  peer_id=connection.peer_id)
        d = self._client.request(
            wire.RelayRequest(
                self.new_txid(), self.peer_id, self._cookie, connection.peer_id, connection.intro_id
            )
        )

        def offered(offer: wire.Message) -> None:
            if isinstance(offer, wire.RelayOffer) and not connection.ended:
                connection._relay_offered(offer, answer=True)

        def refused(reason: Failure) -> None:
            if self._stopping or reason.check(ConnectionClosed):
                return
            if getattr(reason.value, "code", None) == wire.ErrorCode.NO_RELAY and not connection.ended:
                connection._no_relay("the introducer runs no relay")
            self.note(
                "no-relay", connection.log.info, "no relay for {peer_id}: {error}",
                peer_id=connection.peer_id, error=str(reason.value),
            )

        d.addCallbacks(offered, refused)

    #: Relay routes a connection may hold from offers it did not ask for
    #: (the introducer pushes one to the other side of a relay request;
    #: without a secret, anyone can spoof more; when a relay dies, the
    #: introducer pushes the new one to both sides).  The answer to the
    #: connection's own request is taken beyond it.
    MAX_PUSHED_ROUTES = 3

    def remember_route(self, connection: PeerConnection, route: RelayRoute, answer: bool = False) -> bool:
        """
        Route what comes from C{route}'s relay under its allocation to
        C{connection}, unless the connection holds L{MAX_PUSHED_ROUTES}
        already and this is not the answer to its own request (C{answer})
        or a route it holds.

        @return: whether the route was taken.
        """
        allocation = route.allocation_id
        held = self._by_allocation.get(allocation)
        if held is not None and held[0] is not connection:
            # Another connection's allocation: not ours to take over.
            return False
        if held is None:
            count = self._routes_per_connection.get(connection, 0)
            if count >= self.MAX_PUSHED_ROUTES and not answer:
                return False
            self._routes_per_connection[connection] = count + 1
        self._by_allocation[allocation] = (connection, route)
        return True

    def _from_relay(self, data: bytes) -> None:
        fields = wire.relayed_fields(data)
        entry = self._by_allocation.get(fields[0]) if fields is not None else None
        if entry is None:
            self.count("dropped-unknown-allocation")
            return
        connection, route = entry
        if is_relay_challenge(data):
            # The relay asks us to prove we receive at this address before
            # it binds us here: answer to the relay, never to the source.
            answer = answer_relay_challenge(data, route.allocation_id, route.side, route.key)
            if answer is None:
                self.count("dropped-unauthenticated")
            else:
                self.write(answer, route.relay)
                if connection.address is None and not connection.ended:
                    # The relay did not forward the hello that drew the
                    # challenge: send one now rather than at the next retry.
                    connection._send_hello(route)
                elif connection.address != route and not connection.ended:
                    # A relay we are moving to (ours died): the keepalive
                    # that drew the challenge was not forwarded either.
                    connection._send_keepalive(route)
            return
        inner = wire.verify_relayed(data, route.key)
        if inner is None:
            self.count("dropped-unauthenticated")
            return
        self._relayed_datagram(inner, route, connection)

    def _relayed_datagram(self, data: bytes, route, owner: PeerConnection | None = None) -> None:
        """
        A p2pnet datagram that came through a relay or our TURN allocation.
        """
        if len(data) < 2 or data[0] != wire.MAGIC:
            self.count("dropped-not-p2pnet")
            return
        if data[1] == wire.MessageType.SEALED or data[1] == wire.MessageType.DATA:
            self._data(data, route, owner=owner)
            return
        self._peer_message(data, route)
