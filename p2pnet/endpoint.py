"""
Peer endpoints: the game-facing API.

A L{PeerEndpoint} is one UDP socket (a Twisted C{DatagramProtocol}) that
carries introducer traffic, warm-up probes, hellos, keepalives and
application data.  It registers with an introducer, hosts, lists and joins
sessions, and hands out L{PeerConnection}s once a direct path is validated.

Receiving is Twisted-style: give each connection a L{PeerProtocol}
(C{connection_made}, C{datagram_received}, C{connection_lost}); incoming
connections (someone joined my session, a mesh member arrived) get theirs
from the L{PeerFactory} passed to the endpoint.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable

from attrs import evolve
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.error import CannotListenError, InvalidAddressError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pnet import wire
from p2pnet._eventual import EventualQueue
from p2pnet._hosting import Hosting
from p2pnet._introclient import IntroducerClient
from p2pnet._introductions import Introductions
from p2pnet._names import name_problem
from p2pnet._natchecking import NatChecking
from p2pnet._peertypes import (
    HostedSession,
    Path,
    PeerConfig,
    PeerFactory,
    PeerProtocol,
    Registration,
    StatusEvent,
    TurnSettings,
)
from p2pnet._peerv6 import DualStack
from p2pnet._portmapping import PortMapping
from p2pnet._ratelimit import LogBudget
from p2pnet._registering import Registering, introducer_addresses
from p2pnet._relaying import Relaying
from p2pnet._sockbuf import grow_receive_buffer
from p2pnet.address import Address, RelayRoute, is_relayed
from p2pnet.connection import MAX_CANDIDATES, PeerConnection
from p2pnet.errors import (
    CloseCode,
    ConnectionClosed,
    IntroducerUnreachable,
    MalformedMessage,
    P2PError,
    PayloadTooLarge,
)
from p2pnet.natcache import NatCache
from p2pnet.secure._frames import MAX_CONNECT_PAYLOAD
from p2pnet.secure.identity import Identity
from p2pnet.secure.trust import TrustStore

__all__ = [
    "HostedSession",
    "Path",
    "PeerConfig",
    "PeerConnection",
    "PeerEndpoint",
    "PeerFactory",
    "PeerProtocol",
    "Registration",
    "StatusEvent",
    "TurnSettings",
]


class PeerEndpoint(
    Registering, NatChecking, Relaying, PortMapping, Introductions, Hosting, DualStack, DatagramProtocol
):
    """
    One UDP socket that talks to an introducer and to peers.

    @param reactor: provides C{listenUDP}, C{callLater} and C{seconds}
        (the real reactor, or a L{p2pnet.testing} simulated host).
    @param introducer: the introducer's address (an L{Address} or
        C{"HOST:PORT"}), or several (nodes of one introducer cluster: the
        endpoint registers with the first and moves to the next when the
        one it uses stops answering heartbeats).
    @param peer_id: our name at the introducer (1-64 characters).
    @param secret: the introducer's shared secret, if it requires one.
    @param port: local UDP port (0: any).
    @param interface: local address to bind (default: all).
    @param factory: builds protocols for incoming connections.
    @param config: a L{PeerConfig}.
    @param random_bytes: C{n -> bytes}; tests pass a seeded source.
    @param local_addresses: override the local addresses we advertise.
    @param identity: our static key pair (a
        L{p2pnet.secure.identity.Identity}); a new one is generated when
        none is given.  Keep it (C{Identity.load_or_create(path)}) to keep
        our name across restarts and let peers pin our key.
    @param trust: a L{p2pnet.secure.trust.TrustStore}: every peer's key
        is pinned on first use, and a peer whose key changed is refused
        with L{PeerKeyMismatch}.
    @param nat_cache: a L{p2pnet.natcache.NatCache} (several endpoints
        may share one); default: the endpoint's own.
    @param introducer6: the introducer's IPv6 address, when it has one
        beside an IPv4 C{introducer}: we then also open an IPv6 socket,
        advertise our IPv6 addresses and prove them to the introducer
        (docs/ipv6.md).
    @param interface6: the IPv6 address to bind that socket to (default:
        all); given without C{introducer6}, the socket is opened and its
        addresses advertised (unique-local ones then reach LAN peers).
    """

    log = Logger()

    #: Sends of an Introduce (at request_rto apart) before giving up.
    INTRODUCE_ATTEMPTS = 20

    def __init__(
        self,
        reactor,
        introducer: Address | str | Iterable[Address | str],
        peer_id: str,
        *,
        secret: bytes | None = None,
        port: int = 0,
        interface: str = "",
        factory: PeerFactory | None = None,
        config: PeerConfig = PeerConfig(),
        random_bytes: Callable[[int], bytes] = os.urandom,
        local_addresses: Iterable[Address] | None = None,
        identity: Identity | None = None,
        trust: TrustStore | None = None,
        nat_cache: NatCache | None = None,
        introducer6: Address | str | None = None,
        interface6: str | None = None,
    ) -> None:
        introducers = introducer_addresses(introducer)
        if isinstance(introducer6, str):
            introducer6 = Address.parse(introducer6)
        if introducer6 is not None and not introducer6.is_ipv6:
            raise ValueError(f"introducer6 must be an IPv6 address, not {introducer6}")
        self.introducer6 = introducer6
        self._interface6 = interface6
        if introducers[0].is_ipv6 and interface in ("", "0.0.0.0"):
            interface = "::"  # an IPv6 introducer: an IPv6 main socket
        problem = name_problem(peer_id, "peer_id")
        if problem is not None:
            raise ValueError(problem)
        self.reactor = reactor
        self.clock = reactor
        #: Every introducer address given (nodes of one cluster); the
        #: endpoint moves to the next when its own stops answering.
        self.introducers = introducers
        self.introducer = introducers[0]
        self.peer_id = peer_id
        self.config = config
        self.factory = factory
        self._secret = secret
        self._port_number = port
        self._interface = interface
        self.interface = interface
        self._random_bytes = random_bytes
        self._local_override = tuple(local_addresses) if local_addresses is not None else None
        self.identity = identity if identity is not None else Identity.generate()
        self.trust = trust
        if config.insecure:
            self.log.warn(
                "INSECURE: {peer_id}'s connections are neither encrypted nor replay-proof (insecure=True)",
                peer_id=peer_id,
            )
        self._port = None
        self._client: IntroducerClient | None = None
        self._cookie: bytes | None = None
        self.public_address: Address | None = None
        self._turn = None
        self._turn_allocation: Deferred | None = None
        self.nat_report = None
        self._nat: int | None = None
        self._nat_found: int | None = None
        self._registered_nat: int | None = None
        #: NAT check results by local address and STUN servers (a new
        #: start within C{config.nat_check_lifetime} checks no more).
        self.nat_cache = nat_cache if nat_cache is not None else NatCache()
        self._nat_checking = None
        self._nat_mapped = True
        self._nat_answered = False
        self._nat_waiters: list = []
        self._nat_started = False
        self.local_addresses: tuple[Address, ...] = ()
        self._by_intro: dict[bytes, PeerConnection] = {}
        self._by_conn_id: dict[int, PeerConnection] = {}
        self._by_allocation: dict[bytes, tuple[PeerConnection, RelayRoute]] = {}
        # How many routes of _by_allocation each connection owns (capped).
        self._routes_per_connection: dict[PeerConnection, int] = {}
        self._log_budget = LogBudget(self.INTRODUCTION_LOG_RATE)
        self._held_reported = float("-inf")
        self._awaiting: dict[bytes, tuple[str | None, Deferred, bytes | None]] = {}
        self._hosted: dict[bytes, HostedSession] = {}
        self._observers: list[Callable[[StatusEvent], None]] = []
        self._heartbeat_call = None
        self._introducer_lost = False
        self._reregistering = False
        self._reregistration = None
        self._eventual = EventualQueue(reactor, self.log, "application callback")
        self._stopping = False
        self.stats: dict[str, int] = {}
        #: Extra sockets open for birthday searches and re-punching.
        self.extra_sockets = 0

    # -- observers and bookkeeping -----------------------------------------

    def add_observer(self, observer: Callable[[StatusEvent], None]) -> None:
        """
        Call C{observer(event)} for every L{StatusEvent} (on the next
        reactor turn after it happened).
        """
        self._observers.append(observer)

    def remove_observer(self, observer: Callable[[StatusEvent], None]) -> None:
        """
        Stop calling C{observer} (given to L{add_observer}); events already
        queued for it are still delivered.  Removing one that is not
        observing does nothing.
        """
        try:
            self._observers.remove(observer)
        except ValueError:
            pass

    def emit(self, event: StatusEvent) -> None:
        for observer in self._observers:
            self.eventually(observer, event)

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def eventually(self, function: Callable, *args: object) -> None:
        """
        Run C{function(*args)} on a later reactor turn, in order, so user
        code never runs inside a state machine transition.
        """
        self._eventual(function, *args)

    def new_txid(self) -> bytes:
        return self._random_bytes(wire.TXID_SIZE)

    def own_candidates(self) -> tuple[Address, ...]:
        candidates = list(self.advertised_local())
        for public in (self.public_address, self.public_address6):
            if public is not None and public not in candidates:
                candidates.append(public)
        return tuple(candidates[:MAX_CANDIDATES])

    #: Log lines per second about single introductions (each spoofed
    #: introduction would write several); bursts of five times as many.
    INTRODUCTION_LOG_RATE = 1.0

    def note(self, kind: str, log: Callable[..., None], line: str, **fields: object) -> None:
        """
        Log C{line} with C{log} (a bound logger method, e.g. a
        connection's C{log.info}) within the introduction log budget;
        what is held back is summed up, at most once a minute, before a
        line that is allowed.  The statistics counters and status events
        still see every event.
        """
        budget = self._log_budget
        now = self.clock.seconds()
        if not budget.allow(kind, now):
            return
        if budget.held and now - self._held_reported >= 60.0:
            self._held_reported = now
            budget.report_held(self.log, "about introductions")
        log(line, **fields)

    def write(self, raw: bytes, to: Address) -> None:
        """
        Send a datagram; a destination the kernel refuses (EINVAL, EACCES,
        unreachable network...) or our IPv4 socket cannot take (an IPv6
        address: Twisted's C{InvalidAddressError}) is counted
        (C{send-failed}), never raised into a state machine.
        """
        transport = self.transport_for(to)
        if not self.can_send(to):
            # No socket of its family (a candidate of the other family
            # learnt from a reversal or a prediction): never tried.
            self.count("send-other-family")
        elif transport is not None:
            try:
                transport.write(raw, to.as_tuple())
            except (OSError, InvalidAddressError) as e:
                self._send_failed(to, e)

    def _send_failed(self, to, error: Exception) -> None:
        self.count("send-failed")
        self.log.debug("could not send to {to}: {error}", to=str(to), error=str(error))

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Deferred:
        """
        Bind the socket and register with the introducer.

        An endpoint can be started again after L{stop} (its connections and
        sessions are gone; host again).

        @return: a Deferred firing with a L{Registration}, or failing with
            L{IntroducerUnreachable} (or the introducer's refusal), or
            C{twisted.internet.error.CannotListenError} when the port is
            taken.
        """
        if self._port is not None:
            return fail(P2PError("endpoint already started"))
        try:
            self._port = self.reactor.listenUDP(self._port_number, self, self._interface)
        except CannotListenError as e:
            return fail(e)
        grow_receive_buffer(self._port)
        self._stopping = False
        self._cookie = None
        self.public_address = None
        self._introducer_lost = False
        self._reregistering = False
        self._turn = None
        self._turn_allocation = None
        self._client = IntroducerClient(
            self.clock,
            self.transport.write,
            self.introducer,
            self._random_bytes,
            self._secret,
            rto=self.config.request_rto,
            attempts=self.config.request_attempts,
        )
        self.local_addresses = self._discover_local() + self._start_ipv6()
        # In parallel with the registration (adds no connect time).
        self._start_port_mapping()
        if self.config.turn is not None:
            from p2pnet.turn import TurnClient

            turn = self.config.turn
            self._turn = TurnClient(
                self.clock, self.transport.write, turn.server, turn.username, turn.password,
                random_bytes=self._random_bytes,
            )
            self._turn.on_data = self._from_turn
        reaching = self._reaching(lambda error: None)
        # In parallel with the registration too; its facts follow it.
        self._start_nat_check()
        d = self._register()

        def registered(registration: Registration) -> Deferred:
            reaching.stop()
            self._schedule_heartbeat()
            # Our NAT facts, and our IPv6 address proven, before start()
            # fires, so that the first introduction already carries them.
            d = self._when_nat_mapped()
            d.addCallback(lambda _: self._heartbeat6())
            d.addCallback(lambda _: evolve(registration, public6=self.public_address6))
            return d

        def failed(reason: Failure) -> Failure:
            reaching.stop()
            self._stop_nat_check()
            self._stop_port_mapping()
            self._stop_ipv6()
            self._shutdown_socket()
            if reason.check(IntroducerUnreachable) and (self._secret is None or reason.value.port_closed):
                return reason
            if reason.check(IntroducerUnreachable):
                return Failure(
                    IntroducerUnreachable(
                        f"{reason.value} (with a secret set, a wrong secret looks like this: "
                        "the introducer drops requests it cannot verify)"
                    )
                )
            return reason

        return d.addCallbacks(registered, failed)

    def _discover_local(self) -> tuple[Address, ...]:
        if self._local_override is not None:
            return self._local_override
        host = self.transport.getHost()
        if host.host not in ("0.0.0.0", "::", ""):
            return (Address(host.host, host.port),)
        # Ask the kernel which source address it would use towards the
        # introducer; connecting a UDP socket sends nothing.
        probe = socket.socket(socket.AF_INET6 if self.introducer.is_ipv6 else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.connect(self.introducer.as_tuple())
            return (Address(probe.getsockname()[0], host.port),)
        except OSError:
            return ()
        finally:
            probe.close()

    def stop(self) -> Deferred:
        """
        Close every connection, unregister, and close the socket.

        @return: a Deferred that fires when the socket is closed.
        """
        if self._stopping:
            return succeed(None)
        self._stopping = True
        self._stop_nat_check()
        self._hosted.clear()
        if self._heartbeat_call is not None and self._heartbeat_call.active():
            self._heartbeat_call.cancel()
        self._heartbeat_call = None
        for connection in list(self._by_intro.values()):
            connection.close(CloseCode.STOPPED, "the endpoint was stopped")
        closed = ConnectionClosed("the endpoint was stopped", code=CloseCode.STOPPED)
        for _, d, _, _ in list(self._awaiting.values()):
            self.eventually(d.errback, Failure(closed))
        self._awaiting.clear()
        if self._client is not None:
            if self._cookie is not None:
                self._client.send(wire.Unregister(self.new_txid(), self.peer_id, self._cookie))
            self._client.cancel_all(closed)
        d = Deferred()
        # Fire once the mapping is deleted too.
        d.addCallback(lambda _, unmapped=self._stop_port_mapping(): unmapped)
        if self._turn is not None:
            # Release the allocation before the socket closes.
            closing = self._turn.close()
            closing.addBoth(lambda _: self._shutdown_socket()).chainDeferred(d)
            return d
        self.eventually(lambda: self._shutdown_socket().chainDeferred(d))
        return d

    def _shutdown_socket(self) -> Deferred:
        v6_closed = self._stop_ipv6()
        port, self._port = self._port, None
        if port is None:
            return v6_closed
        result = port.stopListening()
        closed = result if isinstance(result, Deferred) else succeed(None)
        return gatherResults([v6_closed, closed]).addCallback(lambda _: None)

    # -- sessions and connections -----------------------------------------

    @property
    def is_registered(self) -> bool:
        """
        Whether the introducer has confirmed our registration and the
        endpoint is not stopping.
        """
        return self._cookie is not None and not self._stopping

    def _require_registered(self) -> None:
        if self._cookie is None or self._stopping:
            raise P2PError("the endpoint is not registered: call start() first")

    def connect(
        self,
        peer_id: str,
        protocol: PeerProtocol | None = None,
        *,
        expect_key: bytes | None = None,
        payload: bytes = b"",
    ) -> Deferred:
        """
        Ask the introducer to introduce us to C{peer_id} and punch a path.

        @param protocol: receives the connection's datagrams (default: one
            from the factory, if any).
        @param expect_key: the peer's static public key, if we know it
            (pinned): an introduction with another key fails with
            L{PeerKeyMismatch}, so not even a malicious introducer can put
            someone else in the peer's place.
        @param payload: at most 256 bytes (a join token, a player name)
            for the peer's C{PeerFactory.accept_connection}; it travels
            sealed, inside the secure session (not with C{insecure=True}).
        @return: a Deferred firing with the L{PeerConnection}, or failing
            with L{HandshakeTimeout}, L{ConnectionRefused} (the peer said
            no), L{UnknownPeer}, L{IntroducerUnreachable}; at once with
            L{PayloadTooLarge}.
        """
        try:
            self._require_registered()
            self._check_payload(payload)
        except P2PError as e:
            return fail(e)
        message = wire.Introduce(
            self.new_txid(), self.peer_id, self._cookie, target=peer_id, flags=self._introduce_flags()
        )
        return self._introduce(message, peer_id, protocol, expect_key, payload)

    def _check_payload(self, payload: bytes) -> None:
        if not isinstance(payload, bytes):
            raise P2PError(f"a connect payload is bytes, not {type(payload).__name__}")
        if len(payload) > MAX_CONNECT_PAYLOAD:
            raise PayloadTooLarge(len(payload), MAX_CONNECT_PAYLOAD)
        if payload and self.config.insecure:
            raise P2PError("a connect payload needs a secure session: not with insecure=True")

    def join(
        self,
        session: wire.SessionInfo,
        protocol: PeerProtocol | None = None,
        *,
        expect_key: bytes | None = None,
        payload: bytes = b"",
    ) -> Deferred:
        """
        Join a listed session: connect to its host (and, in a mesh session,
        to every member; those connections arrive through the factory).
        The connection's C{peer_key} is the host's key (pin it, and pass
        it as C{expect_key} next time).

        @param payload: as for L{connect}: for the host's
            C{accept_connection} (mesh members get an empty one).
        @return: a Deferred firing with the L{PeerConnection} to the host,
            or failing with L{SessionFull}, L{ConnectionRefused},
            L{UnknownPeer}, ...
        """
        try:
            self._require_registered()
            self._check_payload(payload)
        except P2PError as e:
            return fail(e)
        message = wire.Introduce(
            self.new_txid(), self.peer_id, self._cookie, session_id=session.session_id, flags=self._introduce_flags()
        )
        return self._introduce(message, session.host, protocol, expect_key, payload)

    def _introduce_flags(self) -> int | None:
        """
        Relay-only: ask the introducer to keep our addresses from the peer.
        """
        return wire.FLAG_RELAY_ONLY if self.config.handshake.relay_only else None

    def _introduce(
        self,
        message: wire.Introduce,
        expected: str,
        protocol: PeerProtocol | None,
        expect_key: bytes | None,
        payload: bytes,
    ) -> Deferred:
        waiter = Deferred()
        self._awaiting[message.txid] = (expected, waiter, expect_key, payload)

        def refused(reason: Failure) -> None:
            entry = self._awaiting.pop(message.txid, None)
            if entry is not None:
                entry[1].errback(reason)

        # Retransmitted without backing off, for twice the handshake's
        # patience: the other side is punching already.
        self._client.request(
            message,
            attempts=self.INTRODUCE_ATTEMPTS,
            max_rto=self.config.request_rto,
        ).addErrback(refused)

        def attach(connection: PeerConnection) -> PeerConnection:
            chosen = protocol
            if chosen is None and self.factory is not None:
                chosen = self.factory.build_protocol(connection.peer_id)
            if chosen is not None and not connection.ended:
                connection.set_protocol(chosen)
            return connection

        return waiter.addCallback(lambda connection: connection._when_connected()).addCallback(attach)

    def request_reversal(self, connection: PeerConnection) -> None:
        if self._cookie is None or self._stopping:
            return
        self.note("reversal", connection.log.info, "asking the introducer to make {peer_id} send first",
                  peer_id=connection.peer_id)
        self._client.send(
            wire.ReverseRequest(
                self.new_txid(), self.peer_id, self._cookie, connection.peer_id, connection.intro_id
            )
        )

    def forget(self, connection: PeerConnection) -> None:
        self._by_intro.pop(connection.intro_id, None)
        self._by_conn_id.pop(connection.conn_id, None)
        if self._routes_per_connection.pop(connection, None) is not None:
            for allocation, (owner, _) in list(self._by_allocation.items()):
                if owner is connection:
                    del self._by_allocation[allocation]

    @property
    def connections(self) -> list[PeerConnection]:
        """
        Every live connection (established or still punching).
        """
        return list(self._by_intro.values())

    # -- datagrams -----------------------------------------------------------

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        self.datagram_via(data, addr, None)

    def datagram_via(self, data: bytes, addr: tuple, via) -> None:
        """
        A datagram from our socket (C{via} None) or from one of a
        connection's extra sockets.
        """
        self._guarded(addr, self._datagram, data, addr, via)

    def _guarded(self, source, handle: Callable, *args: object) -> None:
        """
        Run a datagram handler; whatever a remote sends, count and drop
        rather than raise into the reactor.
        """
        try:
            handle(*args)
        except MalformedMessage as e:
            self.count("dropped-malformed")
            self.log.debug("dropped a malformed datagram from {source}: {error}", source=source, error=str(e))
        except Exception:
            self.count("internal-error")
            self.log.failure("bug: unexpected error handling a datagram from {source}", source=source)

    def _datagram(self, data: bytes, addr: tuple, via=None) -> None:
        turn = self._turn
        if turn is not None and via is None and data[:1] != b"\xd1" and addr == turn.server.as_tuple():
            turn.datagram_received(data, Address(addr[0], addr[1]))
            return
        if len(data) < 2 or data[0] != wire.MAGIC:
            self.count("dropped-not-p2pnet")
            return
        if not addr[1]:
            # A spoofed source: nothing can be answered or sent to port 0.
            self.count("dropped-source-port-0")
            return
        kind = data[1]
        if kind == wire.MessageType.SEALED or kind == wire.MessageType.DATA:
            self._data(data, Address(addr[0], addr[1]), via)
            return
        if kind == wire.MessageType.RELAY_FORWARD:
            self._from_relay(data)
            return
        source = Address(addr[0], addr[1])
        if kind < wire.MessageType.PROBE:
            if via is None:
                self._from_introducer(data, source)
            return
        self._peer_message(data, source, via)

    def _data(self, data: bytes, source, via=None, owner: PeerConnection | None = None) -> None:
        """
        A sealed (or, insecure, a C{DATA}) datagram: find its connection
        by the receiver's connection id (which must be C{owner}'s, when
        given).
        """
        if len(data) < wire.DATA_HEADER_SIZE:
            self.count("dropped-malformed")
            return
        connection = self._by_conn_id.get((data[2] << 8) | data[3])
        if connection is None or (owner is not None and connection is not owner):
            self.count("dropped-data-unknown-connection")
            return
        if not is_relayed(source):
            connection._sockets.heard_via(source, via)
            source = connection._normalise(source)
        if data[1] == wire.MessageType.SEALED:
            connection._sealed_received(data, source)
        else:
            connection._data_received(data, source)

    def _peer_message(self, data: bytes, source, via=None) -> None:
        if data[1] < wire.MessageType.PROBE or data[1] >= wire.MessageType.DATA:
            self.count("dropped-unexpected")
            return
        message = wire.decode(data)
        if isinstance(message, wire.Probe):
            return
        connection = self._by_intro.get(message.intro_id)
        if connection is None or not wire.verify(data, connection.key):
            self.count("dropped-unauthenticated")
            return
        if not is_relayed(source):
            connection._sockets.heard_via(source, via)
            source = connection._normalise(source)
        connection._message_received(message, source)

    def _from_introducer(self, data: bytes, source: Address) -> None:
        if source != self.introducer or self._client is None:
            if not self._from_introducer6(data, source):
                self.count("dropped-not-from-introducer")
            return
        if self._secret is not None and not wire.verify(data, self._secret):
            self.count("dropped-unauthenticated")
            return
        message = wire.decode(data)
        if isinstance(message, wire.Introduction):
            self._client.send(wire.IntroAck(self.new_txid(), message.intro_id))
            self._client.answer(message)
            self._introduction(message)
        elif isinstance(message, wire.Candidate):
            self._client.send(wire.IntroAck(self.new_txid(), message.allocation))
            connection = self._by_intro.get(message.intro_id)
            if connection is not None and connection.peer_id == message.peer_id and not connection.ended:
                connection._turn_candidate(message.candidate)
        elif isinstance(message, wire.RelayOffer):
            self._client.send(wire.IntroAck(self.new_txid(), message.allocation))
            if not self._client.answer(message):
                connection = self._by_intro.get(message.intro_id)
                if connection is not None:
                    connection._relay_offered(message)
        elif isinstance(message, wire.Reverse):
            connection = self._by_intro.get(message.intro_id)
            if connection is not None and connection.peer_id == message.peer_id:
                self.note("reverse", self.log.info, "{peer_id} cannot reach us; sending first", peer_id=message.peer_id)
                connection._reverse_received(message.public)
        elif isinstance(message, wire.Error) and self._host_gone(message):
            pass
        elif not self._client.answer(message):
            self.count("dropped-unmatched-answer")
