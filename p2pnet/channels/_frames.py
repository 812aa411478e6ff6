"""
The channel layer's frames: the bytes inside a sealed packet's plaintext
that carry messages, fragments, packet numbers and acknowledgements.

Every frame starts with its type byte (0x10-0x3F, the range the secure
layer leaves to channels) and says its own length, so frames can be
coalesced and mixed with the secure layer's frames.  Integers are big
endian.  See docs/channels.md for the table.

  - C{0x10} L{Unreliable}: channel u8, length u16, data (4-byte header);
  - C{0x11} L{Message}: channel u8, sequence u16, length u16, data
    (6-byte header), a whole message on a sequenced or reliable channel;
  - C{0x12} L{Fragment}: channel u8, sequence u16, total u32, offset u32,
    length u16, data (14-byte header), one piece of a message too big for
    one datagram;
  - C{0x13} L{PacketNumber}: u32, the low 32 bits of the sender's packet
    number (first frame of every packet the channel machine builds);
  - C{0x14} L{Ack}: largest u32, ack delay u16 (units of 16 us), range
    count u8, first range u16, then count times (gap u16, length u16);
  - C{0x15} L{Probe}: no body; makes a packet ack-eliciting (loss probes
    and path MTU probes, the latter padded with the secure layer's 0x00);
  - C{0x16} L{AckNow}: no body; asks for an ACK at once instead of after
    the receiver's usual count or delay (the sender's window is full).

L{parse} raises L{MalformedMessage} and nothing else.
"""

from __future__ import annotations

import struct
from typing import Union

from attrs import field, frozen

from p2pnet.errors import MalformedMessage

PADDING = 0x00
UNRELIABLE = 0x10
MESSAGE = 0x11
FRAGMENT = 0x12
PACKET_NUMBER = 0x13
ACK = 0x14
PROBE = 0x15
ACK_NOW = 0x16

#: The range of frame types the channel layer owns.
FIRST_TYPE = 0x10
LAST_TYPE = 0x3F

#: Bytes before the data of each data frame.
UNRELIABLE_HEADER = 4
MESSAGE_HEADER = 6
FRAGMENT_HEADER = 14
PACKET_NUMBER_SIZE = 5
ACK_BASE_SIZE = 10
ACK_RANGE_SIZE = 4

#: The ack delay is carried in units of this many seconds.
ACK_DELAY_UNIT = 16e-6
MAX_ACK_RANGES = 255

_u32 = struct.Struct(">I")
_unreliable = struct.Struct(">BBH")
_message = struct.Struct(">BBHH")
_fragment = struct.Struct(">BBHIIH")
_packet_number = struct.Struct(">BI")
_ack = struct.Struct(">BIHBH")
_range = struct.Struct(">HH")


def _check_u8(instance, attribute, value):
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{attribute.name} must fit in 8 bits")


def _check_u16(instance, attribute, value):
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{attribute.name} must fit in 16 bits")


def _check_u32(instance, attribute, value):
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{attribute.name} must fit in 32 bits")


def _check_data(instance, attribute, value):
    if len(value) > 0xFFFF:
        raise ValueError("a frame's data must be shorter than 65536 bytes")


@frozen
class Unreliable:
    """
    A whole message on an unreliable, unsequenced channel.
    """

    channel: int = field(validator=_check_u8)
    data: bytes = field(validator=_check_data)

    def encode(self) -> bytes:
        return _unreliable.pack(UNRELIABLE, self.channel, len(self.data)) + self.data


@frozen
class Message:
    """
    A whole message with its channel sequence number (16 low bits).
    """

    channel: int = field(validator=_check_u8)
    seq: int = field(validator=_check_u16)
    data: bytes = field(validator=_check_data)

    def encode(self) -> bytes:
        return (
            _message.pack(MESSAGE, self.channel, self.seq, len(self.data)) + self.data
        )


def _check_fragment(instance, attribute, value):
    if not value:
        raise ValueError("a fragment carries at least one byte")
    if instance.offset + len(value) > instance.total:
        raise ValueError("a fragment must end inside its message")
    _check_data(instance, attribute, value)


@frozen
class Fragment:
    """
    The bytes C{offset} to C{offset + len(data)} of a message of C{total}
    bytes.
    """

    channel: int = field(validator=_check_u8)
    seq: int = field(validator=_check_u16)
    total: int = field(validator=_check_u32)
    offset: int = field(validator=_check_u32)
    data: bytes = field(validator=_check_fragment)

    def encode(self) -> bytes:
        return (
            _fragment.pack(
                FRAGMENT,
                self.channel,
                self.seq,
                self.total,
                self.offset,
                len(self.data),
            )
            + self.data
        )


@frozen
class PacketNumber:
    """
    The low 32 bits of the packet number of the packet this frame starts.
    """

    number: int = field(validator=_check_u32)

    def encode(self) -> bytes:
        return _packet_number.pack(PACKET_NUMBER, self.number)


def _check_ranges(instance, attribute, value):
    if len(value) > MAX_ACK_RANGES:
        raise ValueError("too many ack ranges")
    for gap, length in value:
        if not (0 <= gap <= 0xFFFF and 0 <= length <= 0xFFFF):
            raise ValueError("ack gaps and lengths must fit in 16 bits")


