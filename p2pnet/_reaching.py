"""
While an endpoint first tries to reach its introducer: progress reports
every few seconds, and an early verdict when the introducer's port is
closed.

A closed UDP port answers with an ICMP port unreachable at once, but the
kernel reports it only on a I{connected} socket, and the endpoint's socket
is not connected (it talks to peers too).  Twisted does not help either:
on a connected UDP port the epoll reactor takes the error for a lost
connection and closes the port.  So a second, connected, non-blocking
socket sends an empty datagram to the introducer now and then and is
polled on the clock; C{ECONNREFUSED} on it means nothing listens there.
(An introducer that is up drops the empty datagram as not p2pnet.)

An ICMP error can be forged: on a connected socket the kernel checks only
that it quotes the socket's own addresses and ports.  One refusal is
therefore not believed: the probe socket is closed and a new one, on a
fresh ephemeral port, asks again; only a refusal of that one too ends the
wait.  A blind attacker has to guess two random ports within a second,
and the cost for the honest case is one more loopback-fast round trip.
"""

from __future__ import annotations

import errno
import socket
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from p2pnet.address import Address


class ReachingIntroducer:
    """
    Reports progress (C{on_progress(elapsed)} every C{interval} seconds)
    and a closed port (C{on_refused()}, once) until L{stop}.

    @param probe: check for a closed port with a real socket; only for
        real reactors (a simulated network has no kernel to ask).
    """

    log = Logger()

    #: Seconds between progress reports.
    INTERVAL = 2.0
    #: Seconds between polls of the probe socket.
    POLL = 0.1
    #: Seconds between probe datagrams.
    RESEND = 0.5
    #: Probe sockets (each on its own ephemeral port) that must be refused
    #: before the port counts as closed.
    CONFIRMATIONS = 2

    def __init__(
        self,
        clock: IReactorTime,
        introducer: Address,
        on_progress: Callable[[float], None],
        on_refused: Callable[[], None],
        probe: bool = False,
        interface: str = "",
        socket_factory: Callable[[int, int], socket.socket] = socket.socket,
    ) -> None:
        self._clock = clock
        self._introducer = introducer
        self._on_progress = on_progress
        self._on_refused = on_refused
        self._started = clock.seconds()
        self._progress: IDelayedCall | None = clock.callLater(self.INTERVAL, self._report)
        self._poll: IDelayedCall | None = None
        self._socket: socket.socket | None = None
        self._last_sent = float("-inf")
        self._interface = interface
        self._socket_factory = socket_factory
        self._refusals = 0
        if probe:
            self._open_probe()

    def _open_probe(self) -> None:
        interface = self._interface
        family = socket.AF_INET6 if self._introducer.is_ipv6 else socket.AF_INET
        try:
            sock = self._socket_factory(family, socket.SOCK_DGRAM)
        except OSError as e:  # out of file descriptors, for one
            self.log.debug("no closed-port probe: {error}", error=str(e))
            return
        try:
            sock.setblocking(False)
            if interface and family == socket.AF_INET:
                sock.bind((interface, 0))
            sock.connect(self._introducer.as_tuple())
        except OSError as e:
            sock.close()
            self.log.debug("no closed-port probe towards {introducer}: {error}",
                           introducer=str(self._introducer), error=str(e))
            return
        self._socket = sock
        self._check()

    def _report(self) -> None:
        elapsed = self._clock.seconds() - self._started
        self._progress = self._clock.callLater(self.INTERVAL, self._report)
        self._on_progress(elapsed)

    def _check(self) -> None:
        self._poll = None
        sock = self._socket
        if sock is None:
            return
        try:
            sock.recv(2048)
        except (BlockingIOError, InterruptedError):
            pass
        except (ConnectionRefusedError, ConnectionResetError):
            # Linux and BSDs say refused; Windows says reset (WSAECONNRESET).
            self._refused()
            return
        except OSError as e:
            # Unreachable host or network, or anything else: the
            # registration's own retries tell; stop probing.
            self.log.debug("closed-port probe: {error}", error=str(e))
            self._close_probe()
            return
        now = self._clock.seconds()
        if now - self._last_sent >= self.RESEND:
            self._last_sent = now
            try:
                sock.send(b"")
            except (ConnectionRefusedError, ConnectionResetError):
                self._refused()
                return
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                    self._close_probe()
                    return
        self._poll = self._clock.callLater(self.POLL, self._check)

    def _refused(self) -> None:
        """
        A probe socket was refused: believe it once a second socket, on
        another ephemeral port, is refused too (see the module docstring).
        """
        self._refusals += 1
        if self._refusals >= self.CONFIRMATIONS:
            self.stop()
            self._on_refused()
            return
        self._close_probe()
        self._last_sent = float("-inf")
        self._open_probe()

    def _close_probe(self) -> None:
        if self._poll is not None and self._poll.active():
            self._poll.cancel()
        self._poll = None
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    def stop(self) -> None:
        """
        Stop reporting and probing (the introducer answered, or we gave up).
        """
        if self._progress is not None and self._progress.active():
            self._progress.cancel()
        self._progress = None
        self._close_probe()
