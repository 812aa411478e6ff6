"""
The values a game sees from an endpoint: paths, status events,
registrations, hosted sessions, configuration, and the protocol and factory
a game subclasses to receive a connection's events.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from attrs import field, frozen
from twisted.python.failure import Failure

from p2pnet._handshake import HandshakeConfig
from p2pnet.channels import MAX_MESSAGE, Channel, Delivery
from p2pnet.address import Address

if TYPE_CHECKING:
    from p2pnet.connection import PeerConnection

class Path(enum.Enum):
    """
    How a connection reaches its peer.
    """

    DIRECT_LOCAL = "direct-local"
    DIRECT_PUBLIC = "direct-public"
    #: Direct over IPv6, to a unique-local (or loopback) address.
    DIRECT_LOCAL_V6 = "direct-local-v6"
    #: Direct over IPv6, to a global address.
    DIRECT_PUBLIC_V6 = "direct-public-v6"
    RELAYED = "relayed"


@frozen
class StatusEvent:
    """
    A progress report for game UIs and logs.

    @ivar kind: one of C{nat-checked}, C{registering} (C{start()} has had
        no answer from the introducer for another 2 s), C{registered},
        C{public-changed},
        C{introducer-lost}, C{introducer-back}, C{introduced}, C{warming},
        C{punching}, C{reversal}, C{relaying}, C{connected},
        C{path-changed}, C{failed}, C{lost}, C{closed}, C{port-mapped}
        (C{address}: the mapped external address, C{detail}: the
        protocol), C{port-mapping-lost}.
    @ivar peer_id: the peer concerned, or None for endpoint-wide events.
    @ivar path: the path, for C{connected} and C{path-changed}.
    @ivar address: the peer's (or, for registration events, our public)
        address.
    @ivar detail: a human-readable explanation.
    @ivar elapsed: seconds since the introduction (connection events).
    @ivar code: for C{lost} and C{closed}, the close code (a
        L{p2pnet.errors.CloseCode} or the game's own), or None (silence).
    """

    kind: str
    peer_id: str | None = None
    path: Path | None = None
    address: Address | None = None
    detail: str = ""
    elapsed: float | None = None
    candidates: tuple[Address, ...] = ()
    code: int | None = None


@frozen
class Registration:
    """
    What the introducer told us: our public address, and the local
    addresses we told it; C{public6}, our IPv6 address as the introducer
    saw it when we also registered over IPv6 (C{introducer6}).
    """

    public: Address
    local: tuple[Address, ...]
    public6: Address | None = None


@frozen
class HostedSession:
    """
    A session this endpoint hosts.
    """

    session_id: bytes
    name: str
    game_id: str
    max_players: int
    mesh: bool
    properties: tuple[tuple[str, str], ...]


@frozen
class TurnSettings:
    """
    A standard TURN server (e.g. coturn) to relay through instead of the
    p2pnet relay, with long-term credentials.
    """

    server: Address
    username: str
    password: str = field(repr=False)


#: The channels a connection has unless configured otherwise.
DEFAULT_CHANNELS = (
    Channel(0, Delivery.RELIABLE_ORDERED),
    Channel(1, Delivery.UNRELIABLE_SEQUENCED, priority=-1),
    Channel(2, Delivery.RELIABLE_UNORDERED),
)


@frozen
class PeerConfig:
    """
    Endpoint tunables; the defaults suit the internet.

    @ivar handshake: the handshake and keepalive timings.
    @ivar heartbeat_interval: seconds between registration refreshes (also
        keeps the NAT mapping towards the introducer open).
    @ivar request_rto: first retransmit timeout of introducer requests
        (doubling, at most 2 s).
    @ivar request_attempts: sends before L{IntroducerUnreachable}.
    @ivar authenticate_data: tag every application datagram with the
        connection key (8 bytes) so forged data is dropped and a data packet
        from a new address can re-bind the path.  Both ends must agree.
    @ivar nat_check: at start, find out how our NAT behaves (RFC 5780 /
        STUN, see L{p2pnet.natcheck}) beside the registration and tell the
        introducer, so both sides pick a strategy from facts (the birthday
        search against a symmetric NAT, or the relay at once when a direct
        path cannot exist).  On by default.
    @ivar nat_check_lifetime: seconds a NAT check result is used again
        for a new start from the same local address (see
        L{p2pnet.natcache.NatCache}).
    @ivar stun_servers: servers for the NAT check (default: the
        introducer, which answers STUN on its port).
    @ivar turn: relay through this TURN server (allocated on the
        endpoint's own socket when first needed) instead of asking the
        introducer for a p2pnet relay.
    @ivar max_connections: connections (established or punching) kept at
        once; further introductions are refused and counted
        (C{dropped-too-many-connections}).
    @ivar channels: the channels messages travel on (L{Channel}: id,
        L{Delivery}, priority, weight); both sides must declare the same.
        The default: 0 reliable-ordered, 1 unreliable-sequenced (priority
        first: positions, inputs), 2 reliable-unordered.
    @ivar max_message: the largest message, in bytes (default 16 MiB).
    @ivar max_extra_sockets: sockets the endpoint opens besides its own
        at most, all connections together (the birthday search opens
        C{birthday_sockets} per connection, re-punching one per rung).
    @ivar insecure: connect without a secure session: no encryption, no
        replay protection, no peer keys (the p2pnet of before; for
        benchmarks and debugging only).  Both ends must agree.  Every log
        line about such a connection says INSECURE.
    @ivar port_mapping: at start, ask the home router for a port mapping
        (NAT-PMP, PCP, UPnP-IGD, see L{p2pnet.portmap}) in parallel with
        the registration, and advertise the mapped address as a local
        candidate (status event C{port-mapped}).  Nothing happens when no
        router answers.
    @ivar port_mapping_protocols: which of C{"pcp"}, C{"nat-pmp"},
        C{"upnp"} to try.
    @ivar port_mapping_gateway: where NAT-PMP and PCP requests go
        (default: the default gateway from the routing table).
    @ivar ipv6: with C{introducer6} or C{interface6}, open an IPv6 socket
        beside the IPv4 one and advertise our global and unique-local IPv6
        addresses (see docs/ipv6.md); False: never.
    """

    handshake: HandshakeConfig = HandshakeConfig()
    heartbeat_interval: float = 15.0
    request_rto: float = 0.5
    request_attempts: int = 10
    authenticate_data: bool = True
    nat_check: bool = True
    nat_check_lifetime: float = 600.0
    stun_servers: tuple[Address, ...] = ()
    turn: TurnSettings | None = None
    max_connections: int = field(default=4096)
    insecure: bool = False
    max_extra_sockets: int = 1024
    channels: tuple[Channel, ...] = DEFAULT_CHANNELS
    max_message: int = MAX_MESSAGE
    port_mapping: bool = True
    port_mapping_protocols: tuple[str, ...] = ("pcp", "nat-pmp", "upnp")
    port_mapping_gateway: str | None = None
    ipv6: bool = True

    def __attrs_post_init__(self) -> None:
        ids = [channel.id for channel in self.channels]
        if len(set(ids)) != len(ids):
            raise ValueError(f"channel ids must differ: {ids}")
        if not 1 <= self.max_message <= 1 << 30:
            raise ValueError(f"max_message must be 1 byte to 1 GiB, not {self.max_message!r}")
        if not 1 <= self.max_connections <= 32768:
            raise ValueError(f"max_connections must be 1-32768, not {self.max_connections!r}")


class PeerProtocol:
    """
    Receives one connection's events.  Subclass and override what you need.

    @ivar connection: the L{PeerConnection}, once C{connection_made} ran.
    """

    connection: PeerConnection | None = None

    def connection_made(self, connection: PeerConnection) -> None:
        """
        The connection is up; C{connection.send} works from now on.
        """
        self.connection = connection

    def datagram_received(self, data: bytes) -> None:
        """
        One application datagram from the peer.
        """

    def message_received(self, channel: int, data: bytes) -> None:
        """
        One message on C{channel} (see C{PeerConfig.channels}), delivered
        as the channel's L{Delivery} promises.
        """

    def path_changed(self, path: Path) -> None:
        """
        The connection moved to another path (rebinding or upgrade).
        """

    def connection_lost(self, reason: Failure) -> None:
        """
        The connection ended: C{reason} wraps L{PeerLost} (peer silent or
        closed) or L{ConnectionClosed} (closed here).
        """


class PeerFactory:
    """
    Builds protocols for incoming connections, and admits them.  Subclass
    it, or pass any object with a C{build_protocol(peer_id)} method (and,
    optionally, C{accept_connection(peer_id, payload)}).
    """

    protocol: type[PeerProtocol] | None = None

    def build_protocol(self, peer_id: str) -> PeerProtocol | None:
        """
        Return the protocol for a new connection from C{peer_id}, or None
        to refuse it (the connection is closed).
        """
        if self.protocol is None:
            return None
        return self.protocol()

    def accept_connection(self, peer_id: str, payload: bytes) -> object:
        """
        Decide on C{peer_id}'s connect request before the connection
        opens: return None to accept, a reason (a string) to refuse it
        (the joiner fails with C{ConnectionRefused(reason)}), or a
        Deferred firing with either.  C{payload} is what the joiner gave
        C{connect}/C{join} (at most 256 bytes, C{b""} if nothing; it came
        encrypted).  Not asked on insecure endpoints.  Accepts everyone
        by default.
        """
        return None
