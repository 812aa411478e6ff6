"""
Tests for L{p2pnet.secure._frames}, the frames inside a sealed packet.
"""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pnet.errors import MalformedMessage
from p2pnet.secure._frames import (
    Accept,
    Close,
    Connect,
    Datagram,
    Padding,
    PathChallenge,
    PathResponse,
    Ping,
    decode_frames,
    encode_datagram,
    encode_frames,
    single_datagram,
)


def toy_channel_parser(plaintext: bytes, offset: int):
    """
    A stand-in for the channel layer's codec: type byte, length u8, body.
    """
    if offset + 2 > len(plaintext):
        raise MalformedMessage("toy frame cut short")
    stop = offset + 2 + plaintext[offset + 1]
    if stop > len(plaintext):
        raise MalformedMessage("toy frame body cut short")
    return ("toy", plaintext[offset], plaintext[offset + 2 : stop]), stop


eight = st.binary(min_size=8, max_size=8)
middle_frames = st.one_of(
    st.just(Ping()),
    st.builds(Close, st.integers(0, 255), st.text(max_size=60)),
    st.builds(PathChallenge, eight),
    st.builds(PathResponse, eight),
    st.builds(Datagram, st.binary(max_size=300)),
    st.builds(Connect, st.binary(max_size=256)),
    st.just(Accept()),
)
last_frames = st.one_of(
    middle_frames,
    st.builds(Padding, st.integers(1, 100)),
    st.builds(Datagram, st.binary(max_size=1300)),
)
frame_lists = st.builds(lambda a, b: a + [b], st.lists(middle_frames, max_size=6), last_frames)


