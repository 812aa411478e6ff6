"""
Writing datagrams on the servers' hot paths without Twisted's per-write
address checks.

C{twisted.internet.udp.Port.write} checks, on every call, that the address
is an IP literal of the socket's family (about a microsecond with
C{isIPAddress} and C{isIPv6Address}).  The introducer, the STUN server and
the relay only ever write to addresses that came from C{recvfrom} or from a
validated L{p2pnet.address.Address}, so they write with the socket's own
C{sendto} and hand anything the kernel refuses to C{Port.write}, which then
behaves exactly as it always does (retries on EINTR, ignores ECONNREFUSED,
raises C{MessageLengthError}, C{InvalidAddressError} or the C{OSError}).

Never pass a host name: C{socket.sendto} would resolve it, blocking the
reactor.
"""

from __future__ import annotations

import socket
from typing import Callable

DatagramWriter = Callable[[bytes, tuple], object]


def datagram_writer(transport) -> DatagramWriter:
    """
    A C{write(datagram, address)} for C{transport}, for IP-literal
    addresses only.

    When C{transport.getHandle()} is an unconnected UDP socket, this sends
    with the socket's C{sendto} and falls back to C{transport.write} when
    that raises; otherwise (test doubles, other transports) it is
    C{transport.write} itself.
    """
    write = transport.write
    if getattr(transport, "writes_by_family", False):
        return write  # a p2pnet._ipv6.DualStackTransport: it picks the socket
    try:
        handle = transport.getHandle()
    except AttributeError:
        return write
    if not isinstance(handle, socket.socket) or handle.type != socket.SOCK_DGRAM:
        return write
    try:
        handle.getpeername()
    except OSError:
        pass
    else:
        return write  # a connected port: Port.write uses send(), keep it
    sendto = handle.sendto

    def write_fast(datagram: bytes, address: tuple) -> object:
        try:
            return sendto(datagram, address)
        except OSError:
            # Nothing was sent; Port.write tries once more and reports the
            # failure the way the rest of Twisted expects.
            return write(datagram, address)

    return write_fast


class FastDatagramWriting:
    """
    Mixin for a C{DatagramProtocol}: C{write_datagram(datagram, address)}
    and C{current_writer()}, through L{datagram_writer} for whatever
    C{self.transport} currently is.
    """

    _writer_transport = None
    _writer: DatagramWriter | None = None

    def current_writer(self) -> DatagramWriter:
        """
        The L{datagram_writer} of C{self.transport} as it is now (for a
        loop that writes many datagrams).
        """
        transport = self.transport  # type: ignore[attr-defined]
        if self._writer_transport is not transport:
            self._writer_transport = transport
            self._writer = datagram_writer(transport)
        return self._writer  # type: ignore[return-value]

    def write_datagram(self, datagram: bytes, address: tuple) -> object:
        """
        Write C{datagram} to C{address}, an IP literal of the socket's
        family (see L{datagram_writer}).
        """
        return self.current_writer()(datagram, address)
