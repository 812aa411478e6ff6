"""
IPv6 beside IPv4: which IPv6 addresses are worth a candidate, how an
address from a dual-stack socket is normalised, and a second UDP socket of
the other family for the endpoint and for the servers (the introducer and
the relay).

A peer endpoint keeps its IPv4 socket as its main one and, when it has an
IPv6 address worth advertising, opens an IPv6-only socket beside it (the
same port where it is free).  L{p2pnet.endpoint.PeerEndpoint.write} picks
the socket by the destination's family, so an IPv6 candidate never goes
to the IPv4 socket and the other way round.  The servers bind the same
way and give their protocol one transport that writes through the socket
of the destination's family (L{DualStackTransport}).
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from typing import Callable, Iterable

from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol

from p2pnet._udpwrite import datagram_writer
from p2pnet.address import Address

#: IPv6 addresses an endpoint advertises at most (its global and ULA ones).
MAX_V6_ADDRESSES = 2

#: Flags of /proc/net/if_inet6 that make an address unusable as a source:
#: IFA_F_DADFAILED, IFA_F_DEPRECATED, IFA_F_TENTATIVE.
_UNUSABLE_FLAGS = 0x08 | 0x20 | 0x40


def normalise(address: Address) -> Address:
    """
    An IPv4-mapped IPv6 address (C{::ffff:a.b.c.d}, what a dual-stack
    socket reports for an IPv4 peer) as the plain IPv4 address; any other
    address unchanged.
    """
    if not address.is_ipv6:
        return address
    try:
        mapped = ipaddress.IPv6Address(address.host).ipv4_mapped
    except ValueError:
        return address
    return address if mapped is None else Address(str(mapped), address.port)


def is_advertisable(host: str) -> bool:
    """
    Whether an IPv6 address of ours is worth a candidate: global unicast
    or unique-local (ULA, C{fc00::/7}); not link-local (it needs a zone no
    peer knows), loopback, multicast, unspecified, IPv4-mapped or
    -compatible, or a documentation-only address outside a lab.
    """
    try:
        ip = ipaddress.IPv6Address(host)
    except ValueError:
        return False
    if ip.is_link_local or ip.is_loopback or ip.is_multicast or ip.is_unspecified:
        return False
    if ip.ipv4_mapped is not None or ip.sixtofour is not None or ip.teredo is not None:
        return False
    if ip.packed[:12] == bytes(12):
        return False  # IPv4-compatible (deprecated)
    return True


def usable_candidate(candidate: Address, peer_public: Address) -> bool:
    """
    Whether a peer's IPv6 candidate can be sent to at all: not a scoped
    (link-local) address, not loopback unless the peer itself is on this
    host (the introducer saw it at a loopback address).  IPv4 candidates
    and the rest of the checks are the caller's.
    """
    if not candidate.is_ipv6:
        return True
    try:
        ip = ipaddress.IPv6Address(candidate.host)
    except ValueError:
        return False  # a scoped literal: its zone means nothing here
    if ip.is_link_local or ip.is_site_local:
        return False
    if ip.is_loopback:
        try:
            return ipaddress.ip_address(peer_public.host).is_loopback
        except ValueError:
            return False
    return True


def interface_addresses(path: str = "/proc/net/if_inet6") -> tuple[str, ...]:
    """
    The advertisable IPv6 addresses of this host's interfaces (Linux's
    C{/proc/net/if_inet6}; nothing elsewhere), global ones first.
    """
    try:
        with open(path) as table:
            lines = table.read().splitlines()
    except OSError:
        return ()
    found = []
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or len(parts[0]) != 32:
            continue
        try:
            flags = int(parts[4], 16)
            host = str(ipaddress.IPv6Address(bytes.fromhex(parts[0])))
        except ValueError:
            continue
        if flags & _UNUSABLE_FLAGS or not is_advertisable(host):
            continue
        found.append(host)
    return tuple(order_addresses(found))


def order_addresses(hosts: Iterable[str]) -> list[str]:
    """
    Global addresses before unique-local ones, duplicates dropped.
    """
    unique = list(dict.fromkeys(hosts))
    return [h for h in unique if not Address(h, 1).is_lan] + [h for h in unique if Address(h, 1).is_lan]


def source_towards(destination: Address) -> str | None:
    """
    The IPv6 source address the kernel would use towards C{destination}
    (connecting a UDP socket sends nothing), or None without a route.
    """
    probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        probe.connect(destination.as_tuple())
        return probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()


def listen_v6(reactor, port: int, protocol: DatagramProtocol, interface: str = "::"):
    """
    Bind C{protocol} to an IPv6-only UDP socket (C{IPV6_V6ONLY}, so that
    it can share its port number with an IPv4 socket) when the reactor
    can adopt a socket; otherwise C{listenUDP} on C{interface}.

    @raise CannotListenError: the port is taken or IPv6 is off.
    """
    adopt = getattr(reactor, "adoptDatagramPort", None)
    if adopt is None:
        return reactor.listenUDP(port, protocol, interface)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((interface, port))
        sock.setblocking(False)
        return adopt(sock.fileno(), socket.AF_INET6, protocol)
    except OSError as e:
        raise CannotListenError(interface, port, e) from None
    finally:
        # The reactor holds a duplicate of the descriptor.
        sock.close()


class Twin(DatagramProtocol):
    """
    The protocol of a second socket: hands what it receives to
    C{receive(data, addr)}, with IPv4-mapped sources normalised.
    """

    def __init__(self, receive: Callable[[bytes, tuple], None]) -> None:
        self._receive = receive

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        host = addr[0]
        if "." in host and host.startswith("::ffff:"):
            host = host[7:]
        self._receive(data, (host, addr[1]))


class DualStackTransport:
    """
    A server protocol's transport over an IPv4 and an IPv6 port: writes
    go out of the port of the destination's family; everything else
    (C{getHost}, C{getHandle}...) is the IPv4 port's.
    """

    #: Tells L{p2pnet._udpwrite.datagram_writer} to use L{write} as it is.
    writes_by_family = True

    def __init__(self, v4, v6) -> None:
        self.v4 = v4
        self.v6 = v6
        self._write4 = datagram_writer(v4)
        self._write6 = datagram_writer(v6)

    def write(self, datagram: bytes, address: tuple) -> object:
        if ":" in address[0]:
            return self._write6(datagram, address)
        return self._write4(datagram, address)

    def __getattr__(self, name: str):
        return getattr(self.v4, name)


def add_ipv6(reactor, protocol: DatagramProtocol, v4_port, interface6: str):
    """
    Give a server C{protocol}, already listening on C{v4_port}, a second,
    IPv6 socket on C{interface6} (the same port number where free) and a
    L{DualStackTransport}; returns the IPv6 port.
    """
    number = v4_port.getHost().port
    twin = Twin(protocol.datagramReceived)
    try:
        v6_port = listen_v6(reactor, number, twin, interface6)
    except CannotListenError:
        v6_port = listen_v6(reactor, 0, twin, interface6)
    protocol.transport = DualStackTransport(v4_port, v6_port)
    return v6_port


def alternate_heartbeat(registry, message, source: Address, now: float):
    """
    The introducer's side of a dual-stack peer: a heartbeat from an
    address of the other family than the registration's public one.

    @return: the registration, when C{source} is its proven alternate
        address; None when this is not such a heartbeat (an unknown peer,
        a wrong cookie, the same family), for the plain heartbeat to
        handle and refuse as usual.
    @raise ChallengeNeeded: (C{"alternate"}) the right cookie from a new
        address of the other family: it becomes the alternate once proven
        from there, like a move (so it cannot name a third party).
    """
    from p2pnet._registry import ChallengeNeeded

    registration = registry.lookup(message.peer_id, now)
    if registration is None or registration.public.is_ipv6 == source.is_ipv6:
        return None
    if not hmac.compare_digest(message.cookie, registration.cookie):
        return None
    if source == registration.alternate:
        return registration
    raise ChallengeNeeded(registration, "alternate")