class EncodingTests(SynchronousTestCase):
    def test_literal_encodings(self) -> None:
        """
        Each frame's bytes, as docs/protocol.md gives them.
        """
        cases = [
            ([Ping()], "01"),
            ([Close(7, "bye")], "02 07 03 627965"),
            ([Close(0)], "02 00 00"),
            ([PathChallenge(bytes(range(8)))], "03 0001020304050607"),
            ([PathResponse(b"ABCDEFGH")], "04 4142434445464748"),
            ([Datagram(b"hi")], "05 6869"),
            ([Datagram(b"")], "05"),
            ([Datagram(b"hi"), Ping()], "06 0002 6869 01"),
            ([Datagram(b"a"), Datagram(b"bc")], "06 0001 61 05 6263"),
            ([Ping(), Padding(4)], "01 00000000"),
            ([b"\x10\x01z", Datagram(b"x")], "10 01 7a 05 78"),
            ([Connect(b"tok")], "07 0003 746f6b"),
            ([Connect()], "07 0000"),
            ([Accept(), Ping()], "08 01"),
        ]
        for frames, expected in cases:
            self.assertEqual(encode_frames(frames), bytes.fromhex(expected), frames)

    def test_datagram_helpers(self) -> None:
        """
        A packet of one datagram is 0x05 then the datagram, and
        L{single_datagram} gives back exactly the datagram.
        """
        self.assertEqual(encode_datagram(b"game"), b"\x05game")
        self.assertEqual(single_datagram(b"\x05game"), b"game")
        self.assertEqual(single_datagram(b"\x05"), b"")
        self.assertIsNone(single_datagram(b"\x06\x00\x01g"))
        self.assertIsNone(single_datagram(b"\x01"))
        self.assertIsNone(single_datagram(b""))
        self.assertEqual(decode_frames(b"\x05\x01\x02"), [Datagram(b"\x01\x02")])

    def test_close_reason_bound(self) -> None:
        """
        A CLOSE reason holds up to 255 bytes of UTF-8, counted in bytes.
        """
        Close(1, "x" * 255)
        self.assertRaises(ValueError, Close, 1, "x" * 256)
        Close(1, "\u00e9" * 127)  # 254 bytes
        self.assertRaises(ValueError, Close, 1, "\u00e9" * 128)  # 256 bytes
        self.assertRaises(ValueError, Close, 256)
        self.assertRaises(ValueError, Close, -1)
        self.assertEqual(decode_frames(encode_frames([Close(9, "x" * 255)])), [Close(9, "x" * 255)])

    def test_connect_payload_bound(self) -> None:
        """
        A CONNECT payload holds at most 256 bytes; a longer one is refused
        by the encoder's value type and, forged, by the decoder.
        """
        self.assertEqual(decode_frames(encode_frames([Connect(bytes(256))])), [Connect(bytes(256))])
        self.assertRaises(ValueError, Connect, bytes(257))
        self.assertRaises(TypeError, Connect, "text")
        forged = bytes([0x07, 0x01, 0x01]) + bytes(257)
        self.assertRaises(MalformedMessage, decode_frames, forged)
        self.assertRaises(MalformedMessage, decode_frames, bytes.fromhex("07 0005 6162"))
        self.assertRaises(MalformedMessage, decode_frames, bytes.fromhex("07 00"))

    def test_values_validated(self) -> None:
        """
        Path frames carry exactly 8 bytes; padding is at least its type byte.
        """
        error = self.assertRaises(ValueError, PathChallenge, bytes(7))
        self.assertEqual(str(error), "data must be 8 bytes")
        self.assertRaises(ValueError, PathResponse, bytes(9))
        self.assertRaises(ValueError, Padding, 0)
        self.assertRaises(TypeError, Datagram, "text")

    def test_encoder_refusals(self) -> None:
        """
        The encoder refuses what the format cannot say: no frames, padding
        before another frame, a too-long datagram that is not last, and
        things that are not frames.
        """
        cases = [
            ([], "a packet holds at least one frame"),
            ([Padding(3), Ping()], "padding fills the rest of the packet: it must be last"),
            ([Datagram(bytes(65536)), Ping()], "a datagram before another frame holds at most 65535 bytes"),
            ([b"\x05raw"], "an encoded channel frame starts with a type in 0x10-0x3F"),
            ([b""], "an encoded channel frame starts with a type in 0x10-0x3F"),
            (["ping"], "not a frame: 'ping'"),
        ]
        for frames, message in cases:
            error = self.assertRaises(ValueError, encode_frames, frames)
            self.assertEqual(str(error), message)
        self.assertEqual(len(encode_frames([Datagram(bytes(65535)), Ping()])), 65539)
        self.assertEqual(len(encode_frames([Ping(), Datagram(bytes(70000))])), 70002)
        error = self.assertRaises(ValueError, Close, 1, "x" * 256)
        self.assertEqual(str(error), "a CLOSE reason holds at most 255 UTF-8 bytes")
    # Equivalent: to_bytes(2) without "big" (the default since Python
    # 3.11), and "UTF-8" for "utf-8" (codec names are case-insensitive).

    @given(frame_lists)
    def test_round_trip(self, frames: list) -> None:
        """
        Any sequence of frames decodes to itself.
        """
        self.assertEqual(decode_frames(encode_frames(frames)), frames)

    @given(st.lists(st.tuples(st.integers(0x10, 0x3F), st.binary(max_size=20)), min_size=1, max_size=5),
           last_frames)
    def test_channel_frames_delegated(self, toys: list, last) -> None:
        """
        Channel frames go to the parser given, at their offset, and the
        frames after them are decoded as usual.
        """
        encoded = [bytes([kind, len(body)]) + body for kind, body in toys]
        plaintext = encode_frames([encoded[0], Ping()] + encoded[1:] + [last])
        expected = [("toy", toys[0][0], toys[0][1]), Ping()]
        expected += [("toy", kind, body) for kind, body in toys[1:]] + [last]
        self.assertEqual(decode_frames(plaintext, toy_channel_parser), expected)


