"""
A connection's extra sockets: the ones the hard side of a birthday search
opens (many, on random ports) and the one a re-punch sends from (on a port
both sides derived from the introduction).  Each is capped by the
endpoint's C{max_extra_sockets}, remembers which peer sources were heard
through it (so answers leave from the socket the peer's NAT expects), and
is closed when the connection settles on a path or ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.error import CannotListenError, InvalidAddressError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from p2pnet.address import Address, is_relayed

if TYPE_CHECKING:
    from p2pnet.endpoint import PeerEndpoint


class ExtraSocket(DatagramProtocol):
    """
    One extra socket; what arrives goes to the endpoint tagged with it.
    """

    def __init__(self, endpoint: PeerEndpoint) -> None:
        self._endpoint = endpoint
        self.port = None

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        self._endpoint.datagram_via(data, addr, self)

    def close(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            self._endpoint.extra_sockets -= 1
            port.stopListening()


class ExtraSockets:
    """
    The extra sockets of one connection.

    @param encode_hello: builds a hello listing the given candidates (each
        call a new transaction id).
    """

    def __init__(self, endpoint: PeerEndpoint, log: Logger, encode_hello: Callable[[tuple], bytes]) -> None:
        self._endpoint = endpoint
        self._log = log
        self._encode_hello = encode_hello
        self._open: list[ExtraSocket] = []
        self._via: dict[Address, ExtraSocket] = {}

    def __len__(self) -> int:
        return len(self._open)

    def open(self, port: int) -> ExtraSocket:
        """
        One more socket, within the endpoint's cap on extra sockets (so
        introductions in bulk cannot use up its file descriptors).

        @raise CannotListenError: the port is taken, or the cap is reached.
        """
        endpoint = self._endpoint
        if endpoint.extra_sockets >= endpoint.config.max_extra_sockets:
            endpoint.count("refused-extra-socket")
            raise CannotListenError(endpoint.interface, port, OSError("too many extra sockets open"))
        extra = ExtraSocket(endpoint)
        extra.port = endpoint.reactor.listenUDP(port, extra, endpoint.interface)
        endpoint.extra_sockets += 1
        self._open.append(extra)
        return extra

    def send(self, raw: bytes, to: Address) -> bool:
        """
        Send from the socket C{to} was heard through, if any.

        @return: whether one of ours sent it (else the caller sends it
            from the endpoint's own socket).
        """
        via = self._via.get(to)
        if via is None or via.transport is None:
            return False
        self._write_from(via, raw, to)
        return True

    def _write_from(self, extra: ExtraSocket, raw: bytes, to: Address) -> None:
        """
        A destination the socket cannot send to (the kernel's refusal, an
        IPv6 address on this IPv4 socket) is counted like the endpoint's
        own (C{send-failed}).
        """
        try:
            extra.transport.write(raw, to.as_tuple())
        except (OSError, InvalidAddressError) as e:
            self._endpoint._send_failed(to, e)

    def open_birthday(self, count: int, to: Address) -> None:
        """
        The hard side of a birthday search: C{count} sockets, each sending
        one hello to C{to}.
        """
        for _ in range(count):
            try:
                extra = self.open(0)
            except CannotListenError as e:
                self._log.info("could only open {n} extra sockets: {error}", n=len(self._open), error=str(e))
                break
            # Each socket's hello has its own transaction id: the peer
            # answers each (a hello seen twice is a replay).
            self._write_from(extra, self._encode_hello(()), to)
        self._log.info(
            "opened {n} extra sockets towards {to} (birthday search)", n=len(self._open), to=str(to)
        )

    def open_rescue(self, port: int) -> None:
        """
        Open the socket a re-punch sends from.
        """
        try:
            self.open(port)
        except CannotListenError as e:
            self._endpoint.note(
                "re-punch", self._log.info, "could not open a re-punch socket on port {port}: {error}",
                port=port, error=str(e),
            )

    def send_rescue_hello(self, port: int, to: Address) -> None:
        """
        A hello from the re-punch socket on C{port}.
        """
        if is_relayed(to):
            return
        for extra in self._open:
            if extra.port is not None and extra.port.getHost().port == port and extra.transport is not None:
                self._write_from(extra, self._encode_hello(self._endpoint.own_candidates()), to)
                return

    def heard_via(self, source, via) -> None:
        """
        C{source} was last heard through C{via} (None: the endpoint's own
        socket).
        """
        if via is None:
            self._via.pop(source, None)
        else:
            self._via[source] = via

    def settle(self, address: Address) -> None:
        """
        The connection chose C{address}: keep only the socket it was heard
        through, if any.
        """
        if self._open:
            self.close(keep=self._via.get(address))

    def close(self, keep: ExtraSocket | None = None) -> None:
        extra, self._open = self._open, []
        for socket_ in extra:
            if socket_ is keep:
                self._open.append(socket_)
            else:
                socket_.close()
        if keep is None:
            self._via.clear()
