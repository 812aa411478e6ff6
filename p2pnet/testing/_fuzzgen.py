"""
Valid datagrams and the mutations a hostile network makes of them: the
input half of the fuzz harness (L{p2pnet.testing._fuzz}).

A L{Seed} is one valid datagram with what the mutator needs to know about
its layout: where its fields (TLVs, STUN attributes) start and how long
their values are, which byte ranges hold integers, and how to re-sign it
(a control message's C{AUTH} field, a data tag, a relay tag, a STUN
FINGERPRINT and header length) so that mutated content also reaches the
code behind the authentication check, as it would from a peer that holds
the key.  L{Mutator} turns seeds into mutated datagrams, fast enough for
a million of them in a few minutes.
"""

from __future__ import annotations

import random
import struct
import zlib
from typing import Callable

from attrs import frozen

from p2pnet import stun, wire

#: How a seed is laid out: TLVs of control messages (1-byte tag, 2-byte
#: length), STUN attributes (2-byte type, 2-byte length, padded to 4), or
#: no fields.
CONTROL = "control"
STUN = "stun"
OPAQUE = "opaque"

_U16 = struct.Struct("!H")


@frozen
class Seed:
    """
    One valid datagram to mutate.

    @ivar name: what it is (for reports and the regression corpus).
    @ivar raw: its bytes; for a seed with C{sign}, the bytes before signing.
    @ivar layout: L{CONTROL}, L{STUN} or L{OPAQUE}.
    @ivar fields: C{(start, end, value_start)} of each field.
    @ivar ints: C{(offset, size)} of integer values worth pushing to
        their extremes.
    @ivar sign: C{bytes -> bytes} making a datagram from (mutated) unsigned
        bytes as a key holder would, or None.
    @ivar sources: where this datagram would come from (the harness
        spoofs these most of the time, any source otherwise).
    """

    name: str
    raw: bytes
    layout: str = OPAQUE
    fields: tuple = ()
    ints: tuple = ()
    sign: Callable[[bytes], bytes] | None = None
    sources: tuple = ()

    def datagram(self) -> bytes:
        """The seed as sent, unmutated."""
        return self.sign(self.raw) if self.sign is not None else self.raw

    def sent_from(self, *sources: tuple) -> Seed:
        """This seed, usually claiming one of C{sources} as its source."""
        import attrs

        return attrs.evolve(self, sources=sources)


def control_fields(raw: bytes, start: int = wire.HEADER_SIZE) -> tuple:
    """
    The C{(start, end, value_start)} of each TLV of a control message.
    """
    fields = []
    offset = start
    while offset + 3 <= len(raw):
        length = _U16.unpack_from(raw, offset + 1)[0]
        fields.append((offset, offset + 3 + length, offset + 3))
        offset += 3 + length
    return tuple(fields)


def stun_fields(raw: bytes) -> tuple:
    """
    The C{(start, end, value_start)} of each attribute of a STUN message.
    """
    fields = []
    offset = stun.HEADER_LENGTH
    while offset + 4 <= len(raw):
        length = _U16.unpack_from(raw, offset + 2)[0]
        end = offset + 4 + length + (-length % 4)
        fields.append((offset, end, offset + 4))
        offset = end
    return tuple(fields)


def control_seed(name: str, message: wire.Message, key: bytes | None = None) -> Seed:
    """
    A seed from a control message; with C{key}, re-signed after mutation
    (a sender holding the key).
    """
    raw = wire.encode(message)
    fields = control_fields(raw)
    ints = tuple((value, end - value) for _, end, value in fields if end - value in (1, 2, 4))
    mac = wire.Mac(key) if key is not None else None
    sign = (lambda body: wire.sign(body, mac)) if mac is not None else None
    return Seed(f"{name}+auth" if key is not None else name, raw, CONTROL, fields, ints, sign)