@frozen
class Ack:
    """
    Acknowledged packet numbers, newest first, in QUIC's shape (RFC 9000
    section 19.3.1): the C{first} packets below C{largest} are
    acknowledged too; then each (gap, length) pair skips C{gap + 1}
    unacknowledged packets and acknowledges C{length + 1} more.

    @ivar largest: the low 32 bits of the largest acknowledged number.
    @ivar delay: how long the receiver held the ack, in units of
        L{ACK_DELAY_UNIT}.
    """

    largest: int = field(validator=_check_u32)
    delay: int = field(validator=_check_u16)
    first: int = field(validator=_check_u16)
    ranges: tuple = field(default=(), converter=tuple, validator=_check_ranges)

    def encode(self) -> bytes:
        parts = [_ack.pack(ACK, self.largest, self.delay, len(self.ranges), self.first)]
        for gap, length in self.ranges:
            parts.append(_range.pack(gap, length))
        return b"".join(parts)

    def absolute(self, largest: int) -> list[tuple[int, int]]:
        """
        The acknowledged ranges as (smallest, largest) pairs of full packet
        numbers, newest first, given the full value of L{largest}.

        @raise MalformedMessage: if a range goes below packet number 0.
        """
        return absolute_ranges(largest, self.first, self.ranges)


@frozen
class Probe:
    """
    Asks for an acknowledgement and carries nothing else.
    """

    def encode(self) -> bytes:
        return bytes([PROBE])


@frozen
class AckNow:
    """
    Asks the receiver to acknowledge this packet at once.
    """

    def encode(self) -> bytes:
        return bytes([ACK_NOW])


Frame = Union[Unreliable, Message, Fragment, PacketNumber, Ack, Probe, AckNow]


def encode_ack(largest: int, delay: int, ranges: list[tuple[int, int]]) -> bytes:
    """
    An L{Ack} frame for C{ranges}, (smallest, largest) pairs of full
    packet numbers, newest first, disjoint and not adjacent.  Ranges that
    do not fit (more than L{MAX_ACK_RANGES}, or gaps and lengths over 16
    bits) are left out or shortened: the peer will then retransmit a little
    more than needed, never less.

    @param delay: in units of L{ACK_DELAY_UNIT}, clamped to 16 bits.
    """
    low, high = ranges[0]
    first = min(high - low, 0xFFFF)
    smallest = high - first
    parts = []
    for low, high in ranges[1:]:
        gap = smallest - high - 2
        if gap > 0xFFFF or len(parts) == MAX_ACK_RANGES:
            break
        length = min(high - low, 0xFFFF)
        parts.append(_range.pack(gap, length))
        smallest = high - length
    return (
        _ack.pack(
            ACK,
            ranges[0][1] & 0xFFFFFFFF,
            min(max(delay, 0), 0xFFFF),
            len(parts),
            first,
        )
        + b"".join(parts)
    )


def parse_raw(buf: bytes, offset: int = 0) -> tuple[tuple, int]:
    """
    Decode the channel frame starting at C{buf[offset]} into a plain tuple
    (the machine's fast path): C{(UNRELIABLE, channel, data)},
    C{(MESSAGE, channel, seq, data)}, C{(FRAGMENT, channel, seq, total,
    offset, data)}, C{(PACKET_NUMBER, number)}, C{(ACK, largest, delay,
    first, ranges)}, C{(PROBE,)} or C{(ACK_NOW,)}.

    @return: the tuple and the offset just after the frame.
    @raise MalformedMessage: if the bytes there are not a whole channel
        frame.
    """
    end = len(buf)
    if offset >= end:
        raise MalformedMessage("no frame at the end of the packet")
    kind = buf[offset]
    if kind == MESSAGE:
        if offset + MESSAGE_HEADER > end:
            raise MalformedMessage("truncated message frame")
        _, channel, seq, length = _message.unpack_from(buf, offset)
        start = offset + MESSAGE_HEADER
        stop = start + length
        if stop > end:
            raise MalformedMessage("truncated message frame")
        return (MESSAGE, channel, seq, bytes(buf[start:stop])), stop
    if kind == UNRELIABLE:
        if offset + UNRELIABLE_HEADER > end:
            raise MalformedMessage("truncated unreliable frame")
        _, channel, length = _unreliable.unpack_from(buf, offset)
        start = offset + UNRELIABLE_HEADER
        stop = start + length
        if stop > end:
            raise MalformedMessage("truncated unreliable frame")
        return (UNRELIABLE, channel, bytes(buf[start:stop])), stop
    if kind == FRAGMENT:
        if offset + FRAGMENT_HEADER > end:
            raise MalformedMessage("truncated fragment frame")
        _, channel, seq, total, frag_offset, length = _fragment.unpack_from(buf, offset)
        start = offset + FRAGMENT_HEADER
        stop = start + length
        if stop > end:
            raise MalformedMessage("truncated fragment frame")
        if length == 0 or frag_offset + length > total:
            raise MalformedMessage("fragment outside its message")
        return (FRAGMENT, channel, seq, total, frag_offset, bytes(buf[start:stop])), stop
    if kind == PACKET_NUMBER:
        if offset + PACKET_NUMBER_SIZE > end:
            raise MalformedMessage("truncated packet number frame")
        return (PACKET_NUMBER, _u32.unpack_from(buf, offset + 1)[0]), offset + PACKET_NUMBER_SIZE
    if kind == ACK:
        if offset + ACK_BASE_SIZE > end:
            raise MalformedMessage("truncated ack frame")
        _, largest, delay, count, first = _ack.unpack_from(buf, offset)
        position = offset + ACK_BASE_SIZE
        stop = position + count * ACK_RANGE_SIZE
        if stop > end:
            raise MalformedMessage("truncated ack frame")
        ranges = tuple(
            _range.unpack_from(buf, position + i * ACK_RANGE_SIZE) for i in range(count)
        )
        return (ACK, largest, delay, first, ranges), stop
    if kind == PROBE:
        return (PROBE,), offset + 1
    if kind == ACK_NOW:
        return (ACK_NOW,), offset + 1
    raise MalformedMessage(f"unknown channel frame type 0x{kind:02x}")


