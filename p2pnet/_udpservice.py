"""
Services that bind a DatagramProtocol to a UDP port while running (the
introducer's and the relay's).
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IReactorUDP
from twisted.logger import Logger

from p2pnet._udpread import listen_udp


class UDPService(Service):
    """
    Binds a DatagramProtocol to a UDP port while running, and logs where.

    @ivar port: the listening port once started (C{getHost()} tells the
        actual port number when 0 was asked for).
    """

    log = Logger()

    def __init__(self, reactor: IReactorUDP, protocol, port: int, interface: str = "", what: str = "introducer") -> None:
        self._reactor = reactor
        self.protocol = protocol
        self._port_number = port
        self._interface = interface
        self._what = what
        self.port = None

    def startService(self) -> None:
        self.port = listen_udp(self._reactor, self._port_number, self.protocol, self._interface)
        address = self.port.getHost()
        self.log.info(
            "p2pnet {what} listening on {host}:{port}",
            what=self._what,
            host=address.host,
            port=address.port,
        )
        super().startService()

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return None
        return maybeDeferred(port.stopListening)


class IntroducerService(UDPService):
    """
    Binds an L{IntroducerProtocol} to a UDP port while running.
    """

    def __init__(self, reactor: IReactorUDP, protocol, port: int, interface: str = "") -> None:
        super().__init__(reactor, protocol, port, interface, "introducer")
