"""
The three ways to ask for a mapping, behind one small interface used by
L{p2pnet.portmap.PortMapper}: C{probe()} (does the router speak it?),
C{map(lifetime)} (ask for, or renew, the UDP mapping of our port) and
C{delete()} (give it back).
"""

from __future__ import annotations

import random

from twisted.internet.defer import Deferred, fail, succeed

from p2pnet.address import Address
from p2pnet.errors import P2PError
from p2pnet.portmap import _natpmp, _pcp, _upnp
from p2pnet.portmap._epoch import EpochWatch
from p2pnet.portmap._udp import GatewayUDP, NoAnswer


class MappingRefused(P2PError):
    """
    The router answered but would not map the port.
    """


class _Epochs:
    """
    The epoch of every answer, watched (L{EpochWatch}); C{reset} is set
    once an answer shows the router lost its mappings.
    """

    udp: GatewayUDP
    epochs: EpochWatch
    reset = False

    def _saw(self, answer) -> None:
        if self.epochs.saw(answer.epoch, self.udp.clock.seconds()):
            self.reset = True


class NatPmp(_Epochs):
    """
    NAT-PMP (RFC 6886) on the gateway's port 5351.
    """

    name = "nat-pmp"

    def __init__(self, udp: GatewayUDP, internal_port: int) -> None:
        self.udp = udp
        self.internal_port = internal_port
        self.external_ip: str | None = None
        self.external_port = 0
        self.epochs = EpochWatch("nat-pmp")

    def probe(self) -> Deferred:
        """
        Ask for the external address; fires with it (the router speaks
        NAT-PMP) or fails (L{NoAnswer}, L{MappingRefused}).
        """

        def accept(answer) -> bool:
            # A NAT-PMP-only gateway answers our PCP requests with
            # opcode 128 and "unsupported version": not this answer.
            return isinstance(answer, _natpmp.ExternalAddressResponse) and answer.result != _natpmp.UNSUPPORTED_VERSION

        d = self.udp.request(_natpmp.encode_external_address_request(), _natpmp.decode_response, accept)

        def answered(answer: _natpmp.ExternalAddressResponse) -> str:
            self._saw(answer)
            if answer.result != _natpmp.SUCCESS:
                raise MappingRefused(f"nat-pmp: {_natpmp.RESULT_NAMES.get(answer.result, answer.result)}")
            self.external_ip = answer.external
            return answer.external

        return d.addCallback(answered)

    def map(self, lifetime: int) -> Deferred:
        """
        Ask for (or renew) the mapping: fires with C{(Address, lifetime)}.
        """
        if self.external_ip is None:
            return fail(MappingRefused("nat-pmp: no external address"))
        request = _natpmp.encode_map_request(self.internal_port, self.external_port, lifetime)

        def accept(answer) -> bool:
            return isinstance(answer, _natpmp.MapResponse) and answer.opcode == _natpmp.OP_MAP_UDP and (
                answer.internal_port == self.internal_port or answer.result != _natpmp.SUCCESS
            )

        def answered(answer: _natpmp.MapResponse):
            self._saw(answer)
            if answer.result != _natpmp.SUCCESS or not answer.external_port or not answer.lifetime:
                raise MappingRefused(f"nat-pmp: {_natpmp.RESULT_NAMES.get(answer.result, answer.result)}")
            self.external_port = answer.external_port
            return Address(self.external_ip, answer.external_port), answer.lifetime

        return self.udp.request(request, _natpmp.decode_response, accept).addCallback(answered)

    def delete(self) -> Deferred:
        self.udp.send(_natpmp.encode_map_request(self.internal_port, 0, 0))
        return succeed(None)


