"""
Reading datagrams on the servers' hot paths with less per-datagram work
than Twisted's C{udp.Port.doRead}.

C{udp.Port.doRead} looks up the socket, the packet size, the address
family and the protocol's method again for every datagram, and counts
bytes against C{maxThroughput}.  L{FastReadPort} binds them once per
wake-up and reads up to L{FastReadPort.batch} datagrams.  A protocol with
a C{datagrams_received(datagrams)} method gets them all in one call, as an
iterator of C{(data, address)} pairs that reads from the socket as it is
consumed (the relay's whole per-packet path is then one loop); any other
protocol gets C{datagramReceived} per datagram, as from Twisted.

Anything out of the ordinary (an IPv6 socket, any socket error other than
"nothing more to read") goes to C{udp.Port.doRead} itself, which then
behaves exactly as it always does.

L{listen_udp} is C{reactor.listenUDP} with this port for the reactors
whose own C{listenUDP} makes a C{udp.Port} (Twisted's POSIX reactors:
epoll, poll, select, kqueue), and plain C{listenUDP} for anything else
(test doubles, the simulator, other platforms).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

from twisted.internet import udp
from twisted.internet.interfaces import IListeningPort
from twisted.internet.posixbase import PosixReactorBase
from twisted.logger import Logger


class FastReadPort(udp.Port):
    """
    A C{udp.Port} that reads in batches (see the module docstring).

    @cvar batch: the most datagrams read per wake-up, so one busy port
        cannot starve the reactor's other work (Twisted's own bound is
        256 KiB, a similar number of game-sized datagrams).
    """

    batch = 512
    _log = Logger()

    def doRead(self) -> None:
        if self.addressFamily != socket.AF_INET:
            return super().doRead()
        failed: list[OSError] = []
        datagrams = self._read(failed)
        many = getattr(self.protocol, "datagrams_received", None)
        if many is not None:
            try:
                many(datagrams)
            except BaseException:
                self._log.failure("unhandled error in {protocol}.datagrams_received", protocol=self.protocol)
        else:
            received = self.protocol.datagramReceived
            for data, addr in datagrams:
                try:
                    received(data, addr)
                except BaseException:
                    self._log.failure("unhandled error in {protocol}.datagramReceived", protocol=self.protocol)
        if failed:
            # Twisted's own handling: it reads again and ignores, reports
            # or raises what the kernel says.
            return super().doRead()
        return None

    def _read(self, failed: list[OSError]) -> Iterator[tuple[bytes, tuple]]:
        """
        Up to L{batch} datagrams, read as they are asked for; an error
        other than "nothing more" ends it and is put in C{failed}.
        """
        recvfrom = self.socket.recvfrom
        size = self.maxPacketSize
        for _ in range(self.batch):
            try:
                yield recvfrom(size)
            except BlockingIOError:
                return
            except OSError as e:
                failed.append(e)
                return


def listen_udp(reactor, port: int, protocol, interface: str = "") -> IListeningPort:
    """
    C{reactor.listenUDP(port, protocol, interface=interface)}, with a
    L{FastReadPort} when C{reactor} would make a C{udp.Port}.
    """
    if not isinstance(reactor, PosixReactorBase):
        return reactor.listenUDP(port, protocol, interface=interface)
    listening = FastReadPort(port, protocol, interface, 8192, reactor)
    listening.startListening()
    return listening
