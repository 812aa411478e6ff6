"""
The introducer: a UDP rendezvous server where hosts register, host and list
sessions, and get introduced to each other.

L{IntroducerProtocol} decodes, checks and dispatches; every decision about
registrations and sessions is the pure L{Registry}'s.  L{IntroducerService}
binds the socket; C{p2pnet.introducer_tap} holds the twistd options.
"""

from __future__ import annotations

import os
from collections import Counter, OrderedDict
from typing import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from p2pnet import wire
from p2pnet._intromemory import IntroductionMemory, lag_ms
from p2pnet._lobby import LobbyError, list_answer
from p2pnet._ipv6 import alternate_heartbeat
from p2pnet._pushes import Budget, Pusher
from p2pnet._relaypool import RelayPool, RelaySettings, RelayState, moved_offers
from p2pnet._ratelimit import LogBudget, RateLimiter
from p2pnet._hostalive import check_alive
from p2pnet._hostwatch import UNANSWERED, HostWatch, Watched
from p2pnet._registry import ChallengeNeeded, Registration, Registry, RegistryError
from p2pnet._stunserver import StunServer
from p2pnet._udpservice import IntroducerService, UDPService
from p2pnet._udpwrite import FastDatagramWriting
from p2pnet.address import Address
from p2pnet.errors import MalformedMessage
from p2pnet.wire import ErrorCode

#: The largest answer the introducer sends (fits any path's MTU).
MAX_ANSWER = wire.MAX_DATAGRAM

#: A SessionList's header, TOTAL and longest CURSOR.
_SESSION_LIST_FIXED = wire.HEADER_SIZE + (3 + 4) + (3 + wire.MAX_CURSOR)
_HEARTBEAT = bytes((wire.MessageType.HEARTBEAT,))


class _PrimaryStunSocket:
    """
    The introducer's own socket, as the L{StunServer}'s primary socket.
    """

    name = "primary"

    def __init__(self, transport, local: Address, write_datagram: Callable[[bytes, tuple], object]) -> None:
        self.transport = transport
        self.local = local
        self.write_datagram = write_datagram


#: The public address of a relay-only peer, in the introduction its peer
#: gets: none.
HIDDEN = Address("0.0.0.0", 0)


def introductions(
    random_bytes: Callable[[int], bytes],
    requester: Registration,
    target: Registration,
    txid: bytes,
    session_id: bytes | None,
    flags: int | None = None,
    hide_target: bool = False,
) -> tuple[bytes, wire.Introduction, wire.Introduction]:
    """
    The two copies of one introduction: C{(intro id, to the requester, to
    the target)}.  A relay-only requester (L{wire.FLAG_RELAY_ONLY} in
    C{flags}) is shown to the target without its addresses (public
    C{0.0.0.0:0}, no local ones, no NAT facts, no lag), flagged so that the
    target uses nothing but a relay; C{hide_target} does the same the other
    way (a relay-only host).
    """
    intro_id = random_bytes(wire.INTRO_ID_SIZE)
    key = random_bytes(wire.KEY_SIZE)
    to_requester = wire.Introduction(
        txid,
        intro_id,
        target.peer_id,
        HIDDEN if hide_target else target.public,
        () if hide_target else target.local,
        key,
        wire.FLAG_INITIATOR | (wire.FLAG_RELAY_ONLY if hide_target else 0),
        session_id,
        None if hide_target else target.nat,
        None if hide_target else lag_ms(requester, target),
        target.peer_key,
        None if hide_target else target.alternate,
    )
    hidden = bool((flags or 0) & wire.FLAG_RELAY_ONLY)
    to_target = wire.Introduction(
        random_bytes(wire.TXID_SIZE),
        intro_id,
        requester.peer_id,
        HIDDEN if hidden else requester.public,
        () if hidden else requester.local,
        key,
        wire.FLAG_RELAY_ONLY if hidden else 0,
        session_id,
        None if hidden else requester.nat,
        None if hidden else lag_ms(target, requester),
        requester.peer_key,
        None if hidden else requester.alternate,
    )
    return intro_id, to_requester, to_target


