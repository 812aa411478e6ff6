"""
Shared test fakes.
"""

from __future__ import annotations

import random

from twisted.internet.address import IPv4Address

from p2pnet import wire


class FakeDatagramTransport:
    """
    Records what a DatagramProtocol writes, in order.

    @ivar written: list of C{(bytes, (host, port))}.
    """

    def __init__(self, host: str = "192.0.2.1", port: int = 3478) -> None:
        self.written: list[tuple[bytes, tuple]] = []
        self._host = IPv4Address("UDP", host, port)
        self.ttl = 64
        self.ttl_log: list[int] = []

    def write(self, data: bytes, addr: tuple) -> None:
        self.written.append((data, addr))
        self.ttl_log.append(self.ttl)

    def getHost(self) -> IPv4Address:
        return self._host

    def getHandle(self):
        return self

    # the socket-like handle: only IP_TTL
    def setsockopt(self, level, option, value) -> None:
        self.ttl = value

    def getsockopt(self, level, option) -> int:
        return self.ttl

    def stopListening(self) -> None:
        pass

    def decoded(self) -> list[tuple[object, tuple]]:
        """
        Everything written, decoded with the p2pnet codec.
        """
        return [(wire.decode(data), addr) for data, addr in self.written]

    def clear(self) -> list[tuple[object, tuple]]:
        result = self.decoded()
        del self.written[:]
        return result


def seeded_bytes(seed: int = 0):
    """
    A deterministic C{n -> bytes} source.
    """
    rng = random.Random(seed)
    return lambda n: bytes(rng.getrandbits(8) for _ in range(n))


def txid(n: int) -> bytes:
    return n.to_bytes(8, "big")
