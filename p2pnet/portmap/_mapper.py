"""
L{PortMapper}: probes NAT-PMP, PCP and UPnP-IGD at once, maps our UDP
port with the first that answers (falling back to the next that answered
when one refuses), renews at half the lifetime, and deletes the mapping on
stop.  When no router answers it fires with None and logs nothing above
debug level.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Callable, Iterable

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, succeed
from twisted.internet.error import ConnectError, ConnectionLost
from twisted.web.client import ResponseFailed
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pnet.address import Address
from p2pnet.errors import P2PError
from p2pnet.portmap import _upnp
from p2pnet.portmap._gateway import local_address_towards
from p2pnet.portmap._natpmp import SERVER_PORT
from p2pnet.portmap._protocols import MappingRefused, NatPmp, Pcp, UPnP
from p2pnet.portmap._udp import GatewayUDP, NoAnswer

#: Every protocol, in the order probes are sent.
PROTOCOLS = ("pcp", "nat-pmp", "upnp")

#: Seconds asked for (RFC 6886 recommends 7200, as Tailscale asks).
DEFAULT_LIFETIME = 7200

#: What a router that is not there, not listening, or not making sense
#: produces; anything else is a bug and is logged as one.
_NETWORK_ERRORS = (P2PError, ConnectError, ConnectionLost, TimeoutError, CancelledError, ResponseFailed, OSError)

#: Seconds the SSDP search waits for an answer.
SSDP_WAIT = 2.0

#: Seconds between the endpoint's checks of the router's epoch.
EPOCH_CHECK = 60.0


def _usable(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not (ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_link_local)


@frozen
class Mapping:
    """
    A port mapping held on the router.

    @ivar protocol: C{"nat-pmp"}, C{"pcp"} or C{"upnp"}.
    @ivar external: the router's external address and port that forward
        to us.
    @ivar internal_port: our UDP port.
    @ivar lifetime: seconds granted (renewed at half of it).
    """

    protocol: str
    external: Address
    internal_port: int
    lifetime: int


class PortMapper:
    """
    Keeps one UDP mapping of C{internal_port} on the home router.

    @param reactor: C{listenUDP}, C{callLater}, C{seconds} (and, for
        UPnP, what C{twisted.web.client.Agent} needs, unless C{agent} is
        given).
    @param internal_port: the port to map (the endpoint's).
    @param gateway: where NAT-PMP and PCP requests go (the default
        gateway), or None to skip both.
    @param local_ip: C{host -> our address towards host} (PCP's client
        address, UPnP's internal client).
    @param protocols: which of L{PROTOCOLS} to try.
    @param lifetime: seconds to ask for.
    @param on_change: called with the new L{Mapping} when one is made or
        its external address changes, and with None when it is lost.
    @param agent: the HTTP agent for UPnP (tests pass a fake).
    @param probe_only: only find out what the router offers (for
        C{p2pnet natcheck}): no mapping is made.
    @param epoch_check: with a NAT-PMP or PCP mapping, ask the router for
        its epoch this often (seconds; None: never) and map again at once
        when it shows the router lost its mappings (a reboot, see
        L{p2pnet.portmap._epoch}).  Every renewal's answer is checked too.

    @ivar offers: protocol name -> what the router said to the probe
        (C{"answered"}, C{"no answer"}, C{"refused: ..."}, C{"mapped"}).
    @ivar mapping: the current L{Mapping}, or None.
    """

    log = Logger()

    def __init__(
        self,
        reactor,
        internal_port: int,
        *,
        gateway: str | None,
        local_ip: Callable[[str], str | None] = local_address_towards,
        protocols: Iterable[str] = PROTOCOLS,
        lifetime: int = DEFAULT_LIFETIME,
        random_bytes: Callable[[int], bytes] = os.urandom,
        on_change: Callable[[Mapping | None], None] | None = None,
        agent=None,
        ssdp_wait: float = SSDP_WAIT,
        probe_only: bool = False,
        epoch_check: float | None = None,
    ) -> None:
        self.reactor = reactor
        self.internal_port = internal_port
        self.gateway = gateway
        self.local_ip = local_ip
        self.protocols = tuple(p for p in PROTOCOLS if p in set(protocols))
        self.lifetime = lifetime
        self.random_bytes = random_bytes
        self.on_change = on_change
        self.agent = agent
        self.ssdp_wait = ssdp_wait
        self.probe_only = probe_only
        self.epoch_check = epoch_check
        self._check_call = None
        self.offers: dict[str, str] = {}
        self.mapping: Mapping | None = None
        self._udp: GatewayUDP | None = None
        self._ports: list = []
        self._searches: list[_upnp.SSDPSearch] = []
        self._answered: list = []
        self._probing = 0
        self._mapping_now = False
        self._current = None
        self._expires = 0.0
        self._renew_call = None
        self._result: Deferred | None = None
        self._stopping = False

    # -- start ---------------------------------------------------------------

    def start(self) -> Deferred:
        """
        Probe and map.

        @return: a Deferred firing with the first L{Mapping}, or with None
            when no router maps (nobody answered, or every one refused).
            It never fails.
        """
        self._result = Deferred()
        for protocol in self._build():
            self._probing += 1
            self.offers[protocol.name] = "no answer"
            d = protocol.probe()
            d.addCallbacks(self._probe_answered, self._probe_failed, (protocol,), None, (protocol,))
        if not self._probing:
            self._finish(None)
        return self._result

    def _build(self) -> list:
        built: list = []
        if self.gateway is not None and ({"pcp", "nat-pmp"} & set(self.protocols)):
            self._udp = GatewayUDP(self.reactor, self.gateway, SERVER_PORT)
            self._ports.append(self.reactor.listenUDP(0, self._udp))
            client_ip = self.local_ip(self.gateway)
            if "pcp" in self.protocols and client_ip is not None:
                built.append(Pcp(self._udp, self.internal_port, client_ip, self.random_bytes(12)))
            if "nat-pmp" in self.protocols:
                built.append(NatPmp(self._udp, self.internal_port))
        if "upnp" in self.protocols:
            client = _upnp.UPnPClient(self.reactor, self.agent)
            seed = int.from_bytes(self.random_bytes(4), "big")
            built.append(UPnP(client, self._search, self.local_ip, self.internal_port, seed))
        return built

    def _search(self) -> Deferred:
        found: Deferred = Deferred()
        search = _upnp.SSDPSearch(found, clock=self.reactor)
        self._searches.append(search)
        self._ports.append(self.reactor.listenUDP(0, search))

        def timed_out(reason: Failure):
            # The only failure is the timeout.
            search.stop()
            return Failure(NoAnswer("no SSDP answer"))

        found.addTimeout(self.ssdp_wait, self.reactor)
        return found.addErrback(timed_out)

    def _probe_answered(self, external: object, protocol) -> None:
        self._probing -= 1
        if self._stopping:
            return
        self.offers[protocol.name] = f"answered (external address {external})" if external else "answered"
        if self.probe_only:
            self._next()
            return
        self._answered.append(protocol)
        self._next()

    def _probe_failed(self, reason: Failure, protocol) -> None:
        self._probing -= 1
        if self._stopping:
            return
        if reason.check(MappingRefused):
            self.offers[protocol.name] = f"refused: {reason.value}"
            self.log.info("the router refused port mapping: {why}", why=str(reason.value))
        elif reason.check(*_NETWORK_ERRORS):
            self.offers[protocol.name] = "no answer"
            self.log.debug("no {protocol} answer: {why}", protocol=protocol.name, why=str(reason.value))
        else:
            self.offers[protocol.name] = "no answer"
            self.log.failure("bug: port mapping probe ({protocol}) failed", reason, protocol=protocol.name)
        self._next()

    def _next(self) -> None:
        if self._stopping or self.mapping is not None or self._mapping_now:
            return
        if self._answered and not self.probe_only:
            protocol = self._answered.pop(0)
            self._mapping_now = True
            d = protocol.map(self.lifetime)
            d.addCallbacks(self._mapped, self._map_failed, (protocol,), None, (protocol,))
        elif not self._probing:
            self._finish(None)

    def _mapped(self, result: tuple[Address, int], protocol) -> None:
        self._mapping_now = False
        external, lifetime = result
        if self._stopping:
            protocol.delete()
            return
        if not _usable(external.host):
            # A router with no external address yet (0.0.0.0), or a
            # forged answer: nothing anyone could send to.
            protocol.delete()
            self._map_failed(Failure(MappingRefused(f"{protocol.name}: unusable external address {external}")),
                             protocol)
            return
        self.offers[protocol.name] = "mapped"
        self._current = protocol
        self._set(Mapping(protocol.name, external, self.internal_port, lifetime))
        self.log.info(
            "port {port} mapped to {external} by {protocol} for {lifetime}s",
            port=self.internal_port, external=str(external), protocol=protocol.name, lifetime=lifetime,
        )
        self._finish(self.mapping)

    def _map_failed(self, reason: Failure, protocol) -> None:
        self._mapping_now = False
        if self._stopping:
            return
        self.offers[protocol.name] = f"refused: {reason.value}"
        if reason.check(*_NETWORK_ERRORS):
            self.log.info("the router refused port mapping: {why}", why=str(reason.value))
        else:
            self.log.failure("bug: port mapping ({protocol}) failed", reason, protocol=protocol.name)
        self._next()

    def _finish(self, result: Mapping | None) -> None:
        if self._result is not None and not self._result.called:
            self._result.callback(result)

    # -- keeping it ----------------------------------------------------------

    def _set(self, mapping: Mapping | None) -> None:
        changed = mapping is None or self.mapping is None or mapping.external != self.mapping.external
        self.mapping = mapping
        if mapping is not None:
            self._expires = self.reactor.seconds() + mapping.lifetime
            self._schedule(mapping.lifetime / 2)
        self._schedule_check(mapping is not None)
        if changed and self.on_change is not None:
            self.on_change(mapping)

    def _schedule(self, delay: float) -> None:
        self._renew_call = self.reactor.callLater(max(delay, 1.0), self._renew)

    def _schedule_check(self, wanted: bool) -> None:
        if self._check_call is not None and self._check_call.active():
            self._check_call.cancel()
        self._check_call = None
        if wanted and self.epoch_check is not None and hasattr(self._current, "epochs"):
            self._check_call = self.reactor.callLater(self.epoch_check, self._check_epoch)

    def _check_epoch(self) -> None:
        """
        Ask the router for its epoch (the probe request again); a router
        that lost its mappings gets ours asked for at once.
        """
        self._check_call = None
        protocol = self._current

        def checked(_: object) -> None:
            if self._stopping or protocol is not self._current:
                return
            if protocol.reset:
                protocol.reset = False
                self.log.info("the router lost its port mappings (its epoch went back); mapping again")
                if self._renew_call is not None and self._renew_call.active():
                    self._renew_call.cancel()
                self._renew()
            else:
                self._schedule_check(True)

        protocol.probe().addBoth(checked)

    def _renew(self) -> None:
        self._renew_call = None
        protocol = self._current
        d = protocol.map(self.lifetime)

        def renewed(result: tuple[Address, int]) -> None:
            if self._stopping:
                return
            external, lifetime = result
            # Whatever the answer's epoch said, the mapping exists now.
            protocol.reset = False
            self._set(Mapping(protocol.name, external, self.internal_port, lifetime))

        def failed(reason: Failure) -> None:
            if self._stopping:
                return
            left = self._expires - self.reactor.seconds()
            if left > 2.0:
                self.log.info("could not renew the port mapping ({why}); retrying", why=str(reason.value))
                self._schedule(left / 2)
                return
            self.log.info("port mapping lost: {why}", why=str(reason.value))
            self._current = None
            self._set(None)

        d.addCallbacks(renewed, failed)

    # -- stop ----------------------------------------------------------------

    def stop(self) -> Deferred:
        """
        Delete the mapping (NAT-PMP/PCP: one request, unanswered; UPnP:
        the SOAP call, waited for) and close the sockets.
        """
        if self._stopping:
            return succeed(None)
        self._stopping = True
        if self._renew_call is not None and self._renew_call.active():
            self._renew_call.cancel()
        self._renew_call = None
        self._schedule_check(False)
        for search in self._searches:
            search.stop()
        deleted = self._current.delete() if self._current is not None else succeed(None)
        self.mapping = None
        self._current = None

        def close(_: object) -> None:
            if self._udp is not None:
                self._udp.cancel_all()
            for port in self._ports:
                port.stopListening()
            self._ports = []
            self._finish(None)

        return deleted.addBoth(close)


def probe_router(reactor, gateway: str | None, protocols: Iterable[str] = PROTOCOLS) -> Deferred:
    """
    What the router offers, without mapping anything: fires with
    L{PortMapper.offers} (protocol name -> C{"answered ..."}, C{"no
    answer"} or C{"refused: ..."}).
    """
    mapper = PortMapper(reactor, 9, gateway=gateway, protocols=protocols, probe_only=True)
    d = mapper.start()
    d.addCallback(lambda _: mapper.stop())
    return d.addCallback(lambda _: mapper.offers)
