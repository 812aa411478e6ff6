"""
A deterministic simulated IPv4 network of hosts, NAT boxes and stateful
firewalls, driven by a L{twisted.internet.task.Clock}.

Nothing real is touched: no sockets, no threads, no wall-clock time.  Every
simulated host is a small reactor (L{IReactorUDP} and L{IReactorTime}) that
can be handed to code which takes a C{reactor} parameter.

The model
=========

  - A I{realm} is a piece of network in which addresses route directly: the
    built-in C{"internet"} realm, the LAN behind each NAT, and the inside of
    each firewall.  A realm delivers a packet to the node (host or box) that
    owns the destination address; anything it cannot route goes I{up}
    through the box that owns the realm (the internet has no owner, so
    unknown addresses drop there).
  - Every node is attached to its parent realm by a I{link} with a latency
    and a loss probability, the same in both directions (L{Network.set_link}).
  - Routers decrement the TTL: each NAT box and firewall counts as one hop
    when it forwards a packet, the internet core as C{internet_hops} hops;
    LANs are switched (no hop).  As in Linux, where forwarding decrements the
    TTL before the POSTROUTING SNAT, a packet that dies at a box leaves no
    mapping or flow state there.
  - A packet is evaluated hop by hop at the simulated time it reaches each
    box, so NAT and firewall state is checked when the packet actually gets
    there (what makes simultaneous-open races come out as they do on a real
    network).  Each link with a non-zero latency costs one
    C{clock.callLater}; the final hand-over to the receiving protocol always
    goes through C{callLater}, even at zero latency, so nothing is ever
    delivered re-entrantly inside C{write}.  The total delay is the sum of
    the latencies of the links crossed.  Each step is scheduled at the
    packet's own absolute time, so one big C{clock.advance(1)} delivers a
    packet that needs several hops, with every hop in time order relative
    to everything else pending on the clock.
  - Mappings, permissions, poison entries and firewall flows expire lazily
    (by comparing timestamps when they are looked at), so
    C{clock.getDelayedCalls()} only ever holds packets in flight.
"""

from __future__ import annotations

import enum
import errno
import ipaddress
import random
import socket
from collections import Counter
from typing import Callable, Iterator, Optional, Union

from attrs import define, field, frozen
from twisted.internet import defer, error
from twisted.internet.abstract import isIPAddress
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTime,
    IReactorUDP,
    ISystemHandle,
    IUDPTransport,
)
from twisted.logger import Logger
from zope.interface import implementer

from p2pnet.testing._heapclock import HeapClock

#: The TTL a new socket sends with, as on Linux.
DEFAULT_TTL = 64

#: Largest UDP payload an IPv4 datagram can carry.
MAX_DATAGRAM = 65507

_EPHEMERAL_FIRST = 32768
_EPHEMERAL_LAST = 60999


class Mapping(enum.Enum):
    """
    How a NAT reuses a public port (RFC 4787 section 4.1, "mapping
    behavior").
    """

    #: One public port per internal C{(ip, port)}, whatever the destination
    #: ("full cone" / "restricted cone" NATs; RFC 4787 REQ-1).
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    #: One public port per internal C{(ip, port)} and remote IP.
    ADDRESS_DEPENDENT = "address-dependent"
    #: One public port per internal C{(ip, port)} and remote C{(ip, port)}
    #: (the classic "symmetric" NAT).
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class Filtering(enum.Enum):
    """
    Which inbound packets a NAT (or firewall) lets through to a mapping
    (RFC 4787 section 5, "filtering behavior").
    """

    #: Anyone may send to a mapped port ("full cone").
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    #: Only remote IPs the mapping has sent to ("restricted cone").
    ADDRESS_DEPENDENT = "address-dependent"
    #: Only remote C{(ip, port)}s the mapping has sent to ("port-restricted
    #: cone"; what Linux conntrack does).
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class Allocation(enum.Enum):
    """
    How a NAT chooses the public port of a new mapping (RFC 4787 section
    4.2, "port assignment").
    """

    #: Keep the internal port if it is free on the public side, else take
    #: the next free port above it ("port preservation").
    PRESERVING = "preserving"
    #: Hand out ports from a counter (C{port_start}, then +1 per new mapping,
    #: skipping ports in use): what port-stride prediction exploits.
    SEQUENTIAL = "sequential"
    #: Pick a port uniformly from 1024-65535 with the network's seeded RNG,
    #: avoiding ports in use (like nftables C{masquerade fully-random}).
    RANDOM = "random"


@frozen
class TraceEvent:
    """
    One thing that happened to a packet, passed to L{Network.trace}.

    @ivar time: the simulated time of the event: the packet's own time,
        which equals the clock's time unless one C{clock.advance} jumped
        past it (protocols then see the clock's time).
    @ivar kind: C{"send"} (a protocol wrote it), C{"deliver"} (a protocol's
        C{datagramReceived} is being called) or C{"drop"}.
    @ivar src: the packet's source C{(ip, port)} at that point (after any
        translation so far).
    @ivar dst: the packet's destination C{(ip, port)} at that point.
    @ivar size: the payload length in bytes.
    @ivar ttl: the packet's TTL at that point.
    @ivar where: the name of the host, box, realm (C{"internet"},
        C{"<nat> LAN"}, C{"<firewall> inside"}) or link (C{"<node> link"})
        where it happened.
    @ivar reason: for drops, why (see L{DROP_REASONS}); else L{None}.
    """

    time: float
    kind: str
    src: tuple
    dst: tuple
    size: int
    ttl: int
    where: str
    reason: Optional[str] = None