class Pcp(_Epochs):
    """
    PCP (RFC 6887) MAP on the gateway's port 5351.
    """

    name = "pcp"

    def __init__(self, udp: GatewayUDP, internal_port: int, client_ip: str, nonce: bytes) -> None:
        self.udp = udp
        self.internal_port = internal_port
        self.client_ip = client_ip
        self.nonce = nonce
        self.external: Address | None = None
        self.epochs = EpochWatch("pcp")

    def probe(self) -> Deferred:
        """
        ANNOUNCE: fires with None when a PCP server answers.
        """

        def accept(answer) -> bool:
            return answer.opcode == _pcp.OP_ANNOUNCE

        d = self.udp.request(_pcp.encode_announce_request(self.client_ip), _pcp.decode_response, accept)

        def answered(answer: _pcp.Response) -> None:
            self._saw(answer)
            if answer.result not in (_pcp.SUCCESS, _pcp.UNSUPP_OPCODE):
                raise MappingRefused(f"pcp: {_pcp.RESULT_NAMES.get(answer.result, answer.result)}")

        return d.addCallback(answered)

    def _request(self, lifetime: int) -> bytes:
        external = self.external
        return _pcp.encode_map_request(
            self.client_ip,
            self.nonce,
            self.internal_port,
            lifetime,
            external.port if external is not None else 0,
            external.host if external is not None else "0.0.0.0",
        )

    def map(self, lifetime: int) -> Deferred:
        def accept(answer: _pcp.Response) -> bool:
            # The nonce is the answer's only authentication (RFC 6887
            # section 11.2); error answers may come without opcode data.
            if answer.opcode != _pcp.OP_MAP:
                return False
            if not answer.nonce:
                return answer.result != _pcp.SUCCESS
            return answer.nonce == self.nonce and answer.internal_port == self.internal_port

        def answered(answer: _pcp.Response):
            self._saw(answer)
            if answer.result != _pcp.SUCCESS or not answer.external_port or not answer.lifetime:
                raise MappingRefused(f"pcp: {_pcp.RESULT_NAMES.get(answer.result, answer.result)}")
            self.external = Address(answer.external_ip, answer.external_port)
            return self.external, answer.lifetime

        return self.udp.request(self._request(lifetime), _pcp.decode_response, accept).addCallback(answered)

    def delete(self) -> Deferred:
        if self.external is not None:
            self.udp.send(self._request(0))
        return succeed(None)


class UPnP:
    """
    UPnP-IGD: SSDP search, description, SOAP.

    @param search: C{() -> Deferred} firing with the description URL
        and the searching host's address towards it (the mapper runs the
        SSDP search on its own socket).
    @param local_ip: C{host -> our address towards host}.
    """

    name = "upnp"

    def __init__(self, client: _upnp.UPnPClient, search, local_ip, internal_port: int, seed: int) -> None:
        self.client = client
        self.search = search
        self.local_ip = local_ip
        self.internal_port = internal_port
        self.service: _upnp.Service | None = None
        self.internal_client: str | None = None
        self.external_ip: str | None = None
        self.external_port = 0
        self._random = random.Random(seed)

    def probe(self) -> Deferred:
        """
        Fires with the external address once a gateway is found and
        described.
        """
        d = self.search()

        def found(location: str) -> Deferred:
            return self.client.describe(location)

        def described(service: _upnp.Service) -> Deferred:
            self.service = service
            host = service.control_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
            self.internal_client = self.local_ip(host)
            return self.client.call(service, "GetExternalIPAddress", ())

        def external(arguments: dict[str, str]) -> str:
            self.external_ip = arguments.get("NewExternalIPAddress") or None
            if self.external_ip is None:
                raise MappingRefused("upnp: the gateway has no external address")
            return self.external_ip

        return d.addCallback(found).addCallback(described).addCallback(external)

    def map(self, lifetime: int) -> Deferred:
        if self.service is None or self.internal_client is None or self.external_ip is None:
            return fail(MappingRefused("upnp: no gateway"))
        service = self.service
        ports = [self.external_port or self.internal_port] + [self._random.randint(1024, 65535) for _ in range(3)]

        def attempt(_=None) -> Deferred:
            port = ports.pop(0)
            arguments = _upnp.mapping_arguments(port, self.internal_port, self.internal_client, lifetime)
            d = self.client.call(service, "AddPortMapping", arguments)
            d.addCallback(lambda _: port)

            def conflict(reason):
                # 718: ConflictInMappingEntry; try another port.
                reason.trap(_upnp.UPnPError)
                if reason.value.code == 718 and ports:
                    return attempt()
                raise MappingRefused(f"upnp: {reason.value}")

            return d.addErrback(conflict)

        def mapped(port: int):
            self.external_port = port
            return Address(self.external_ip, port), lifetime

        return attempt().addCallback(mapped)

    def delete(self) -> Deferred:
        if self.service is None or not self.external_port:
            return succeed(None)
        d = self.client.call(self.service, "DeletePortMapping", _upnp.delete_arguments(self.external_port))
        return d.addErrback(lambda _: None)


__all__ = ["MappingRefused", "NatPmp", "NoAnswer", "Pcp", "UPnP"]
