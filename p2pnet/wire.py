"""
The p2pnet wire format: a pure codec between bytes and message objects.

Every p2pnet datagram starts with the byte C{0xD1}: the high nibble C{0xD}
marks p2pnet, the low nibble is the format version (1).  STUN messages start
with two zero bits (C{0x00}-C{0x3F}) and TURN ChannelData with C{0x40}-C{0x7F},
so the first byte alone tells the three apart on a shared socket.

Two framings follow the marker byte:

  - I{control} messages (everything but application data)::

      0      1      2 ............ 9   10 ...
      0xD1   type   transaction id     fields: tag(1) length(2) value ...

    Fields are typed TLVs; a tag may repeat to form a list.  An C{AUTH} field,
    if present, must be last: a truncated HMAC-SHA256 over every byte before
    it (see L{sign} and L{verify}).

  - I{data} messages (application datagrams on an established path)::

      0      1      2   3        4 ...
      0xD1   0x40   connection   payload [tag]

    four bytes of framing; the receiver's connection id picks the connection.
    When data authentication is on, the last L{DATA_TAG_SIZE} bytes are a
    truncated HMAC-SHA256 over everything before them.

L{decode} raises L{MalformedMessage} (and nothing else) for any input that is
not a well-formed message.  docs/protocol.md has a table per message.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import socket as _socket
import struct
from typing import Any, ClassVar

from attrs import field, frozen

from p2pnet.address import Address
from p2pnet.errors import MalformedMessage

MAGIC = 0xD1
VERSION = 1
HEADER_SIZE = 10
TXID_SIZE = 8
AUTH_SIZE = 16
DATA_TAG_SIZE = 8
DATA_HEADER_SIZE = 4
MAX_STRING = 255
MAX_DATAGRAM = 1200
INTRO_ID_SIZE = 8
KEY_SIZE = 16


class MessageType(enum.IntEnum):
    """
    The second byte of every p2pnet datagram.
    """

    REGISTER = 0x01
    REGISTERED = 0x02
    HEARTBEAT = 0x03
    HEARTBEAT_ACK = 0x04
    UNREGISTER = 0x05
    HOST_SESSION = 0x06
    SESSION_HOSTED = 0x07
    UNHOST = 0x08
    LIST_SESSIONS = 0x09
    SESSION_LIST = 0x0A
    INTRODUCE = 0x0B
    INTRODUCTION = 0x0C
    REVERSE_REQUEST = 0x0D
    REVERSE = 0x0E
    ERROR = 0x0F
    INTRO_ACK = 0x10
    RELAY_REQUEST = 0x11
    RELAY_OFFER = 0x12
    CANDIDATE_OFFER = 0x13
    CANDIDATE = 0x14
    CHALLENGE = 0x15
    PROOF = 0x16
    PROBE = 0x20
    HELLO = 0x21
    HELLO_ACK = 0x22
    KEEPALIVE = 0x23
    CLOSE = 0x24
    DATA = 0x40
    SEALED = 0x41
    RELAYED = 0x50
    RELAY_FORWARD = 0x51


class ErrorCode(enum.IntEnum):
    """
    Codes carried by L{Error}.
    """

    BAD_REQUEST = 1
    NOT_AUTHORISED = 2
    UNKNOWN_PEER = 3
    UNKNOWN_SESSION = 4
    SESSION_FULL = 5
    RATE_LIMITED = 6
    PEER_ID_TAKEN = 7
    NOT_REGISTERED = 8
    TOO_MANY_SESSIONS = 9
    #: The peer (or the session's host) stopped heartbeating: likely gone.
    HOST_GONE = 10
    #: A relay was asked for and the introducer runs none.
    NO_RELAY = 16


class Tag(enum.IntEnum):
    """
    Field tags of control messages.
    """

    PEER_ID = 0x01
    LOCAL = 0x02
    PUBLIC = 0x03
    LIFETIME = 0x04
    COOKIE = 0x05
    NAME = 0x06
    GAME_ID = 0x07
    MAX_PLAYERS = 0x08
    PROPERTY = 0x09
    SESSION_ID = 0x0A
    #: (Retired: pages were once asked for by position.)
    OFFSET = 0x0B
    SESSION = 0x0C
    TARGET = 0x0D
    INTRO_ID = 0x0E
    KEY = 0x0F
    CODE = 0x10
    REASON = 0x11
    FLAGS = 0x12
    PLAYERS = 0x13
    CONN_ID = 0x14
    OBSERVED = 0x15
    CANDIDATE = 0x16
    PADDING = 0x17
    TOTAL = 0x18
    SEQUENCE = 0x19
    ALLOCATION = 0x1A
    SIDE = 0x1B
    NAT = 0x1C
    LAG = 0x1D
    PEER_KEY = 0x1E
    NOISE = 0x1F
    INTRODUCER_KEY = 0x20
    CHALLENGE = 0x21
    PROOF = 0x22
    CURSOR = 0x23
    LIMIT = 0x24
    OTHER_PUBLIC = 0x25
    AUTH = 0xFF


# Flag bits carried in Tag.FLAGS.
FLAG_MESH = 0x01
FLAG_INITIATOR = 0x02
#: In a ListSessions: only sessions with a free slot.
FLAG_OPEN = 0x04

#: The longest lobby cursor (opaque to clients; the in-memory lobby's are 8
#: bytes, a shared one may need more).
MAX_CURSOR = 16
#: In an Introduce: the requester is relay-only (the introducer hides its
#: addresses from the target); in an Introduction: the peer is, so use
#: nothing but a relay.
FLAG_RELAY_ONLY = 0x04


def _txid(value: bytes) -> bytes:
    if not isinstance(value, bytes) or len(value) != TXID_SIZE:
        raise ValueError(f"transaction id must be {TXID_SIZE} bytes")
    return value


# --- field value codecs ----------------------------------------------------

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_TLV = struct.Struct("!BH")


def _enc_str(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > MAX_STRING:
        raise ValueError(f"string field longer than {MAX_STRING} bytes: {value[:20]!r}...")
    return raw


def _dec_str(raw: bytes) -> str:
    if len(raw) > MAX_STRING:
        raise MalformedMessage("string field too long")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage("string field is not UTF-8") from None


def _enc_addr(value: Address) -> bytes:
    host = value.host
    try:
        # Address validated the literal; inet_pton packs it ~10x faster
        # than ipaddress (scoped IPv6 literals fall back below).
        if ":" in host:
            return b"\x06" + _U16.pack(value.port) + _socket.inet_pton(_socket.AF_INET6, host)
        return b"\x04" + _U16.pack(value.port) + _socket.inet_pton(_socket.AF_INET, host)
    except OSError:
        pass
    import ipaddress

    packed = ipaddress.ip_address(host).packed
    return bytes([4 if len(packed) == 4 else 6]) + _U16.pack(value.port) + packed


_ADDR_CACHE: dict[bytes, Address] = {}


def _dec_addr(raw: bytes) -> Address:
    cached = _ADDR_CACHE.get(raw)
    if cached is not None:
        return cached
    import ipaddress

    if len(raw) == 7 and raw[0] == 4:
        host = str(ipaddress.IPv4Address(raw[3:]))
    elif len(raw) == 19 and raw[0] == 6:
        host = str(ipaddress.IPv6Address(raw[3:]))
    else:
        raise MalformedMessage("bad address field")
    address = Address(host, _U16.unpack_from(raw, 1)[0])
    if len(_ADDR_CACHE) < 4096:
        _ADDR_CACHE[raw] = address
    return address


class _Fixed:
    """
    The codec of a fixed-size byte string (an id, a cookie, a key).

    The codecs are small classes rather than closures so that their checks
    run in methods a mutation-testing tool can switch (docs/testing.md).
    """

    __slots__ = ("size", "what")

    def __init__(self, size: int, what: str) -> None:
        self.size = size
        self.what = what

    def decode(self, raw: bytes) -> bytes:
        if len(raw) != self.size:
            raise MalformedMessage(f"{self.what} must be {self.size} bytes, got {len(raw)}")
        return raw

    def encode(self, value: bytes) -> bytes:
        if len(value) != self.size:
            raise ValueError(f"{self.what} must be {self.size} bytes")
        return value


def _fixed(size: int, what: str):
    codec = _Fixed(size, what)
    return codec.encode, codec.decode


class _UInt:
    """
    The codec of a big-endian unsigned integer of one C{struct} size.
    """

    __slots__ = ("struct", "what")

    def __init__(self, struct_: struct.Struct, what: str) -> None:
        self.struct = struct_
        self.what = what

    def decode(self, raw: bytes) -> int:
        if len(raw) != self.struct.size:
            raise MalformedMessage(f"{self.what} must be {self.struct.size} bytes")
        return self.struct.unpack(raw)[0]

    def encode(self, value: int) -> bytes:
        return self.struct.pack(value)


def _uint(struct_: struct.Struct, what: str):
    codec = _UInt(struct_, what)
    return codec.encode, codec.decode


def _dec_u8(raw: bytes) -> int:
    if len(raw) != 1:
        raise MalformedMessage("flags must be 1 byte")
    return raw[0]


def _enc_u8(value: int) -> bytes:
    return bytes((value,))


def _u8():
    return _enc_u8, _dec_u8


def _enc_property(value: tuple[str, str]) -> bytes:
    key, val = value
    raw_key = key.encode("utf-8")
    if b"\0" in raw_key:
        raise ValueError("property names cannot contain NUL")
    return _enc_str(key + "\0" + val)


def _dec_property(raw: bytes) -> tuple[str, str]:
    text = _dec_str(raw)
    key, sep, val = text.partition("\0")
    if not sep:
        raise MalformedMessage("property without a name/value separator")
    return (key, val)


def _enc_bytes(value: bytes) -> bytes:
    return value


def _dec_bytes(raw: bytes) -> bytes:
    return raw


_STR = (_enc_str, _dec_str)
_ADDR = (_enc_addr, _dec_addr)
_U16C = _uint(_U16, "16-bit field")
_U32C = _uint(_U32, "32-bit field")
_ID8 = _fixed(8, "identifier")
_KEY = _fixed(KEY_SIZE, "key")
_COOKIE = _fixed(8, "cookie")
_PROP = (_enc_property, _dec_property)
_BYTES = (_enc_bytes, _dec_bytes)
_FLAGS = _u8()


def _dec_cursor(raw: bytes) -> bytes:
    if not 1 <= len(raw) <= MAX_CURSOR:
        raise MalformedMessage(f"a cursor is 1-{MAX_CURSOR} bytes, got {len(raw)}")
    return raw


def _enc_cursor(value: bytes) -> bytes:
    if not 1 <= len(value) <= MAX_CURSOR:
        raise ValueError(f"a cursor is 1-{MAX_CURSOR} bytes")
    return value


_CURSOR = (_enc_cursor, _dec_cursor)
PUBLIC_KEY_SIZE = 32
_PUBKEY = _fixed(PUBLIC_KEY_SIZE, "public key")


@frozen
class F:
    """
    One field of a message schema.

    @ivar name: the attribute name on the message class.
    @ivar tag: the wire tag.
    @ivar codec: C{(encode, decode)} for one value.
    @ivar repeated: the attribute is a tuple of values, one TLV each.
    @ivar optional: the field may be absent (attribute then None / default).
    """

    name: str
    tag: Tag
    codec: tuple
    repeated: bool = False
    optional: bool = False


# --- messages ----------------------------------------------------------------

_ZERO_TXID = bytes(TXID_SIZE)


class Message:
    """
    Base of control messages; subclasses declare C{TYPE} and C{FIELDS}.
    """

    TYPE: ClassVar[MessageType]
    FIELDS: ClassVar[tuple[F, ...]]
    DECODING: ClassVar[tuple[tuple[int, str, Any, bool, bool], ...]]
    txid: bytes

    def encode(self) -> bytes:
        return encode(self)


def _tuple_of(converter=tuple):
    return field(default=(), converter=converter)


@frozen
class SessionInfo:
    """
    One hosted session, as listed by L{SessionList}.

    Encoded as a nested field list inside the C{SESSION} field.  Built with
    C{properties} as C{(key, value)} pairs (as on the wire); read them as a
    mapping, C{info.properties["map"]}.
    """

    session_id: bytes
    name: str
    game_id: str
    host: str
    players: int
    max_players: int
    mesh: bool = False
    _properties: tuple[tuple[str, str], ...] = _tuple_of()

    @property
    def properties(self) -> dict[str, str]:
        """
        The session's properties, C{{key: value}} (a fresh dict).
        """
        return dict(self._properties)

    def encode_value(self) -> bytes:
        parts = [
            _field(Tag.SESSION_ID, self.session_id),
            _field(Tag.NAME, _enc_str(self.name)),
            _field(Tag.GAME_ID, _enc_str(self.game_id)),
            _field(Tag.PEER_ID, _enc_str(self.host)),
            _field(Tag.PLAYERS, _U16.pack(self.players)),
            _field(Tag.MAX_PLAYERS, _U16.pack(self.max_players)),
            _field(Tag.FLAGS, bytes([FLAG_MESH if self.mesh else 0])),
        ]
        parts.extend(_field(Tag.PROPERTY, _enc_property(p)) for p in self._properties)
        return b"".join(parts)

    @classmethod
    def decode_value(cls, raw: bytes) -> SessionInfo:
        fields = _parse_fields(raw, 0)
        try:
            return cls(
                session_id=_ID8[1](_one(fields, Tag.SESSION_ID)),
                name=_dec_str(_one(fields, Tag.NAME)),
                game_id=_dec_str(_one(fields, Tag.GAME_ID)),
                host=_dec_str(_one(fields, Tag.PEER_ID)),
                players=_U16C[1](_one(fields, Tag.PLAYERS)),
                max_players=_U16C[1](_one(fields, Tag.MAX_PLAYERS)),
                mesh=bool(_FLAGS[1](_one(fields, Tag.FLAGS)) & FLAG_MESH),
                properties=tuple(_dec_property(v) for v in fields.get(Tag.PROPERTY, ())),
            )
        except (ValueError, TypeError) as e:
            raise MalformedMessage(f"bad session entry: {e}") from None


_SESSION = (lambda info: info.encode_value(), SessionInfo.decode_value)


def _message(type_: MessageType, *fields: F):
    """
    Class decorator: attach the wire type and schema to a frozen attrs class.
    """

    def decorate(cls):
        cls.TYPE = type_
        cls.FIELDS = fields
        # What decode() reads per field, as plain values (it runs for every
        # control datagram the introducer gets).
        cls.DECODING = tuple((int(f.tag), f.name, f.codec[1], f.repeated, f.optional) for f in fields)
        _BY_TYPE[type_] = cls
        return cls

    return decorate


_BY_TYPE: dict[int, type] = {}


@_message(
    MessageType.REGISTER,
    F("peer_id", Tag.PEER_ID, _STR),
    F("local", Tag.LOCAL, _ADDR, repeated=True),
    F("cookie", Tag.COOKIE, _COOKIE, optional=True),
    F("nat", Tag.NAT, _FLAGS, optional=True),
    F("peer_key", Tag.PEER_KEY, _PUBKEY, optional=True),
    F("padding", Tag.PADDING, _BYTES, optional=True),
)
@frozen
class Register(Message):
    """
    A host registers (or re-registers) with the introducer.

    C{local} lists the host's own socket addresses; the introducer records the
    public address from the UDP header.  C{cookie} proves ownership when
    re-registering from a new public address.  C{nat}, if the host ran a
    NAT check, packs its mapping and filtering behaviour (L{pack_nat}).
    C{peer_key}, the host's static X25519 public key, binds the peer id to
    that key while the registration lives (see L{Challenge}).
    """

    txid: bytes = field(converter=_txid)
    peer_id: str
    local: tuple[Address, ...] = _tuple_of()
    cookie: bytes | None = None
    nat: int | None = None
    padding: bytes | None = None
    peer_key: bytes | None = None


@_message(
    MessageType.REGISTERED,
    F("public", Tag.PUBLIC, _ADDR),
    F("lifetime", Tag.LIFETIME, _U32C),
    F("cookie", Tag.COOKIE, _COOKIE),
    F("introducer_key", Tag.INTRODUCER_KEY, _PUBKEY, optional=True),
)
@frozen
class Registered(Message):
    """
    The introducer accepted a registration: the public address it saw, how
    long the registration lives without a heartbeat, and the cookie the host
    presents on later requests.  C{introducer_key} is the introducer's
    static X25519 public key (what L{Proof}s are made with).
    """

    txid: bytes = field(converter=_txid)
    public: Address
    lifetime: int
    cookie: bytes
    introducer_key: bytes | None = None


@_message(
    MessageType.HEARTBEAT,
    F("peer_id", Tag.PEER_ID, _STR),
    F("cookie", Tag.COOKIE, _COOKIE),
    F("padding", Tag.PADDING, _BYTES, optional=True),
)
@frozen
class Heartbeat(Message):
    """
    Refreshes a registration (and the NAT mapping towards the introducer).
    """

    txid: bytes = field(converter=_txid)
    peer_id: str
    cookie: bytes
    padding: bytes | None = None


@_message(
    MessageType.HEARTBEAT_ACK,
    F("public", Tag.PUBLIC, _ADDR),
    F("lifetime", Tag.LIFETIME, _U32C),
)
@frozen
class HeartbeatAck(Message):
    """
    Answer to L{Heartbeat}: the public address as seen now.
    """

    txid: bytes = field(converter=_txid)
    public: Address
    lifetime: int


@_message(
    MessageType.UNREGISTER,
    F("peer_id", Tag.PEER_ID, _STR),
    F("cookie", Tag.COOKIE, _COOKIE),
)
@frozen
class Unregister(Message):
    """
    The host leaves: its registration and sessions go away.  Not answered.
    """

    txid: bytes = field(converter=_txid)
    peer_id: str
    cookie: bytes


@_message(
    MessageType.HOST_SESSION,
    F("peer_id", Tag.PEER_ID, _STR),
    F("cookie", Tag.COOKIE, _COOKIE),
    F("name", Tag.NAME, _STR),
    F("game_id", Tag.GAME_ID, _STR),
    F("max_players", Tag.MAX_PLAYERS, _U16C),
    F("flags", Tag.FLAGS, _FLAGS, optional=True),
    F("properties", Tag.PROPERTY, _PROP, repeated=True),
    F("padding", Tag.PADDING, _BYTES, optional=True),
)
@frozen
class HostSession(Message):
    """
    A registered host offers a named session others can list and join.
    """

    txid: bytes = field(converter=_txid)
    peer_id: str
    cookie: bytes
    name: str
    game_id: str
    max_players: int
    flags: int | None = None
    properties: tuple[tuple[str, str], ...] = _tuple_of()
    padding: bytes | None = None

    @property
    def mesh(self) -> bool:
        return bool((self.flags or 0) & FLAG_MESH)


@_message(MessageType.SESSION_HOSTED, F("session_id", Tag.SESSION_ID, _ID8))
@frozen
class SessionHosted(Message):
    """
    The session exists; C{session_id} names it in L{Unhost} and L{Introduce}.
    """

    txid: bytes = field(converter=_txid)
    session_id: bytes


@_message(
    MessageType.UNHOST,
    F("peer_id", Tag.PEER_ID, _STR),
    F("cookie", Tag.COOKIE, _COOKIE),
    F("session_id", Tag.SESSION_ID, _ID8),
)
@frozen
class Unhost(Message):
    """
    The host withdraws a session.  Not answered unless refused.
    """

    txid: bytes = field(converter=_txid)
    peer_id: str
    cookie: bytes
    session_id: bytes


@_message(
    MessageType.LIST_SESSIONS,
    F("game_id", Tag.GAME_ID, _STR, optional=True),
    F("cursor", Tag.CURSOR, _CURSOR, optional=True),
    F("properties", Tag.PROPERTY, _PROP, repeated=True),
    F("name_prefix", Tag.NAME, _STR, optional=True),
    F("flags", Tag.FLAGS, _FLAGS, optional=True),
    F("limit", Tag.LIMIT, _U16C, optional=True),
    F("padding", Tag.PADDING, _BYTES, optional=True),
)
@frozen
class ListSessions(Message):
    """
    Ask for one page of hosted sessions, optionally of one game, after
    C{cursor} (None: from the start; otherwise the C{cursor} of the previous
    L{SessionList}, passed back unread).

    Filters, all of which a listed session matches: C{properties}, C{(key,
    value)} pairs the session has; C{name_prefix}, how its name starts;
    C{flags} with L{FLAG_OPEN}, a free slot; C{limit}, at most this many
    sessions in the page.

    The answer is never larger than this request (or 1200 bytes), so clients
    pad it to the answer size they want.
    """

    txid: bytes = field(converter=_txid)
    game_id: str | None = None
    cursor: bytes | None = None
    properties: tuple[tuple[str, str], ...] = _tuple_of()
    name_prefix: str | None = None
    flags: int | None = None
    limit: int | None = None
    padding: bytes | None = None


@_message(
    MessageType.SESSION_LIST,
    F("sessions", Tag.SESSION, _SESSION, repeated=True),
    F("cursor", Tag.CURSOR, _CURSOR, optional=True),
    F("total", Tag.TOTAL, _U32C),
)
@frozen
class SessionList(Message):
    """
    One page of sessions.  C{cursor} asks for the next page; None on the
    last.  A page may be empty and still have a cursor: the introducer looks
    at a bounded number of sessions per request, and none of those matched
    the filters.  C{total} counts the sessions of the game (or all), before
    filtering.
    """

    txid: bytes = field(converter=_txid)
    sessions: tuple[SessionInfo, ...] = _tuple_of()
    cursor: bytes | None = None
    total: int = 0


@_message(
    MessageType.INTRODUCE,
    F("peer_id", Tag.PEER_ID, _STR),
    F("cookie", Tag.COOKIE, _COOKIE),
    F("target", Tag.TARGET, _STR, optional=True),
    F("session_id", Tag.SESSION_ID, _ID8, optional=True),
    F("padding", Tag.PADDING, _BYTES, optional=True),
    F("flags", Tag.FLAGS, _FLAGS, optional=True),
)
@frozen
class Introduce(Message):
    """
    Ask to be introduced to a peer (C{target}) or to join a session
    (C{session_id}): exactly one of the two.  C{flags} may carry
    L{FLAG_RELAY_ONLY}.
    """

    txid: bytes = field(converter=_txid)
    peer_id: str
    cookie: bytes
    target: str | None = None
    session_id: bytes | None = None
    padding: bytes | None = None
    flags: int | None = None


@_message(
    MessageType.INTRODUCTION,
    F("intro_id", Tag.INTRO_ID, _ID8),
    F("peer_id", Tag.PEER_ID, _STR),
    F("public", Tag.PUBLIC, _ADDR),
    F("local", Tag.LOCAL, _ADDR, repeated=True),
    F("key", Tag.KEY, _KEY),
    F("flags", Tag.FLAGS, _FLAGS),
    F("session_id", Tag.SESSION_ID, _ID8, optional=True),
    F("nat", Tag.NAT, _FLAGS, optional=True),
    F("lag", Tag.LAG, _U16C, optional=True),
    F("peer_key", Tag.PEER_KEY, _PUBKEY, optional=True),
    F("other_public", Tag.OTHER_PUBLIC, _ADDR, optional=True),
)
@frozen
class Introduction(Message):
    """
    Sent to both sides at once: who the other side is, where to reach it,
    and a fresh key to authenticate the hellos.  The requester's copy echoes
    its request's transaction id and has L{FLAG_INITIATOR} set.

    C{lag}, when the introducer measured both sides' round trips to it, is
    how many milliseconds longer the other side's round trip is than the
    receiver's (0 if not longer): the head start the receiver gives away
    before its first hello, so that hello cannot reach the other side's NAT
    before that side's warm-up (see docs/handshake.md).

    C{other_public}, for a dual-stack peer, is its address of the other
    family (IPv6 beside an IPv4 C{public}, or the reverse) as the
    introducer saw it (see docs/ipv6.md).
    """

    txid: bytes = field(converter=_txid)
    intro_id: bytes
    peer_id: str
    public: Address
    local: tuple[Address, ...] = _tuple_of()
    key: bytes = bytes(KEY_SIZE)
    flags: int = 0
    session_id: bytes | None = None
    nat: int | None = None
    lag: int | None = None
    peer_key: bytes | None = None
    other_public: Address | None = None

    @property
    def initiator(self) -> bool:
        return bool(self.flags & FLAG_INITIATOR)


@_message(
    MessageType.REVERSE_REQUEST,
    F("peer_id", Tag.PEER_ID, _STR),
    F("cookie", Tag.COOKIE, _COOKIE),
    F("target", Tag.TARGET, _STR),
    F("intro_id", Tag.INTRO_ID, _ID8),
)
@frozen
class ReverseRequest(Message):
    """
    Connection reversal: our hellos got no answer; ask the introducer to
    tell C{target} to send first.
    """

    txid: bytes = field(converter=_txid)
    peer_id: str
    cookie: bytes
    target: str
    intro_id: bytes


@_message(
    MessageType.REVERSE,
    F("peer_id", Tag.PEER_ID, _STR),
    F("intro_id", Tag.INTRO_ID, _ID8),
    F("public", Tag.PUBLIC, _ADDR),
)
@frozen
class Reverse(Message):
    """
    From the introducer: C{peer_id} cannot reach you; send to it first
    (its public address as the introducer sees it now).
    """

    txid: bytes = field(converter=_txid)
    peer_id: str
    intro_id: bytes
    public: Address


@_message(
    MessageType.ERROR,
    F("code", Tag.CODE, _U16C),
    F("reason", Tag.REASON, _STR),
)
@frozen
class Error(Message):
    """
    A request was refused; C{txid} is the request's.
    """

    txid: bytes = field(converter=_txid)
    code: int
    reason: str = ""


@_message(MessageType.INTRO_ACK, F("intro_id", Tag.INTRO_ID, _ID8))
@frozen
class IntroAck(Message):
    """
    The target of an introduction confirms it arrived, so the introducer
    stops retransmitting it.  Knowing the random introduction id is the
    proof of receipt.
    """

    txid: bytes = field(converter=_txid)
    intro_id: bytes


@_message(
    MessageType.RELAY_REQUEST,
    F("peer_id", Tag.PEER_ID, _STR),
    F("cookie", Tag.COOKIE, _COOKIE),
    F("target", Tag.TARGET, _STR),
    F("intro_id", Tag.INTRO_ID, _ID8),
    F("padding", Tag.PADDING, _BYTES, optional=True),
)
@frozen
class RelayRequest(Message):
    """
    Ask the introducer for a relay allocation shared with C{target} for the
    introduction C{intro_id} (direct punching is not working).
    """

    txid: bytes = field(converter=_txid)
    peer_id: str
    cookie: bytes
    target: str
    intro_id: bytes
    padding: bytes | None = None


@_message(
    MessageType.RELAY_OFFER,
    F("intro_id", Tag.INTRO_ID, _ID8),
    F("allocation", Tag.ALLOCATION, _ID8),
    F("relay", Tag.PUBLIC, _ADDR),
    F("key", Tag.KEY, _KEY),
    F("side", Tag.SIDE, _FLAGS),
)
@frozen
class RelayOffer(Message):
    """
    Sent to both members: the relay's address (0.0.0.0 means the
    introducer's own host), the allocation id, its key, and which side of
    the allocation (0 or 1) the receiver is.
    """

    txid: bytes = field(converter=_txid)
    intro_id: bytes
    allocation: bytes
    relay: Address
    key: bytes
    side: int


@_message(
    MessageType.CANDIDATE_OFFER,
    F("peer_id", Tag.PEER_ID, _STR),
    F("cookie", Tag.COOKIE, _COOKIE),
    F("target", Tag.TARGET, _STR),
    F("intro_id", Tag.INTRO_ID, _ID8),
    F("candidate", Tag.CANDIDATE, _ADDR),
    F("padding", Tag.PADDING, _BYTES, optional=True),
)
@frozen
class CandidateOffer(Message):
    """
    Tell C{target}, through the introducer, about a candidate learnt after
    the introduction: our TURN relayed address.  Answered by an
    L{IntroAck} echoing the transaction id.
    """

    txid: bytes = field(converter=_txid)
    peer_id: str
    cookie: bytes
    target: str
    intro_id: bytes
    candidate: Address
    padding: bytes | None = None


@_message(
    MessageType.CANDIDATE,
    F("intro_id", Tag.INTRO_ID, _ID8),
    F("peer_id", Tag.PEER_ID, _STR),
    F("candidate", Tag.CANDIDATE, _ADDR),
    F("allocation", Tag.ALLOCATION, _ID8),
)
@frozen
class Candidate(Message):
    """
    From the introducer: C{peer_id}'s TURN relayed address for the
    introduction C{intro_id}.  Acknowledged with L{IntroAck} carrying
    C{allocation} (a push id).
    """

    txid: bytes = field(converter=_txid)
    intro_id: bytes
    peer_id: str
    candidate: Address
    allocation: bytes


@_message(MessageType.PROBE, F("intro_id", Tag.INTRO_ID, _ID8))
@frozen
class Probe(Message):
    """
    A warm-up packet, sent with a short TTL to open our own NAT and
    firewall towards a candidate.  Receivers ignore it.
    """

    txid: bytes = field(converter=_txid)
    intro_id: bytes


@_message(
    MessageType.HELLO,
    F("intro_id", Tag.INTRO_ID, _ID8),
    F("peer_id", Tag.PEER_ID, _STR),
    F("conn_id", Tag.CONN_ID, _U16C),
    F("candidates", Tag.CANDIDATE, _ADDR, repeated=True),
    F("sequence", Tag.SEQUENCE, _U32C, optional=True),
    F("noise", Tag.NOISE, _BYTES, optional=True),
)
@frozen
class Hello(Message):
    """
    Handshake probe to one candidate of the peer, authenticated with the
    introduction key.  C{conn_id} is the sender's id for data sent to it.
    """

    txid: bytes = field(converter=_txid)
    intro_id: bytes
    peer_id: str
    conn_id: int
    candidates: tuple[Address, ...] = _tuple_of()
    sequence: int | None = None
    noise: bytes | None = None


@_message(
    MessageType.HELLO_ACK,
    F("intro_id", Tag.INTRO_ID, _ID8),
    F("peer_id", Tag.PEER_ID, _STR),
    F("conn_id", Tag.CONN_ID, _U16C),
    F("observed", Tag.OBSERVED, _ADDR),
    F("noise", Tag.NOISE, _BYTES, optional=True),
)
@frozen
class HelloAck(Message):
    """
    Answer to a L{Hello}, sent to the address the hello came from; echoes
    the hello's transaction id and says where the hello was seen from.
    """

    txid: bytes = field(converter=_txid)
    intro_id: bytes
    peer_id: str
    conn_id: int
    observed: Address
    noise: bytes | None = None


@_message(
    MessageType.KEEPALIVE,
    F("intro_id", Tag.INTRO_ID, _ID8),
    F("sequence", Tag.SEQUENCE, _U32C),
)
@frozen
class Keepalive(Message):
    """
    Keeps an idle path's NAT mappings open and proves the peer is alive.
    """

    txid: bytes = field(converter=_txid)
    intro_id: bytes
    sequence: int


@_message(
    MessageType.CLOSE,
    F("intro_id", Tag.INTRO_ID, _ID8),
    F("code", Tag.CODE, _U16C, optional=True),
    F("reason", Tag.REASON, _STR, optional=True),
)
@frozen
class Close(Message):
    """
    The sender closed the connection, C{code} (a close code) and
    C{reason} saying why.
    """

    txid: bytes = field(converter=_txid)
    intro_id: bytes
    code: int | None = None
    reason: str | None = None


CHALLENGE_SIZE = 16
PROOF_SIZE = 16
_CHALLENGE = _fixed(CHALLENGE_SIZE, "challenge")
_PROOF = _fixed(PROOF_SIZE, "proof")


@_message(
    MessageType.CHALLENGE,
    F("challenge", Tag.CHALLENGE, _CHALLENGE),
    F("public", Tag.PUBLIC, _ADDR),
    F("introducer_key", Tag.INTRODUCER_KEY, _PUBKEY, optional=True),
)
@frozen
class Challenge(Message):
    """
    The introducer's answer to a request that would move a registration to
    a new address (or take a name back after a restart): nothing moved yet;
    prove, from C{public} (where this was sent), that you hold the key.
    Echoes the request's transaction id.  C{introducer_key} is there when
    the request left room for it.
    """

    txid: bytes = field(converter=_txid)
    challenge: bytes
    public: Address
    introducer_key: bytes | None = None


@_message(
    MessageType.PROOF,
    F("peer_id", Tag.PEER_ID, _STR),
    F("challenge", Tag.CHALLENGE, _CHALLENGE),
    F("proof", Tag.PROOF, _PROOF),
    F("padding", Tag.PADDING, _BYTES, optional=True),
)
@frozen
class Proof(Message):
    """
    Answer to a L{Challenge}, from the challenged address: L{proof_tag}.
    Answered like the challenged request (L{Registered} for a
    registration, L{HeartbeatAck} for anything else).
    """

    txid: bytes = field(converter=_txid)
    peer_id: str
    challenge: bytes
    proof: bytes
    padding: bytes | None = None


_PROOF_LABEL = b"p2pnet/1 registration proof"


def proof_tag(key: bytes, challenge: bytes, peer_id: str, public: Address) -> bytes:
    """
    The proof for a L{Challenge}: keyed BLAKE2s-128 over the challenge, the
    peer id and the challenged address, under C{key}: the X25519 shared
    secret of the peer's and the introducer's static keys (or, for a
    registration without a key, its cookie).
    """
    peer = _enc_str(peer_id)
    data = b"".join((_PROOF_LABEL, challenge, bytes((len(peer),)), peer, _enc_addr(public)))
    return hashlib.blake2s(data, key=key, digest_size=PROOF_SIZE).digest()


@frozen
class Data:
    """
    An application datagram on an established path (compact framing).

    @ivar conn_id: the receiver's connection id.
    @ivar payload: the application bytes (without any authentication tag).
    """

    conn_id: int
    payload: bytes
    TYPE: ClassVar[MessageType] = MessageType.DATA


# --- encoding ----------------------------------------------------------------


def _field(tag: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError("field too long")
    return _TLV.pack(tag, len(value)) + value


def encode(message: Message, auth_key: bytes | Mac | None = None) -> bytes:
    """
    Encode a control message; with C{auth_key}, append an C{AUTH} field.

    @raise ValueError: if a field value cannot be represented.
    """
    parts = [bytes((MAGIC, message.TYPE)), message.txid]
    for spec in message.FIELDS:
        value = getattr(message, spec.name)
        encoder = spec.codec[0]
        if spec.repeated:
            parts.extend(_field(spec.tag, encoder(v)) for v in value)
        elif value is None:
            if not spec.optional:
                raise ValueError(f"{type(message).__name__}.{spec.name} is required")
        else:
            parts.append(_field(spec.tag, encoder(value)))
    raw = b"".join(parts)
    if auth_key is not None:
        raw = sign(raw, auth_key)
    return raw


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class Mac:
    """
    HMAC-SHA256 under one key, with the key's inner and outer pads hashed
    once (RFC 2104, section 4): the same digests as C{hmac.digest(key, m,
    "sha256")}, at about 0.6 instead of 1.5 microseconds for a short
    message.  For a key that signs many control messages (the
    introducer's secret).  Costs two hash states (a few hundred bytes).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def digest(self, message: bytes) -> bytes:
        """
        The full 32-byte HMAC-SHA256 of C{message}.
        """
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class DatagramMac:
    """
    The 8-byte tag of data datagrams and relay frames under one key:
    keyed BLAKE2s with an 8-byte digest (RFC 7693; the digest length is
    part of BLAKE2's parameter block, so this is not a truncation).  The
    state that has absorbed the key is kept and copied per datagram:
    about 0.3 microseconds for a game-sized datagram, half of
    HMAC-SHA256 even with L{Mac}.  For keys used for many datagrams: a
    connection's data key, a relay allocation's key.
    """

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        self._keyed = hashlib.blake2s(key=key, digest_size=DATA_TAG_SIZE)

    def tag(self, message: bytes) -> bytes:
        """
        The 8-byte tag of C{message}.
        """
        state = self._keyed.copy()
        state.update(message)
        return state.digest()


def datagram_tag(key: bytes | DatagramMac, message: bytes) -> bytes:
    """
    The 8-byte tag of C{message} under C{key} (see L{DatagramMac}).
    """
    if type(key) is DatagramMac:
        return key.tag(message)
    return hashlib.blake2s(message, key=key, digest_size=DATA_TAG_SIZE).digest()


def _hmac(key: bytes | Mac, message: bytes) -> bytes:
    if type(key) is Mac:
        return key.digest(message)
    return hmac.digest(key, message, "sha256")


def sign(raw: bytes, key: bytes | Mac) -> bytes:
    """
    Append an C{AUTH} field to an encoded control message.
    """
    head = raw + _TLV.pack(Tag.AUTH, AUTH_SIZE)
    return head + _hmac(key, head)[:AUTH_SIZE]


def is_signed(raw: bytes) -> bool:
    """
    Whether an encoded control message ends with an C{AUTH} field.
    """
    return (
        len(raw) >= HEADER_SIZE + 3 + AUTH_SIZE
        and raw[-AUTH_SIZE - 3] == Tag.AUTH
        and raw[-AUTH_SIZE - 2 : -AUTH_SIZE] == b"\x00\x10"
    )


def verify(raw: bytes, key: bytes | Mac) -> bool:
    """
    Whether C{raw} ends with an C{AUTH} field that verifies under C{key}.
    """
    if not is_signed(raw):
        return False
    expected = _hmac(key, raw[:-AUTH_SIZE])[:AUTH_SIZE]
    return hmac.compare_digest(expected, raw[-AUTH_SIZE:])


def encode_data(conn_id: int, payload: bytes, key: bytes | DatagramMac | None = None) -> bytes:
    """
    Frame an application datagram; with C{key}, append a data tag.
    """
    raw = bytes((MAGIC, MessageType.DATA, conn_id >> 8, conn_id & 0xFF)) + payload
    if key is not None:
        raw += datagram_tag(key, raw)
    return raw


def verify_data(raw: bytes, key: bytes | DatagramMac) -> bytes | None:
    """
    Check a data datagram's tag; return the payload, or None if it fails.
    """
    if len(raw) < DATA_HEADER_SIZE + DATA_TAG_SIZE:
        return None
    body = raw[:-DATA_TAG_SIZE]
    expected = datagram_tag(key, body)
    if not hmac.compare_digest(expected, raw[-DATA_TAG_SIZE:]):
        return None
    return body[DATA_HEADER_SIZE:]


# --- decoding ----------------------------------------------------------------


_AUTH_TAG = int(Tag.AUTH)


def _parse_fields(raw: bytes, start: int) -> dict[int, list[bytes]]:
    fields: dict[int, list[bytes]] = {}
    offset = start
    end = len(raw)
    while offset < end:
        if offset + 3 > end:
            raise MalformedMessage("truncated field header")
        tag, length = _TLV.unpack_from(raw, offset)
        offset += 3
        if offset + length > end:
            raise MalformedMessage(f"field {tag:#x} runs past the end")
        if tag == _AUTH_TAG and offset + length != end:
            raise MalformedMessage("AUTH field is not last")
        fields.setdefault(tag, []).append(raw[offset : offset + length])
        offset += length
    return fields


def _one(fields: dict[int, list[bytes]], tag: int) -> bytes:
    values = fields.get(tag)
    if not values:
        raise MalformedMessage(f"missing field {Tag(tag).name}")
    if len(values) > 1:
        raise MalformedMessage(f"repeated field {Tag(tag).name}")
    return values[0]


def peek_type(raw: bytes) -> int | None:
    """
    The message type of a p2pnet datagram, or None if C{raw} is not one.
    """
    if len(raw) < 2 or raw[0] != MAGIC:
        return None
    return raw[1]


def decode(raw: bytes) -> Message | Data:
    """
    Decode one p2pnet datagram.

    @raise MalformedMessage: for anything that is not a well-formed message;
        the message says what was wrong.
    """
    if not isinstance(raw, bytes):
        raise MalformedMessage("datagram must be bytes")
    if len(raw) < 2:
        raise MalformedMessage("datagram too short")
    if raw[0] != MAGIC:
        if raw[0] >> 4 == MAGIC >> 4:
            raise MalformedMessage(f"unsupported p2pnet version {raw[0] & 0xF}")
        raise MalformedMessage("not a p2pnet datagram")
    type_ = raw[1]
    if type_ == MessageType.DATA:
        if len(raw) < DATA_HEADER_SIZE:
            raise MalformedMessage("data datagram too short")
        return Data((raw[2] << 8) | raw[3], raw[DATA_HEADER_SIZE:])
    cls = _BY_TYPE.get(type_)
    if cls is None:
        raise MalformedMessage(f"unknown message type {type_:#x}")
    if len(raw) < HEADER_SIZE:
        raise MalformedMessage("datagram shorter than the header")
    fields = _parse_fields(raw, HEADER_SIZE)
    kwargs: dict[str, Any] = {"txid": raw[2:HEADER_SIZE]}
    for tag, name, decoder, repeated, optional in cls.DECODING:
        values = fields.get(tag)
        if repeated:
            kwargs[name] = tuple(decoder(v) for v in values) if values else ()
        elif values is None:
            if not optional:
                raise MalformedMessage(f"{cls.__name__} lacks {Tag(tag).name}")
        elif len(values) > 1:
            raise MalformedMessage(f"{cls.__name__} repeats {Tag(tag).name}")
        else:
            kwargs[name] = decoder(values[0])
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise MalformedMessage(f"bad {cls.__name__}: {e}") from None


#: How far clients pad each request so that, without a shared secret, the
#: introducer's answer is never larger than the request (see docs/protocol.md).
PADDED_SIZE = {
    MessageType.REGISTER: 96,
    MessageType.HEARTBEAT: 56,
    MessageType.HOST_SESSION: 64,
    MessageType.INTRODUCE: 400,
    MessageType.LIST_SESSIONS: MAX_DATAGRAM,
    MessageType.RELAY_REQUEST: 160,
    MessageType.CANDIDATE_OFFER: 160,
    MessageType.PROOF: 96,
}


# --- the heartbeat fast path ---------------------------------------------------
#
# Heartbeats are most of an introducer's traffic (one per registered host
# every 15 s or so).  These two functions handle them without building
# message objects; they agree with decode() and encode() on everything
# they accept (tests/test_wire.py checks that), and parse_heartbeat()
# answers None for anything but the layout encode() produces, so the caller
# falls back to decode() and its error reasons.

_HEARTBEAT_ACK_HEAD = bytes((MAGIC, MessageType.HEARTBEAT_ACK))


_HEARTBEAT_TYPE = int(MessageType.HEARTBEAT)
_PEER_ID_TAG = int(Tag.PEER_ID)
_PADDING_TAG = int(Tag.PADDING)
_COOKIE_FIELD = _TLV.pack(Tag.COOKIE, 8)
_AUTH_FIELD = _TLV.pack(Tag.AUTH, AUTH_SIZE)


def parse_heartbeat(raw: bytes) -> tuple[bytes, str, bytes] | None:
    """
    The C{(txid, peer_id, cookie)} of a L{Heartbeat} laid out as
    L{encode} lays it out (peer id, cookie, optional padding, optional
    AUTH field last), or None for anything else, valid or not.
    """
    end = len(raw)
    # 10-byte header, then PEER_ID (3 + n bytes) and COOKIE (3 + 8 bytes).
    if end < 24 or raw[0] != MAGIC or raw[1] != _HEARTBEAT_TYPE or raw[10] != _PEER_ID_TAG:
        return None
    length = (raw[11] << 8) | raw[12]
    cookie_at = 13 + length
    offset = cookie_at + 11
    if length > MAX_STRING or offset > end or raw[cookie_at : cookie_at + 3] != _COOKIE_FIELD:
        return None
    if offset < end and raw[offset] == _PADDING_TAG:
        if offset + 3 > end:
            return None
        offset += 3 + ((raw[offset + 1] << 8) | raw[offset + 2])
    if offset != end and not (offset + 3 + AUTH_SIZE == end and raw[offset : offset + 3] == _AUTH_FIELD):
        return None
    try:
        peer_id = raw[13:cookie_at].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return raw[2:10], peer_id, raw[cookie_at + 3 : cookie_at + 11]


def heartbeat_ack_tail(public: Address, lifetime: int) -> bytes:
    """
    What follows the transaction id in C{encode(HeartbeatAck(txid, public,
    lifetime))}: the same for every heartbeat of a registration, so a
    server can keep it (see L{finish_heartbeat_ack}).
    """
    address = _enc_addr(public)
    return b"".join((_TLV.pack(Tag.PUBLIC, len(address)), address, _TLV.pack(Tag.LIFETIME, 4), _U32.pack(lifetime)))


def finish_heartbeat_ack(txid: bytes, tail: bytes, auth_key: bytes | Mac | None = None) -> bytes:
    """
    A L{HeartbeatAck} from its transaction id and L{heartbeat_ack_tail}.
    """
    if len(txid) != TXID_SIZE:
        raise ValueError("txid must be 8 bytes")
    raw = _HEARTBEAT_ACK_HEAD + txid + tail
    if auth_key is not None:
        raw = sign(raw, auth_key)
    return raw


def encode_heartbeat_ack(
    txid: bytes, public: Address, lifetime: int, auth_key: bytes | Mac | None = None
) -> bytes:
    """
    C{encode(HeartbeatAck(txid, public, lifetime), auth_key)}, faster.
    """
    return finish_heartbeat_ack(txid, heartbeat_ack_tail(public, lifetime), auth_key)


def padded(message: Message, size: int | None = None) -> Message:
    """
    The message with a C{padding} field that brings its encoded size
    (without any AUTH field) up to C{size} (default: L{PADDED_SIZE} for
    its type).
    """
    import attrs

    if size is None:
        size = PADDED_SIZE.get(message.TYPE, 0)
    if not any(spec.name == "padding" for spec in message.FIELDS):
        return message
    current = len(encode(attrs.evolve(message, padding=None)))
    missing = size - current
    if missing <= 0:
        return attrs.evolve(message, padding=None)
    return attrs.evolve(message, padding=bytes(max(0, missing - 3)))



# --- relay framing -------------------------------------------------------------
#
#   0      1      2 ........ 9   10     11 ...        -8 ... -1
#   0xD1   0x50   allocation     side   inner datagram   tag
#
# RELAYED goes from a member to the relay, RELAY_FORWARD from the relay to
# the other member; the relay only flips the type byte.  The tag is a
# truncated HMAC-SHA256 with the allocation key over bytes 2..-8, so both
# legs are authenticated without the relay re-signing anything.

RELAY_HEADER_SIZE = 11


def relay_key(secret: bytes, allocation: bytes) -> bytes:
    """
    The key of an allocation, derived from the relay's secret (so a relay
    running apart from the introducer needs no shared state beyond it).
    """
    return hmac.digest(secret, b"p2pnet relay " + allocation, "sha256")[:KEY_SIZE]


def encode_relayed(allocation: bytes, side: int, inner: bytes, key: bytes | DatagramMac) -> bytes:
    """
    Wrap a p2pnet datagram for the relay.
    """
    body = allocation + bytes((side,)) + inner
    return bytes((MAGIC, MessageType.RELAYED)) + body + datagram_tag(key, body)


def relayed_fields(raw: bytes) -> tuple[bytes, int] | None:
    """
    The allocation id and side of a relay datagram, or None if too short.
    """
    if len(raw) < RELAY_HEADER_SIZE + DATA_TAG_SIZE:
        return None
    return raw[2:10], raw[10]


def verify_relayed(raw: bytes, key: bytes | DatagramMac) -> bytes | None:
    """
    The inner datagram of a relay datagram whose tag verifies, else None.
    """
    if len(raw) < RELAY_HEADER_SIZE + DATA_TAG_SIZE:
        return None
    body = raw[2:-DATA_TAG_SIZE]
    if not hmac.compare_digest(datagram_tag(key, body), raw[-DATA_TAG_SIZE:]):
        return None
    return body[9:]



#: NAT behaviour codes carried (two per byte: mapping high, filtering low)
#: in the C{NAT} field.
NAT_BEHAVIOURS = (
    "unknown",
    "endpoint-independent",
    "address-dependent",
    "address-and-port-dependent",
    "endpoint-dependent",
)


def pack_nat(mapping: str, filtering: str) -> int:
    """
    Pack two behaviour names (see L{NAT_BEHAVIOURS}) into a C{NAT} byte.
    """
    def code(name: str) -> int:
        return NAT_BEHAVIOURS.index(name) if name in NAT_BEHAVIOURS else 0

    return code(mapping) << 4 | code(filtering)


def unpack_nat(value: int | None) -> tuple[str, str]:
    """
    The C{(mapping, filtering)} names of a C{NAT} byte (unknown if None).
    """
    if value is None:
        return ("unknown", "unknown")

    def name(code: int) -> str:
        return NAT_BEHAVIOURS[code] if code < len(NAT_BEHAVIOURS) else "unknown"

    return (name(value >> 4), name(value & 0xF))