#: Every reason a packet can be dropped for, as used in L{TraceEvent.reason}
#: and as keys of L{NetworkStats.dropped}.
DROP_REASONS = {
    "loss": "lost on a link (its loss probability)",
    "ttl": "TTL would reach 0 at a router",
    "no route": "no node on the internet has that address",
    "no host": "no host on the LAN has that address",
    "port unreachable": "nothing is bound to the port on the destination host",
    "closed": "written to a port after stopListening",
    "no mapping": "inbound to a NAT port without a live mapping",
    "filtered": "inbound rejected by NAT filtering or a firewall",
    "poisoned": "inbound rejected by a poisoned NAT's poison entry",
    "no hairpin": "LAN host sent to its NAT's public address; hairpin is off",
    "ports exhausted": "the NAT has no free public port",
    "blocked": "the internet core blocks UDP between these two addresses (Network.block)",
}


@define
class NetworkStats:
    """
    Packet counters of a L{Network}.

    @ivar sent: datagrams written by protocols.
    @ivar delivered: datagrams handed to a protocol's C{datagramReceived}.
    @ivar dropped: a L{Counter} of drops by reason (see L{DROP_REASONS}).
    """

    sent: int = 0
    delivered: int = 0
    dropped: Counter = field(factory=Counter)

    @property
    def dropped_total(self) -> int:
        """
        @return: all drops, whatever the reason.
        """
        return sum(self.dropped.values())


@frozen
class NatMapping:
    """
    A snapshot of one live NAT mapping, from L{NatBox.mappings}.

    @ivar internal: the inside C{(ip, port)}.
    @ivar external: the public C{(ip, port)} it is translated to.
    @ivar remote: what the mapping is specific to: L{None} (endpoint
        independent), a remote IP (address dependent) or a remote
        C{(ip, port)} (address and port dependent).
    @ivar last_outbound: clock time of its last outbound packet.
    """

    internal: tuple
    external: tuple
    remote: object
    last_outbound: float


@define(eq=False)
class _Link:
    latency: float = 0.0
    loss: float = 0.0


class _Packet:
    __slots__ = ("data", "src", "dst", "ttl", "came_from", "time")

    def __init__(
        self, data: bytes, src: tuple, dst: tuple, ttl: int, time: float
    ) -> None:
        self.time = time
        self.data = data
        self.src = src
        self.dst = dst
        self.ttl = ttl
        self.came_from: object = None


def _ip_int(ip: str) -> int:
    return int.from_bytes(socket.inet_aton(ip), "big")


class _Realm:
    """
    Where addresses route directly: the internet, a NAT's LAN, the inside of
    a firewall.
    """

    __slots__ = ("name", "hops", "routes", "owner", "network", "_net", "_mask")

    def __init__(
        self,
        name: str,
        hops: int,
        owner: object,
        network: Optional[ipaddress.IPv4Network],
    ) -> None:
        self.name = name
        self.hops = hops
        self.routes: dict = {}
        self.owner = owner
        self.network = network
        if network is not None:
            self._net = int(network.network_address)
            self._mask = int(network.netmask)

    def on_subnet(self, ip: str) -> bool:
        """
        @return: whether C{ip} belongs to this realm's own subnet (so it must
            not be sent up to the owner).
        """
        if self.network is None:
            return False
        return (_ip_int(ip) & self._mask) == self._net


class _NatEntry:
    __slots__ = ("internal", "port", "key", "last_out", "ips", "addrs")

    def __init__(self, internal: tuple, port: int, key: tuple, now: float):
        self.internal = internal
        self.port = port
        self.key = key
        self.last_out = now
        self.ips: dict = {}
        self.addrs: dict = {}


