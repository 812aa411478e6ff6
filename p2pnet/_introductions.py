"""
What the endpoint does with an introduction: check the peer's key (it must
be there unless insecure, match C{expect_key} and the pinned one), make
the connection within the caps, hand it to the waiting C{connect}/C{join}
or, once connected, to the factory.  A mixin of
L{p2pnet.endpoint.PeerEndpoint}, which holds the state.
"""

from __future__ import annotations

import hmac

from twisted.python.failure import Failure

from p2pnet import wire
from p2pnet._peertypes import StatusEvent
from p2pnet.connection import PeerConnection
from p2pnet.errors import CloseCode, HandshakeFailed, HostGone, KeyFileError, P2PError, PeerKeyMismatch


class Introductions:
    """
    Introductions into connections (see the module docstring).
    """

    def _introduction(self, intro: wire.Introduction) -> None:
        if self._stopping or intro.intro_id in self._by_intro or intro.peer_id == self.peer_id:
            return
        if len(self._by_conn_id) >= self.config.max_connections:
            self.count("dropped-too-many-connections")
            self.note(
                "refused", self.log.info,
                "refused an introduction to {peer_id}: {n} connections already",
                peer_id=intro.peer_id,
                n=len(self._by_conn_id),
            )
            return
        # max_connections is well below 65,536, so a free id is near.
        conn_id = int.from_bytes(self._random_bytes(2), "big")
        while conn_id in self._by_conn_id:
            conn_id = (conn_id + 1) & 0xFFFF
        entry = self._awaiting.get(intro.txid)
        ours = entry is not None and entry[0] == intro.peer_id
        refusal = self._key_refusal(intro, entry[2] if ours else None)
        if refusal is not None:
            self.count("refused-peer-key")
            self.note("refused-key", self.log.warn, "refusing {peer_id}: {error}", peer_id=intro.peer_id,
                      error=str(refusal))
            self.emit(StatusEvent("failed", intro.peer_id, detail=str(refusal)))
            if ours:
                del self._awaiting[intro.txid]
                entry[1].errback(Failure(refusal))
            return
        connection = PeerConnection(self, intro, conn_id, entry[3] if ours else b"")
        hidden = bool(intro.flags & wire.FLAG_RELAY_ONLY)
        self._by_intro[intro.intro_id] = connection
        self._by_conn_id[conn_id] = connection
        self.note(
            "introduced", connection.log.info,
            "introduced to {peer_id}: public {public}, local {local}",
            peer_id=intro.peer_id,
            public="hidden (a relay-only peer)" if hidden else str(intro.public),
            local=", ".join(map(str, intro.local)) or "none",
        )
        self.emit(StatusEvent(
            "introduced", intro.peer_id, address=None if hidden else intro.public, candidates=connection.candidates
        ))
        if ours:
            del self._awaiting[intro.txid]
            entry[1].callback(connection)
        else:
            connection._when_connected().addCallbacks(self._incoming, lambda _: None)
        connection._machine.start()

    def _host_gone(self, error: wire.Error) -> bool:
        """
        The introducer says the peer of one of our introductions did not
        take its copy (C{HOST_GONE}, see L{p2pnet._hostwatch}): fail that
        connection with L{HostGone} if it is still punching and heard
        nothing from the peer.  Whether it named one of our introductions.
        """
        if error.code != wire.ErrorCode.HOST_GONE:
            return False
        for connection in list(self._by_intro.values()):
            if connection.initiator and connection._intro_txid == error.txid:
                if connection.address is None and not connection.ended and not connection._core.heard:
                    connection._machine.close()
                    connection._failed(HostGone(error.code, error.reason))
                return True
        return False

    def _key_refusal(self, intro: wire.Introduction, expect_key: bytes | None) -> P2PError | None:
        """
        Why we must not connect to the introduced peer (its key is missing,
        not the one we expect, or not the one pinned), or None.
        """
        if self.config.insecure:
            return None
        if intro.peer_key is None:
            return HandshakeFailed(
                f"the introducer sent no key for {intro.peer_id!r}: it runs an older p2pnet, "
                "or the peer runs with insecure=True (--insecure); refusing an unencrypted connection"
            )
        if expect_key is not None and not hmac.compare_digest(expect_key, intro.peer_key):
            return PeerKeyMismatch(intro.peer_id, expect_key, intro.peer_key)
        if self.trust is not None:
            try:
                self.trust.check(intro.peer_id, intro.peer_key)
            except (PeerKeyMismatch, KeyFileError) as e:
                return e
            except OSError as e:
                return KeyFileError(f"cannot record {intro.peer_id!r}'s key in the trust file: {e}")
        return None

    def _incoming(self, connection: PeerConnection) -> None:
        protocol = None
        if self.factory is not None:
            protocol = self.factory.build_protocol(connection.peer_id)
        if protocol is None:
            if self.factory is not None:
                connection.log.info("factory refused {peer_id}", peer_id=connection.peer_id)
                connection.close(CloseCode.REFUSED, "no protocol for this peer")
            return
        connection.set_protocol(protocol)
