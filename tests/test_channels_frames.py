"""
Tests for L{p2pnet.channels._frames}: the channel frames' bytes.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pnet.channels import _frames as F
from p2pnet.errors import MalformedMessage

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
data = st.binary(max_size=300)


@st.composite
def fragments(draw):
    piece = draw(st.binary(min_size=1, max_size=300))
    offset = draw(st.integers(0, 0xFFFFFFFF - len(piece)))
    total = draw(st.integers(offset + len(piece), 0xFFFFFFFF))
    return F.Fragment(draw(u8), draw(u16), total, offset, piece)


frames = st.one_of(
    st.builds(F.Unreliable, u8, data),
    st.builds(F.Message, u8, u16, data),
    fragments(),
    st.builds(F.PacketNumber, u32),
    st.builds(
        F.Ack, u32, u16, u16, st.lists(st.tuples(u16, u16), max_size=20).map(tuple)
    ),
    st.just(F.Probe()),
    st.just(F.AckNow()),
)


class LayoutTests(SynchronousTestCase):
    """
    The frames' bytes are the ones docs/channels.md gives.
    """

    def test_message(self):
        """
        A reliable message costs 6 bytes of header: type, channel,
        sequence, length.
        """
        self.assertEqual(
            F.Message(7, 0x0102, b"hi").encode(), b"\x11\x07\x01\x02\x00\x02hi"
        )

    def test_unreliable(self):
        """
        An unreliable message costs 4 bytes: type, channel, length.
        """
        self.assertEqual(F.Unreliable(255, b"abc").encode(), b"\x10\xff\x00\x03abc")

    def test_fragment(self):
        """
        A fragment carries the total size and its offset, 32 bits each.
        """
        self.assertEqual(
            F.Fragment(1, 2, 70000, 65536, b"xy").encode(),
            b"\x12\x01\x00\x02\x00\x01\x11\x70\x00\x01\x00\x00\x00\x02xy",
        )

    def test_packet_number_and_probe(self):
        self.assertEqual(F.PacketNumber(0xA1B2C3D4).encode(), b"\x13\xa1\xb2\xc3\xd4")
        self.assertEqual(F.Probe().encode(), b"\x15")
        self.assertEqual(F.AckNow().encode(), b"\x16")

    def test_ack(self):
        """
        An ACK: largest, delay, range count, first range, then (gap,
        length) pairs.
        """
        self.assertEqual(
            F.Ack(100, 3, 4, ((1, 2),)).encode(),
            b"\x14\x00\x00\x00\x64\x00\x03\x01\x00\x04\x00\x01\x00\x02",
        )

    def test_ack_absolute(self):
        """
        Gaps and lengths count as in QUIC: acknowledged 96-100, 2 missing
        (94, 95 with gap 1), then 91-93.
        """
        ack = F.Ack(100, 0, 4, ((1, 2),))
        self.assertEqual(ack.absolute(100), [(96, 100), (91, 93)])

    def test_encode_ack_ranges(self):
        """
        L{F.encode_ack} writes ranges that decode back to the same packet
        numbers.
        """
        raw = F.encode_ack(1000, 7, [(990, 1000), (500, 980), (3, 3)])
        frame, end = F.parse(raw)
        self.assertEqual(end, len(raw))
        self.assertEqual(frame.delay, 7)
        self.assertEqual(frame.absolute(1000), [(990, 1000), (500, 980), (3, 3)])

    def test_encode_ack_shortens_long_range(self):
        """
        A range longer than 16 bits can say is shortened (acknowledging
        less, never more).
        """
        raw = F.encode_ack(100000, 0, [(0, 100000)])
        frame, _ = F.parse(raw)
        self.assertEqual(frame.absolute(100000), [(100000 - 0xFFFF, 100000)])

    def test_ack_below_zero(self):
        """
        An ACK whose ranges go below packet number 0 is malformed.
        """
        self.assertRaises(MalformedMessage, F.Ack(2, 0, 3).absolute, 2)
        self.assertRaises(MalformedMessage, F.Ack(10, 0, 0, ((5, 5),)).absolute, 10)

    def test_validation(self):
        """
        The constructors refuse what the bytes cannot say.
        """
        self.assertRaises(ValueError, F.Message, 256, 0, b"")
        self.assertRaises(ValueError, F.Message, 0, 65536, b"")
        self.assertRaises(ValueError, F.Fragment, 0, 0, 10, 9, b"ab")
        self.assertRaises(ValueError, F.Fragment, 0, 0, 10, 0, b"")
        self.assertRaises(ValueError, F.Unreliable, 0, b"x" * 65536)


class ParseTests(SynchronousTestCase):
    @given(frames)
    def test_round_trip(self, frame):
        """
        Every frame decodes to itself, and says its own length.
        """
        raw = frame.encode()
        decoded, end = F.parse(b"junk" + raw + b"tail", 4)
        self.assertEqual(decoded, frame)
        self.assertEqual(end, 4 + len(raw))

    @given(st.lists(frames, max_size=8), st.integers(0, 40))
    def test_packet_round_trip(self, items, padding):
        """
        Coalesced frames followed by PADDING decode to the same frames.
        """
        raw = b"".join(f.encode() for f in items)
        if padding:
            raw += bytes(padding)
        self.assertEqual(F.parse_packet(raw), items)

    @given(st.binary(max_size=64))
    def test_arbitrary_bytes(self, raw):
        """
        Arbitrary bytes decode or raise L{MalformedMessage}, nothing else.
        """
        try:
            F.parse_packet(raw)
        except MalformedMessage:
            pass

    @given(frames, st.data())
    def test_truncated(self, frame, choice):
        """
        A frame cut short anywhere is malformed.
        """
        raw = frame.encode()
        if len(raw) < 2:
            return
        cut = choice.draw(st.integers(1, len(raw) - 1))
        self.assertRaises(MalformedMessage, F.parse, raw[:cut])

    def test_unknown_type(self):
        """
        Types outside the channel frames are malformed (the secure layer's
        are its own to parse).
        """
        for kind in (0x01, 0x05, 0x17, 0x3F, 0x40, 0xFF):
            self.assertRaises(MalformedMessage, F.parse, bytes([kind, 0, 0, 0, 0, 0]))

    def test_fragment_outside_message(self):
        """
        A fragment that ends past its message's total is malformed, and so
        is an empty fragment.
        """
        self.assertRaises(
            MalformedMessage,
            F.parse,
            b"\x12\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x01\x00\x02ab",
        )
        self.assertRaises(
            MalformedMessage,
            F.parse,
            b"\x12\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00",
        )

    def test_padding_not_zero(self):
        """
        PADDING must be zeros to the end.
        """
        self.assertRaises(MalformedMessage, F.parse_packet, b"\x15\x00\x00\x01")


class ExpandTests(SynchronousTestCase):
    def test_rfc9000_example(self):
        """
        RFC 9000 appendix A.3's example, with a 16-bit window: largest
        0xa82f30ea, truncated 0x9b32 -> 0xa82f9b32.
        """
        self.assertEqual(F.expand_sequence(0x9B32, 0xA82F30EB), 0xA82F9B32)

    def test_packet_number_wraps(self):
        """
        Packet numbers carry on past 2**32.
        """
        self.assertEqual(F.expand_packet_number(5, 0xFFFFFFF0), 0x100000005)
        self.assertEqual(F.expand_packet_number(0xFFFFFFF0, 0x100000005), 0xFFFFFFF0)
        self.assertEqual(F.expand_packet_number(7, 0), 7)

    @given(st.integers(0, 1 << 40), st.integers(-(1 << 15) + 1, 1 << 15))
    def test_sequence_window(self, expected, delta):
        """
        Any sequence number within half the window of the expected one is
        recovered from its 16 low bits.
        """
        actual = expected + delta
        if actual < 0:
            return
        self.assertEqual(F.expand_sequence(actual & 0xFFFF, expected), actual)