def data_seed(name: str, conn_id: int, payload: bytes, key: bytes | None) -> Seed:
    """
    A data datagram; with C{key}, tagged (and re-tagged after mutation).
    """
    raw = wire.encode_data(conn_id, payload)
    sign = None
    if key is not None:
        mac = wire.DatagramMac(key)
        sign = lambda body: body + mac.tag(body)  # noqa: E731
    return Seed(name, raw, OPAQUE, (), ((2, 2),), sign)


def relay_seed(name: str, allocation: bytes, side: int, inner: bytes, key: bytes, resign: bool,
               kind: int = wire.MessageType.RELAYED) -> Seed:
    """
    A relay frame (C{RELAYED} to a relay, C{RELAY_FORWARD} from one); with
    C{resign}, re-tagged after mutation (a member holding the key).
    """
    mac = wire.DatagramMac(key)
    framed = wire.encode_relayed(allocation, side, inner, mac)
    framed = bytes((wire.MAGIC, kind)) + framed[2:]
    if not resign:
        return Seed(name, framed, OPAQUE, (), ((2, 8), (10, 1)))
    body = framed[: -wire.DATA_TAG_SIZE]
    return Seed(name + "+tag", body, OPAQUE, (), ((2, 8), (10, 1)),
                lambda b: b + mac.tag(b[2:]))


def stun_seed(name: str, message: stun.StunMessage, fingerprint: bool = False, refit: bool = False) -> Seed:
    """
    A STUN/TURN message; with C{refit}, mutated copies get their header
    length (and FINGERPRINT, if C{fingerprint}) fixed again, so they get
    past framing checks into attribute parsing.
    """
    raw = stun.encode(message, fingerprint=fingerprint)
    body = raw[:-8] if fingerprint else raw
    fields = stun_fields(body)
    ints = ((0, 2),) + tuple((value, end - value) for _, end, value in fields if end - value in (4, 8))
    sign = None
    if refit:
        sign = _stun_refit_fingerprint if fingerprint else _stun_refit
    return Seed(name + ("+refit" if refit else ""), body if refit else raw, STUN, fields, ints, sign)


def _stun_refit(body: bytes) -> bytes:
    if len(body) < stun.HEADER_LENGTH:
        return body
    return body[:2] + _U16.pack((len(body) - stun.HEADER_LENGTH) & 0xFFFF) + body[4:]


def _stun_refit_fingerprint(body: bytes) -> bytes:
    if len(body) < stun.HEADER_LENGTH:
        return body
    head = body[:2] + _U16.pack((len(body) + 8 - stun.HEADER_LENGTH) & 0xFFFF) + body[4:]
    crc = (zlib.crc32(head) ^ 0x5354554E) & 0xFFFFFFFF
    return head + struct.pack("!HHI", stun.AttributeType.FINGERPRINT, 4, crc)


# -- the mutator ------------------------------------------------------------------

_EXTREMES = {
    1: (b"\x00", b"\x01", b"\x02", b"\x7f", b"\x80", b"\xfe", b"\xff"),
    2: (b"\x00\x00", b"\x00\x01", b"\x7f\xff", b"\x80\x00", b"\xff\xfe", b"\xff\xff"),
    4: (b"\x00\x00\x00\x00", b"\x00\x00\x00\x01", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00",
        b"\xff\xff\xff\xfe", b"\xff\xff\xff\xff"),
    8: (bytes(8), b"\xff" * 8, b"\x00" * 7 + b"\x01"),
}

#: Replacement values for a field: empty, limits of strings, bad UTF-8, and
#: addresses a socket refuses or a peer must not be sent to.
_VALUES = (
    b"",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"x" * 64,
    b"x" * 65,
    b"x" * 255,
    b"x" * 256,
    b"\x00" * 255,
    b"'\"\\" * 85,
    "\u00e9".encode() * 127,
    b"\x04\x00\x00\x7f\x00\x63\x01",  # 127.0.99.1:0
    b"\x04\xff\xff\xff\xff\xff\xff",  # 255.255.255.255:65535
    b"\x04\x00\x35\x00\x00\x00\x00",  # 0.0.0.0:53
    b"\x04\x13\x88\xe0\x00\x00\x01",  # 224.0.0.1:5000
    b"\x04\x13\x88\x7f\x00\x00\x01",  # 127.0.0.1:5000
    b"\x04\x13\x88\xc0\x00\x02\x0a",  # 192.0.2.10:5000
    b"\x06\x13\x88" + bytes(15) + b"\x01",  # [::1]:5000
    b"\x06\x00\x00" + b"\xff" * 16,
    b"\x05\x13\x88\x7f\x00\x00\x01",
    b"\x04\x13\x88\x7f\x00\x00",
)

