"""
One connection to a peer: what the game sends and receives on it, and the
handshake machine's outputs (hellos, answers, keepalives, relay and TURN
routes) turned into datagrams.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from attrs import evolve
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pnet import wire
from p2pnet._admission import Admission
from p2pnet._connoutputs import ConnectionOutputs
from p2pnet._consumer import ChannelConsumer
from p2pnet._datapath import PlainPath, SecurePath
from p2pnet._extrasockets import ExtraSockets
from p2pnet._handshake import HandshakeCore, make_handshake
from p2pnet._ipv6 import normalise, usable_candidate
from p2pnet._liveness import Liveness
from p2pnet._peertypes import Path, PeerProtocol, StatusEvent
from p2pnet.address import Address, RelayedAddress, RelayRoute, TurnRoute, is_relayed
from p2pnet.errors import (
    CloseCode,
    ConnectionClosed,
    ConnectionRefused,
    HandshakeTimeout,
    PeerLost,
    describe_close,
)
from p2pnet.secure import _frames as frames
from p2pnet.secure._session import SecureSession
from p2pnet.secure.identity import fingerprint

if TYPE_CHECKING:
    from p2pnet.endpoint import PeerEndpoint

MAX_CANDIDATES = 8
#: Transaction ids remembered per direction (hellos sent, hellos seen).
MAX_TXIDS = 1024


class _InsecureLogger(Logger):
    """
    A connection's logger with C{insecure=True}: every line says so.
    """

    def emit(self, level, format=None, **kwargs) -> None:
        super().emit(level, "INSECURE (not encrypted): " + (format or ""), **kwargs)


def _remember(table: dict[bytes, None], txid: bytes) -> None:
    if len(table) >= MAX_TXIDS:
        del table[next(iter(table))]
    table[txid] = None


class PeerConnection:
    """
    A validated path to one peer.

    @ivar peer_id: the peer's id.
    @ivar path: a L{Path}.
    @ivar address: the peer's address on that path.
    @ivar protocol: the L{PeerProtocol} receiving datagrams, or None.
    """

    log = Logger()

    #: Datagrams kept for a protocol that is not attached yet.
    EARLY_LIMIT = 64

    def __init__(self, endpoint: PeerEndpoint, intro: wire.Introduction, conn_id: int, payload: bytes = b"") -> None:
        self._endpoint = endpoint
        self._clock = endpoint.clock
        self.peer_id = intro.peer_id
        self.intro_id = intro.intro_id
        #: The introduction's transaction id (ours: our request's).
        self._intro_txid = intro.txid
        self.session_id = intro.session_id
        self.initiator = intro.initiator
        self.key = intro.key
        self.conn_id = conn_id
        self.remote_conn_id: int | None = None
        self.path: Path | None = None
        self.address: Address | None = None
        self.protocol: PeerProtocol | None = None
        self.introduced_at = self._clock.seconds()
        self.ended = False
        self._waiters: list[Deferred] = []
        self._early: list[bytes] = []
        self._failure: Failure | None = None
        self._opened = False
        #: The close we send (code, text), and the one the peer sent.
        self._close_sent: tuple[int, str] = (CloseCode.NORMAL, "")
        self._peer_close: tuple[int, str] | None = None
        #: Why there is no relay, once the introducer said so.
        self._without_relay: str | None = None
        self._public = normalise(intro.public)
        # The peer chose its local addresses (the introducer only checked
        # its public one): nothing we cannot send to, and nothing a LAN
        # cannot be, except on the host it was seen at.
        self._other_public = normalise(intro.other_public) if intro.other_public is not None else None
        candidates = [
            c for c in map(normalise, (intro.public, *((intro.other_public,) if intro.other_public else ()), *intro.local))
            if self._plausible(c)
        ][:MAX_CANDIDATES]
        config = endpoint.config.handshake
        if intro.flags & wire.FLAG_RELAY_ONLY and not config.relay_only:
            # The peer is relay-only (the introducer kept its addresses
            # from us): so is this connection.
            config = evolve(config, relay_only=True)
        #: Whether this connection uses nothing but relays.
        self.relay_only = config.relay_only
        self._core = HandshakeCore(
            clock=self._clock,
            outputs=ConnectionOutputs(self),
            config=config,
            peer_id=self.peer_id,
            candidates=list(dict.fromkeys(candidates)),
            public=self._public,
            # A global IPv6 address the peer lists is no LAN path to upgrade to.
            local_candidates=frozenset(c for c in map(normalise, intro.local) if c.is_lan or not c.is_ipv6),
            own_nat=wire.unpack_nat(endpoint._nat),
            peer_nat=wire.unpack_nat(intro.nat),
            peer_lag=intro.lag / 1000.0 if intro.lag is not None else None,
            rng=random.Random(int.from_bytes(endpoint.new_txid(), "big")),
            rescue_key=intro.key,
            initiator=intro.initiator,
        )
        handshake = endpoint.config.handshake
        self._liveness = (
            Liveness(self, handshake.answer_timeout, handshake.probe_interval)
            if handshake.answer_timeout is not None else None
        )
        self._consumers: dict[int, ChannelConsumer] = {}
        self._producing: dict[ChannelConsumer, None] = {}
        self._relayed_sources: dict[Address, RelayedAddress] = {}
        self._machine = make_handshake(self._core)
        self.peer_key = intro.peer_key
        # Transaction ids of our hellos still waiting for an answer, and of
        # the peer's hellos seen: a hello or answer sent again (a replay)
        # is dropped, from whatever address.
        self._sent_txids: dict[bytes, None] = {}
        self._seen_txids: dict[bytes, None] = {}
        if endpoint.config.insecure:
            self.log = _InsecureLogger(namespace=f"{__name__}.{type(self).__name__}", source=self)
            self._path = PlainPath(self)
        else:
            self._path = SecurePath(
                self,
                SecureSession(
                    initiator=self.initiator,
                    identity=endpoint.identity,
                    peer_key=intro.peer_key,
                    intro_id=intro.intro_id,
                    intro_key=intro.key,
                    random_bytes=endpoint._random_bytes,
                    now=self.introduced_at,
                    payload=payload,
                ),
            )
        #: Birthday-search and re-punch sockets (p2pnet._extrasockets).
        self._sockets = ExtraSockets(endpoint, self.log, self._encode_hello)

        self._admission = Admission(
            self._clock,
            initiator=self.initiator,
            payload=payload,
            patience=endpoint.config.handshake.timeout,
            peer_id=self.peer_id,
            send=lambda frame_list, to: self._path.send_frames(frame_list, self.address if to is None else to),
            decide=self._decide,
            opened=self._open,
            refuse=self._refuse,
            timed_out=self._admission_timed_out,
        )
        if not self._path.secure:
            self._admission.skip()

    def __repr__(self) -> str:
        return f"<PeerConnection to {self.peer_id!r} via {self.path and self.path.value} {self.address}>"

    # -- the application's API -------------------------------------------

    def send(self, data: bytes, channel: int | None = None, *, flush: bool = True) -> None:
        """
        Send C{data} to the peer.

        Without C{channel}: one raw datagram, unreliable and unordered,
        like UDP (at most L{p2pnet._datapath.MAX_SEALED_DATAGRAM} bytes).  With a channel
        (declared in C{PeerConfig.channels}; both sides must declare the
        same): one message of any size up to C{PeerConfig.max_message},
        delivered as the channel's L{Delivery} says to the peer's
        C{PeerProtocol.message_received}.

        @param flush: C{False} lets small messages wait a few milliseconds
            (C{coalesce_delay}) to share a datagram with the next ones.
        @raise ConnectionClosed: if the connection is not open.
        @raise MessageTooLarge: over the message cap.
        @raise SendBufferFull: the send buffer is full (see
            L{when_writable}).
        @raise ValueError: an undeclared channel, or a raw datagram too
            big for one packet.
        """
        if not self.is_open:
            raise ConnectionClosed(self._not_open())
        if channel is None:
            self._path.send_datagram(data)
            self._sent_now(self._clock.seconds(), data=True)
        else:
            self._path.messaging().send(channel, data, flush)

    def when_writable(self) -> Deferred:
        """
        A Deferred that fires once the channels' send buffer has room again
        (at once if it has): wait on it after L{SendBufferFull}, or before
        sending more than the buffer's high-water mark.
        """
        return self._path.messaging().when_writable()

    @property
    def writable(self) -> bool:
        """
        Whether the channels' send buffer is under its high-water mark
        (messages sent now are not piling up).
        """
        return self._path.messaging().machine.writable

    def consumer(self, channel: int) -> ChannelConsumer:
        """
        C{channel} as a Twisted L{IConsumer}: C{write(data)} sends one
        message there, and a registered producer is paused while the send
        buffer is full and resumed when it has room (see
        L{p2pnet._consumer}).  The same object for the same channel.

        @raise ValueError: an undeclared channel.
        """
        if channel not in {c.id for c in self._endpoint.config.channels}:
            raise ValueError(f"channel {channel} is not declared in PeerConfig.channels")
        consumer = self._consumers.get(channel)
        if consumer is None:
            consumer = self._consumers[channel] = ChannelConsumer(self, channel)
        return consumer

    def _producer_registered(self, consumer: ChannelConsumer) -> None:
        self._producing[consumer] = None

    def _producer_unregistered(self, consumer: ChannelConsumer) -> None:
        self._producing.pop(consumer, None)

    def stats(self):
        """
        The channels' statistics: RTT, loss, rates, bandwidth estimate,
        bytes in flight, queues (a L{p2pnet.channels.ConnectionStats}), or
        None before any message was sent or received.
        """
        messaging = self._path.messages
        return None if messaging is None else messaging.stats()

    def _sent_now(self, now: float, data: bool = False) -> None:
        """
        Something went to the peer (a keepalive is not due before
        C{keepalive_interval} from now); C{data}: the game's data (or
        anything else the peer must answer), so an answer is owed (see
        L{p2pnet._liveness}).
        """
        self._core.last_sent = now
        if data and self._liveness is not None:
            self._liveness.sent(now)

    def _send_echo_request(self, to) -> None:
        """
        Ask the peer for an answer on the path to C{to}.
        """
        self._path.send_echo_request(to)

    def _unanswered(self, reason: str) -> None:
        """
        The peer answered nothing while we sent: tell it we give up (in
        case only its answers are lost) and report the connection lost.
        """
        if self.ended:
            return
        self._close_sent = (CloseCode.TIMED_OUT, "no answer while sending")
        self._machine.close()
        self._lost(reason)

    @property
    def secure(self) -> bool:
        """
        Whether the connection is a secure session (encrypted, replay-proof,
        bound to the peer's key); False only with C{insecure=True}.
        """
        return self._path.secure

    def _send_to(self, raw: bytes, to) -> None:
        if isinstance(to, RelayRoute):
            self._endpoint.write(wire.encode_relayed(to.allocation_id, to.side, raw, to.key), to.relay)
            return
        if isinstance(to, TurnRoute):
            self._endpoint.turn_send(to.peer, raw)
            return
        if isinstance(to, RelayedAddress):
            self._endpoint.write(raw, to.address)
            return
        if not self._sockets.send(raw, to):
            self._endpoint.write(raw, to)

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """
        Close the connection; the peer is told why (C{code}, a
        L{CloseCode} or the game's own from 128 to 255, and C{reason}, at
        most 255 UTF-8 bytes), and its connection ends with L{PeerLost}
        carrying both; ours ends with L{ConnectionClosed} carrying them.
        The protocol's C{connection_lost} runs on the next reactor turn.

        @raise ValueError: a code outside 0-255, or a reason too long.
        """
        frames.Close(code, reason)  # validates both
        if self.ended:
            return
        self._close_sent = (int(code), reason)
        self._machine.close()
        said = describe_close(code, reason)
        if self._opened:
            message = f"connection to {self.peer_id!r} closed: {said}"
        else:
            message = f"connection to {self.peer_id!r} closed before it opened: {said}"
        self._end(Failure(ConnectionClosed(message, code=code, reason=reason)), "closed", said, code)

    def _not_open(self) -> str:
        """
        Why the connection cannot be used, for L{ConnectionClosed}.
        """
        name = repr(self.peer_id)
        if not self.ended:
            return f"connection to {name} is not open yet (still connecting)"
        why = self._failure.getErrorMessage() if self._failure is not None else "closed"
        if not self._opened:
            return f"connection to {name} never opened: {why}"
        return f"connection to {name} is closed: {why}"

    def set_protocol(self, protocol: PeerProtocol) -> None:
        """
        Attach the receiver; its C{connection_made} runs now, then it gets
        any datagrams that arrived before it was attached.
        """
        self.protocol = protocol
        protocol.connection_made(self)
        early, self._early = self._early, []
        for payload in early:
            if self.protocol is not protocol or self.ended:
                break
            protocol.datagram_received(payload)
        messaging = self._path.messages
        if messaging is not None and self.protocol is protocol and not self.ended:
            messaging.attached(protocol)

    @property
    def is_open(self) -> bool:
        """
        Whether the connection is up: a path is validated, the host
        accepted the connect request, and it has not ended.  C{send} works
        exactly while this is true.
        """
        return self._opened and not self.ended

    @property
    def peer_public(self) -> Address:
        """
        The peer's public address, as the introducer saw it.
        """
        return self._public

    @property
    def candidates(self) -> tuple[Address, ...]:
        return tuple(self._core.candidates)

    # -- for the endpoint -------------------------------------------------

    def _when_connected(self) -> Deferred:
        if self.is_open:
            return succeed(self)
        if self._failure is not None:
            return fail(self._failure)
        d = Deferred()
        self._waiters.append(d)
        return d

    def _plausible(self, candidate: Address) -> bool:
        """
        Whether a candidate the peer names may get our packets: one we can
        send to, on the host the introducer saw the peer at or on a LAN.
        """
        other = self._other_public
        return (
            candidate.is_reachable
            and self._endpoint.can_send(candidate)
            and usable_candidate(candidate, self._public)
            and (candidate.host == self._public.host or candidate.is_lan or (other is not None and candidate.host == other.host))
        )

    def _refused(self, source: Address) -> bool:
        """
        Whether a packet from C{source} must be dropped: a relay-only
        connection takes nothing that did not come through a relay (an
        answer sent back directly would give the peer a direct path).
        """
        if self.relay_only and not is_relayed(source):
            self._endpoint.count("dropped-direct-relay-only")
            return True
        return False

    def _message_received(self, message: wire.Message, source: Address) -> None:
        if self._refused(source):
            return
        if isinstance(message, wire.Hello):
            if message.peer_id != self.peer_id:
                return
            if message.txid in self._seen_txids:
                self._endpoint.count("dropped-replay")
                return
            _remember(self._seen_txids, message.txid)
            self.remote_conn_id = message.conn_id
            for candidate in map(normalise, message.candidates[:MAX_CANDIDATES]):
                if self._plausible(candidate):
                    self._core.add_candidate(candidate)
            self._path.handshake_received(message.noise, source)
            self._machine.hello_received(source, message.txid)
        elif isinstance(message, wire.HelloAck):
            if message.peer_id != self.peer_id:
                return
            if self._sent_txids.pop(message.txid, False) is False:
                # Not an answer to a hello of ours, or its second copy.
                self._endpoint.count("dropped-replay")
                return
            self.remote_conn_id = message.conn_id
            if not self._path.handshake_received(message.noise, source):
                self._endpoint.count("dropped-answer-before-keys")
                return
            if self._path.secure and not self._path.answer_allowed(source):
                return
            self._machine.answer_received(source)
        else:
            self._path.control_received(message, source)

    def _data_received(self, raw: bytes, source: Address) -> None:
        """
        A C{DATA} datagram (the insecure framing).
        """
        if not self._refused(source):
            self._path.data_received(raw, source)

    def _sealed_received(self, raw: bytes, source: Address) -> None:
        """
        A C{SEALED} datagram.
        """
        if not self._refused(source):
            self._path.sealed_received(raw, source)

    def _deliver(self, payload: bytes) -> None:
        """
        Hand one application datagram to the protocol (or keep it until
        one is attached).
        """
        if self.address is None or self.ended:
            return
        if self.protocol is not None and self._opened:
            self.protocol.datagram_received(payload)
        elif len(self._early) < self.EARLY_LIMIT:
            # The protocol is attached on the next reactor turn; keep what
            # arrives before that.
            self._early.append(payload)
        else:
            self._endpoint.count("dropped-data-no-protocol")

    def _reverse_received(self, public: Address) -> None:
        self._core.add_candidate(public)
        self._machine.reverse_received()

    # -- HandshakeOutputs -------------------------------------------------

    def _send_probe(self, to: Address, ttl: int) -> None:
        if is_relayed(to):
            return
        self._endpoint.write_with_ttl(
            wire.encode(wire.Probe(self._endpoint.new_txid(), self.intro_id)), to, ttl
        )

    def _send_hello(self, to: Address) -> None:
        # Relay-only: our candidates stay ours.
        self._send_to(self._encode_hello(() if self.relay_only else self._endpoint.own_candidates()), to)
        self._admission.answered(to)

    def _encode_hello(self, candidates: tuple[Address, ...]) -> bytes:
        txid = self._endpoint.new_txid()
        _remember(self._sent_txids, txid)
        hello = wire.Hello(
            txid, self.intro_id, self._endpoint.peer_id, self.conn_id, candidates,
            noise=self._path.hello_noise(),
        )
        return wire.encode(hello, self.key)

    def _send_answer(self, to: Address, txid: bytes) -> None:
        observed = (
            to.relay if isinstance(to, RelayRoute)
            else to.peer if isinstance(to, TurnRoute)
            else to.address if isinstance(to, RelayedAddress)
            else to
        )
        answer = wire.HelloAck(
            txid, self.intro_id, self._endpoint.peer_id, self.conn_id, observed, noise=self._path.hello_noise()
        )
        self._send_to(wire.encode(answer, self.key), to)
        # The joiner gets its keys from whichever answer (or hello of
        # ours) arrives: our acceptance follows each.
        self._admission.answered(to)

    def _send_keepalive(self, to: Address) -> None:
        self._path.send_keepalive(to)

    def _send_close(self, to: Address) -> None:
        self._path.send_close(to, *self._close_sent)

    def _request_reversal(self) -> None:
        self._endpoint.request_reversal(self)

    def _request_relay(self) -> None:
        self._endpoint.request_relay(self)

    def _turn_ready(self, route: TurnRoute) -> None:
        """
        Our TURN allocation can reach the peer: offer it as a relay path.
        """
        self._machine.relay_offered(route)

    def _turn_candidate(self, relayed: Address) -> None:
        """
        The peer's TURN relayed address: we send to it directly.
        """
        self._relayed_sources[relayed] = RelayedAddress(relayed)
        self._machine.relay_offered(self._relayed_sources[relayed])

    def _normalise(self, source):
        """
        What arrives from the peer's TURN relayed address is relayed.
        """
        return self._relayed_sources.get(source, source)

    def _relay_offered(self, offer: wire.RelayOffer, answer: bool = False) -> None:
        """
        A relay offer for this connection: the answer to our own relay
        request (C{answer}), or one the introducer pushed because the peer
        asked.  A pushed offer is taken only once we asked for a relay too
        (before, the peer's side alone cannot bind it, and without a
        secret anyone can spoof one: each would add a route and send
        hellos to the relay it names), and only within the endpoint's
        per-connection cap; anything else is dropped and counted
        (C{dropped-relay-offer}).
        """
        endpoint = self._endpoint
        if not (answer or self._core.relay_requested):
            endpoint.count("dropped-relay-offer")
            return
        relay = offer.relay
        if relay.host == "0.0.0.0":
            relay = Address(endpoint.introducer.host, relay.port)
        route = RelayRoute(relay, offer.allocation, offer.side, offer.key)
        if not endpoint.remember_route(self, route, answer):
            endpoint.count("dropped-relay-offer")
            return
        self._machine.relay_offered(route)
        if isinstance(self.address, RelayRoute) and self.address.allocation_id != route.allocation_id:
            # Relayed already: the introducer moved us because our relay
            # died.  A keepalive binds us at the new relay; once the peer's
            # traffic comes through it, the path moves there.
            self._send_keepalive(route)

    def _status(self, kind: str) -> None:
        self._endpoint.emit(StatusEvent(kind, self.peer_id, candidates=self.candidates))

    def _connected(self, address: Address) -> None:
        self.address = address
        self.path = self._path_for(address)
        self._sockets.settle(address)
        self._admission.path_up()

    def _open(self) -> None:
        """
        Admitted: the connection is open (status C{connected}, the
        waiting Deferreds fire).
        """
        self._opened = True
        address = self.address
        elapsed = self._clock.seconds() - self.introduced_at
        self.log.info(
            "connected to {peer_id} at {address} ({path}) in {elapsed:.3f}s",
            peer_id=self.peer_id,
            address=str(address),
            path=self.path.value,
            elapsed=elapsed,
        )
        if self._path.secure:
            detail = f"secure session, peer key {fingerprint(self.peer_key)}"
        else:
            detail = "INSECURE: not encrypted, not replay-proof"
        self._endpoint.emit(StatusEvent("connected", self.peer_id, self.path, address, detail, elapsed))
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            self._endpoint.eventually(d.callback, self)
        self._pump_messages()

    def _path_changed(self, address: Address) -> None:
        if isinstance(address, RelayRoute) and isinstance(self.address, RelayRoute) and not self.ended:
            # From one relay to another (the first one died): tell the
            # peer at once, so that it moves too.
            self._send_keepalive(address)
        self.address = address
        self.path = self._path_for(address)
        self.log.info(
            "path to {peer_id} moved to {address} ({path})",
            peer_id=self.peer_id,
            address=str(address),
            path=self.path.value,
        )
        self._endpoint.emit(StatusEvent("path-changed", self.peer_id, self.path, address))
        if self.protocol is not None:
            self._endpoint.eventually(self.protocol.path_changed, self.path)
        self._pump_messages()

    def _pump_messages(self) -> None:
        messaging = self._path.messages
        if messaging is not None:
            messaging.pump()

    def _no_relay(self, why: str) -> None:
        """
        The relay we asked for does not exist: say so now (status
        C{no-relay}) and in the failure, if it comes to that.
        """
        if self._without_relay is None:
            self._without_relay = why
            self._endpoint.emit(StatusEvent("no-relay", self.peer_id, detail=why, candidates=self.candidates))

    def _failed(self, error: Exception) -> None:
        if self._without_relay is not None and isinstance(error, HandshakeTimeout):
            error.args = (f"{error}; no relay to fall back on: {self._without_relay}",)
        # Within the endpoint's budget: spoofed introductions fail too.
        self._endpoint.note("failed", self.log.info, "{error}", error=str(error))
        self._endpoint.emit(StatusEvent("failed", self.peer_id, detail=str(error)))
        self._end(Failure(error), None)

    def _lost(self, reason: str) -> None:
        code, text = self._peer_close if self._peer_close is not None else (None, "")
        if code is not None:
            reason = f"the peer closed the connection: {describe_close(code, text)}"
        self.log.info("lost {peer_id}: {reason}", peer_id=self.peer_id, reason=reason)
        if self._opened:
            error = PeerLost(f"connection to {self.peer_id!r} lost: {reason}", code=code, reason=text)
            self._end(Failure(error), "lost", reason, code)
        elif code == CloseCode.REFUSED and self.initiator:
            self._failed(ConnectionRefused(self.peer_id, code, text))
        else:
            self._failed(PeerLost(f"connection to {self.peer_id!r} lost before it opened: {reason}", code=code, reason=text))

    def _peer_closed(self, code: int | None = None, reason: str = "") -> None:
        """
        The peer's close (sealed frame, or insecure message), with its code.
        """
        self._peer_close = (code if code is not None else CloseCode.NORMAL, reason)
        self._machine.peer_closed()

    def _admission_timed_out(self, error: Exception) -> None:
        """
        The host never answered our connect request: tell it we give up,
        and fail with C{error}.
        """
        self._close_sent = (CloseCode.TIMED_OUT, "no answer to the connect request")
        self._machine.close()
        self._failed(error)

    def _decide(self, payload: bytes) -> Deferred:
        """
        Ask the factory's C{accept_connection} (on a later reactor turn)
        whether C{payload} admits the peer.
        """
        accept = getattr(self._endpoint.factory, "accept_connection", None)
        decided = Deferred()
        if accept is None:
            self._endpoint.eventually(decided.callback, None)
        else:
            self._endpoint.eventually(lambda: maybeDeferred(accept, self.peer_id, payload).chainDeferred(decided))
        return decided

    def _refuse(self, code: int, reason: str, to) -> None:
        """
        Close, telling the peer at C{to} first when our path is not up
        (the machine only tells a connected peer).
        """
        if to is not None and self.address is None and not self.ended:
            self._path.send_close(to, code, reason)
        self.close(code, reason)

    def _frame_received(self, frame, source) -> None:
        """
        A sealed admission or close frame from the peer.
        """
        if isinstance(frame, frames.Close):
            self._peer_closed(frame.code, frame.reason)
        elif isinstance(frame, frames.Connect):
            if not self._admission.request(frame.payload, source):
                self._endpoint.count("dropped-unexpected-connect")
        elif not self._admission.accept_received():
            self._endpoint.count("dropped-unexpected-accept")

    # -- internals ----------------------------------------------------------

    def _path_for(self, address: Address) -> Path:
        if is_relayed(address):
            return Path.RELAYED
        if address.is_ipv6:
            return Path.DIRECT_LOCAL_V6 if address.is_lan else Path.DIRECT_PUBLIC_V6
        if address in self._core.local_candidates and address != self._public:
            # A port mapping is advertised beside the local addresses (see
            # p2pnet._portmapping); it is the router's external address,
            # the host the introducer saw the peer at, with its own port.
            if address.host == self._public.host:
                return Path.DIRECT_MAPPED
            return Path.DIRECT_LOCAL
        return Path.DIRECT_PUBLIC

    def _end(self, reason: Failure, kind: str | None, detail: str = "", code: int | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        self._admission.stop()
        self._path.close()
        if self._liveness is not None:
            self._liveness.stop()
        self._sockets.close()
        self._failure = reason
        self._endpoint.forget(self)
        if kind is not None:
            self._endpoint.emit(StatusEvent(kind, self.peer_id, self.path, self.address, detail=detail, code=code))
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            self._endpoint.eventually(d.errback, reason)
        if self.protocol is not None and self._opened:
            self._endpoint.eventually(self.protocol.connection_lost, reason)
        for consumer in list(self._producing):
            consumer.connection_ended()
