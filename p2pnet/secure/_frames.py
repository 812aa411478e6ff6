"""
The frames inside a sealed packet's plaintext (docs/protocol.md).

Each frame starts with its type byte:

    0x00 PADDING         the rest of the packet, all zero bytes
    0x01 PING            no body
    0x02 CLOSE           code u8, reason length u8, reason (UTF-8)
    0x03 PATH_CHALLENGE  8 bytes
    0x04 PATH_RESPONSE   8 bytes
    0x05 DATAGRAM        the rest of the packet is one application datagram
    0x06 DATAGRAM_LEN    length u16 big-endian, then that many bytes
    0x07 CONNECT         length u16 big-endian, then the connect payload
                         (at most 256 bytes)
    0x08 ACCEPT          no body
    0x10-0x3F            channel frames, self-delimiting, parsed by the
                         channel layer's codec

Any other type is malformed.  A packet holds at least one frame.

One value type, L{Datagram}, stands for both datagram forms: the encoder
writes DATAGRAM for a datagram that ends the packet and DATAGRAM_LEN for any
other.  A packet that is a single datagram, the common case, is C{0x05}
followed by the datagram: L{single_datagram} takes it out with one slice.

Decoding raises L{MalformedMessage} on bad input and nothing else; encoding
raises C{ValueError} when asked for something the format cannot say.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Union

from attrs import field, frozen, validators

from p2pnet.errors import MalformedMessage

PADDING = 0x00
PING = 0x01
CLOSE = 0x02
PATH_CHALLENGE = 0x03
PATH_RESPONSE = 0x04
DATAGRAM = 0x05
DATAGRAM_LEN = 0x06
CONNECT = 0x07
ACCEPT = 0x08
#: Frame types from this one to L{CHANNEL_LAST} belong to the channel layer.
CHANNEL_FIRST = 0x10
CHANNEL_LAST = 0x3F

#: The longest CLOSE reason, in UTF-8 bytes.
MAX_REASON = 255
#: The longest connect payload.
MAX_CONNECT_PAYLOAD = 256
#: The longest datagram a DATAGRAM_LEN frame can carry.
MAX_DATAGRAM_LEN = 0xFFFF

#: The channel layer's frame parser: given the plaintext and the offset of
#: a frame whose type is in 0x10-0x3F, return the frame and the offset just
#: past it, or raise L{MalformedMessage}.
ChannelParser = Callable[[bytes, int], "tuple[Any, int]"]


def _eight_bytes(instance: object, attribute: Any, value: object) -> None:
    if not isinstance(value, bytes) or len(value) != 8:
        raise ValueError(f"{attribute.name} must be 8 bytes")


def _short_reason(instance: object, attribute: Any, value: str) -> None:
    if len(value.encode("utf-8")) > MAX_REASON:
        raise ValueError(f"a CLOSE reason holds at most {MAX_REASON} UTF-8 bytes")


@frozen
class Padding:
    """
    Zero bytes that fill the rest of a packet.

    @ivar length: the bytes the frame takes, its type byte included (>= 1).
    """

    length: int = field(validator=[validators.instance_of(int), validators.ge(1)])


@frozen
class Ping:
    """
    Asks for nothing but proves the path is alive (and elicits an
    acknowledgement from the channel layer, if any).
    """


@frozen
class Close:
    """
    The sender is closing the connection.

    @ivar code: why, as a number (u8).
    @ivar reason: why, for people; at most 255 bytes of UTF-8.
    """

    code: int = field(validator=[validators.instance_of(int), validators.ge(0), validators.le(255)])
    reason: str = field(default="", validator=[validators.instance_of(str), _short_reason])


def _short_payload(instance: object, attribute: Any, value: bytes) -> None:
    if len(value) > MAX_CONNECT_PAYLOAD:
        raise ValueError(f"a connect payload holds at most {MAX_CONNECT_PAYLOAD} bytes, not {len(value)}")


@frozen
class Connect:
    """
    The initiator's connect request: the application's payload (a join
    token, a player name) for the host to accept or refuse.
    """

    payload: bytes = field(default=b"", validator=[validators.instance_of(bytes), _short_payload])


@frozen
class Accept:
    """
    The host accepted the connect request (a refusal is a L{Close}).
    """


@frozen
class PathChallenge:
    """
    Asks the receiver to echo C{data} back in a L{PathResponse}, from and
    to the address this came on.
    """

    data: bytes = field(validator=_eight_bytes)


@frozen
class PathResponse:
    """
    The echo of a L{PathChallenge}'s C{data}.
    """

    data: bytes = field(validator=_eight_bytes)


@frozen
class Datagram:
    """
    One application datagram.
    """

    data: bytes = field(validator=validators.instance_of(bytes))


#: A secure-layer frame.  Channel frames are whatever the channel parser
#: returns.
Frame = Union[Padding, Ping, Close, PathChallenge, PathResponse, Datagram, Connect, Accept]

_PING = Ping()
_PING_BYTES = bytes([PING])
_DATAGRAM_BYTE = bytes([DATAGRAM])


def encode_datagram(data: bytes) -> bytes:
    """
    The plaintext of a packet that carries one application datagram and
    nothing else.
    """
    return _DATAGRAM_BYTE + data


def single_datagram(plaintext: bytes) -> bytes | None:
    """
    The application datagram when C{plaintext} is a single DATAGRAM frame
    (one slice), else None: decode it with L{decode_frames}.
    """
    if plaintext[:1] == _DATAGRAM_BYTE:
        return plaintext[1:]
    return None


def encode_frames(frames: Iterable[Frame | bytes]) -> bytes:
    """
    The plaintext carrying C{frames}, in order.

    Channel frames are given already encoded, as C{bytes} starting with
    their type (0x10-0x3F), and are copied as they are.  A L{Padding} must
    be last.  A L{Datagram} is written as DATAGRAM when it is last, as
    DATAGRAM_LEN otherwise.

    @raise ValueError: no frames, padding not last, a datagram too long for
        DATAGRAM_LEN, or something that is not a frame.
    """
    frames = list(frames)
    if not frames:
        raise ValueError("a packet holds at least one frame")
    last = len(frames) - 1
    parts = []
    for index, frame in enumerate(frames):
        if isinstance(frame, Datagram):
            if index == last:
                parts.append(_DATAGRAM_BYTE)
            else:
                if len(frame.data) > MAX_DATAGRAM_LEN:
                    raise ValueError("a datagram before another frame holds at most 65535 bytes")
                parts.append(bytes([DATAGRAM_LEN]) + len(frame.data).to_bytes(2, "big"))
            parts.append(frame.data)
        elif isinstance(frame, bytes):
            if not frame or not CHANNEL_FIRST <= frame[0] <= CHANNEL_LAST:
                raise ValueError("an encoded channel frame starts with a type in 0x10-0x3F")
            parts.append(frame)
        elif isinstance(frame, Ping):
            parts.append(_PING_BYTES)
        elif isinstance(frame, PathChallenge):
            parts.append(bytes([PATH_CHALLENGE]) + frame.data)
        elif isinstance(frame, PathResponse):
            parts.append(bytes([PATH_RESPONSE]) + frame.data)
        elif isinstance(frame, Close):
            reason = frame.reason.encode("utf-8")
            parts.append(bytes([CLOSE, frame.code, len(reason)]) + reason)
        elif isinstance(frame, Connect):
            parts.append(bytes([CONNECT]) + len(frame.payload).to_bytes(2, "big") + frame.payload)
        elif isinstance(frame, Accept):
            parts.append(bytes([ACCEPT]))
        elif isinstance(frame, Padding):
            if index != last:
                raise ValueError("padding fills the rest of the packet: it must be last")
            parts.append(bytes(frame.length))
        else:
            raise ValueError(f"not a frame: {frame!r}")
    return b"".join(parts)


def decode_frames(plaintext: bytes, parse_channel: ChannelParser | None = None) -> list:
    """
    The frames of a packet's plaintext, in order.

    @param parse_channel: the channel layer's parser for frame types
        0x10-0x3F; without one such frames are malformed.
    @raise MalformedMessage: the plaintext is not a sequence of frames.
    """
    end = len(plaintext)
    if not end:
        raise MalformedMessage("a packet without frames")
    if plaintext[0] == DATAGRAM:
        return [Datagram(plaintext[1:])]
    frames: list = []
    offset = 0
    while offset < end:
        kind = plaintext[offset]
        if kind == DATAGRAM:
            frames.append(Datagram(plaintext[offset + 1 :]))
            break
        elif kind == DATAGRAM_LEN:
            if end - offset < 3:
                raise MalformedMessage("DATAGRAM_LEN frame cut short")
            start = offset + 3
            stop = start + (plaintext[offset + 1] << 8 | plaintext[offset + 2])
            if stop > end:
                raise MalformedMessage("DATAGRAM_LEN longer than the packet")
            frames.append(Datagram(plaintext[start:stop]))
            offset = stop
        elif kind == PING:
            frames.append(_PING)
            offset += 1
        elif kind == PATH_CHALLENGE or kind == PATH_RESPONSE:
            stop = offset + 9
            if stop > end:
                raise MalformedMessage("path frame cut short")
            data = plaintext[offset + 1 : stop]
            frames.append(PathChallenge(data) if kind == PATH_CHALLENGE else PathResponse(data))
            offset = stop
        elif kind == CLOSE:
            if end - offset < 3:
                raise MalformedMessage("CLOSE frame cut short")
            start = offset + 3
            stop = start + plaintext[offset + 2]
            if stop > end:
                raise MalformedMessage("CLOSE reason longer than the packet")
            try:
                reason = plaintext[start:stop].decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedMessage("CLOSE reason is not UTF-8") from None
            frames.append(Close(plaintext[offset + 1], reason))
            offset = stop
        elif kind == CONNECT:
            if end - offset < 3:
                raise MalformedMessage("CONNECT frame cut short")
            start = offset + 3
            stop = start + (plaintext[offset + 1] << 8 | plaintext[offset + 2])
            if stop > end or stop - start > MAX_CONNECT_PAYLOAD:
                raise MalformedMessage("CONNECT payload longer than the packet or the cap")
            frames.append(Connect(plaintext[start:stop]))
            offset = stop
        elif kind == ACCEPT:
            frames.append(Accept())
            offset += 1
        elif kind == PADDING:
            if plaintext.count(0, offset) != end - offset:
                raise MalformedMessage("PADDING with non-zero bytes")
            frames.append(Padding(end - offset))
            break
        elif CHANNEL_FIRST <= kind <= CHANNEL_LAST:
            if parse_channel is None:
                raise MalformedMessage(f"channel frame 0x{kind:02x} without a channel layer")
            frame, stop = parse_channel(plaintext, offset)
            if not isinstance(stop, int) or not offset < stop <= end:
                raise MalformedMessage(f"channel frame 0x{kind:02x} parsed to a bad offset")
            frames.append(frame)
            offset = stop
        else:
            raise MalformedMessage(f"unknown frame type 0x{kind:02x}")
    return frames
