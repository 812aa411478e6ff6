"""
The endpoint's port mapping: ask the home router (NAT-PMP, PCP, UPnP-IGD,
see L{p2pnet.portmap}) to forward a port to our socket, in parallel with
registration, and advertise the mapped address.  A mixin of
L{p2pnet.endpoint.PeerEndpoint}.

The mapped address travels as one more I{local} candidate: in the hellos
(L{own_candidates}) and in the registration, refreshed with our cookie
(a C{Register} from the same address with the cookie only updates the
local addresses) once the mapping exists.  The introducer and the wire
format are unchanged, and an old introducer passes it on as it is.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorMulticast
from twisted.python.failure import Failure

from p2pnet import wire
from p2pnet._peertypes import StatusEvent
from p2pnet._registry import MAX_LOCAL_ADDRESSES
from p2pnet.address import Address


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class PortMapping:
    """
    Port mapping for L{p2pnet.endpoint.PeerEndpoint}.

    @ivar port_mapping: the current L{p2pnet.portmap.Mapping}, or None.
    """

    port_mapping = None
    _port_mapper = None
    #: The local addresses the last registration carried.
    _registered_local: tuple[Address, ...] = ()

    def advertised_local(self) -> tuple[Address, ...]:
        """
        Our local addresses, and the mapped external address if any: what
        the introducer is told.  None when relay-only (our addresses
        are kept from everyone but the introducer, which sees the public
        one anyway).
        """
        if self.config.handshake.relay_only:
            return ()
        local = tuple(self.local_addresses)
        mapping = self.port_mapping
        if mapping is not None and mapping.external not in local:
            local += (mapping.external,)
        return local[:MAX_LOCAL_ADDRESSES]

    def _start_port_mapping(self) -> None:
        if not self.config.port_mapping or not IReactorMulticast.providedBy(self.reactor):
            # Switched off, or a simulated host (no router to ask).
            return
        if not self.local_addresses or any(
            _is_loopback(host) for host in (self.local_addresses[0].host, self.introducer.host)
        ):
            # Bound to loopback, or talking to a loopback introducer:
            # nothing outside this machine could use a mapping.
            return
        from p2pnet.portmap import PortMapper, default_gateway
        from p2pnet.portmap._mapper import EPOCH_CHECK

        self._port_mapper = PortMapper(
            self.reactor,
            self.transport.getHost().port,
            gateway=self.config.port_mapping_gateway or default_gateway(),
            protocols=self.config.port_mapping_protocols,
            random_bytes=self._random_bytes,
            on_change=self._port_mapping_changed,
            epoch_check=EPOCH_CHECK,
        )
        self._port_mapper.start()

    def _port_mapping_changed(self, mapping) -> None:
        if self._stopping:
            return
        self.port_mapping = mapping
        if mapping is not None:
            self.emit(StatusEvent("port-mapped", address=mapping.external, detail=mapping.protocol))
        else:
            self.emit(StatusEvent("port-mapping-lost"))
        self._nat_update()
        self._refresh_local()

    def _refresh_local(self) -> Deferred | None:
        """
        Tell the introducer our advertised local addresses and NAT facts
        if they changed since the last registration (called again once
        the registration completes, for a mapping or NAT facts that came
        first).

        @return: a Deferred firing (with None, whatever the answer) once
            the introducer answered, or None if nothing was sent.
        """
        local = self.advertised_local()
        if self._cookie is None or self._stopping or self._reregistering:
            return None
        if local == self._registered_local and self._nat == self._registered_nat:
            return None
        self._registered_local = local
        self._registered_nat = self._nat
        identity = self.identity
        message = wire.Register(
            self.new_txid(),
            self.peer_id,
            local,
            self._cookie,
            self._nat,
            peer_key=identity.public if identity is not None else None,
        )

        def refused(reason: Failure) -> None:
            if not self._stopping:
                self.log.info("could not tell the introducer our mapped address: {error}", error=str(reason.value))

        return self._client.request(message).addCallbacks(lambda _: None, refused)

    def _stop_port_mapping(self) -> Deferred:
        mapper, self._port_mapper = self._port_mapper, None
        self.port_mapping = None
        return mapper.stop() if mapper is not None else succeed(None)
