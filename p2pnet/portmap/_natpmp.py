"""
NAT-PMP (RFC 6886) messages, sans-IO: bytes in, values out.

A client asks its default gateway (UDP port 5351) for the external
address (opcode 0) and for UDP mappings (opcode 1); answers carry the
request's opcode plus 128 and a result code.  A lifetime of zero with
external port zero deletes a mapping (RFC 6886 section 3.4).
"""

from __future__ import annotations

import ipaddress
import struct

from attrs import frozen

from p2pnet.errors import MalformedMessage

#: The port NAT-PMP (and PCP) servers listen on.
SERVER_PORT = 5351
VERSION = 0
OP_EXTERNAL_ADDRESS = 0
OP_MAP_UDP = 1
OP_MAP_TCP = 2
#: Answers carry the request's opcode plus this.
RESPONSE = 128

#: Result codes (RFC 6886 section 3.5).
SUCCESS = 0
UNSUPPORTED_VERSION = 1
NOT_AUTHORIZED = 2
NETWORK_FAILURE = 3
OUT_OF_RESOURCES = 4
UNSUPPORTED_OPCODE = 5

RESULT_NAMES = {
    SUCCESS: "success",
    UNSUPPORTED_VERSION: "unsupported version",
    NOT_AUTHORIZED: "not authorized / refused",
    NETWORK_FAILURE: "network failure",
    OUT_OF_RESOURCES: "out of resources",
    UNSUPPORTED_OPCODE: "unsupported opcode",
}


@frozen
class ExternalAddressResponse:
    """
    The answer to opcode 0.

    @ivar result: the result code (0: success).
    @ivar epoch: seconds since the gateway's mapping table was reset.
    @ivar external: the gateway's external IPv4 address (dotted quad).
    """

    result: int
    epoch: int
    external: str


@frozen
class MapResponse:
    """
    The answer to a UDP (opcode 1) or TCP (opcode 2) mapping request.

    @ivar opcode: the request's opcode (1 or 2).
    @ivar result: the result code (0: success).
    @ivar epoch: seconds since the gateway's table was reset.
    @ivar internal_port: the mapped internal port.
    @ivar external_port: the external port the gateway chose.
    @ivar lifetime: seconds the mapping lasts.
    """

    opcode: int
    result: int
    epoch: int
    internal_port: int
    external_port: int
    lifetime: int


def encode_external_address_request() -> bytes:
    """
    The two-byte request for the gateway's external address.
    """
    return bytes((VERSION, OP_EXTERNAL_ADDRESS))


def encode_map_request(internal_port: int, external_port: int, lifetime: int, opcode: int = OP_MAP_UDP) -> bytes:
    """
    A mapping request; C{lifetime=0, external_port=0} deletes the mapping.

    @param internal_port: our port (1-65535).
    @param external_port: the port we would like (0: any).
    @param lifetime: seconds requested (RFC 6886 recommends 7200).
    """
    if not 0 < internal_port < 65536 or not 0 <= external_port < 65536:
        raise ValueError("ports must be 1-65535 (external: 0-65535)")
    if not 0 <= lifetime < 2**32:
        raise ValueError("lifetime must fit in 32 bits")
    return struct.pack("!BBHHHI", VERSION, opcode, 0, internal_port, external_port, lifetime)


def decode_response(data: bytes) -> ExternalAddressResponse | MapResponse:
    """
    Decode a gateway's answer.

    @raise MalformedMessage: not a NAT-PMP answer we understand (wrong
        version, a request rather than an answer, wrong length).
    """
    if len(data) < 4:
        raise MalformedMessage("NAT-PMP answer shorter than 4 bytes")
    version, opcode, result = struct.unpack_from("!BBH", data)
    if version != VERSION:
        raise MalformedMessage(f"NAT-PMP version {version}, not 0")
    if opcode < RESPONSE:
        raise MalformedMessage("a NAT-PMP request, not an answer")
    if len(data) < 8:
        raise MalformedMessage("NAT-PMP answer shorter than 8 bytes")
    (epoch,) = struct.unpack_from("!I", data, 4)
    if opcode == RESPONSE + OP_EXTERNAL_ADDRESS and len(data) >= 12:
        return ExternalAddressResponse(result, epoch, str(ipaddress.IPv4Address(data[8:12])))
    if opcode in (RESPONSE + OP_MAP_UDP, RESPONSE + OP_MAP_TCP) and len(data) >= 16:
        internal, external, lifetime = struct.unpack_from("!HHI", data, 8)
        return MapResponse(opcode - RESPONSE, result, epoch, internal, external, lifetime)
    if result == SUCCESS:
        raise MalformedMessage(f"NAT-PMP answer with opcode {opcode} is too short or unknown")
    # An error answer may stop after the epoch (e.g. "unsupported version"
    # to a PCP request from a NAT-PMP-only gateway); RFC 6886 section 3.5
    # says to read the result code of any answer.
    if opcode == RESPONSE + OP_EXTERNAL_ADDRESS:
        return ExternalAddressResponse(result, epoch, "0.0.0.0")
    return MapResponse(opcode - RESPONSE, result, epoch, 0, 0, 0)
