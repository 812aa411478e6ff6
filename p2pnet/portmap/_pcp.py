"""
PCP (RFC 6887) messages for the ANNOUNCE and MAP opcodes, sans-IO.

Every PCP message starts with a 24-byte header; addresses are 16 bytes,
IPv4 ones in the IPv4-mapped IPv6 form (C{::ffff:a.b.c.d}).  A MAP request
carries a 12-byte random nonce the answer must repeat (the client's only
defence against a forged answer); a lifetime of zero deletes the mapping.
"""

from __future__ import annotations

import ipaddress
import struct

from attrs import frozen

from p2pnet.errors import MalformedMessage

VERSION = 2
OP_ANNOUNCE = 0
OP_MAP = 1
#: The R bit: set in answers.
RESPONSE_BIT = 0x80
PROTOCOL_UDP = 17
NONCE_SIZE = 12
HEADER_SIZE = 24
MAP_SIZE = 36

#: Result codes (RFC 6887 section 7.4).
SUCCESS = 0
UNSUPP_VERSION = 1
NOT_AUTHORIZED = 2
MALFORMED_REQUEST = 3
UNSUPP_OPCODE = 4
UNSUPP_OPTION = 5
MALFORMED_OPTION = 6
NETWORK_FAILURE = 7
NO_RESOURCES = 8
UNSUPP_PROTOCOL = 9
USER_EX_QUOTA = 10
CANNOT_PROVIDE_EXTERNAL = 11
ADDRESS_MISMATCH = 12
EXCESSIVE_REMOTE_PEERS = 13

RESULT_NAMES = {
    SUCCESS: "success",
    UNSUPP_VERSION: "unsupported version",
    NOT_AUTHORIZED: "not authorized",
    MALFORMED_REQUEST: "malformed request",
    UNSUPP_OPCODE: "unsupported opcode",
    UNSUPP_OPTION: "unsupported option",
    MALFORMED_OPTION: "malformed option",
    NETWORK_FAILURE: "network failure",
    NO_RESOURCES: "no resources",
    UNSUPP_PROTOCOL: "unsupported protocol",
    USER_EX_QUOTA: "user exceeded quota",
    CANNOT_PROVIDE_EXTERNAL: "cannot provide the external address",
    ADDRESS_MISMATCH: "address mismatch",
    EXCESSIVE_REMOTE_PEERS: "excessive remote peers",
}


@frozen
class Response:
    """
    A PCP answer.

    @ivar opcode: the request's opcode.
    @ivar result: the result code (0: success).
    @ivar lifetime: seconds the mapping lasts (or, on errors, how long
        the error is expected to last).
    @ivar epoch: the server's epoch time.
    @ivar nonce: MAP only: the nonce repeated from the request.
    @ivar protocol: MAP only: the IANA protocol number (17: UDP).
    @ivar internal_port: MAP only.
    @ivar external_port: MAP only: the assigned external port.
    @ivar external_ip: MAP only: the assigned external address.
    """

    opcode: int
    result: int
    lifetime: int
    epoch: int
    nonce: bytes = b""
    protocol: int = 0
    internal_port: int = 0
    external_port: int = 0
    external_ip: str = ""


def _address_bytes(address: str) -> bytes:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return b"\x00" * 10 + b"\xff\xff" + ip.packed
    return ip.packed


def _address_text(raw: bytes) -> str:
    ip = ipaddress.IPv6Address(raw)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)


def _header(opcode: int, lifetime: int, client_ip: str) -> bytes:
    if not 0 <= lifetime < 2**32:
        raise ValueError("lifetime must fit in 32 bits")
    return struct.pack("!BBHI", VERSION, opcode, 0, lifetime) + _address_bytes(client_ip)


def encode_announce_request(client_ip: str) -> bytes:
    """
    An ANNOUNCE request: a cheap way to ask "is there a PCP server?".

    @param client_ip: our address as the server sees it (the source
        address of the request).
    """
    return _header(OP_ANNOUNCE, 0, client_ip)


def encode_map_request(
    client_ip: str,
    nonce: bytes,
    internal_port: int,
    lifetime: int,
    external_port: int = 0,
    external_ip: str = "0.0.0.0",
    protocol: int = PROTOCOL_UDP,
) -> bytes:
    """
    A MAP request for C{protocol} from C{internal_port}; C{lifetime=0}
    deletes the mapping with this nonce.

    @param client_ip: our address as the server sees it.
    @param nonce: 12 random bytes, the same for renewals and the delete.
    @param external_port: suggested external port (0: any).
    @param external_ip: suggested external address (0.0.0.0: any IPv4).
    """
    if len(nonce) != NONCE_SIZE:
        raise ValueError("the mapping nonce is 12 bytes")
    if not 0 < internal_port < 65536 or not 0 <= external_port < 65536:
        raise ValueError("ports must be 1-65535 (external: 0-65535)")
    body = nonce + struct.pack("!B3xHH", protocol, internal_port, external_port) + _address_bytes(external_ip)
    return _header(OP_MAP, lifetime, client_ip) + body


def decode_response(data: bytes) -> Response:
    """
    Decode a server's answer (options after the opcode data are ignored).

    @raise MalformedMessage: not a PCP answer (wrong version, no R bit,
        too short, longer than 1100 bytes, or not a multiple of 4 bytes).
    """
    if len(data) < HEADER_SIZE:
        raise MalformedMessage("PCP answer shorter than 24 bytes")
    if len(data) > 1100 or len(data) % 4:
        raise MalformedMessage("PCP answer length is not a multiple of 4 up to 1100")
    version, op, _, result, lifetime, epoch = struct.unpack_from("!BBBBII", data)
    if version != VERSION:
        raise MalformedMessage(f"PCP version {version}, not 2")
    if not op & RESPONSE_BIT:
        raise MalformedMessage("a PCP request, not an answer")
    opcode = op & 0x7F
    if opcode != OP_MAP or result != SUCCESS and len(data) < HEADER_SIZE + MAP_SIZE:
        # Error answers may omit the opcode data (RFC 6887 section 7.2).
        return Response(opcode, result, lifetime, epoch)
    if len(data) < HEADER_SIZE + MAP_SIZE:
        raise MalformedMessage("PCP MAP answer shorter than 60 bytes")
    body = data[HEADER_SIZE:]
    nonce = body[:NONCE_SIZE]
    protocol, internal, external = struct.unpack_from("!B3xHH", body, NONCE_SIZE)
    return Response(opcode, result, lifetime, epoch, nonce, protocol, internal, external, _address_text(body[20:36]))
