"""
The endpoint's IPv6 side: a second, IPv6-only socket beside the IPv4 one,
its addresses advertised as candidates, and heartbeats over IPv6 to the
introducer's IPv6 address so that the introducer can vouch for our IPv6
address to the peers it introduces us to.  A mixin of
L{p2pnet.endpoint.PeerEndpoint}; docs/ipv6.md tells the whole story.

An endpoint whose main socket is already IPv6 (an introducer given by its
IPv6 address, C{interface="::"}) needs none of this: it speaks IPv6 only.
"""

from __future__ import annotations

import socket

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError, InvalidAddressError
from twisted.python.failure import Failure

from p2pnet import wire
from p2pnet._introclient import IntroducerClient
from p2pnet._ipv6 import MAX_V6_ADDRESSES, Twin, interface_addresses, listen_v6, order_addresses, source_towards
from p2pnet._peertypes import StatusEvent
from p2pnet.address import Address


class DualStack:
    """
    IPv6 beside IPv4 for L{p2pnet.endpoint.PeerEndpoint}.

    @ivar introducer6: the introducer's IPv6 address, or None.
    @ivar public_address6: our IPv6 address as the introducer saw it
        (proven from there), or None.
    """

    introducer6: Address | None = None
    public_address6: Address | None = None
    _interface6: str | None = None
    _v6_port = None
    _client6: IntroducerClient | None = None

    # -- sockets ----------------------------------------------------------

    #: Whether the main socket is an IPv6 one (set once it is bound).
    _main_v6 = False

    def main_is_v6(self) -> bool:
        """
        Whether the main socket is an IPv6 one.
        """
        return self._main_v6

    def can_send(self, to: Address) -> bool:
        """
        Whether we have a socket of C{to}'s family: candidates of a family
        we cannot send to are never tried.
        """
        if to.is_ipv6:
            return self._v6_port is not None or self.main_is_v6()
        return not self.main_is_v6()

    def transport_for(self, to: Address):
        """
        The socket (transport) that sends to C{to}: the IPv6 one for an
        IPv6 destination when we have one besides the main socket.
        """
        if to.is_ipv6 and self._v6_port is not None:
            return self._v6_port
        return self.transport

    def write_with_ttl(self, raw: bytes, to: Address, ttl: int) -> None:
        """
        Send with a short IP TTL (IPv6: hop limit), restoring the socket's
        value afterwards.
        """
        transport = self.transport_for(to)
        if transport is None:
            return
        if not self.can_send(to):
            self.count("send-other-family")
            return
        if to.is_ipv6:
            level, option = socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS
        else:
            level, option = socket.IPPROTO_IP, socket.IP_TTL
        handle = transport.getHandle()
        previous = handle.getsockopt(level, option)
        handle.setsockopt(level, option, ttl)
        try:
            transport.write(raw, to.as_tuple())
        except (OSError, InvalidAddressError) as e:
            self._send_failed(to, e)
        finally:
            handle.setsockopt(level, option, previous)

    def _want_ipv6(self) -> bool:
        # Only when asked for: without the introducer's IPv6 address, no
        # global IPv6 address could be proven to the peers.
        return self.config.ipv6 and not self.main_is_v6() and (
            self._interface6 is not None or self.introducer6 is not None
        )

    def _v6_hosts(self) -> tuple[str, ...]:
        """
        The IPv6 addresses we advertise: the given interface, or the
        source towards the introducer's IPv6 address and the interfaces'
        global and unique-local addresses.
        """
        if self._local_override is not None:
            return tuple(a.host for a in self._local_override if a.is_ipv6)[:MAX_V6_ADDRESSES]
        if self._interface6 not in (None, "", "::"):
            return (self._interface6,)
        hosts = list(interface_addresses())
        if self.introducer6 is not None:
            towards = source_towards(self.introducer6)
            if towards is not None and towards in hosts:
                hosts.insert(0, towards)
        return tuple(order_addresses(hosts))[:MAX_V6_ADDRESSES]

    def _start_ipv6(self) -> tuple[Address, ...]:
        """
        Open the IPv6 socket (the main socket's port number where free)
        when there is an IPv6 address worth advertising; our IPv6
        candidates.
        """
        self._main_v6 = ":" in self.transport.getHost().host
        if not self._want_ipv6():
            return ()
        hosts = self._v6_hosts()
        if not hosts:
            return ()
        interface = self._interface6 if self._interface6 is not None else "::"
        twin = Twin(self.datagramReceived)
        try:
            try:
                self._v6_port = listen_v6(self.reactor, self.transport.getHost().port, twin, interface)
            except CannotListenError:
                self._v6_port = listen_v6(self.reactor, 0, twin, interface)
        except CannotListenError as e:
            self.log.info("no IPv6 socket: {error}", error=str(e))
            return ()
        port = self._v6_port.getHost().port
        if self.introducer6 is not None:
            # Through write(): a refusal (no IPv6 route) is counted, never
            # raised from a retransmit timer.
            self._client6 = IntroducerClient(
                self.clock, lambda raw, to: self.write(raw, Address(to[0], to[1])), self.introducer6,
                self._random_bytes, self._secret,
                rto=self.config.request_rto, attempts=3,
            )
        if self._local_override is not None:
            return ()  # the given local addresses already name them
        return tuple(Address(host, port) for host in hosts)

    def _stop_ipv6(self) -> Deferred:
        port, self._v6_port = self._v6_port, None
        client, self._client6 = self._client6, None
        self.public_address6 = None
        if client is not None:
            from p2pnet.errors import ConnectionClosed

            client.cancel_all(ConnectionClosed("the endpoint was stopped"))
        if port is None:
            return succeed(None)
        result = port.stopListening()
        return result if isinstance(result, Deferred) else succeed(None)

    # -- the introducer over IPv6 -------------------------------------------

    def _heartbeat6(self) -> Deferred:
        """
        A heartbeat from our IPv6 socket to the introducer's IPv6 address:
        the first is challenged and proven (like a move), after which the
        introducer hands our IPv6 address to the peers it introduces us to.
        Fires when answered or given up (never fails).
        """
        client = self._client6
        if client is None or self._cookie is None or self._stopping:
            return succeed(None)
        client.prover = self._client.prover
        d = client.request(wire.Heartbeat(self.new_txid(), self.peer_id, self._cookie))

        def acked(answer: wire.Message) -> None:
            if isinstance(answer, wire.HeartbeatAck) and answer.public != self.public_address6:
                self.public_address6 = answer.public
                self.log.info("registered over IPv6: {public}", public=str(answer.public))
                self.emit(StatusEvent("ipv6-registered", address=answer.public))

        def failed(reason: Failure) -> None:
            if not self._stopping:
                self.log.info("no answer over IPv6 from {introducer}: {error}",
                              introducer=str(self.introducer6), error=str(reason.value))

        return d.addCallbacks(acked, failed)

    def _from_introducer6(self, data: bytes, source: Address) -> bool:
        """
        An answer from the introducer's IPv6 address; False if C{source}
        is not that address.
        """
        client = self._client6
        if client is None or source != client.address:
            return False
        if self._secret is not None and not wire.verify(data, self._secret):
            self.count("dropped-unauthenticated")
            return True
        if not client.answer(wire.decode(data)):
            self.count("dropped-unmatched-answer")
        return True