class NatBox:
    """
    A NAT router, made with L{Network.add_nat}.

    Its outside address L{public_ip} is on its parent realm; behind it is a
    LAN (L{lan}) whose first address L{lan_ip} is the box's own inside
    address.  Behaviour is configured with the RFC 4787 options described on
    L{Network.add_nat}.

    @ivar name: the name given to L{Network.add_nat}.
    @ivar public_ip: the outside address.
    @ivar lan: the inside network, an L{ipaddress.IPv4Network}.
    @ivar lan_ip: the box's own LAN-side address (first address of L{lan}).
    @ivar mapping: a L{Mapping}.
    @ivar filtering: a L{Filtering}.
    @ivar allocation: an L{Allocation}.
    @ivar hairpin: whether hairpinning is supported.
    @ivar poisoned: whether rejected unsolicited inbound poisons the flow.
    @ivar mapping_timeout: seconds a mapping lives after its last outbound
        packet.
    @ivar gateway_host: the L{SimHost} running on this box, if any.
    """

    def __init__(
        self,
        network: Network,
        name: str,
        public_ip: str,
        realm: _Realm,
        lan: ipaddress.IPv4Network,
        mapping: Mapping,
        filtering: Filtering,
        allocation: Allocation,
        hairpin: bool,
        poisoned: bool,
        mapping_timeout: float,
        port_start: int,
    ) -> None:
        self.network = network
        self.name = name
        self.public_ip = public_ip
        self.realm = realm
        self.lan = lan
        self.lan_ip = str(lan.network_address + 1)
        self.mapping = mapping
        self.filtering = filtering
        self.allocation = allocation
        self.hairpin = hairpin
        self.poisoned = poisoned
        self.mapping_timeout = mapping_timeout
        self.port_start = port_start
        self.gateway_host: Optional[SimHost] = None
        self.link = _Link()
        self.link_name = f"{name} link"
        self.inside = _Realm(f"{name} LAN", 0, self, lan)
        self._next_port = port_start
        self._by_key: dict = {}
        self._by_port: dict = {}
        self._poison: dict = {}
        #: Port forwards (a port mapping): public port -> internal address.
        self._forwards: dict = {}
        #: Flows that came in through a forward: (internal, remote) -> port.
        self._forwarded_flows: dict = {}

    def __repr__(self) -> str:
        return f"<NatBox {self.name} {self.public_ip} lan={self.lan}>"

    def flush(self) -> None:
        """
        Drop every mapping, permission and poison entry, like
        C{conntrack -F}.  The SEQUENTIAL counter keeps counting; port
        forwards stay (they are rules, not conntrack state).
        """
        self._by_key.clear()
        self._by_port.clear()
        self._poison.clear()
        self._forwarded_flows.clear()

    def forward(self, port: int, internal: tuple) -> None:
        """
        Forward the public C{port} to C{internal} (a LAN C{(ip, port)}), as
        a port mapping (UPnP, NAT-PMP, PCP) does: anything arriving there
        is let in, and the internal socket's answers to a remote that came
        in this way leave from C{port} (conntrack of the forwarded flow).
        """
        self._forwards[port] = tuple(internal)

    def mappings(self) -> list[NatMapping]:
        """
        @return: the live mappings, oldest public port first.
        """
        now = self.network.clock.seconds()
        return [
            NatMapping(e.internal, (self.public_ip, e.port), e.key[1], e.last_out)
            for port, e in sorted(self._by_port.items())
            if now < e.last_out + self.mapping_timeout
        ]

    def _entry_for_port(self, port: int, now: float) -> Optional[_NatEntry]:
        entry = self._by_port.get(port)
        if entry is not None and now >= entry.last_out + self.mapping_timeout:
            del self._by_port[port]
            del self._by_key[entry.key]
            return None
        return entry

    def _port_free(self, port: int, now: float) -> bool:
        gateway = self.gateway_host
        if gateway is not None and port in gateway._ports:
            return False
        return port not in self._forwards and self._entry_for_port(port, now) is None

    def _allocate(self, internal_port: int, now: float) -> Optional[int]:
        if self.allocation is Allocation.RANDOM:
            rng = self.network.random
            for _ in range(64):
                port = rng.randint(1024, 65535)
                if self._port_free(port, now):
                    return port
            start = 1024
        elif self.allocation is Allocation.SEQUENTIAL:
            start = self._next_port
        else:
            start = internal_port or 1024
        port = start
        for _ in range(65536 - 1024):
            if self._port_free(port, now):
                if self.allocation is Allocation.SEQUENTIAL:
                    self._next_port = port + 1 if port < 65535 else 1024
                return port
            port = port + 1 if port < 65535 else 1024
        return None

    def _outbound(self, src: tuple, dst: tuple, now: float) -> Optional[int]:
        """
        Find or make the mapping for C{src} sending to C{dst}, refresh it
        and its permission; return its public port (None: no free port).
        """
        forwarded = self._forwarded_flows.get((src, dst))
        if forwarded is not None:
            return forwarded
        if self.mapping is Mapping.ENDPOINT_INDEPENDENT:
            key = (src, None)
        elif self.mapping is Mapping.ADDRESS_DEPENDENT:
            key = (src, dst[0])
        else:
            key = (src, dst)
        entry = self._by_key.get(key)
        if entry is not None and now >= entry.last_out + self.mapping_timeout:
            del self._by_port[entry.port]
            del self._by_key[key]
            entry = None
        if entry is None:
            port = self._allocate(src[1], now)
            if port is None:
                return None
            entry = _NatEntry(src, port, key, now)
            self._by_key[key] = entry
            self._by_port[port] = entry
        entry.last_out = now
        entry.ips[dst[0]] = now
        entry.addrs[dst] = now
        return entry.port

    def _inbound(self, port: int, remote: tuple, now: float):
        """
        @return: C{(internal address, None)} if accepted, else
            C{(None, reason)}.
        """
        internal = self._forwards.get(port)
        if internal is not None:
            self._forwarded_flows[(internal, tuple(remote))] = port
            return internal, None
        timeout = self.mapping_timeout
        if self.poisoned:
            poison_key = (port, remote)
            since = self._poison.get(poison_key)
            if since is not None:
                if now < since + timeout:
                    self._poison[poison_key] = now
                    return None, "poisoned"
                del self._poison[poison_key]
        entry = self._entry_for_port(port, now)
        if entry is None:
            reason = "no mapping"
        elif self.filtering is Filtering.ENDPOINT_INDEPENDENT:
            return entry.internal, None
        else:
            if self.filtering is Filtering.ADDRESS_DEPENDENT:
                since = entry.ips.get(remote[0])
            else:
                since = entry.addrs.get(remote)
            if since is not None and now < since + timeout:
                return entry.internal, None
            reason = "filtered"
        if self.poisoned:
            self._poison[(port, remote)] = now
        return None, reason


class FirewallBox:
    """
    A stateful firewall without address translation, made with
    L{Network.add_firewall}.  Hosts behind it keep their own (public)
    addresses; inbound packets pass only while a flow opened by an outbound
    packet lives.

    @ivar name: the name given to L{Network.add_firewall}.
    @ivar filtering: a L{Filtering}: what a flow is keyed on.
    @ivar timeout: seconds a flow lives after its last outbound packet.
    """

    def __init__(
        self,
        network: Network,
        name: str,
        realm: _Realm,
        filtering: Filtering,
        timeout: float,
    ) -> None:
        self.network = network
        self.name = name
        self.realm = realm
        self.filtering = filtering
        self.timeout = timeout
        self.link = _Link()
        self.link_name = f"{name} link"
        self.inside = _Realm(f"{name} inside", 0, self, None)
        self._flows: dict = {}

    def __repr__(self) -> str:
        return f"<FirewallBox {self.name}>"

    def flush(self) -> None:
        """
        Forget every flow, like C{conntrack -F}.
        """
        self._flows.clear()

    def _key(self, inside: tuple, remote: tuple) -> tuple:
        if self.filtering is Filtering.ADDRESS_AND_PORT_DEPENDENT:
            return (inside, remote)
        if self.filtering is Filtering.ADDRESS_DEPENDENT:
            return (inside, remote[0])
        return (inside, None)

    def _outbound(self, src: tuple, dst: tuple, now: float) -> None:
        self._flows[self._key(src, dst)] = now

    def _inbound(self, dst: tuple, remote: tuple, now: float) -> bool:
        key = self._key(dst, remote)
        since = self._flows.get(key)
        if since is None:
            return False
        if now < since + self.timeout:
            return True
        del self._flows[key]
        return False


