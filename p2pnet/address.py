"""
Address value types shared by the codecs, machines and protocols.
"""

from __future__ import annotations

import ipaddress
from socket import AF_INET, inet_pton

from attrs import field, frozen


def _check_port(instance: object, attribute: object, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError(f"port must be an integer in 0-65535, not {value!r}")


def _check_host(instance: object, attribute: object, value: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"not an IP address: {value!r}")
    try:
        # Every datagram's source becomes an Address: inet_pton accepts
        # exactly the IPv4 literals ipaddress does, ten times faster.
        inet_pton(AF_INET, value)
        return
    except (OSError, ValueError):
        pass
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"not an IP address: {value!r}") from None


_LAN_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8",
        "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10",
    )
)


@frozen(order=True)
class Address:
    """
    A UDP address: an IPv4 or IPv6 literal and a port.

    Convertible to and from the C{(host, port)} tuples Twisted uses.
    """

    host: str = field(validator=_check_host)
    port: int = field(validator=_check_port)

    @classmethod
    def from_tuple(cls, pair: tuple) -> Address:
        """
        Build an address from a Twisted C{(host, port)} (or IPv6 4-tuple).
        """
        return cls(pair[0], pair[1])

    @classmethod
    def parse(cls, text: str, default_port: int | None = None) -> Address:
        """
        Parse C{"HOST:PORT"}, C{"[V6]:PORT"}, or a bare host when
        C{default_port} is given.

        @raise ValueError: with a message that says what is wrong.
        """
        text = text.strip()
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep:
                raise ValueError(f"missing ']' in {text!r}")
            port_text = rest[1:] if rest.startswith(":") else None
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
        else:
            host, port_text = text, None
        if port_text is None:
            if default_port is None:
                raise ValueError(f"expected HOST:PORT, got {text!r}")
            port = default_port
        else:
            try:
                port = int(port_text)
            except ValueError:
                raise ValueError(f"bad port in {text!r}") from None
        if host == "localhost":
            host = "127.0.0.1"
        return cls(host, port)

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def is_reachable(self) -> bool:
        """
        Whether a datagram can be sent to this address at all: not port 0,
        not an unspecified, limited-broadcast or multicast address (the
        kernel refuses those with EINVAL or EACCES, or they reach a whole
        network).  A peer's candidates that are not are dropped unused.
        """
        if self.port == 0:
            return False
        try:
            ip = ipaddress.ip_address(self.host.partition("%")[0])
        except ValueError:
            return False
        if ip.is_unspecified or ip.is_multicast:
            return False
        # The limited broadcast; a directed broadcast cannot be told from a
        # host address without the network's mask, so a write to one fails
        # (EACCES) and is counted by the endpoint instead.
        return self.host != "255.255.255.255"

    @property
    def is_lan(self) -> bool:
        """
        Whether this is an address only a local network can reach (RFC
        1918, shared CGNAT space RFC 6598, loopback, link-local, IPv6 ULA):
        the only addresses a peer's own claim can make a candidate, since
        a claimed public address elsewhere would make us a reflector.
        """
        try:
            ip = ipaddress.ip_address(self.host.partition("%")[0])
        except ValueError:
            return False
        return any(ip in network for network in _LAN_NETWORKS)

    def as_tuple(self) -> tuple[str, int]:
        """
        The C{(host, port)} tuple Twisted's C{transport.write} wants.
        """
        return (self.host, self.port)

    def __str__(self) -> str:
        if self.is_ipv6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@frozen
class RelayRoute:
    """
    A path through a p2pnet relay: where the relay is, the allocation, our
    side of it, and the allocation's key.  Used wherever an L{Address}
    names a path; the connection wraps datagrams for the relay.
    """

    relay: Address
    allocation_id: bytes = field(repr=lambda v: v.hex())
    side: int
    key: bytes = field(repr=False)

    is_ipv6 = False
    relayed = True

    def __str__(self) -> str:
        return f"relay {self.relay}"


@frozen
class TurnRoute:
    """
    A path through our own TURN allocation to C{peer} (the address the
    TURN server sees the peer at).
    """

    peer: Address
    is_ipv6 = False
    relayed = True

    def __str__(self) -> str:
        return f"TURN to {self.peer}"


@frozen
class RelayedAddress:
    """
    The peer's TURN relayed address: we send to it directly, and what
    comes from it has crossed the peer's TURN server.
    """

    address: Address
    is_ipv6 = False
    relayed = True

    def __str__(self) -> str:
        return f"TURN relay {self.address}"


def is_relayed(path: object) -> bool:
    """
    Whether a path (an L{Address} or a route) goes through a relay.
    """
    return getattr(path, "relayed", False)