_LENGTHS = (0, 1, 2, 3, 4, 7, 8, 16, 19, 32, 255, 256, 0x7FFF, 0xFFFE, 0xFFFF)


class Mutator:
    """
    Mutates seeds: bit flips, byte insertions and deletions, truncation,
    field length corruption, field duplication, removal and reordering,
    tag and type changes, replaced values, extreme integers, and splices
    of two datagrams.  Never returns a seed's own bytes unchanged, nor any
    of C{avoid}: replaying a captured datagram is another attack.

    @param rng: the only source of randomness (seed it for repeatable runs).
    @param avoid: datagrams never to return (the seeds as sent).
    """

    def __init__(self, rng: random.Random, avoid=frozenset()) -> None:
        self.rng = rng
        self.avoid = avoid
        self._structural = (
            self._field_length, self._field_length, self._duplicate, self._remove, self._swap,
            self._retag, self._value, self._value, self._extreme, self._extreme, self._retype,
        )
        self._bytewise = (
            self._flip, self._flip, self._flip, self._insert, self._delete, self._truncate,
            self._overwrite, self._append,
        )

    def mutate(self, seed: Seed, other: Seed) -> bytes:
        """
        One mutated datagram made from C{seed} (and, when spliced, C{other}).
        """
        rng = self.rng
        raw = seed.raw
        pick = rng.random()
        if pick < 0.1:
            raw = self._splice(raw, other.datagram())
        elif pick < 0.55 and (seed.fields or seed.ints):
            raw = rng.choice(self._structural)(seed, raw)
        else:
            raw = rng.choice(self._bytewise)(raw)
        if rng.random() < 0.3:
            raw = rng.choice(self._bytewise)(raw)
        if seed.sign is not None and rng.random() < 0.75:
            raw = seed.sign(raw)
        while raw in self.avoid or raw == seed.raw:
            raw = self._flip(raw) if raw else b"\x00"
        return raw

    # -- structure-aware, on the seed's own layout -------------------------

    def _field(self, seed: Seed):
        return self.rng.choice(seed.fields) if seed.fields else None

    def _field_length(self, seed: Seed, raw: bytes) -> bytes:
        field = self._field(seed)
        if field is None:
            return self._extreme(seed, raw)
        start, end, value = field
        at = start + 1 if seed.layout == CONTROL else start + 2
        length = end - value
        new = self.rng.choice(_LENGTHS + (length + 1, max(0, length - 1), len(raw) - value + 1))
        return raw[:at] + _U16.pack(new & 0xFFFF) + raw[at + 2 :]

    def _duplicate(self, seed: Seed, raw: bytes) -> bytes:
        field = self._field(seed)
        if field is None:
            return self._flip(raw)
        start, end, _ = field
        copy = raw[start:end]
        at = self.rng.choice(seed.fields)[self.rng.randrange(2)]
        return raw[:at] + copy * self.rng.choice((1, 1, 2, 40)) + raw[at:]

    def _remove(self, seed: Seed, raw: bytes) -> bytes:
        field = self._field(seed)
        if field is None:
            return self._delete(raw)
        return raw[: field[0]] + raw[field[1] :]

    def _swap(self, seed: Seed, raw: bytes) -> bytes:
        if len(seed.fields) < 2:
            return self._duplicate(seed, raw)
        a, b = sorted(self.rng.sample(range(len(seed.fields)), 2))
        fa, fb = seed.fields[a], seed.fields[b]
        return raw[: fa[0]] + raw[fb[0] : fb[1]] + raw[fa[1] : fb[0]] + raw[fa[0] : fa[1]] + raw[fb[1] :]

    def _retag(self, seed: Seed, raw: bytes) -> bytes:
        field = self._field(seed)
        if field is None:
            return self._flip(raw)
        start = field[0]
        if seed.layout == CONTROL:
            tag = self.rng.choice((self.rng.randrange(256), self.rng.choice(_TAGS)))
            return raw[:start] + bytes((tag,)) + raw[start + 1 :]
        kind = self.rng.choice((self.rng.randrange(0x10000), self.rng.choice(_STUN_TYPES)))
        return raw[:start] + _U16.pack(kind) + raw[start + 2 :]

    def _value(self, seed: Seed, raw: bytes) -> bytes:
        field = self._field(seed)
        if field is None:
            return self._extreme(seed, raw)
        start, end, value = field
        new = self.rng.choice(_VALUES)
        if seed.layout == CONTROL:
            return raw[:start + 1] + _U16.pack(len(new)) + new + raw[end:]
        padded = new + bytes(-len(new) % 4)
        return raw[: start + 2] + _U16.pack(len(new)) + padded + raw[end:]

    def _extreme(self, seed: Seed, raw: bytes) -> bytes:
        if not seed.ints:
            return self._flip(raw)
        offset, size = self.rng.choice(seed.ints)
        if size not in _EXTREMES:
            return self._flip(raw)
        return raw[:offset] + self.rng.choice(_EXTREMES[size]) + raw[offset + size :]

    def _retype(self, seed: Seed, raw: bytes) -> bytes:
        if seed.layout == STUN:
            return _U16.pack(self.rng.choice(_STUN_MESSAGE_TYPES)) + raw[2:]
        return raw[:1] + bytes((self.rng.choice(_TYPES),)) + raw[2:]

    # -- bytewise ----------------------------------------------------------

    def _splice(self, raw: bytes, other: bytes) -> bytes:
        rng = self.rng
        return raw[: rng.randrange(len(raw) + 1)] + other[rng.randrange(len(other) + 1) :]

    def _flip(self, raw: bytes) -> bytes:
        if not raw:
            return b"\x01"
        data = bytearray(raw)
        rng = self.rng
        for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)

    def _insert(self, raw: bytes) -> bytes:
        rng = self.rng
        at = rng.randrange(len(raw) + 1)
        return raw[:at] + rng.randbytes(rng.choice((1, 1, 2, 3, 4, 16, 300))) + raw[at:]

    def _delete(self, raw: bytes) -> bytes:
        if not raw:
            return raw
        rng = self.rng
        at = rng.randrange(len(raw))
        return raw[:at] + raw[at + rng.choice((1, 1, 2, 3, 4, 16)) :]

    def _truncate(self, raw: bytes) -> bytes:
        return raw[: self.rng.randrange(len(raw) + 1)]

    def _overwrite(self, raw: bytes) -> bytes:
        if not raw:
            return b"\xff"
        at = self.rng.randrange(len(raw))
        return raw[:at] + bytes((self.rng.choice((0, 0xFF, 0x7F, 0x80, 0xD1, 0x40, 0x50)),)) + raw[at + 1 :]

    def _append(self, raw: bytes) -> bytes:
        rng = self.rng
        return raw + rng.randbytes(rng.choice((1, 3, 8, 16, 1500)))


_TAGS = tuple(int(t) for t in wire.Tag)
_TYPES = tuple(int(t) for t in wire.MessageType) + (0x00, 0x42, 0x52, 0xFF)
_STUN_TYPES = tuple(int(t) for t in stun.AttributeType)
_STUN_MESSAGE_TYPES = (0x0001, 0x0101, 0x0111, 0x0003, 0x0004, 0x0008, 0x0009, 0x0016, 0x0017,
                       0x0002, 0x0011, 0x3FFF, 0x0000, 0xC001)