class _SimSocket:
    """
    What C{transport.getHandle()} returns: enough of a socket for
    C{setsockopt}/C{getsockopt}.  Only C{IP_TTL} changes the simulation;
    other options are stored and read back.
    """

    def __init__(self, port: _SimUDPPort) -> None:
        self._port = port
        self._options: dict = {(socket.IPPROTO_IP, socket.IP_TTL): DEFAULT_TTL}

    def setsockopt(self, level: int, option: int, value: object) -> None:
        if (level, option) == (socket.IPPROTO_IP, socket.IP_TTL):
            if value == -1:
                value = DEFAULT_TTL
            if not isinstance(value, int) or not 1 <= value <= 255:
                raise OSError(22, "Invalid argument")
        self._options[(level, option)] = value

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> object:
        return self._options.get((level, option), 0)

    def getsockname(self) -> tuple:
        address = self._port.getHost()
        return (address.host, address.port)

    def fileno(self) -> int:
        return -1


@implementer(IListeningPort, IUDPTransport, ISystemHandle)
class _SimUDPPort:
    """
    The transport of a protocol bound with L{SimHost.listenUDP}.
    """

    def __init__(
        self,
        host: SimHost,
        port: int,
        protocol: object,
        interface: str,
        max_packet_size: int,
    ) -> None:
        self._host = host
        self.port = port
        self.protocol = protocol
        self.interface = interface
        self.maxPacketSize = max_packet_size
        self.listening = True
        self._socket = _SimSocket(self)
        self._broadcast = False

    def __repr__(self) -> str:
        return f"<simulated UDP port {self._host.ip}:{self.port}>"

    def write(self, datagram: bytes, addr: Optional[tuple] = None) -> None:
        """
        Send C{datagram} to C{addr} with the socket's current C{IP_TTL}.

        A write after L{stopListening} is dropped (reason C{"closed"}) rather
        than raising, so stray timers at shutdown do not break tests; look
        at L{Network.stats} to catch it.

        @raise InvalidAddressError: C{addr} is not an IPv4 literal (as with
            a real IPv4 Twisted port).
        @raise MessageLengthError: the datagram is over 65507 bytes.
        @raise TypeError: the port is not an integer (or data not bytes).
        @raise OverflowError: the port is out of range (as C{sendto}).
        @raise OSError: EINVAL for port 0, EACCES for 255.255.255.255
            without C{SO_BROADCAST} (as Linux's C{sendto}).
        """
        if addr is None:
            raise error.InvalidAddressError(None, "simulated ports are not connected")
        if not isIPAddress(addr[0]):
            raise error.InvalidAddressError(
                addr[0], "write() only accepts IPv4 addresses, not hostnames"
            )
        if not isinstance(addr[1], int):
            raise TypeError(f"port must be an integer, not {addr[1]!r}")
        if not 0 <= addr[1] <= 65535:
            raise OverflowError("sendto(): port must be 0-65535.")
        if not isinstance(datagram, bytes):
            raise TypeError(f"datagram must be bytes, not {type(datagram).__name__}")
        if len(datagram) > MAX_DATAGRAM:
            raise error.MessageLengthError("message too long")
        if addr[1] == 0:
            # As Linux: sendto() to port 0 is EINVAL (Twisted re-raises it).
            raise OSError(errno.EINVAL, "Invalid argument")
        if addr[0] == "255.255.255.255" and not self._broadcast:
            raise OSError(errno.EACCES, "Permission denied")
        ttl = self._socket._options[(socket.IPPROTO_IP, socket.IP_TTL)]
        self._host._network._send(self, datagram, (addr[0], addr[1]), ttl)

    def connect(self, host: str, port: int) -> None:
        """
        Connected UDP is not simulated.

        @raise NotImplementedError: always.
        """
        raise NotImplementedError("connected UDP is not simulated")

    def getHost(self) -> IPv4Address:
        """
        @return: C{IPv4Address("UDP", ip, port)}: the bound interface, or the
            host's address when bound to all interfaces (a gateway host's
            public address).
        """
        if self.interface in ("", "0.0.0.0"):
            return IPv4Address("UDP", self._host.ip, self.port)
        return IPv4Address("UDP", self.interface, self.port)

    def getHandle(self) -> _SimSocket:
        """
        @return: a socket-like object supporting C{setsockopt}/C{getsockopt}
            (C{IP_TTL} is honoured).
        """
        return self._socket

    def startListening(self) -> None:
        """
        Already listening since L{SimHost.listenUDP}; does nothing.
        """

    def stopListening(self) -> defer.Deferred:
        """
        Unbind the port and stop the protocol (C{doStop}, hence
        C{stopProtocol}).  Packets in flight to it are then dropped as
        C{"port unreachable"}.

        @return: an already-fired L{Deferred}.
        """
        if self.listening:
            self.listening = False
            self._host._ports.pop(self.port, None)
            self.protocol.doStop()
        return defer.succeed(None)

    loseConnection = stopListening

    def setBroadcastAllowed(self, enabled: bool) -> None:
        self._broadcast = bool(enabled)

    def getBroadcastAllowed(self) -> bool:
        return self._broadcast

    def logPrefix(self) -> str:
        return repr(self)


