"""
Request/answer over UDP with the gateway's NAT-PMP/PCP port: one socket,
retransmission on RFC 6886's schedule (250 ms, doubling), answers taken
only from the gateway's address and port and only when a request's
matcher accepts them.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol

from p2pnet.errors import MalformedMessage, P2PError


class NoAnswer(P2PError):
    """
    The gateway did not answer a port mapping request.
    """


#: Seconds between sends of one request (RFC 6886 section 3.1 starts at
#: 250 ms and doubles); after the last, wait as long again and give up.
RETRANSMITS = (0.25, 0.5, 1.0)


class _Pending:
    def __init__(self, data: bytes, decode: Callable[[bytes], object], accept: Callable[[object], bool]) -> None:
        self.data = data
        self.decode = decode
        self.accept = accept
        self.deferred: Deferred = Deferred()
        self.timer = None
        self.sends = 0


class GatewayUDP(DatagramProtocol):
    """
    Sends requests to C{(gateway, port)} and matches answers to them.

    @ivar pending_cap: requests in flight at most (more fail at once).
    """

    pending_cap = 8

    def __init__(self, clock, gateway: str, port: int, retransmits: tuple[float, ...] = RETRANSMITS) -> None:
        self.clock = clock
        self.gateway = gateway
        self.port = port
        self.retransmits = retransmits
        self._pending: list[_Pending] = []
        #: Datagrams dropped: wrong source, undecodable, or unmatched.
        self.dropped = 0

    def request(self, data: bytes, decode: Callable[[bytes], object], accept: Callable[[object], bool]) -> Deferred:
        """
        Send C{data} until an answer from the gateway decodes with
        C{decode} and satisfies C{accept}.

        @return: a Deferred firing with the decoded answer, or failing
            with L{NoAnswer}.
        """
        if len(self._pending) >= self.pending_cap:
            raise P2PError("too many port mapping requests in flight")
        pending = _Pending(data, decode, accept)
        self._pending.append(pending)
        self._send(pending)
        return pending.deferred

    def _send(self, pending: _Pending) -> None:
        if pending.sends >= len(self.retransmits):
            self._finish(pending)
            pending.deferred.errback(NoAnswer(f"no answer from {self.gateway}:{self.port}"))
            return
        self.send(pending.data)
        pending.timer = self.clock.callLater(self.retransmits[pending.sends], self._send, pending)
        pending.sends += 1

    def send(self, data: bytes) -> None:
        """
        Send once, answers ignored (deletes on stop); send errors (no
        route to the gateway) are ignored like a lost datagram.
        """
        if self.transport is not None:
            try:
                self.transport.write(data, (self.gateway, self.port))
            except OSError:
                pass

    def _finish(self, pending: _Pending) -> None:
        self._pending.remove(pending)
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        if addr[0] != self.gateway or addr[1] != self.port:
            self.dropped += 1
            return
        for pending in list(self._pending):
            try:
                answer = pending.decode(data)
            except MalformedMessage:
                continue
            if pending.accept(answer):
                self._finish(pending)
                pending.deferred.callback(answer)
                return
        self.dropped += 1

    def cancel_all(self) -> None:
        """
        Fail every request in flight with L{NoAnswer} (on stop).
        """
        for pending in list(self._pending):
            self._finish(pending)
            pending.deferred.errback(NoAnswer("stopped"))