class IntroducerProtocol(FastDatagramWriting, DatagramProtocol):
    """
    The introducer's UDP protocol.

    Bad datagrams are counted in L{stats} and dropped; nothing a remote
    sends can raise into the reactor or disturb other registrations.

    Without a secret, no answer to a request is larger than the request
    itself (clients pad), so the introducer cannot be used to amplify a
    spoofed-source flood.  With a secret, every request must carry a valid
    C{AUTH} field; anything else is dropped without an answer, and answers
    are signed so clients know they come from the introducer.

    @param clock: time source and scheduler.
    @param registry: the registrations and sessions.
    @param random_bytes: C{n -> bytes} for introduction ids and keys.
    @param secret: shared secret, or None for an open introducer.
    @param rate_limiter: per-source-IP limiter, or None.
    @param stun_responder: a L{StunResponder} answering STUN requests on
        the same port (its L{StunServer}, C{stun_server}, can also serve
        RFC 5780 alternate sockets), or None to drop STUN.
    @param relay: the L{RelaySettings} of the relay whose allocations this
        introducer hands out, a L{RelayPool} of several, or None when there
        is no relay.
    @param sweep_interval: seconds between expiry sweeps (default: 1 s,
        so an expired host's sessions leave the lobby within a second).
    @param silent_after: a peer that sent nothing (no heartbeat) for this
        long is taken for gone: introductions to it, and joins to the
        sessions it hosts, are refused C{HOST_GONE} at once rather than
        sent to a peer that will not punch back (default: one and a half
        heartbeat intervals, the heartbeat being a quarter of the
        registration lifetime as the peers' default of 15 s is of 60 s).
    @param stats_interval: seconds between statistics log lines (0: never).
    @param identity: the introducer's static X25519 private key (peers
        prove their keys to it before a registration moves), or None for a
        fresh one.
    """

    log = Logger()

    #: Answer plain heartbeats on the fast path (C{_quick_heartbeat});
    #: the tests turn it off to check that both paths behave alike.
    quick_heartbeats = True
    #: C{(intro_id, seconds since it was sent) -> None}, called at the
    #: first acknowledgement of each side's copy of an introduction, or
    #: None (L{p2pnet._metrics} measures introduction latency with it).
    intro_ack_observer: Callable[[bytes, float], object] | None = None

    def __init__(
        self,
        clock: IReactorTime,
        registry: Registry,
        random_bytes: Callable[[int], bytes] = os.urandom,
        secret: bytes | None = None,
        rate_limiter: RateLimiter | None = None,
        stun_responder: object | None = None,
        relay: RelaySettings | RelayPool | None = None,
        sweep_interval: float | None = None,
        stats_interval: float = 0.0,
        silent_after: float | None = None,
        log_rate: float = 20.0,
        identity: X25519PrivateKey | None = None,
    ) -> None:
        self._identity = identity if identity is not None else X25519PrivateKey.generate()
        #: The introducer's static X25519 public key (32 bytes).
        self.public_key = self._identity.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._clock = clock
        self.registry = registry
        self._random_bytes = random_bytes
        self._secret = wire.Mac(secret) if secret is not None else None
        self._rate_limiter = rate_limiter
        self.stun_responder = stun_responder
        self.stun_server = StunServer(stun_responder) if stun_responder is not None else None
        if isinstance(relay, RelaySettings):
            relay = RelayPool([relay])
        #: The relays allocations go to (None: no relay).
        self.relays: RelayPool | None = relay
        #: The first relay's settings (None: no relay).
        self.relay = relay.relays[0].settings if relay is not None else None
        self._sweep_interval = sweep_interval or max(0.05, min(1.0, registry.lifetime / 4))
        self.silent_after = silent_after if silent_after is not None else 1.5 * registry.lifetime / 4
        self._stats_interval = stats_interval
        self._log_budget = LogBudget(log_rate)
        self._last_stats = 0.0
        self._sweep_call = None
        self._rate_noticed: OrderedDict[str, float] = OrderedDict()
        self._stats: Counter[str] = Counter()
        # The hot path counts in plain integers; L{stats} folds them in.
        self._received = 0
        self._quick_answered = 0
        self._handlers = {
            wire.Register: self._on_register,
            wire.Heartbeat: self._on_heartbeat,
            wire.Unregister: self._on_unregister,
            wire.HostSession: self._on_host_session,
            wire.Unhost: self._on_unhost,
            wire.ListSessions: self._on_list_sessions,
            wire.Introduce: self._on_introduce,
            wire.ReverseRequest: self._on_reverse_request,
            wire.IntroAck: self._on_intro_ack,
            wire.RelayRequest: self._on_relay_request,
            wire.CandidateOffer: self._on_candidate_offer,
            wire.Proof: self._on_proof,
        }
        self._pusher = Pusher(clock, self._write_push, self._stats)
        self._host_watch = HostWatch()
        self._budget: Budget | None = None
        self.introductions = IntroductionMemory()
        # (requester, txid) -> the requester's introductions, so that a
        # retransmitted request gets the same introductions again rather
        # than new ones the other side would punch for in vain.
        self._recent: OrderedDict[tuple[str, bytes], tuple[float, list[wire.Introduction]]] = OrderedDict()

    # -- lifecycle --------------------------------------------------------

    def startProtocol(self) -> None:
        self._last_stats = self._clock.seconds()
        self._sweep_call = self._clock.callLater(self._sweep_interval, self._sweep)

    def stopProtocol(self) -> None:
        if self._sweep_call is not None and self._sweep_call.active():
            self._sweep_call.cancel()
        self._sweep_call = None
        self._pusher.stop()
        self._host_watch.clear()

    def _check_hosts(self, now: float) -> None:
        """
        Tell joiners whose host left its introduction unacknowledged and
        sent no heartbeat since that it is gone (see L{p2pnet._hostwatch}).
        """
        for entry in self._host_watch.due(now):
            if self._pusher.sent_unacknowledged(entry.intro_id, entry.host_address) < UNANSWERED:
                continue
            host = self.registry.lookup(entry.host_id, now)
            if host is not None and host.refreshed > entry.introduced_at:
                continue
            requester = self.registry.lookup(entry.requester_id, now)
            if requester is None or requester.public != entry.requester_address:
                continue
            error = wire.Error(
                entry.txid, ErrorCode.HOST_GONE, f"{entry.host_id!r} is gone: it does not answer its introduction"
            )
            budget = entry.budget
            if budget is not None and budget.source == entry.requester_address.as_tuple():
                # An unauthenticated request pays for this too.
                size = len(wire.encode(error, self._secret))
                if budget.left < size:
                    self.stats["hosts-gone-unpaid"] += 1
                    continue
                budget.left -= size
            self.stats["hosts-gone"] += 1
            self._send(error, entry.requester_address)

    def _write_push(self, raw: bytes, to: tuple) -> None:
        self.write_datagram(raw, to)

    def _sweep(self) -> None:
        now = self._clock.seconds()
        self._check_hosts(now)
        for registration in self.registry.expire(now):
            self.stats["expired"] += 1
            if self._log_budget.allow("expired", now):
                self.log.info(
                    "registration of {peer_id} ({public}) expired",
                    peer_id=registration.peer_id,
                    public=str(registration.public),
                )
        self._log_budget.report_held(self.log)
        if self._stats_interval and now - self._last_stats >= self._stats_interval:
            self._last_stats = now
            self.log.info(
                "{registrations} registrations, {sessions} sessions; counters: {counters}",
                registrations=len(self.registry),
                sessions=self.registry.session_count,
                counters=dict(self.stats),
            )
        self._sweep_call = self._clock.callLater(self._sweep_interval, self._sweep)

    @property
    def stats(self) -> Counter[str]:
        """
        Event counters: datagrams C{received} and C{sent}, answers by kind,
        C{dropped-*} by reason, C{refused}, and so on.
        """
        stats = self._stats
        if self._received:
            stats["received"] += self._received
            self._received = 0
        quick = self._quick_answered
        if quick:
            self._quick_answered = 0
            stats["heartbeats"] += quick
            stats["sent"] += quick
        return stats

    # -- input ------------------------------------------------------------

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        try:
            self._datagram(data, addr)
        except Exception:
            self.stats["internal-error"] += 1
            self.log.failure("bug: unexpected error handling a datagram from {source}", source=addr)

    def _datagram(self, data: bytes, addr: tuple) -> None:
        self._received += 1
        if not addr[1]:
            # A spoofed source: no answer can go to port 0 (sendto
            # refuses it), and a registration there could never be reached.
            self._drop("source-port-0", addr)
            return
        now = self._clock.seconds()
        if self._rate_limiter is not None and not self._rate_limiter.allow(addr[0], now):
            self._rate_limited(data, addr, now)
            return
        if data[:1] != b"\xd1":
            if self.stun_server is not None and len(data) >= 20 and data[0] < 0x40:
                self._stun(data, addr)
            else:
                # (Empty: an endpoint checking that our port is open.)
                self._drop("not-p2pnet" if data else "empty", addr)
            return
        if data[1:2] == _HEARTBEAT and self.quick_heartbeats and self._quick_heartbeat(data, addr, now):
            return
        try:
            message = wire.decode(data)
        except MalformedMessage as e:
            self._drop("malformed", addr, str(e))
            return
        authenticated = False
        if self._secret is not None:
            if not wire.verify(data, self._secret):
                self._drop("unauthenticated", addr)
                return
            authenticated = True
        handler = self._handlers.get(type(message))
        if handler is None:
            self._drop("unexpected-type", addr, type(message).__name__)
            return
        source = Address(addr[0], addr[1])
        # Without the secret, everything one request makes us send, over
        # all packets and retransmits, is paid for by its size.
        self._budget = None if authenticated else Budget(len(data), addr)
        try:
            handler(message, source, len(data), authenticated, now)
        except ChallengeNeeded as e:
            self._challenge(message.txid, e, source, len(data), authenticated, now)
        except RegistryError as e:
            self.stats["refused"] += 1
            if self._log_budget.allow("refused", now):
                self.log.debug(
                    "refused {kind} from {source}: {reason}",
                    kind=type(message).__name__,
                    source=str(source),
                    reason=e.reason,
                )
            self._error(message.txid, e.code, e.reason, source, len(data), authenticated)
        finally:
            self._budget = None

    def _quick_heartbeat(self, data: bytes, addr: tuple, now: float) -> bool:
        """
        Answer the common heartbeat (live peer, right cookie, same public
        address, valid AUTH when a secret is set) without building message
        objects; False, having done nothing, for anything else, which the
        generic path then handles (and explains).
        """
        parsed = wire.parse_heartbeat(data)
        if parsed is None:
            return False
        txid, peer_id, cookie = parsed
        if self._secret is not None and not wire.verify(data, self._secret):
            return False
        registration = self.registry.refresh(peer_id, cookie, addr[0], addr[1], now)
        if registration is None:
            return False
        if registration.ack_for is not registration.public:
            registration.ack_for = registration.public
            registration.ack_tail = wire.heartbeat_ack_tail(registration.public, int(self.registry.lifetime))
        raw = wire.finish_heartbeat_ack(txid, registration.ack_tail, self._secret)
        if self._secret is None and len(raw) > len(data):
            # An unpadded heartbeat: the generic path refuses (and logs)
            # the amplification; the refresh above is idempotent.
            return False
        self.write_datagram(raw, addr)
        self._quick_answered += 1
        return True

    def _drop(self, why: str, addr: tuple, detail: str = "") -> None:
        self.stats["dropped-" + why] += 1
        if self._log_budget.allow("dropped", self._clock.seconds()):
            self.log.debug(
                "dropped a datagram from {source}: {why} {detail}",
                source=addr,
                why=why,
                detail=detail,
            )

    def _rate_limited(self, data: bytes, addr: tuple, now: float) -> None:
        self.stats["dropped-rate-limited"] += 1
        told = self._rate_noticed.get(addr[0])
        if told is not None and now - told < 10.0:
            return
        if len(self._rate_noticed) >= 4096:
            self._rate_noticed.popitem(last=False)
        self._rate_noticed[addr[0]] = now
        if self._log_budget.allow("rate-limiting", now):
            self.log.info("rate limiting {host}", host=addr[0])
        if data[:1] == b"\xd1" and len(data) >= wire.HEADER_SIZE:
            txid = data[2 : wire.HEADER_SIZE]
            self._error(
                txid,
                ErrorCode.RATE_LIMITED,
                "rate limited",
                Address(addr[0], addr[1]),
                len(data),
                False,
            )

    def _stun(self, data: bytes, addr: tuple) -> None:
        server = self.stun_server
        receiver = server.protocols.get("primary")
        if receiver is None or receiver.transport is not self.transport:
            host = self.transport.getHost()
            receiver = _PrimaryStunSocket(self.transport, Address(host.host, host.port), self.write_datagram)
            server.protocols["primary"] = receiver
        before = server.answered
        server.receive(data, addr, receiver)
        self.stats["stun-answered" if server.answered > before else "stun-dropped"] += 1

    # -- output -----------------------------------------------------------

    def _send(
        self,
        message: wire.Message,
        to: Address,
        request_size: int | None = None,
        authenticated: bool = False,
    ) -> bool:
        """
        Send C{message}; as an answer to an unauthenticated request of
        C{request_size} bytes, only if it is no larger than the request.
        """
        try:
            raw = wire.encode(message, self._secret)
        except ValueError as e:
            # A bug, but one that must not cost a traceback per request.
            self.stats["unencodable"] += 1
            if self._log_budget.allow("unencodable", self._clock.seconds()):
                self.log.error(
                    "bug: cannot encode {kind} for {source}: {error}",
                    kind=type(message).__name__,
                    source=str(to),
                    error=str(e),
                )
            return False
        if request_size is not None and not authenticated and len(raw) > request_size:
            self.stats["dropped-amplification"] += 1
            if self._log_budget.allow("not-answering", self._clock.seconds()):
                self.log.debug(
                    "not answering {source}: {kind} ({size} bytes) is larger than the "
                    "request ({request} bytes); the client must pad",
                    source=str(to),
                    kind=type(message).__name__,
                    size=len(raw),
                    request=request_size,
                )
            return False
        self.write_datagram(raw, to.as_tuple())
        self.stats["sent"] += 1
        if self._budget is not None:
            self._budget.left -= len(raw)
        return True

    def _error(
        self,
        txid: bytes,
        code: ErrorCode,
        reason: str,
        to: Address,
        request_size: int,
        authenticated: bool,
    ) -> None:
        room = wire.MAX_STRING
        if not authenticated:
            overhead = len(wire.encode(wire.Error(txid, int(code), ""), self._secret))
            room = min(room, max(0, request_size - overhead))
        message = wire.Error(txid, int(code), reason.encode("utf-8")[:room].decode("utf-8", "ignore"))
        self._send(message, to, request_size, authenticated)

    # -- handlers ---------------------------------------------------------

    def _exchange(self, peer_key: bytes) -> bytes:
        """
        The X25519 shared secret of the introducer's key and C{peer_key}.

        @raise ValueError: for a key that gives no usable secret.
        """
        return self._identity.exchange(X25519PublicKey.from_public_bytes(peer_key))

    def _challenge(self, txid: bytes, needed: ChallengeNeeded, source: Address, size, authenticated, now) -> None:
        """
        Answer a request that would move a registration with a challenge
        to its source, no larger than the request.
        """
        value = self.registry.challenge(needed, source, now)
        self.stats["challenges"] += 1
        message = wire.Challenge(txid, value, source, self.public_key)
        if len(wire.encode(message, self._secret)) > size:
            message = wire.Challenge(txid, value, source)
        # Never larger than the request, even from holders of the secret:
        # the source is the address being claimed, not yet proven.
        self._send(message, source, size, False)

    def _on_proof(self, message: wire.Proof, source, size, authenticated, now) -> None:
        try:
            registration, kind = self.registry.prove(
                message.peer_id, message.challenge, message.proof, source, now, self._exchange
            )
        except RegistryError:
            self.stats["proofs-refused"] += 1
            raise
        self.stats["proofs"] += 1
        if self._log_budget.allow("moved", now):
            self.log.info(
                "{peer_id} proved its key from {public} ({kind})",
                peer_id=registration.peer_id,
                public=str(source),
                kind=kind,
            )
        if kind == "reclaim":
            answer = wire.Registered(
                message.txid, source, int(self.registry.lifetime), registration.cookie, self.public_key
            )
        else:
            answer = wire.HeartbeatAck(message.txid, source, int(self.registry.lifetime))
        self._send(answer, source, size, authenticated)

    def _on_register(self, message: wire.Register, source, size, authenticated, now) -> None:
        before = self.registry.lookup(message.peer_id, now)
        old_public = before.public if before is not None else None
        registration = self.registry.register(
            message.peer_id, source, message.local, message.cookie, now, message.peer_key, message.nat
        )
        self.stats["registered"] += 1
        if old_public is None:
            if self._log_budget.allow("registered", now):
                self.log.info(
                    "registered {peer_id}: public {public}, local {local}",
                    peer_id=registration.peer_id,
                    public=str(source),
                    local=", ".join(map(str, registration.local)) or "none",
                )
        elif old_public != source and self._log_budget.allow("moved", now):
            self.log.info(
                "{peer_id} moved from {old} to {public}",
                peer_id=registration.peer_id,
                old=str(old_public),
                public=str(source),
            )
        self._send(
            wire.Registered(
                message.txid,
                source,
                int(self.registry.lifetime),
                registration.cookie,
                self.public_key if message.peer_key is not None else None,
            ),
            source,
            size,
            authenticated,
        )

    def _on_heartbeat(self, message: wire.Heartbeat, source, size, authenticated, now) -> None:
        registration = alternate_heartbeat(self.registry, message, source, now)
        if registration is None:
            registration = self.registry.heartbeat(message.peer_id, message.cookie, source, now)
        self.stats["heartbeats"] += 1
        self._send(
            wire.HeartbeatAck(message.txid, source if source == registration.alternate else registration.public,
                              int(self.registry.lifetime)),
            source,
            size,
            authenticated,
        )

    def _on_unregister(self, message: wire.Unregister, source, size, authenticated, now) -> None:
        registration = self.registry.unregister(message.peer_id, message.cookie, source, now)
        self.stats["unregistered"] += 1
        if self._log_budget.allow("unregistered", now):
            self.log.info("{peer_id} unregistered", peer_id=registration.peer_id)

    def _on_host_session(self, message: wire.HostSession, source, size, authenticated, now) -> None:
        host = self.registry.authenticate(message.peer_id, message.cookie, source, now)
        session = self.registry.host_session(
            host,
            message.name,
            message.game_id,
            message.max_players,
            message.mesh,
            message.properties,
        )
        session.relay_only = bool((message.flags or 0) & wire.FLAG_RELAY_ONLY)
        if self._log_budget.allow("hosts", now):
            self.log.info(
                "{peer_id} hosts {name!r} ({game_id}, {max_players} players{mesh})",
                peer_id=host.peer_id,
                name=session.name,
                game_id=session.game_id,
                max_players=session.max_players,
                mesh=", mesh" if session.mesh else "",
            )
        self._send(wire.SessionHosted(message.txid, session.session_id), source, size, authenticated)

    def _on_unhost(self, message: wire.Unhost, source, size, authenticated, now) -> None:
        host = self.registry.authenticate(message.peer_id, message.cookie, source, now)
        session = self.registry.unhost(host, message.session_id)
        if self._log_budget.allow("stopped-hosting", now):
            self.log.info("{peer_id} stopped hosting {name!r}", peer_id=host.peer_id, name=session.name)

    def _on_list_sessions(self, message: wire.ListSessions, source, size, authenticated, now) -> None:
        budget = MAX_ANSWER if authenticated else min(MAX_ANSWER, size)
        budget -= _SESSION_LIST_FIXED
        if self._secret is not None:
            budget -= 3 + wire.AUTH_SIZE
        try:
            answer = list_answer(self.registry.lobby, message, budget, now)
        except LobbyError as e:
            raise RegistryError(e.code, e.reason) from None
        if isinstance(answer, wire.SessionList):
            self._send(answer, source, size, authenticated)
            return
        # A shared lobby answers later, still paid by this request's size.
        answer.addCallback(self._send, source, size, authenticated)
        answer.addErrback(lambda f: f.trap(LobbyError) and self._error(
            message.txid, f.value.code, f.value.reason, source, size, authenticated
        ))
        answer.addErrback(lambda f: self.log.failure("bug: the lobby failed a page", f))

    def _on_introduce(self, message: wire.Introduce, source, size, authenticated, now) -> None:
        requester = self.registry.authenticate(message.peer_id, message.cookie, source, now)
        key = (requester.peer_id, message.txid)
        while self._recent and (len(self._recent) > 4096 or next(iter(self._recent.values()))[0] < now - 30.0):
            self._recent.popitem(last=False)
        previous = self._recent.get(key)
        if previous is not None:
            self.stats["introductions-repeated"] += 1
            for introduction in previous[1]:
                self._send(introduction, requester.public, size, authenticated)
            return
        self._recent[key] = (now, [])
        try:
            self._introduce_request(message, requester, size, authenticated, now)
        except RegistryError:
            # A refusal is answered afresh when the request is repeated
            # (the error answer may be what was lost).
            del self._recent[key]
            raise

    def _introduce_request(self, message: wire.Introduce, requester, size, authenticated, now) -> None:
        if (message.target is None) == (message.session_id is None):
            raise RegistryError(ErrorCode.BAD_REQUEST, "name a target or a session, not both")
        if message.target is not None:
            target = self.registry.lookup(message.target, now)
            if target is None or target is requester:
                raise RegistryError(ErrorCode.UNKNOWN_PEER, f"no peer {message.target!r}")
            self._check_reachable(target, authenticated)
            check_alive(target, now, self.silent_after)
            self._introduce(requester, target, message.txid, None, size, authenticated, message.flags)
            return
        session, targets = self.registry.join(requester, message.session_id, now)
        for target in targets:
            if target.peer_id == session.host:
                check_alive(target, now, self.silent_after)
        for target in targets:
            hide_target = session.relay_only and target.peer_id == session.host
            self._introduce(
                requester, target, message.txid, session.session_id, size, authenticated, message.flags, hide_target
            )

    def _check_reachable(self, target: Registration, authenticated: bool) -> None:
        if not (target.verified or authenticated):
            raise RegistryError(ErrorCode.UNKNOWN_PEER, f"{target.peer_id!r} has not confirmed its address")

    def _introduce(
        self,
        requester: Registration,
        target: Registration,
        txid: bytes,
        session_id: bytes | None,
        size: int,
        authenticated: bool,
        flags: int | None = None,
        hide_target: bool = False,
    ) -> None:
        """
        Send both sides their introduction, in this same reactor turn.  A
        relay-only requester (L{wire.FLAG_RELAY_ONLY} in C{flags}) is
        introduced to the target without its addresses (public
        C{0.0.0.0:0}, no local ones, no NAT facts), flagged so the target
        uses nothing but a relay.  C{hide_target} does the same the other
        way (the target hosts the session as a relay-only host).
        """
        if not (target.verified or authenticated):
            self.stats["introductions-skipped"] += 1
            return
        intro_id, to_requester, to_target = introductions(
            self._random_bytes, requester, target, txid, session_id, flags, hide_target
        )
        raw_to_requester = wire.encode(to_requester, self._secret)
        if not authenticated and len(raw_to_requester) > size:
            self._send(to_requester, requester.public, size, authenticated)  # counts the drop
            return
        self.introductions.remember(intro_id, requester.peer_id, target.peer_id, self._clock.seconds())
        if session_id is not None:
            # The joiner's acknowledgement of this copy confirms its join.
            self.introductions.remember_join(intro_id, session_id, requester.peer_id, requester.public.as_tuple())
        self._push(intro_id, raw_to_requester, requester.public.as_tuple())
        remembered = self._recent.get((requester.peer_id, txid))
        if remembered is not None:
            remembered[1].append(to_requester)
        self._push(intro_id, wire.encode(to_target, self._secret), target.public.as_tuple())
        now = self._clock.seconds()
        self._host_watch.watch(Watched(
            now + HostWatch.FIRST_CHECK, now, intro_id, target.peer_id, target.public.as_tuple(),
            requester.peer_id, requester.public, txid, self._budget,
        ))
        self.stats["introductions"] += 1
        if self._log_budget.allow("introduced", self._clock.seconds()):
            self.log.info(
                "introduced {requester} ({requester_public}) to {target} ({target_public})",
                requester=requester.peer_id,
                requester_public=str(requester.public),
                target=target.peer_id,
                target_public=str(target.public),
            )

    def _push(self, intro_id: bytes, raw: bytes, to: tuple) -> None:
        """
        Send one side's copy of an introduction (or an offer, a candidate),
        and again until that side acknowledges it: a lost introduction
        would leave the other side punching alone.  Pushes only go to
        verified addresses (moving one needs a proof from the new address),
        so they cannot be aimed at a third party; see L{Pusher} for the
        pacing and what an unauthenticated request pays for.
        """
        self._pusher.push(intro_id, raw, to, self._budget)

    def _on_intro_ack(self, message: wire.IntroAck, source, size, authenticated, now) -> None:
        to = source.as_tuple()
        join = self.introductions.acknowledged_join(message.intro_id, to)
        if join is not None and self.registry.confirm_join(join[0], join[1], now):
            self.stats["joins-confirmed"] += 1
        if self._pusher.acknowledged(message.intro_id, to) and self.intro_ack_observer is not None:
            sent = self.introductions.when(message.intro_id)
            if sent is not None:
                self.intro_ack_observer(message.intro_id, now - sent)

    def _on_reverse_request(self, message: wire.ReverseRequest, source, size, authenticated, now) -> None:
        requester = self.registry.authenticate(message.peer_id, message.cookie, source, now)
        target = self.registry.lookup(message.target, now)
        if target is None:
            raise RegistryError(ErrorCode.UNKNOWN_PEER, f"no peer {message.target!r}")
        self._check_reachable(target, authenticated)
        self._send(
            wire.Reverse(
                self._random_bytes(wire.TXID_SIZE),
                requester.peer_id,
                message.intro_id,
                requester.public,
            ),
            target.public,
        )
        self.stats["reversals"] += 1
        if self._log_budget.allow("reversal", now):
            self.log.info(
                "asked {target} to send first to {requester}",
                target=target.peer_id,
                requester=requester.peer_id,
            )

    def _on_candidate_offer(self, message: wire.CandidateOffer, source, size, authenticated, now) -> None:
        requester = self.registry.authenticate(message.peer_id, message.cookie, source, now)
        target = self.registry.lookup(message.target, now)
        if target is None or target is requester:
            raise RegistryError(ErrorCode.UNKNOWN_PEER, f"no peer {message.target!r}")
        self._check_reachable(target, authenticated)
        self._send(wire.IntroAck(message.txid, message.intro_id), source, size, authenticated)
        push_id = self._random_bytes(8)
        forward = wire.Candidate(
            self._random_bytes(wire.TXID_SIZE), message.intro_id, requester.peer_id, message.candidate, push_id
        )
        self._push(push_id, wire.encode(forward, self._secret), target.public.as_tuple())
        self.stats["candidates-forwarded"] += 1

    def _on_relay_request(self, message: wire.RelayRequest, source, size, authenticated, now) -> None:
        requester = self.registry.authenticate(message.peer_id, message.cookie, source, now)
        if self.relays is None:
            raise RegistryError(ErrorCode.NO_RELAY, "this introducer runs no relay")
        target = self.registry.lookup(message.target, now)
        if target is None or target is requester:
            raise RegistryError(ErrorCode.UNKNOWN_PEER, f"no peer {message.target!r}")
        self._check_reachable(target, authenticated)
        if self.relays.choose() is None:
            raise RegistryError(ErrorCode.NO_RELAY, "no relay is answering")
        # Both members usually ask at about the same time: one allocation per
        # introduction, remembered with it, on the least loaded relay.
        allocation, fresh = self.introductions.relay_allocation(
            message.intro_id, requester.peer_id, target.peer_id, self._random_bytes
        )
        relay = None if fresh else self.relays.relay_of(allocation)
        if relay is None:
            relay = self.relays.assign(allocation, message.intro_id, (requester.peer_id, target.peer_id))
        relay_address, secret = relay.settings.offer_address(), relay.settings.secret
        key = wire.relay_key(secret, allocation)
        mine, theirs = (0, 1) if requester.peer_id < target.peer_id else (1, 0)
        self._send(
            wire.RelayOffer(message.txid, message.intro_id, allocation, relay_address, key, mine),
            source,
            size,
            authenticated,
        )
        if fresh:
            offer = wire.RelayOffer(
                self._random_bytes(wire.TXID_SIZE), message.intro_id, allocation, relay_address, key, theirs
            )
            self._push(allocation, wire.encode(offer, self._secret), target.public.as_tuple())
            self.stats["relay-allocations"] += 1
            if self._log_budget.allow("relay-allocation", now):
                self.log.info(
                    "relay allocation {allocation} on {relay} for {requester} and {target}",
                    allocation=allocation.hex(),
                    relay=relay.name,
                    requester=requester.peer_id,
                    target=target.peer_id,
                )

    def relay_died(self, relay: RelayState) -> None:
        """
        C{relay} stopped answering: move each pair it relayed for us (both
        still registered) to a new allocation on another relay, pushing
        the offer to both members as for a new allocation (they move their
        path to it, see docs/operations.md).
        """
        now = self._clock.seconds()
        relay.alive = False
        moved = 0
        for record in self.relays.take_records(relay):
            members = [self.registry.lookup(peer_id, now) for peer_id in record.peers]
            if None in members:
                continue
            allocation = self._random_bytes(8)
            new = self.relays.assign(allocation, record.intro_id, record.peers)
            if new is None:
                break
            self.introductions.replace_allocation(record.intro_id, allocation)
            offers = dict(moved_offers(record, allocation, new, lambda: self._random_bytes(wire.TXID_SIZE)))
            for member in members:
                self._push(allocation, wire.encode(offers[member.peer_id], self._secret), member.public.as_tuple())
            moved += 1
        self.stats["relay-allocations-moved"] += moved
        self.log.warn("relay {relay} is gone: {moved} relayed pairs moved", relay=relay.name, moved=moved)


__all__ = ["IntroducerProtocol", "IntroducerService", "RelaySettings", "UDPService", "lag_ms"]