@implementer(IReactorUDP, IReactorTime)
class SimHost:
    """
    A simulated machine, made with L{Network.add_host}.  It is a reactor
    for UDP and time: pass it wherever code takes a C{reactor} that only
    needs C{listenUDP}, C{callLater}, C{seconds} and C{getDelayedCalls}
    (time is the network's clock).

    @ivar name: a label used in traces (defaults to the address).
    @ivar ip: its address (for a gateway host: the NAT's public address).
    @ivar lan_ip: for a gateway host, its LAN-side address, else L{None}.
    @ivar behind: the L{NatBox} or L{FirewallBox} in front of it, or L{None}.
    @ivar gateway_of: the L{NatBox} it runs on, or L{None}.
    """

    def __init__(
        self,
        network: Network,
        name: str,
        ip: str,
        realm: _Realm,
        behind: Union[NatBox, FirewallBox, None],
        gateway_of: Optional[NatBox] = None,
    ) -> None:
        self._network = network
        self.name = name
        self.ip = ip
        self.realm = realm
        self.behind = behind
        self.gateway_of = gateway_of
        self.lan_ip = gateway_of.lan_ip if gateway_of is not None else None
        self.link = _Link()
        self.link_name = f"{name} link"
        self._addresses = {ip} if gateway_of is None else {ip, self.lan_ip}
        self._ports: dict[int, _SimUDPPort] = {}
        self._next_ephemeral = _EPHEMERAL_FIRST

    def __repr__(self) -> str:
        return f"<SimHost {self.name} {self.ip}>"

    def listenUDP(
        self,
        port: int,
        protocol: object,
        interface: str = "",
        maxPacketSize: int = 8192,
    ) -> _SimUDPPort:
        """
        Bind C{protocol} to a UDP port of this host and start it
        (C{protocol.makeConnection(transport)}).

        @param port: the port, or 0 for the next free ephemeral port
            (32768-60999, handed out in order per host, so runs repeat).
        @param protocol: a L{DatagramProtocol}.
        @param interface: C{""}/C{"0.0.0.0"} or one of the host's addresses.
            Ports are per host, whatever the interface.
        @param maxPacketSize: accepted for compatibility; unused.
        @return: the listening transport.
        @raise CannotListenError: the port is in use, out of range, or the
            interface is not an address of this host.
        """
        if interface not in ("", "0.0.0.0") and interface not in self._addresses:
            raise error.CannotListenError(
                interface, port, OSError(99, "Cannot assign requested address")
            )
        if port == 0:
            port = self._ephemeral_port(interface)
        elif not 0 < port <= 65535:
            raise error.CannotListenError(interface, port, OSError(22, "bad port"))
        elif port in self._ports:
            raise error.CannotListenError(
                interface, port, OSError(98, "Address already in use")
            )
        transport = _SimUDPPort(self, port, protocol, interface, maxPacketSize)
        self._ports[port] = transport
        protocol.makeConnection(transport)
        return transport

    def _ephemeral_port(self, interface: str) -> int:
        span = _EPHEMERAL_LAST - _EPHEMERAL_FIRST + 1
        candidate = self._next_ephemeral
        for _ in range(span):
            following = candidate + 1 if candidate < _EPHEMERAL_LAST else _EPHEMERAL_FIRST
            if candidate not in self._ports:
                self._next_ephemeral = following
                return candidate
            candidate = following
        raise error.CannotListenError(interface, 0, OSError(98, "no free ports"))

    def listenMulticast(self, *args: object, **kwargs: object) -> None:
        """
        Multicast is not simulated.

        @raise NotImplementedError: always.
        """
        raise NotImplementedError("multicast is not simulated")

    def callLater(self, delay: float, callable: Callable, *args, **kw):
        """
        Schedule on the network's clock.
        """
        return self._network.clock.callLater(delay, callable, *args, **kw)

    def seconds(self) -> float:
        """
        @return: the network clock's time.
        """
        return self._network.clock.seconds()

    def getDelayedCalls(self) -> list:
        """
        @return: the network clock's pending calls (every host shares them).
        """
        return self._network.clock.getDelayedCalls()


Node = Union[SimHost, NatBox, FirewallBox]
Box = Union[NatBox, FirewallBox]


def _public_pool() -> Iterator[str]:
    for block in ("198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24", "198.18.0.0/15"):
        for address in ipaddress.ip_network(block).hosts():
            yield str(address)