_CLASSES = {
    UNRELIABLE: lambda raw: Unreliable(raw[1], raw[2]),
    MESSAGE: lambda raw: Message(raw[1], raw[2], raw[3]),
    FRAGMENT: lambda raw: Fragment(*raw[1:]),
    PACKET_NUMBER: lambda raw: PacketNumber(raw[1]),
    ACK: lambda raw: Ack(*raw[1:]),
    PROBE: lambda raw: Probe(),
    ACK_NOW: lambda raw: AckNow(),
}


def parse(buf: bytes, offset: int = 0) -> tuple[Frame, int]:
    """
    Decode the channel frame starting at C{buf[offset]}.

    @return: the frame and the offset just after it.
    @raise MalformedMessage: if the bytes there are not a whole channel
        frame.
    """
    raw, end = parse_raw(buf, offset)
    return _CLASSES[raw[0]](raw), end


def to_raw(frame: Frame) -> tuple:
    """
    The L{parse_raw} tuple of a frame object.
    """
    kind = type(frame)
    if kind is Message:
        return (MESSAGE, frame.channel, frame.seq, frame.data)
    if kind is Unreliable:
        return (UNRELIABLE, frame.channel, frame.data)
    if kind is Fragment:
        return (FRAGMENT, frame.channel, frame.seq, frame.total, frame.offset, frame.data)
    if kind is PacketNumber:
        return (PACKET_NUMBER, frame.number)
    if kind is Ack:
        return (ACK, frame.largest, frame.delay, frame.first, frame.ranges)
    if kind is Probe:
        return (PROBE,)
    if kind is AckNow:
        return (ACK_NOW,)
    raise MalformedMessage(f"not a channel frame: {frame!r}")


def parse_packet_raw(buf: bytes) -> list[tuple]:
    """
    L{parse_packet}, giving L{parse_raw} tuples.
    """
    frames = []
    offset = 0
    end = len(buf)
    while offset < end:
        if buf[offset] == PADDING:
            if any(buf[offset:]):
                raise MalformedMessage("padding that is not zero")
            break
        frame, offset = parse_raw(buf, offset)
        frames.append(frame)
    return frames


def parse_packet(buf: bytes) -> list[Frame]:
    """
    Decode a whole plaintext made of channel frames, optionally followed by
    the secure layer's PADDING (0x00 and zero bytes to the end).

    @raise MalformedMessage: on anything else, or padding that is not zero.
    """
    return [_CLASSES[raw[0]](raw) for raw in parse_packet_raw(buf)]


def absolute_ranges(largest: int, first: int, ranges) -> list[tuple[int, int]]:
    """
    L{Ack.absolute} for the fields of a raw ACK.
    """
    smallest = largest - first
    if smallest < 0:
        raise MalformedMessage("ack range below packet number 0")
    result = [(smallest, largest)]
    for gap, length in ranges:
        high = smallest - gap - 2
        low = high - length
        if low < 0:
            raise MalformedMessage("ack range below packet number 0")
        result.append((low, high))
        smallest = low
    return result


def expand_packet_number(truncated: int, expected: int) -> int:
    """
    The full packet number closest to C{expected} whose low 32 bits are
    C{truncated} (RFC 9000 appendix A.3 with a 32-bit window).
    """
    window = 1 << 32
    half = window >> 1
    candidate = (expected & ~(window - 1)) | truncated
    if candidate <= expected - half and candidate + window < (1 << 62):
        return candidate + window
    if candidate > expected + half and candidate >= window:
        return candidate - window
    return candidate


def expand_sequence(truncated: int, expected: int) -> int:
    """
    The full channel sequence number closest to C{expected} whose low 16
    bits are C{truncated}.
    """
    window = 1 << 16
    half = window >> 1
    candidate = (expected & ~(window - 1)) | truncated
    if candidate <= expected - half:
        return candidate + window
    if candidate > expected + half and candidate >= window:
        return candidate - window
    return candidate