class MalformedTests(SynchronousTestCase):
    def assertMalformed(self, hex_bytes: str, parser=None) -> None:
        self.assertRaises(MalformedMessage, decode_frames, bytes.fromhex(hex_bytes), parser)

    def test_empty(self) -> None:
        """
        A packet without frames is malformed.
        """
        self.assertMalformed("")

    def test_unknown_types(self) -> None:
        """
        Types 0x09-0x0F and 0x40-0xFF are malformed, even after valid
        frames.
        """
        for kind in list(range(0x09, 0x10)) + [0x40, 0x41, 0x80, 0xFF]:
            self.assertMalformed(f"{kind:02x}")
            self.assertMalformed(f"01 {kind:02x}")

    def test_channel_frame_without_parser(self) -> None:
        """
        Without a channel layer, frames 0x10-0x3F are malformed.
        """
        for kind in (0x10, 0x20, 0x3F):
            self.assertMalformed(f"{kind:02x} 00")

    def test_truncated(self) -> None:
        """
        Frames cut short are malformed.
        """
        for case in ("02", "02 01", "02 01 03 6162", "03 00010203040506", "04", "06", "06 00",
                     "06 0003 6162", "01 03 0001"):
            self.assertMalformed(case)

    def test_error_messages(self) -> None:
        """
        Each malformed packet names what is wrong.
        """
        cases = [
            ("", "a packet without frames"),
            ("06", "DATAGRAM_LEN frame cut short"),
            ("01 06 00", "DATAGRAM_LEN frame cut short"),
            ("06 0003 6162", "DATAGRAM_LEN longer than the packet"),
            ("03 00010203040506", "path frame cut short"),
            ("01 04", "path frame cut short"),
            ("02 01", "CLOSE frame cut short"),
            ("01 02 01", "CLOSE frame cut short"),
            ("02 01 03 6162", "CLOSE reason longer than the packet"),
            ("02 01 02 c328", "CLOSE reason is not UTF-8"),
            ("00 00 01", "PADDING with non-zero bytes"),
            ("10 00", "channel frame 0x10 without a channel layer"),
            ("01 40", "unknown frame type 0x40"),
        ]
        bad_offset = lambda buf, offset: (None, offset)  # noqa: E731
        error = self.assertRaises(MalformedMessage, decode_frames, bytes.fromhex("01 10 00"), bad_offset)
        self.assertEqual(str(error), "channel frame 0x10 parsed to a bad offset")
        for hex_bytes, message in cases:
            error = self.assertRaises(MalformedMessage, decode_frames, bytes.fromhex(hex_bytes))
            self.assertEqual(str(error), message, hex_bytes)

    def test_datagram_len_edges(self) -> None:
        """
        A DATAGRAM_LEN frame may end exactly at the end of the packet (even
        an empty one, three bytes in all), and its length is big-endian:
        0x0100 is 256 bytes.
        """
        self.assertEqual(decode_frames(bytes.fromhex("06 0000")), [Datagram(b"")])
        self.assertEqual(decode_frames(bytes.fromhex("01 06 0000")), [Ping(), Datagram(b"")])
        self.assertEqual(decode_frames(bytes.fromhex("06 0002 6869")), [Datagram(b"hi")])
        body = bytes(range(256))
        self.assertEqual(
            decode_frames(bytes.fromhex("06 0100") + body + bytes.fromhex("01")),
            [Datagram(body), Ping()],
        )

    def test_nonzero_padding(self) -> None:
        """
        Padding is zero bytes to the end: anything else is malformed.
        """
        self.assertEqual(decode_frames(bytes(5)), [Padding(5)])
        self.assertMalformed("00 00 01")
        self.assertMalformed("01 00 00 05")

    def test_close_reason_not_utf8(self) -> None:
        """
        A CLOSE reason that is not UTF-8 is malformed.
        """
        self.assertMalformed("02 01 02 c328")

    def test_parser_bad_offset(self) -> None:
        """
        A channel parser that does not move forward, or moves past the end,
        makes the packet malformed instead of looping or reading beyond it.
        """
        self.assertEqual(decode_frames(bytes.fromhex("10 01 7a"), toy_channel_parser), [("toy", 0x10, b"z")])
        self.assertMalformed("10 00", lambda buf, offset: (None, offset))
        self.assertMalformed("10 00", lambda buf, offset: (None, offset + 3))
        self.assertMalformed("10 00", lambda buf, offset: (None, "2"))

    @given(st.binary(max_size=200))
    def test_arbitrary_bytes(self, plaintext: bytes) -> None:
        """
        Arbitrary bytes either decode or raise L{MalformedMessage}, with and
        without a channel parser.
        """
        for parser in (None, toy_channel_parser):
            try:
                decode_frames(plaintext, parser)
            except MalformedMessage:
                pass

    @given(frame_lists, st.data())
    def test_mutated_frames(self, frames: list, data) -> None:
        """
        Valid plaintexts with bytes changed, cut or appended still raise
        nothing but L{MalformedMessage}.
        """
        plaintext = bytearray(encode_frames(frames))
        position = data.draw(st.integers(0, len(plaintext) - 1))
        plaintext[position] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(plaintext)))
        for candidate in (bytes(plaintext), bytes(plaintext[:cut]), bytes(plaintext) + b"\x10\x05"):
            try:
                decode_frames(candidate, toy_channel_parser)
            except MalformedMessage:
                pass
