"""
The handshake machine's outputs for one connection: a small adapter, so
the plumbing (hellos, probes, relay requests...) stays off the public
L{p2pnet.connection.PeerConnection}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from p2pnet.address import Address
    from p2pnet.connection import PeerConnection


class ConnectionOutputs:
    """
    L{p2pnet._handshake.HandshakeOutputs}, each passed to the
    connection's private method of the same name.
    """

    __slots__ = ("_connection",)

    def __init__(self, connection: PeerConnection) -> None:
        self._connection = connection

    def send_probe(self, to: Address, ttl: int) -> None:
        self._connection._send_probe(to, ttl)

    def send_hello(self, to: Address) -> None:
        self._connection._send_hello(to)

    def send_answer(self, to: Address, txid: bytes) -> None:
        self._connection._send_answer(to, txid)

    def send_keepalive(self, to: Address) -> None:
        self._connection._send_keepalive(to)

    def send_close(self, to: Address) -> None:
        self._connection._send_close(to)

    def request_reversal(self) -> None:
        self._connection._request_reversal()

    def request_relay(self) -> None:
        self._connection._request_relay()

    def open_birthday_sockets(self, count: int, to: Address) -> None:
        self._connection._sockets.open_birthday(count, to)

    def open_rescue_socket(self, port: int) -> None:
        self._connection._sockets.open_rescue(port)

    def send_rescue_hello(self, port: int, to: Address) -> None:
        self._connection._sockets.send_rescue_hello(port, to)

    def status(self, kind: str) -> None:
        self._connection._status(kind)

    def connected(self, address: Address) -> None:
        self._connection._connected(address)

    def path_changed(self, address: Address) -> None:
        self._connection._path_changed(address)

    def failed(self, error: Exception) -> None:
        self._connection._failed(error)

    def lost(self, reason: str) -> None:
        self._connection._lost(reason)
