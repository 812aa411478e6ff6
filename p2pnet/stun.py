"""
STUN messages (RFC 5389, RFC 8489) and the RFC 5780 attributes: a pure codec.

Nothing here does I/O.  L{decode} turns a datagram into a L{StunMessage} and
raises L{MalformedMessage} (and nothing else) for any input it cannot accept;
L{encode} turns a message back into bytes and appends MESSAGE-INTEGRITY,
MESSAGE-INTEGRITY-SHA256 and FINGERPRINT itself.

Attributes the codec understands decode to typed values (L{XorMappedAddress},
L{ErrorCode}, ...); every other attribute is kept, in order, as a
L{RawAttribute} holding its type and value bytes, so a message survives a
decode/encode round trip.

L{looks_like_stun} is the cheap test the protocols use to tell STUN apart
from p2pnet's own datagrams on a shared socket.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import os
import stringprep
import struct
import unicodedata
import zlib
from typing import ClassVar, Iterable, TypeVar

from attrs import field, frozen

from p2pnet.address import Address
from p2pnet.errors import MalformedMessage

__all__ = [
    "MAGIC_COOKIE",
    "HEADER_LENGTH",
    "Method",
    "MessageClass",
    "AttributeType",
    "StunMessage",
    "RawAttribute",
    "MappedAddress",
    "XorMappedAddress",
    "OtherAddress",
    "ResponseOrigin",
    "AlternateServer",
    "Software",
    "Username",
    "Realm",
    "Nonce",
    "ErrorCode",
    "UnknownAttributes",
    "ChangeRequest",
    "ResponsePort",
    "Padding",
    "MessageIntegrity",
    "MessageIntegritySha256",
    "Fingerprint",
    "decode",
    "encode",
    "looks_like_stun",
    "check_fingerprint",
    "verify_integrity",
    "long_term_key",
    "short_term_key",
    "new_transaction_id",
    "is_comprehension_required",
    "saslprep",
    "TYPED_ATTRIBUTES",
    "encode_address",
    "decode_address",
    "encode_xor_address",
    "decode_xor_address",
]

#: The fixed value at offset 4 of every RFC 5389 message.
MAGIC_COOKIE = 0x2112A442
_COOKIE_BYTES = struct.pack("!I", MAGIC_COOKIE)
#: Bytes in a STUN header.
HEADER_LENGTH = 20
#: XORed into the CRC-32 of a message to make its FINGERPRINT.
_FINGERPRINT_XOR = 0x5354554E
_HEADER = struct.Struct("!HHI12s")
_ATTRIBUTE_HEADER = struct.Struct("!HH")


class Method(enum.IntEnum):
    """
    STUN methods: Binding (RFC 8489) and the TURN methods (RFC 8656).

    Messages keep their method as a plain C{int}, so methods not listed here
    still decode.
    """

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009


class MessageClass(enum.IntEnum):
    """
    The four STUN message classes.
    """

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS = 0b10
    ERROR = 0b11


class AttributeType(enum.IntEnum):
    """
    Attribute type numbers.  Types below 0x8000 are comprehension-required:
    a server that does not understand one must reject the request (420).
    """

    MAPPED_ADDRESS = 0x0001
    CHANGE_REQUEST = 0x0003  # RFC 5780
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    CHANNEL_NUMBER = 0x000C  # TURN
    LIFETIME = 0x000D  # TURN
    XOR_PEER_ADDRESS = 0x0012  # TURN
    DATA = 0x0013  # TURN
    REALM = 0x0014
    NONCE = 0x0015
    XOR_RELAYED_ADDRESS = 0x0016  # TURN
    REQUESTED_TRANSPORT = 0x0019  # TURN
    MESSAGE_INTEGRITY_SHA256 = 0x001C  # RFC 8489
    PASSWORD_ALGORITHM = 0x001D  # RFC 8489
    USERHASH = 0x001E  # RFC 8489
    XOR_MAPPED_ADDRESS = 0x0020
    PRIORITY = 0x0024  # ICE
    USE_CANDIDATE = 0x0025  # ICE
    PADDING = 0x0026  # RFC 5780
    RESPONSE_PORT = 0x0027  # RFC 5780
    PASSWORD_ALGORITHMS = 0x8002  # RFC 8489
    ALTERNATE_DOMAIN = 0x8003  # RFC 8489
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029  # ICE
    ICE_CONTROLLING = 0x802A  # ICE
    RESPONSE_ORIGIN = 0x802B  # RFC 5780
    OTHER_ADDRESS = 0x802C  # RFC 5780


def is_comprehension_required(attribute_type: int) -> bool:
    """
    Whether an agent that does not understand this attribute type must
    reject the message carrying it.
    """
    return attribute_type < 0x8000


# ---------------------------------------------------------------------------
# Address values (shared with the TURN attributes, which a later module
# builds on).


def _family_and_packed(address: Address) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(address.host)
    return (1 if ip.version == 4 else 2), ip.packed


def _unpack_address(family: int, packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def _split_address(value: bytes) -> tuple[int, int, bytes]:
    if len(value) < 4:
        raise MalformedMessage(f"address attribute too short ({len(value)} bytes)")
    family, port = value[1], struct.unpack("!H", value[2:4])[0]
    if family == 1:
        expected = 8
    elif family == 2:
        expected = 20
    else:
        raise MalformedMessage(f"unknown address family {family}")
    if len(value) != expected:
        raise MalformedMessage(
            f"address attribute of family {family} must be {expected} bytes, "
            f"not {len(value)}"
        )
    return family, port, value[4:]


def encode_address(address: Address) -> bytes:
    """
    The value of a MAPPED-ADDRESS-style attribute (family, port, address).
    """
    family, packed = _family_and_packed(address)
    return struct.pack("!BBH", 0, family, address.port) + packed


def decode_address(value: bytes) -> Address:
    """
    Parse the value of a MAPPED-ADDRESS-style attribute.

    @raise MalformedMessage: if the value is not a valid address.
    """
    family, port, packed = _split_address(value)
    return Address(_unpack_address(family, packed), port)


def _xor_mask(family: int, transaction_id: bytes) -> bytes:
    return _COOKIE_BYTES if family == 1 else _COOKIE_BYTES + transaction_id


def encode_xor_address(address: Address, transaction_id: bytes) -> bytes:
    """
    The value of an XOR-MAPPED-ADDRESS-style attribute (also XOR-PEER-ADDRESS
    and XOR-RELAYED-ADDRESS): port XORed with the top of the magic cookie,
    address with the cookie (and, for IPv6, the transaction id).
    """
    family, packed = _family_and_packed(address)
    mask = _xor_mask(family, transaction_id)
    xored = bytes(a ^ b for a, b in zip(packed, mask))
    return struct.pack("!BBH", 0, family, address.port ^ (MAGIC_COOKIE >> 16)) + xored


def decode_xor_address(value: bytes, transaction_id: bytes) -> Address:
    """
    Parse the value of an XOR-MAPPED-ADDRESS-style attribute.

    @raise MalformedMessage: if the value is not a valid address.
    """
    family, port, packed = _split_address(value)
    mask = _xor_mask(family, transaction_id)
    plain = bytes(a ^ b for a, b in zip(packed, mask))
    return Address(_unpack_address(family, plain), port ^ (MAGIC_COOKIE >> 16))


# ---------------------------------------------------------------------------
# Attributes.


def _text(value: bytes, name: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage(f"{name} is not UTF-8") from None


@frozen
class RawAttribute:
    """
    An attribute the codec does not interpret: its type and value bytes.
    """

    type: int = field(validator=lambda i, a, v: _check_type(v))
    value: bytes = field(default=b"", converter=bytes)

    def encode_value(self, transaction_id: bytes) -> bytes:
        return self.value


def _check_type(value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise ValueError(f"attribute type must be in 0-0xFFFF, not {value!r}")


class _AddressAttribute:
    type: ClassVar[int]
    address: Address

    def encode_value(self, transaction_id: bytes) -> bytes:
        return encode_address(self.address)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes):
        return cls(decode_address(value))


@frozen
class MappedAddress(_AddressAttribute):
    """
    MAPPED-ADDRESS: the client's reflexive address, not obfuscated (RFC 3489
    clients read only this one).
    """

    type: ClassVar[int] = AttributeType.MAPPED_ADDRESS
    address: Address


@frozen
class XorMappedAddress(_AddressAttribute):
    """
    XOR-MAPPED-ADDRESS: the client's reflexive address as the server saw it.
    """

    type: ClassVar[int] = AttributeType.XOR_MAPPED_ADDRESS
    address: Address

    def encode_value(self, transaction_id: bytes) -> bytes:
        return encode_xor_address(self.address, transaction_id)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes):
        return cls(decode_xor_address(value, transaction_id))


@frozen
class OtherAddress(_AddressAttribute):
    """
    OTHER-ADDRESS (RFC 5780): the server's alternate address and port, which
    differ from the ones the request arrived on in both IP and port.
    """

    type: ClassVar[int] = AttributeType.OTHER_ADDRESS
    address: Address


@frozen
class ResponseOrigin(_AddressAttribute):
    """
    RESPONSE-ORIGIN (RFC 5780): the address the response was sent from.
    """

    type: ClassVar[int] = AttributeType.RESPONSE_ORIGIN
    address: Address


@frozen
class AlternateServer(_AddressAttribute):
    """
    ALTERNATE-SERVER: where a 300 (Try Alternate) error sends the client.
    """

    type: ClassVar[int] = AttributeType.ALTERNATE_SERVER
    address: Address


class _TextAttribute:
    type: ClassVar[int]
    text: str

    def encode_value(self, transaction_id: bytes) -> bytes:
        return self.text.encode("utf-8")

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes):
        return cls(_text(value, AttributeType(cls.type).name))


@frozen
class Software(_TextAttribute):
    """
    SOFTWARE: a description of the agent that sent the message.
    """

    type: ClassVar[int] = AttributeType.SOFTWARE
    text: str


@frozen
class Username(_TextAttribute):
    """
    USERNAME: the user name for MESSAGE-INTEGRITY.
    """

    type: ClassVar[int] = AttributeType.USERNAME
    text: str


@frozen
class Realm(_TextAttribute):
    """
    REALM: the long-term credential realm.
    """

    type: ClassVar[int] = AttributeType.REALM
    text: str


@frozen
class Nonce(_TextAttribute):
    """
    NONCE: the server's nonce for long-term credentials.
    """

    type: ClassVar[int] = AttributeType.NONCE
    text: str


def _check_error_code(instance: object, attribute: object, value: int) -> None:
    if not isinstance(value, int) or not 300 <= value <= 699:
        raise ValueError(f"STUN error codes are 300-699, not {value!r}")


@frozen
class ErrorCode:
    """
    ERROR-CODE: a numeric code (300-699) and a short reason.
    """

    type: ClassVar[int] = AttributeType.ERROR_CODE
    code: int = field(validator=_check_error_code)
    reason: str = ""

    def encode_value(self, transaction_id: bytes) -> bytes:
        return struct.pack("!HBB", 0, self.code // 100, self.code % 100) + (
            self.reason.encode("utf-8")
        )

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes):
        if len(value) < 4:
            raise MalformedMessage("ERROR-CODE too short")
        error_class, number = value[2] & 0x07, value[3]
        if not 3 <= error_class <= 6 or number > 99:
            raise MalformedMessage(f"bad ERROR-CODE {error_class}/{number}")
        return cls(error_class * 100 + number, _text(value[4:], "ERROR-CODE reason"))


@frozen
class UnknownAttributes:
    """
    UNKNOWN-ATTRIBUTES: the comprehension-required attribute types a 420
    error response could not handle.
    """

    type: ClassVar[int] = AttributeType.UNKNOWN_ATTRIBUTES
    types: tuple[int, ...] = field(converter=tuple, default=())

    def encode_value(self, transaction_id: bytes) -> bytes:
        return struct.pack(f"!{len(self.types)}H", *self.types)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes):
        if len(value) % 2:
            raise MalformedMessage("UNKNOWN-ATTRIBUTES has an odd length")
        return cls(struct.unpack(f"!{len(value) // 2}H", value))


@frozen
class ChangeRequest:
    """
    CHANGE-REQUEST (RFC 5780): ask the server to answer from its other IP
    and/or its other port.
    """

    type: ClassVar[int] = AttributeType.CHANGE_REQUEST
    change_ip: bool = False
    change_port: bool = False

    def encode_value(self, transaction_id: bytes) -> bytes:
        return struct.pack("!I", (0x04 if self.change_ip else 0) | (0x02 if self.change_port else 0))

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes):
        if len(value) != 4:
            raise MalformedMessage("CHANGE-REQUEST must be 4 bytes")
        flags = struct.unpack("!I", value)[0]
        return cls(bool(flags & 0x04), bool(flags & 0x02))


def _check_port(instance: object, attribute: object, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise ValueError(f"port must be in 0-65535, not {value!r}")


@frozen
class ResponsePort:
    """
    RESPONSE-PORT (RFC 5780): send the response to this port of the
    request's source IP.
    """

    type: ClassVar[int] = AttributeType.RESPONSE_PORT
    port: int = field(validator=_check_port)

    def encode_value(self, transaction_id: bytes) -> bytes:
        return struct.pack("!HH", self.port, 0)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes):
        if len(value) not in (2, 4):
            raise MalformedMessage("RESPONSE-PORT must be 2 or 4 bytes")
        return cls(struct.unpack("!H", value[:2])[0])


@frozen
class Padding:
    """
    PADDING (RFC 5780): filler that makes a message bigger; its content is
    meaningless.
    """

    type: ClassVar[int] = AttributeType.PADDING
    length: int = 0

    def encode_value(self, transaction_id: bytes) -> bytes:
        return bytes(self.length)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes):
        return cls(len(value))


@frozen
class MessageIntegrity:
    """
    MESSAGE-INTEGRITY: an HMAC-SHA1 over the message before it.  L{encode}
    computes it; check a received one with L{verify_integrity}.
    """

    type: ClassVar[int] = AttributeType.MESSAGE_INTEGRITY
    mac: bytes

    def encode_value(self, transaction_id: bytes) -> bytes:
        return self.mac

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes):
        if len(value) != 20:
            raise MalformedMessage("MESSAGE-INTEGRITY must be 20 bytes")
        return cls(value)


@frozen
class MessageIntegritySha256:
    """
    MESSAGE-INTEGRITY-SHA256 (RFC 8489): an HMAC-SHA256, possibly truncated
    to 16-32 bytes.
    """

    type: ClassVar[int] = AttributeType.MESSAGE_INTEGRITY_SHA256
    mac: bytes

    def encode_value(self, transaction_id: bytes) -> bytes:
        return self.mac

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes):
        if not 16 <= len(value) <= 32 or len(value) % 4:
            raise MalformedMessage("MESSAGE-INTEGRITY-SHA256 must be 16-32 bytes, a multiple of 4")
        return cls(value)


@frozen
class Fingerprint:
    """
    FINGERPRINT: CRC-32 of the message before it, XORed with 0x5354554E.
    L{encode} computes it and L{decode} checks it.
    """

    type: ClassVar[int] = AttributeType.FINGERPRINT
    crc: int

    def encode_value(self, transaction_id: bytes) -> bytes:
        return struct.pack("!I", self.crc)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes):
        if len(value) != 4:
            raise MalformedMessage("FINGERPRINT must be 4 bytes")
        return cls(struct.unpack("!I", value)[0])


_TYPED = (
    MappedAddress,
    XorMappedAddress,
    OtherAddress,
    ResponseOrigin,
    AlternateServer,
    Software,
    Username,
    Realm,
    Nonce,
    ErrorCode,
    UnknownAttributes,
    ChangeRequest,
    ResponsePort,
    Padding,
    MessageIntegrity,
    MessageIntegritySha256,
    Fingerprint,
)
_DECODERS = {kind.type: kind for kind in _TYPED}
#: Attribute types this codec decodes into typed values.
TYPED_ATTRIBUTES = frozenset(_DECODERS)
_TRAILER = (MessageIntegrity, MessageIntegritySha256, Fingerprint)

Attribute = (
    RawAttribute
    | MappedAddress
    | XorMappedAddress
    | OtherAddress
    | ResponseOrigin
    | AlternateServer
    | Software
    | Username
    | Realm
    | Nonce
    | ErrorCode
    | UnknownAttributes
    | ChangeRequest
    | ResponsePort
    | Padding
    | MessageIntegrity
    | MessageIntegritySha256
    | Fingerprint
)

_A = TypeVar("_A")


# ---------------------------------------------------------------------------
# Messages.


def new_transaction_id() -> bytes:
    """
    A fresh random 96-bit transaction id.
    """
    return os.urandom(12)


def _check_transaction_id(instance: object, attribute: object, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 12:
        raise ValueError(f"a transaction id is 12 bytes, not {value!r}")


def _check_method(instance: object, attribute: object, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFFF:
        raise ValueError(f"a STUN method is 12 bits, not {value!r}")


@frozen
class StunMessage:
    """
    A STUN message: method, class, transaction id and attributes in wire
    order.

    @ivar method: the 12-bit method (see L{Method}); a plain C{int}.
    @ivar message_class: request, indication, success or error response.
    @ivar transaction_id: 12 bytes.
    @ivar attributes: typed attributes and L{RawAttribute}s, in order.
    """

    method: int = field(validator=_check_method)
    message_class: MessageClass = field(converter=MessageClass)
    transaction_id: bytes = field(validator=_check_transaction_id)
    attributes: tuple = field(converter=tuple, default=())

    @classmethod
    def request(
        cls,
        method: int = Method.BINDING,
        attributes: Iterable = (),
        transaction_id: bytes | None = None,
    ) -> StunMessage:
        """
        A request with a fresh random transaction id unless one is given.
        """
        if transaction_id is None:
            transaction_id = new_transaction_id()
        return cls(method, MessageClass.REQUEST, transaction_id, tuple(attributes))

    def success(self, attributes: Iterable = ()) -> StunMessage:
        """
        A success response to this request.
        """
        return StunMessage(self.method, MessageClass.SUCCESS, self.transaction_id, tuple(attributes))

    def error(self, code: int, reason: str, attributes: Iterable = ()) -> StunMessage:
        """
        An error response to this request carrying C{ERROR-CODE code reason}
        followed by C{attributes}.
        """
        return StunMessage(
            self.method,
            MessageClass.ERROR,
            self.transaction_id,
            (ErrorCode(code, reason), *attributes),
        )

    def get(self, kind: type[_A]) -> _A | None:
        """
        The first attribute of the given typed class, or C{None}.
        """
        for attribute in self.attributes:
            if type(attribute) is kind:
                return attribute
        return None

    def get_raw(self, attribute_type: int) -> RawAttribute | None:
        """
        The first raw (uninterpreted) attribute of the given type, or C{None}.
        """
        for attribute in self.attributes:
            if isinstance(attribute, RawAttribute) and attribute.type == attribute_type:
                return attribute
        return None

    @property
    def mapped_address(self) -> Address | None:
        """
        The reflexive address in a Binding response: XOR-MAPPED-ADDRESS,
        else MAPPED-ADDRESS, else C{None}.
        """
        for kind in (XorMappedAddress, MappedAddress):
            attribute = self.get(kind)
            if attribute is not None:
                return attribute.address
        return None

    @property
    def error_code(self) -> ErrorCode | None:
        return self.get(ErrorCode)

    def without_trailer(self) -> StunMessage:
        """
        This message without its MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT
        attributes: what L{encode} actually writes before appending fresh
        ones.
        """
        kept = tuple(a for a in self.attributes if not isinstance(a, _TRAILER))
        return StunMessage(self.method, self.message_class, self.transaction_id, kept)


def _message_type(method: int, message_class: int) -> int:
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((message_class & 0b01) << 4)
        | ((message_class & 0b10) << 7)
    )


def _split_message_type(message_type: int) -> tuple[int, MessageClass]:
    method = (
        (message_type & 0x000F)
        | ((message_type & 0x00E0) >> 1)
        | ((message_type & 0x3E00) >> 2)
    )
    message_class = ((message_type >> 4) & 0b01) | ((message_type >> 7) & 0b10)
    return method, MessageClass(message_class)


def _pad(length: int) -> int:
    return (4 - length % 4) % 4


def _attribute_bytes(attribute_type: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"attribute {attribute_type:#06x} is too long ({len(value)} bytes)")
    return _ATTRIBUTE_HEADER.pack(attribute_type, len(value)) + value + bytes(_pad(len(value)))


def _header(message_type: int, length: int, transaction_id: bytes) -> bytes:
    if length > 0xFFFF:
        raise ValueError(f"STUN message too long ({length} bytes of attributes)")
    return _HEADER.pack(message_type, length, MAGIC_COOKIE, transaction_id)


def encode(
    message: StunMessage,
    *,
    integrity_key: bytes | None = None,
    sha256: bool = False,
    fingerprint: bool = True,
) -> bytes:
    """
    Serialise C{message}.

    Any MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 or FINGERPRINT attribute
    in C{message.attributes} is left out; instead, when C{integrity_key} is
    given, a MESSAGE-INTEGRITY (or with C{sha256}, a MESSAGE-INTEGRITY-SHA256)
    computed with it is appended, then a FINGERPRINT when C{fingerprint}.

    @param integrity_key: the HMAC key: L{short_term_key} or L{long_term_key}.
    @raise ValueError: if the message is too long to encode.
    """
    tid = message.transaction_id
    message_type = _message_type(message.method, message.message_class)
    body = b"".join(
        _attribute_bytes(a.type, a.encode_value(tid))
        for a in message.attributes
        if not isinstance(a, _TRAILER)
    )
    if integrity_key is not None:
        digest, kind = (hashlib.sha256, MessageIntegritySha256) if sha256 else (hashlib.sha1, MessageIntegrity)
        mac_length = digest().digest_size
        head = _header(message_type, len(body) + 4 + mac_length, tid)
        mac = hmac.new(integrity_key, head + body, digest).digest()
        body += _attribute_bytes(kind.type, mac)
    if fingerprint:
        head = _header(message_type, len(body) + 8, tid)
        crc = zlib.crc32(head + body) ^ _FINGERPRINT_XOR
        body += _attribute_bytes(AttributeType.FINGERPRINT, struct.pack("!I", crc))
    return _header(message_type, len(body), tid) + body


def looks_like_stun(data: bytes) -> bool:
    """
    Whether C{data} is framed like an RFC 5389 message: the top two bits
    are zero, the magic cookie is at offset 4, and the length field is a
    multiple of 4 that matches the datagram.  Cheap; does not parse
    attributes.
    """
    if len(data) < HEADER_LENGTH or data[0] & 0xC0:
        return False
    length = (data[2] << 8) | data[3]
    return length % 4 == 0 and HEADER_LENGTH + length == len(data) and data[4:8] == _COOKIE_BYTES


def _walk(data: bytes):
    """
    Yield C{(offset, type, value)} for each attribute in a framed message.

    @raise MalformedMessage: if the attributes do not fill the message exactly.
    """
    offset = HEADER_LENGTH
    end = len(data)
    while offset < end:
        if end - offset < 4:
            raise MalformedMessage("truncated attribute header")
        attribute_type, length = _ATTRIBUTE_HEADER.unpack_from(data, offset)
        value_end = offset + 4 + length
        if value_end + _pad(length) > end:
            raise MalformedMessage(f"attribute {attribute_type:#06x} runs past the end of the message")
        yield offset, attribute_type, data[offset + 4 : value_end]
        offset = value_end + _pad(length)


def _check_framing(data: bytes) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedMessage("not bytes")
    if len(data) < HEADER_LENGTH:
        raise MalformedMessage(f"too short for a STUN header ({len(data)} bytes)")
    if data[0] & 0xC0:
        raise MalformedMessage("top two bits of a STUN message must be zero")
    if data[4:8] != _COOKIE_BYTES:
        raise MalformedMessage("no STUN magic cookie")
    length = (data[2] << 8) | data[3]
    if length % 4:
        raise MalformedMessage(f"STUN length {length} is not a multiple of 4")
    if HEADER_LENGTH + length != len(data):
        raise MalformedMessage(
            f"STUN length field says {length} bytes of attributes, datagram has {len(data) - HEADER_LENGTH}"
        )


def _fingerprint_of(data: bytes, offset: int) -> int:
    return zlib.crc32(data[:offset]) ^ _FINGERPRINT_XOR


def decode(data: bytes) -> StunMessage:
    """
    Parse one STUN message.

    Attributes after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256
    and FINGERPRINT are ignored, as RFC 8489 requires.  A FINGERPRINT, if
    present, must be last and correct.  Integrity is not checked here: use
    L{verify_integrity} once the key is known.

    @raise MalformedMessage: for any input that is not a valid message.
    """
    _check_framing(data)
    data = bytes(data)
    message_type, _, _, transaction_id = _HEADER.unpack_from(data)
    method, message_class = _split_message_type(message_type)
    attributes: list = []
    seen_integrity = seen_fingerprint = False
    for offset, attribute_type, value in _walk(data):
        if seen_fingerprint:
            raise MalformedMessage("attribute after FINGERPRINT")
        if attribute_type == AttributeType.FINGERPRINT:
            seen_fingerprint = True
            attribute = Fingerprint.decode_value(value, transaction_id)
            if attribute.crc != _fingerprint_of(data, offset):
                raise MalformedMessage("FINGERPRINT does not match")
        elif seen_integrity and attribute_type != AttributeType.MESSAGE_INTEGRITY_SHA256:
            continue
        else:
            kind = _DECODERS.get(attribute_type)
            if kind is None:
                attribute = RawAttribute(attribute_type, value)
            else:
                try:
                    attribute = kind.decode_value(value, transaction_id)
                except MalformedMessage:
                    raise
                except ValueError as e:
                    raise MalformedMessage(f"bad {AttributeType(attribute_type).name}: {e}") from None
            if attribute_type in (
                AttributeType.MESSAGE_INTEGRITY,
                AttributeType.MESSAGE_INTEGRITY_SHA256,
            ):
                seen_integrity = True
        attributes.append(attribute)
    return StunMessage(method, message_class, transaction_id, tuple(attributes))


def check_fingerprint(data: bytes) -> bool:
    """
    Whether C{data} is a framed STUN message whose last attribute is a
    correct FINGERPRINT.  Never raises.
    """
    try:
        _check_framing(data)
        data = bytes(data)
        last = None
        for item in _walk(data):
            last = item
    except MalformedMessage:
        return False
    if last is None or last[1] != AttributeType.FINGERPRINT or len(last[2]) != 4:
        return False
    return struct.unpack("!I", last[2])[0] == _fingerprint_of(data, last[0])


def verify_integrity(data: bytes, key: bytes) -> bool:
    """
    Whether the message in C{data} carries a MESSAGE-INTEGRITY-SHA256 or
    MESSAGE-INTEGRITY computed with C{key}.  When both are present the
    SHA-256 one is checked (RFC 8489).  Never raises; C{False} for anything
    unparseable or unprotected.
    """
    try:
        _check_framing(data)
        data = bytes(data)
        found: dict[int, tuple[int, bytes]] = {}
        for offset, attribute_type, value in _walk(data):
            if attribute_type in (
                AttributeType.MESSAGE_INTEGRITY,
                AttributeType.MESSAGE_INTEGRITY_SHA256,
            ) and attribute_type not in found:
                found[attribute_type] = (offset, value)
    except MalformedMessage:
        return False
    if AttributeType.MESSAGE_INTEGRITY_SHA256 in found:
        offset, mac = found[AttributeType.MESSAGE_INTEGRITY_SHA256]
        digest = hashlib.sha256
        if not 16 <= len(mac) <= 32 or len(mac) % 4:
            return False
    elif AttributeType.MESSAGE_INTEGRITY in found:
        offset, mac = found[AttributeType.MESSAGE_INTEGRITY]
        digest = hashlib.sha1
        if len(mac) != 20:
            return False
    else:
        return False
    length = offset - HEADER_LENGTH + 4 + len(mac)
    signed = data[:2] + struct.pack("!H", length) + data[4:offset]
    expected = hmac.new(key, signed, digest).digest()[: len(mac)]
    return hmac.compare_digest(expected, mac)


# ---------------------------------------------------------------------------
# Credentials.


def saslprep(text: str) -> str:
    """
    The SASLprep (RFC 4013) mapping and normalisation of a password: soft
    hyphens and other "mapped to nothing" characters dropped, non-ASCII
    spaces turned into spaces, then NFKC.  (Prohibited-character checks
    are not applied.)
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch
        for ch in text
        if not stringprep.in_table_b1(ch)
    )
    return unicodedata.normalize("NFKC", mapped)


def short_term_key(password: str) -> bytes:
    """
    The MESSAGE-INTEGRITY key for short-term credentials (as ICE uses).
    """
    return saslprep(password).encode("utf-8")


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """
    The MESSAGE-INTEGRITY key for long-term credentials:
    C{MD5(username ":" realm ":" SASLprep(password))}.
    """
    text = f"{username}:{realm}:{saslprep(password)}"
    return hashlib.md5(text.encode("utf-8")).digest()