class Network:
    """
    A simulated network on a clock.  Build it with L{add_nat},
    L{add_firewall}, L{add_host} and L{set_link}; then bind protocols with
    L{SimHost.listenUDP} and drive time with C{clock.advance}.

    @ivar clock: the L{Clock} (any L{IReactorTime}) everything runs on.
    @ivar random: the seeded L{random.Random} used for loss and random port
        allocation; the same seed and the same traffic give the same run.
    @ivar internet_hops: how many routers the internet core counts as.
    @ivar trace: L{None} or a callable taking a L{TraceEvent}, called for
        every send, delivery and drop.
    @ivar stats: the L{NetworkStats} counters.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        seed: int = 0,
        internet_hops: int = 8,
        trace: Optional[Callable[[TraceEvent], object]] = None,
    ) -> None:
        """
        @param clock: a L{twisted.internet.task.Clock}, or a
            L{p2pnet.testing.HeapClock} (the same behaviour, much cheaper
            with many hosts).
        @param seed: seed of the network's random generator.
        @param internet_hops: router hops a packet crossing the internet
            costs (its TTL must be larger than this to cross).
        @param trace: see L{trace}.
        """
        if internet_hops < 0:
            raise ValueError("internet_hops must not be negative")
        self.clock = clock
        self._exact = isinstance(clock, (Clock, HeapClock))
        self.random = random.Random(seed)
        self.internet_hops = internet_hops
        self.trace = trace
        self.stats = NetworkStats()
        self._internet = _Realm("internet", internet_hops, None, None)
        self._blocked: set[tuple[str, str]] = set()
        self._boxes: dict[str, Box] = {}
        self._lans = ipaddress.ip_network("10.0.0.0/8").subnets(new_prefix=24)
        next(self._lans)

    # Building

    def _parent_realm(self, parent: Optional[Box]) -> _Realm:
        if parent is None:
            return self._internet
        if isinstance(parent, (NatBox, FirewallBox)) and parent.network is self:
            return parent.inside
        raise ValueError(f"not a NAT or firewall of this network: {parent!r}")

    def _address_realm(self, realm: _Realm) -> _Realm:
        while isinstance(realm.owner, FirewallBox):
            realm = realm.owner.realm
        return realm

    def _pick_ip(self, realm: _Realm, ip: Optional[str]) -> str:
        top = self._address_realm(realm)
        reserved = top.owner.lan_ip if isinstance(top.owner, NatBox) else None
        if ip is None:
            if top.network is None:
                candidates: Iterator[str] = _public_pool()
            else:
                candidates = (str(a) for a in top.network.hosts())
            for candidate in candidates:
                if candidate not in top.routes and candidate != reserved:
                    return candidate
            raise ValueError(f"no free address left in {top.name}")
        try:
            address = ipaddress.IPv4Address(ip)
        except ValueError:
            raise ValueError(f"not an IPv4 address: {ip!r}") from None
        ip = str(address)
        if top.network is not None and (
            address not in top.network
            or address in (top.network.network_address, top.network.broadcast_address)
        ):
            raise ValueError(f"{ip} is not a host address of {top.network}")
        if ip in top.routes or ip == reserved:
            raise ValueError(f"{ip} is already in use in {top.name}")
        return ip

    def _attach(self, realm: _Realm, ip: str, node: Node) -> None:
        realm.routes[ip] = node
        while isinstance(realm.owner, FirewallBox):
            box = realm.owner
            realm = box.realm
            realm.routes[ip] = box

    def _nats(self) -> list[NatBox]:
        return [box for box in self._boxes.values() if isinstance(box, NatBox)]

    def _check_name(self, name: str) -> None:
        if name in self._boxes or name == "internet":
            raise ValueError(f"name already in use: {name!r}")

    def add_nat(
        self,
        name: str,
        public_ip: Optional[str] = None,
        *,
        parent: Optional[Box] = None,
        mapping: Mapping = Mapping.ENDPOINT_INDEPENDENT,
        filtering: Filtering = Filtering.ADDRESS_AND_PORT_DEPENDENT,
        allocation: Allocation = Allocation.PRESERVING,
        hairpin: bool = False,
        poisoned: bool = False,
        mapping_timeout: float = 120.0,
        lan: Optional[str] = None,
        port_start: int = 40000,
    ) -> NatBox:
        """
        Add a NAT router.

        @param name: unique name, used in traces.
        @param public_ip: its outside address; by default the next free
            documentation address (198.51.100.x, 203.0.113.x, ...) on the
            internet, or the next free address of the parent's LAN.
        @param parent: L{None} for the internet; another L{NatBox} for a
            nested NAT (carrier-grade NAT: C{public_ip} is then on the
            parent's LAN); a L{FirewallBox} to sit behind a firewall.
        @param mapping: RFC 4787 mapping behaviour (L{Mapping}).
        @param filtering: RFC 4787 filtering behaviour (L{Filtering}):
            checked against the remotes each mapping sent to.
        @param allocation: public port assignment (L{Allocation}).
        @param hairpin: if true, a LAN host sending to this NAT's public
            address and a mapped port reaches the mapped inside host, with
            its source translated to the sender's own public mapping
            (RFC 4787 REQ-9); the packet is filtered like any inbound one.
            If false such packets drop (C{"no hairpin"}).  LAN hosts always
            reach each other directly by private address.
        @param poisoned: if true, an inbound packet from remote C{R} rejected
            at public port C{P} (no mapping, or filtered) records a poison
            entry for C{(P, R)}; while it lives, inbound from C{R} to C{P}
            is rejected (C{"poisoned"}) even after an outbound packet would
            have permitted it, and each rejected packet refreshes it (it
            lives C{mapping_timeout} seconds).  This models Linux conntrack
            recording the far side's first packet and then mishandling the
            flow; an outbound warm-up before any inbound avoids it.
        @param mapping_timeout: a mapping, and each of its filtering
            permissions, expires this many seconds after its last
            I{outbound} packet (towards that remote); inbound traffic does
            not refresh it (RFC 4787 REQ-6 allows either; we model the
            stricter one).
        @param lan: inside network in CIDR form; default the next unused
            C{10.0.N.0/24}.  Its first address is the box's LAN address.
        @param port_start: first port a SEQUENTIAL allocator hands out.
        @return: the new L{NatBox}.
        @raise ValueError: bad or clashing name or addresses, bad timeout.
        """
        self._check_name(name)
        if mapping_timeout <= 0:
            raise ValueError("mapping_timeout must be positive")
        if not 1024 <= port_start <= 65535:
            raise ValueError("port_start must be in 1024-65535")
        realm = self._parent_realm(parent)
        ip = self._pick_ip(realm, public_ip)
        if lan is None:
            network = next(self._lans)
            while any(box.lan.overlaps(network) for box in self._nats()):
                network = next(self._lans)
        else:
            network = ipaddress.ip_network(lan, strict=False)
            if not isinstance(network, ipaddress.IPv4Network) or network.num_addresses < 4:
                raise ValueError(f"lan must be an IPv4 network of 4+ addresses: {lan!r}")
        nat = NatBox(
            self, name, ip, realm, network, Mapping(mapping), Filtering(filtering),
            Allocation(allocation), hairpin, poisoned, mapping_timeout, port_start,
        )
        self._attach(realm, ip, nat)
        self._boxes[name] = nat
        return nat

    def add_firewall(
        self,
        name: str,
        *,
        parent: Optional[Box] = None,
        timeout: float = 120.0,
        filtering: Filtering = Filtering.ADDRESS_AND_PORT_DEPENDENT,
    ) -> FirewallBox:
        """
        Add a stateful firewall (no translation).  Hosts behind it get
        addresses of the parent realm (public ones on the internet) and are
        reachable only through flows they opened.

        @param name: unique name, used in traces.
        @param parent: L{None} for the internet, or a box it sits behind.
        @param timeout: a flow expires this many seconds after its last
            outbound packet; inbound does not refresh it.
        @param filtering: what a flow is keyed on: the exact remote
            C{(ip, port)} (default, like conntrack), the remote IP, or
            nothing (any remote may answer an inside port that sent out).
        @return: the new L{FirewallBox}.
        @raise ValueError: clashing name or bad timeout.
        """
        self._check_name(name)
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        firewall = FirewallBox(
            self, name, self._parent_realm(parent), Filtering(filtering), timeout
        )
        self._boxes[name] = firewall
        return firewall

    def add_host(
        self,
        ip: Optional[str] = None,
        *,
        behind: Optional[Box] = None,
        on_gateway: bool = False,
        name: Optional[str] = None,
    ) -> SimHost:
        """
        Add a host.

        @param ip: its address; by default the next free one (a
            documentation address on the internet or behind a firewall
            there, the next free LAN address behind a NAT).
        @param behind: L{None} for directly on the internet, else the
            L{NatBox} or L{FirewallBox} in front of it.
        @param on_gateway: a program running on the NAT box C{behind}
            itself: it sends to LAN addresses from the box's LAN address
            and to anything else from the box's public address, untranslated;
            inbound packets to the public address on a port it has bound
            reach it before any NAT mapping is looked at; LAN hosts reach
            it at the box's LAN address (or public address).  It has no
            link of its own (the box's link is used outward).  C{ip} must
            be omitted.  One per NAT.
        @param name: label for traces; default the address.
        @return: the new L{SimHost}.
        @raise ValueError: bad or clashing address, bad combination.
        """
        realm = self._parent_realm(behind)
        if on_gateway:
            if not isinstance(behind, NatBox):
                raise ValueError("on_gateway needs behind=<a NAT>")
            if ip is not None:
                raise ValueError("a gateway host uses the NAT's addresses; omit ip")
            if behind.gateway_host is not None:
                raise ValueError(f"{behind.name} already has a gateway host")
            host = SimHost(
                self, name or f"{behind.name} gateway", behind.public_ip, realm,
                behind, gateway_of=behind,
            )
            behind.gateway_host = host
            realm.routes[behind.lan_ip] = host
            return host
        ip = self._pick_ip(realm, ip)
        host = SimHost(self, name or ip, ip, realm, behind)
        self._attach(realm, ip, host)
        return host

    def set_link(self, node: Node, latency: float = 0.0, loss: float = 0.0) -> None:
        """
        Set the link between C{node} (a host or a box) and its parent realm,
        in both directions.

        @param latency: one-way delay in seconds.
        @param loss: probability in [0, 1] that a packet crossing it is
            lost, drawn from the network's seeded generator.
        @raise ValueError: out-of-range values, or a gateway host (it uses
            its NAT's link: set that one).
        """
        if isinstance(node, SimHost) and node.gateway_of is not None:
            raise ValueError("a gateway host has no link of its own; set its NAT's")
        if not isinstance(node, (SimHost, NatBox, FirewallBox)):
            raise ValueError(f"not a node: {node!r}")
        if latency < 0:
            raise ValueError("latency must not be negative")
        if not 0.0 <= loss <= 1.0:
            raise ValueError("loss must be in [0, 1]")
        node.link = _Link(float(latency), float(loss))

    # Forwarding

    def _drop(self, packet: _Packet, reason: str, where: str) -> None:
        self.stats.dropped[reason] += 1
        if self.trace is not None:
            self.trace(
                TraceEvent(
                    packet.time, "drop", packet.src, packet.dst,
                    len(packet.data), packet.ttl, where, reason,
                )
            )

    def _send(self, port: _SimUDPPort, data: bytes, dst: tuple, ttl: int) -> None:
        host = port._host
        if host.gateway_of is None:
            src_ip = host.ip
        elif host.gateway_of.inside.on_subnet(dst[0]):
            src_ip = host.lan_ip
        else:
            src_ip = host.ip
        packet = _Packet(data, (src_ip, port.port), dst, ttl, self.clock.seconds())
        self.stats.sent += 1
        if self.trace is not None:
            self.trace(
                TraceEvent(
                    packet.time, "send", packet.src, dst, len(data), ttl,
                    host.name,
                )
            )
        if not port.listening:
            self._drop(packet, "closed", host.name)
            return
        packet.came_from = host
        dst_ip = dst[0]
        if dst_ip in host._addresses or dst_ip.startswith("127."):
            if dst_ip.startswith("127."):
                packet.src = ("127.0.0.1", port.port)
            self._at(packet, self._arrive_host, host)
        elif host.gateway_of is None:
            self._cross(host, packet, self._in_realm, host.realm)
        elif src_ip == host.lan_ip:
            self._in_realm(packet, host.realm)
        else:
            nat = host.gateway_of
            packet.came_from = nat
            self._cross(nat, packet, self._in_realm, nat.realm)

    def _cross(
        self, node: Node, packet: _Packet, then: Callable, target: object,
        final: bool = False,
    ) -> None:
        """
        Cross C{node}'s link (either way), then C{then(packet, target)}.
        """
        link = node.link
        if link.loss and self.random.random() < link.loss:
            self._drop(packet, "loss", node.link_name)
            return
        if link.latency or final:
            packet.time += link.latency
            self._at(packet, then, target)
        else:
            then(packet, target)

    def _at(self, packet: _Packet, then: Callable, target: object) -> None:
        """
        Call C{then(packet, target)} at C{packet.time}.

        After a big C{Clock.advance}, the clock's time is already past the
        packet's time; the call is then scheduled in the (just) past so it
        still runs in this C{advance}, in time order with the other pending
        calls.  Only a L{Clock} or a L{HeapClock} accepts that; other clocks
        get a zero delay.
        """
        delay = packet.time - self.clock.seconds()
        if delay < 0 and not self._exact:
            delay = 0
        self.clock.callLater(delay, then, packet, target)

    def block(self, ip_a: str, ip_b: str) -> None:
        """
        Make the internet core drop UDP between two public addresses (both
        directions), like a firewall rule between two sites.
        """
        self._blocked.add((ip_a, ip_b))
        self._blocked.add((ip_b, ip_a))

    def unblock(self, ip_a: str, ip_b: str) -> None:
        """
        Undo L{block}.
        """
        self._blocked.discard((ip_a, ip_b))
        self._blocked.discard((ip_b, ip_a))

    def _in_realm(self, packet: _Packet, realm: _Realm) -> None:
        hops = realm.hops
        if hops:
            if packet.ttl <= hops:
                self._drop(packet, "ttl", realm.name)
                return
            packet.ttl -= hops
        dst_ip = packet.dst[0]
        if self._blocked and realm.owner is None and (packet.src[0], dst_ip) in self._blocked:
            self._drop(packet, "blocked", realm.name)
            return
        node = realm.routes.get(dst_ip)
        if node is None or node is packet.came_from:
            owner = realm.owner
            if owner is None:
                self._drop(packet, "no route", realm.name)
            elif node is not None or realm.on_subnet(dst_ip):
                self._drop(packet, "no host", realm.name)
            elif type(owner) is NatBox:
                self._nat_outbound(packet, owner)
            else:
                self._firewall_outbound(packet, owner)
            return
        kind = type(node)
        if kind is SimHost:
            if node.gateway_of is not None:
                self._at(packet, self._arrive_host, node)
            else:
                self._cross(node, packet, self._arrive_host, node, final=True)
        elif kind is NatBox:
            self._cross(node, packet, self._nat_inbound, node)
        else:
            self._cross(node, packet, self._firewall_inbound, node)

    def _arrive_host(self, packet: _Packet, host: SimHost) -> None:
        port = host._ports.get(packet.dst[1])
        if port is None:
            self._drop(packet, "port unreachable", host.name)
            return
        self.stats.delivered += 1
        if self.trace is not None:
            self.trace(
                TraceEvent(
                    packet.time, "deliver", packet.src, packet.dst,
                    len(packet.data), packet.ttl, host.name,
                )
            )
        try:
            port.protocol.datagramReceived(packet.data, packet.src)
        except Exception:
            self._log.failure(
                "Unhandled error in datagramReceived on {host}", host=host.name
            )

    def _nat_outbound(self, packet: _Packet, nat: NatBox) -> None:
        now = packet.time
        dst = packet.dst
        if dst[0] == nat.public_ip:
            gateway = nat.gateway_host
            if gateway is not None and dst[1] in gateway._ports:
                self._at(packet, self._arrive_host, gateway)
                return
            if not nat.hairpin:
                self._drop(packet, "no hairpin", nat.name)
                return
        if packet.ttl <= 1:
            self._drop(packet, "ttl", nat.name)
            return
        packet.ttl -= 1
        public_port = nat._outbound(packet.src, dst, now)
        if public_port is None:
            self._drop(packet, "ports exhausted", nat.name)
            return
        packet.src = (nat.public_ip, public_port)
        packet.came_from = nat
        if dst[0] == nat.public_ip:
            internal, reason = nat._inbound(dst[1], packet.src, now)
            if internal is None:
                self._drop(packet, reason, nat.name)
                return
            packet.dst = internal
            self._in_realm(packet, nat.inside)
            return
        self._cross(nat, packet, self._in_realm, nat.realm)

    def _nat_inbound(self, packet: _Packet, nat: NatBox) -> None:
        gateway = nat.gateway_host
        if gateway is not None and packet.dst[1] in gateway._ports:
            self._at(packet, self._arrive_host, gateway)
            return
        internal, reason = nat._inbound(packet.dst[1], packet.src, packet.time)
        if internal is None:
            self._drop(packet, reason, nat.name)
            return
        if packet.ttl <= 1:
            self._drop(packet, "ttl", nat.name)
            return
        packet.ttl -= 1
        packet.dst = internal
        packet.came_from = nat
        self._in_realm(packet, nat.inside)

    def _firewall_outbound(self, packet: _Packet, firewall: FirewallBox) -> None:
        if packet.ttl <= 1:
            self._drop(packet, "ttl", firewall.name)
            return
        packet.ttl -= 1
        firewall._outbound(packet.src, packet.dst, packet.time)
        packet.came_from = firewall
        self._cross(firewall, packet, self._in_realm, firewall.realm)

    def _firewall_inbound(self, packet: _Packet, firewall: FirewallBox) -> None:
        if not firewall._inbound(packet.dst, packet.src, packet.time):
            self._drop(packet, "filtered", firewall.name)
            return
        if packet.ttl <= 1:
            self._drop(packet, "ttl", firewall.name)
            return
        packet.ttl -= 1
        packet.came_from = firewall
        self._in_realm(packet, firewall.inside)
