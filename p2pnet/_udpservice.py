"""
Services that bind a DatagramProtocol to a UDP port while running (the
introducer's and the relay's).
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import gatherResults, maybeDeferred
from twisted.internet.interfaces import IReactorUDP
from twisted.logger import Logger

from p2pnet._udpread import listen_udp


class UDPService(Service):
    """
    Binds a DatagramProtocol to a UDP port while running, and logs where.

    @ivar port: the listening port once started (C{getHost()} tells the
        actual port number when 0 was asked for).
    @ivar port6: with C{interface6}, the IPv6 port beside it (the same
        number where free): the protocol then writes through a
        L{p2pnet._ipv6.DualStackTransport}.
    """

    log = Logger()

    def __init__(
        self, reactor: IReactorUDP, protocol, port: int, interface: str = "", what: str = "introducer",
        interface6: str | None = None,
    ) -> None:
        self._reactor = reactor
        self.protocol = protocol
        self._port_number = port
        self._interface = interface
        self._interface6 = interface6
        self._what = what
        self.port = None
        self.port6 = None

    def startService(self) -> None:
        self.port = listen_udp(self._reactor, self._port_number, self.protocol, self._interface)
        address = self.port.getHost()
        self.log.info(
            "p2pnet {what} listening on {host}:{port}",
            what=self._what,
            host=address.host,
            port=address.port,
        )
        if self._interface6 is not None:
            from p2pnet._ipv6 import add_ipv6

            try:
                self.port6 = add_ipv6(self._reactor, self.protocol, self.port, self._interface6)
            except Exception:
                port, self.port = self.port, None
                port.stopListening()
                raise
            address6 = self.port6.getHost()
            self.log.info(
                "p2pnet {what} listening on [{host}]:{port}", what=self._what, host=address6.host, port=address6.port
            )
        super().startService()

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        port6, self.port6 = self.port6, None
        stopping = [maybeDeferred(p.stopListening) for p in (port6, port) if p is not None]
        return gatherResults(stopping) if stopping else None


class IntroducerService(UDPService):
    """
    Binds an L{IntroducerProtocol} to a UDP port while running.
    """

    def __init__(self, reactor: IReactorUDP, protocol, port: int, interface: str = "", interface6: str | None = None) -> None:
        super().__init__(reactor, protocol, port, interface, "introducer", interface6)
