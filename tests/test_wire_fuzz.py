"""
Property and regression tests for the strictness of L{p2pnet.wire}'s
decoder and of its authentication checks.

Every malformed field has a literal datagram here and the exact reason
the decoder must give; the cases that once slipped through (or raised
C{IndexError}) are kept as a regression corpus in L{NASTY}.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from attrs import evolve as attrs_evolve

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pnet import wire
from p2pnet.address import Address
from p2pnet.errors import MalformedMessage

from tests.test_wire import _mutate

txids = st.binary(min_size=8, max_size=8)
ids8 = st.binary(min_size=8, max_size=8)
keys = st.binary(min_size=16, max_size=16)
pubkeys = st.binary(min_size=32, max_size=32)
cookies = st.binary(min_size=8, max_size=8)
# Up to the 255-byte limit, multi-byte characters included.
texts = st.text(max_size=60) | st.text(alphabet="é", min_size=127, max_size=127)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
addresses = st.builds(Address, st.one_of(ipv4, ipv6), st.integers(0, 65535))
address_lists = st.lists(addresses, max_size=4).map(tuple)
u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
cursors = st.binary(min_size=1, max_size=16)
u32 = st.integers(0, 0xFFFFFFFF)
properties = st.lists(
    st.tuples(st.text(max_size=10).filter(lambda k: "\0" not in k), st.text(max_size=20)),
    max_size=3,
).map(tuple)
paddings = st.none() | st.binary(max_size=64)
blobs = st.none() | st.binary(max_size=100)
session_infos = st.builds(wire.SessionInfo, ids8, texts, texts, texts, u16, u16, st.booleans(), properties)

#: One strategy per message type, every field (optional ones present or not).
BY_TYPE = {
    wire.Register: st.builds(wire.Register, txids, texts, address_lists, st.none() | cookies, st.none() | u8, paddings),
    wire.Registered: st.builds(wire.Registered, txids, addresses, u32, cookies),
    wire.Heartbeat: st.builds(wire.Heartbeat, txids, texts, cookies, paddings),
    wire.HeartbeatAck: st.builds(wire.HeartbeatAck, txids, addresses, u32),
    wire.Unregister: st.builds(wire.Unregister, txids, texts, cookies),
    wire.HostSession: st.builds(
        wire.HostSession, txids, texts, cookies, texts, texts, u16, st.none() | u8, properties, paddings
    ),
    wire.SessionHosted: st.builds(wire.SessionHosted, txids, ids8),
    wire.Unhost: st.builds(wire.Unhost, txids, texts, cookies, ids8),
    wire.ListSessions: st.builds(
        wire.ListSessions, txids, st.none() | texts, st.none() | cursors, properties, st.none() | texts,
        st.none() | u8, st.none() | u16, paddings,
    ),
    wire.SessionList: st.builds(
        wire.SessionList, txids, st.lists(session_infos, max_size=3).map(tuple), st.none() | cursors, u32
    ),
    wire.Introduce: st.builds(wire.Introduce, txids, texts, cookies, st.none() | texts, st.none() | ids8, paddings),
    wire.Introduction: st.builds(
        wire.Introduction, txids, ids8, texts, addresses, address_lists, keys, u8,
        st.none() | ids8, st.none() | u8, st.none() | u16, st.none() | pubkeys,
    ),
    wire.ReverseRequest: st.builds(wire.ReverseRequest, txids, texts, cookies, texts, ids8),
    wire.Reverse: st.builds(wire.Reverse, txids, texts, ids8, addresses),
    wire.Error: st.builds(wire.Error, txids, u16, texts),
    wire.IntroAck: st.builds(wire.IntroAck, txids, ids8),
    wire.RelayRequest: st.builds(wire.RelayRequest, txids, texts, cookies, texts, ids8, paddings),
    wire.RelayOffer: st.builds(wire.RelayOffer, txids, ids8, ids8, addresses, keys, u8),
    wire.CandidateOffer: st.builds(wire.CandidateOffer, txids, texts, cookies, texts, ids8, addresses, paddings),
    wire.Candidate: st.builds(wire.Candidate, txids, ids8, texts, addresses, ids8),
    wire.Probe: st.builds(wire.Probe, txids, ids8),
    wire.Hello: st.builds(wire.Hello, txids, ids8, texts, u16, address_lists, st.none() | u32, blobs),
    wire.HelloAck: st.builds(wire.HelloAck, txids, ids8, texts, u16, addresses, blobs),
    wire.Keepalive: st.builds(wire.Keepalive, txids, ids8, u32),
    wire.Close: st.builds(wire.Close, txids, ids8),
    wire.Challenge: st.builds(wire.Challenge, txids, keys, addresses, st.none() | pubkeys),
    wire.Proof: st.builds(wire.Proof, txids, texts, keys, keys, paddings),
}
every_message = st.one_of(*BY_TYPE.values())

T = b"t" * 8


def tlv(tag: int, value: bytes) -> bytes:
    """
    One field: tag, 16-bit big-endian length, value (written out here,
    not taken from the codec).
    """
    return bytes([tag]) + struct.pack("!H", len(value)) + value


def control(type_: int, *fields: bytes) -> bytes:
    return bytes([0xD1, type_]) + T + b"".join(fields)


PEER = tlv(0x01, b"alice")
COOKIE = tlv(0x05, b"c" * 8)
IPV4 = b"\x04\x00\x50\xc0\x00\x02\x01"  # 192.0.2.1:80
INTRO = tlv(0x0E, b"i" * 8)


def register(*fields: bytes) -> bytes:
    return control(0x01, PEER, *fields)


def host_session(*extra: bytes) -> bytes:
    return control(0x06, PEER, COOKIE, tlv(0x06, b"game"), tlv(0x07, b"g"), tlv(0x08, b"\x00\x04"), *extra)


def introduction(**replace: bytes) -> bytes:
    fields = {
        "intro": INTRO,
        "peer": PEER,
        "public": tlv(0x03, IPV4),
        "key": tlv(0x0F, b"k" * 16),
        "flags": tlv(0x12, b"\x02"),
    }
    fields.update(replace)
    return control(0x0C, *fields.values())


def session_list(entry: bytes) -> bytes:
    return control(0x0A, tlv(0x0C, entry), tlv(0x18, bytes(4)))


GOOD_ENTRY = (
    tlv(0x0A, b"s" * 8) + tlv(0x06, b"n") + tlv(0x07, b"g") + tlv(0x01, b"h")
    + tlv(0x13, b"\x00\x01") + tlv(0x08, b"\x00\x04") + tlv(0x12, b"\x00")
)

#: The regression corpus: datagrams the decoder must refuse, and the exact
#: reason (a substring of the error) it must give.
NASTY = {
    # Framing.
    b"": "datagram too short",
    b"\xd1": "datagram too short",
    b"\xd1\x40": "data datagram too short",
    b"\xd1\x40\x00": "data datagram too short",
    b"\xd3\x01" + T: "unsupported p2pnet version 3",
    b"\xc1\x01" + T: "not a p2pnet datagram",
    b"\xd1\x00" + T: "unknown message type 0x0",
    b"\xd1\x30" + T: "unknown message type 0x30",
    b"\xd1\x03" + T[:7]: "datagram shorter than the header",
    control(0x03, PEER, COOKIE, b"\x17"): "truncated field header",
    control(0x03, PEER, COOKIE, b"\x17\x00"): "truncated field header",
    control(0x03, PEER, COOKIE, b"\x17\x00\x02a"): "field 0x17 runs past the end",
    control(0x03, tlv(0xFF, b"a" * 16), PEER, COOKIE): "AUTH field is not last",
    # Missing and repeated fields.
    control(0x03, COOKIE): "Heartbeat lacks PEER_ID",
    control(0x03, PEER): "Heartbeat lacks COOKIE",
    control(0x03, PEER, COOKIE, COOKIE): "Heartbeat repeats COOKIE",
    # Strings: at most 255 bytes of UTF-8.
    control(0x03, tlv(0x01, b"a" * 256), COOKIE): "string field too long",
    control(0x03, tlv(0x01, b"\xff"), COOKIE): "string field is not UTF-8",
    control(0x03, tlv(0x01, b"\xc3"), COOKIE): "string field is not UTF-8",
    # Addresses: 7 bytes for IPv4, 19 for IPv6, family 4 or 6.
    register(tlv(0x02, IPV4 + b"\x00")): "bad address field",
    register(tlv(0x02, IPV4[:-1])): "bad address field",
    register(tlv(0x02, b"\x06" + IPV4[1:])): "bad address field",
    register(tlv(0x02, b"\x04" + bytes(18))): "bad address field",
    register(tlv(0x02, b"\x06" + bytes(17))): "bad address field",
    register(tlv(0x02, b"\x06" + bytes(19))): "bad address field",
    register(tlv(0x02, b"\x05" + bytes(6))): "bad address field",
    register(tlv(0x02, b"")): "bad address field",
    # Fixed-size values.
    register(tlv(0x05, b"c" * 9)): "cookie must be 8 bytes, got 9",
    register(tlv(0x05, b"c" * 7)): "cookie must be 8 bytes, got 7",
    control(0x07, tlv(0x0A, b"s" * 9)): "identifier must be 8 bytes, got 9",
    control(0x07, tlv(0x0A, b"")): "identifier must be 8 bytes, got 0",
    introduction(key=tlv(0x0F, b"k" * 17)): "key must be 16 bytes, got 17",
    introduction(key=tlv(0x0F, b"k" * 15)): "key must be 16 bytes, got 15",
    introduction(pk=tlv(0x1E, b"p" * 33)): "public key must be 32 bytes, got 33",
    introduction(pk=tlv(0x1E, b"p" * 31)): "public key must be 32 bytes, got 31",
    # One-byte flags (FLAGS, NAT, SIDE).
    introduction(flags=tlv(0x12, b"\x02\x00")): "flags must be 1 byte",
    introduction(flags=tlv(0x12, b"")): "flags must be 1 byte",
    register(tlv(0x1C, b"\x11\x11")): "flags must be 1 byte",
    # Integers.
    control(0x0F, tlv(0x10, b"\x00\x01\x00"), tlv(0x11, b"")): "16-bit field must be 2 bytes",
    control(0x0F, tlv(0x10, b"\x01"), tlv(0x11, b"")): "16-bit field must be 2 bytes",
    control(0x23, INTRO, tlv(0x19, bytes(5))): "32-bit field must be 4 bytes",
    control(0x23, INTRO, tlv(0x19, bytes(3))): "32-bit field must be 4 bytes",
    # Properties: name NUL value.
    host_session(tlv(0x09, b"mapdust")): "property without a name/value separator",
    host_session(tlv(0x09, b"")): "property without a name/value separator",
    host_session(tlv(0x09, b"m\0" + b"d" * 254)): "string field too long",
    # Session entries inside a SessionList.
    session_list(GOOD_ENTRY.replace(tlv(0x12, b"\x00"), b"")): "missing field FLAGS",
    session_list(GOOD_ENTRY + tlv(0x01, b"h")): "repeated field PEER_ID",
    session_list(GOOD_ENTRY.replace(tlv(0x12, b"\x00"), tlv(0x12, b"\x00\x00"))): "flags must be 1 byte",
    session_list(GOOD_ENTRY.replace(tlv(0x0A, b"s" * 8), tlv(0x0A, b"s" * 9))): "identifier must be 8 bytes",
    session_list(GOOD_ENTRY + tlv(0x09, b"nosep")): "property without a name/value separator",
    session_list(GOOD_ENTRY + b"\x09\x00"): "truncated field header",
    session_list(GOOD_ENTRY.replace(tlv(0x01, b"h"), tlv(0x01, b"h" * 256))): "string field too long",
    session_list(GOOD_ENTRY.replace(tlv(0x13, b"\x00\x01"), tlv(0x13, b"\x01"))): "16-bit field must be 2 bytes",
    session_list(GOOD_ENTRY.replace(tlv(0x13, b"\x00\x01"), b"")): "missing field PLAYERS",
    session_list(GOOD_ENTRY.replace(tlv(0x06, b"n"), tlv(0x06, b"\xff"))): "string field is not UTF-8",
    # Lobby cursors: 1-16 opaque bytes; the limit is a u16.
    control(0x09, tlv(0x23, b"")): "a cursor is 1-16 bytes, got 0",
    control(0x09, tlv(0x23, bytes(17))): "a cursor is 1-16 bytes, got 17",
    control(0x0A, tlv(0x23, bytes(17)), tlv(0x18, bytes(4))): "a cursor is 1-16 bytes, got 17",
    control(0x09, tlv(0x24, b"\x01")): "16-bit field must be 2 bytes",
    control(0x09, tlv(0x09, b"nosep")): "property without a name/value separator",
    # Values the message classes refuse.
    control(0x01, tlv(0x01, b"x")) + tlv(0x05, b"c" * 8) + tlv(0x05, b"d" * 8): "Register repeats COOKIE",
}

#: Datagrams at the limits that must decode, and what to.
EDGES = {
    control(0x03, tlv(0x01, b"a" * 255), COOKIE): wire.Heartbeat(T, "a" * 255, b"c" * 8),
    control(0x03, tlv(0x01, "é".encode() * 127), COOKIE): wire.Heartbeat(T, "é" * 127, b"c" * 8),
    control(0x03, tlv(0x01, b""), COOKIE): wire.Heartbeat(T, "", b"c" * 8),
    b"\xd1\x40\x01\x02": wire.Data(0x0102, b""),
    b"\xd1\x40\xff\xfe" + b"xy": wire.Data(0xFFFE, b"xy"),
    register(tlv(0x02, IPV4), tlv(0x1C, b"\xff")): wire.Register(T, "alice", (Address("192.0.2.1", 80),), nat=0xFF),
    register(tlv(0x02, b"\x06\xff\xff" + bytes(15) + b"\x01")): wire.Register(T, "alice", (Address("::1", 65535),)),
    host_session(tlv(0x09, b"map\0dust"), tlv(0x09, b"\0"), tlv(0x09, b"a\0b\0c")): wire.HostSession(
        T, "alice", b"c" * 8, "game", "g", 4, properties=(("map", "dust"), ("", ""), ("a", "b\0c"))
    ),
    host_session(tlv(0x09, b"m\0" + b"d" * 253)): wire.HostSession(
        T, "alice", b"c" * 8, "game", "g", 4, properties=(("m", "d" * 253),)
    ),
    session_list(GOOD_ENTRY): wire.SessionList(
        T, (wire.SessionInfo(b"s" * 8, "n", "g", "h", 1, 4, False),), None, 0
    ),
    session_list(GOOD_ENTRY.replace(tlv(0x12, b"\x00"), tlv(0x12, b"\xfe"))): wire.SessionList(
        T, (wire.SessionInfo(b"s" * 8, "n", "g", "h", 1, 4, False),), None, 0
    ),
    session_list(GOOD_ENTRY.replace(tlv(0x12, b"\x00"), tlv(0x12, b"\x01"))): wire.SessionList(
        T, (wire.SessionInfo(b"s" * 8, "n", "g", "h", 1, 4, True),), None, 0
    ),
    control(0x0F, tlv(0x10, b"\x01\x02"), tlv(0x11, b"no")): wire.Error(T, 0x0102, "no"),
    control(0x09, tlv(0x23, bytes(16)), tlv(0x09, b"map\0dust"), tlv(0x06, b"K"), tlv(0x12, b"\x04"),
            tlv(0x24, b"\x00\x05")): wire.ListSessions(T, None, bytes(16), (("map", "dust"),), "K", 4, 5),
    control(0x0A, tlv(0x23, b"c"), tlv(0x18, bytes(4))): wire.SessionList(T, (), b"c", 0),
    control(0x23, INTRO, tlv(0x19, b"\x01\x02\x03\x04")): wire.Keepalive(T, b"i" * 8, 0x01020304),
    # Unknown tags are skipped (room for new optional fields).
    control(0x03, PEER, tlv(0x7E, b"later"), COOKIE): wire.Heartbeat(T, "alice", b"c" * 8),
    introduction(): wire.Introduction(T, b"i" * 8, "alice", Address("192.0.2.1", 80), (), b"k" * 16, 2),
}


class CorpusTests(SynchronousTestCase):
    """
    The regression corpus: each malformed field is refused with its own
    reason, and only with L{MalformedMessage}.
    """

    def test_nasty(self):
        """
        Every datagram of the corpus raises L{MalformedMessage} naming what
        was wrong.
        """
        for raw, reason in NASTY.items():
            try:
                wire.decode(raw)
            except MalformedMessage as e:
                self.assertIn(reason, str(e), raw.hex())
            else:
                self.fail(f"{raw.hex()} decoded; expected {reason!r}")

    def test_edges(self):
        """
        Datagrams at the limits (a 255-byte string, an empty payload, the
        NAT byte 0xFF, empty properties) decode to the expected messages.
        """
        for raw, message in EDGES.items():
            self.assertEqual(wire.decode(raw), message, raw.hex())

    def test_corpus_truncations(self):
        """
        Every prefix of every corpus datagram raises L{MalformedMessage} or
        decodes (for example where a prefix ends between two fields).
        """
        for raw in list(NASTY) + list(EDGES):
            for end in range(len(raw)):
                try:
                    wire.decode(raw[:end])
                except MalformedMessage:
                    pass

    def test_not_bytes(self):
        """
        Only C{bytes} are decoded.
        """
        for value in (bytearray(b"\xd1\x40\x00\x01"), memoryview(b"\xd1\x40\x00\x01"), "\xd1\x40\x00\x01", None):
            error = self.assertRaises(MalformedMessage, wire.decode, value)
            self.assertIn("datagram must be bytes", str(error))

    def test_nat_codes(self):
        """
        NAT codes past the known behaviours (5-15) read as "unknown",
        whatever the other nibble says; known codes map to their names.
        """
        for code in range(5, 16):
            self.assertEqual(wire.unpack_nat(code << 4 | 1), ("unknown", "endpoint-independent"))
            self.assertEqual(wire.unpack_nat(3 << 4 | code), ("address-and-port-dependent", "unknown"))
        self.assertEqual(wire.unpack_nat(0x42), ("endpoint-dependent", "address-dependent"))
        self.assertEqual(wire.unpack_nat(0x00), ("unknown", "unknown"))
        self.assertEqual(wire.unpack_nat(None), ("unknown", "unknown"))
        self.assertEqual(wire.pack_nat("endpoint-dependent", "address-dependent"), 0x42)
        self.assertEqual(wire.pack_nat("no such thing", "endpoint-independent"), 0x01)


class PropertyTests(SynchronousTestCase):
    """
    Properties of the codec over every message type.
    """

    def test_every_type_generated(self):
        """
        The strategies build every control message type the codec knows.
        """
        self.assertEqual(set(BY_TYPE), set(wire._BY_TYPE.values()))

    @given(every_message)
    def test_canonical(self, message):
        """
        decode(encode(m)) == m, and re-encoding the decoded message gives
        the same bytes.
        """
        raw = wire.encode(message)
        decoded = wire.decode(raw)
        self.assertEqual(decoded, message)
        self.assertEqual(wire.encode(decoded), raw)

    @given(every_message, st.data())
    def test_mutated_round_trip(self, message, data):
        """
        A mangled datagram either raises L{MalformedMessage} or decodes to a
        message that survives its own round trip.
        """
        raw = _mutate(wire.encode(message), data, 4)
        try:
            decoded = wire.decode(raw)
        except MalformedMessage:
            return
        if isinstance(decoded, wire.Data):
            self.assertEqual(wire.encode_data(decoded.conn_id, decoded.payload), raw)
            return
        try:
            again = wire.encode(decoded)
        except ValueError:
            # Values the decoder accepts but the encoder refuses (a peer id
            # over 64 bytes, say) are the only way out.
            return
        self.assertEqual(wire.decode(again), decoded)

    @given(every_message, st.integers(0, 20), st.binary(min_size=1, max_size=3))
    def test_oversized_fixed_fields(self, message, which, extra):
        """
        Lengthening any fixed-size value of a valid datagram (an address, a
        cookie, an id, a key, a flag byte, an integer) makes it malformed.
        """
        raw = wire.encode(message)
        fields = list(_fields(raw))
        fixed = [(at, tag, value) for at, tag, value in fields if tag not in _VARIABLE]
        if not fixed:
            return
        at, tag, value = fixed[which % len(fixed)]
        longer = raw[:at] + tlv(tag, value + extra) + raw[at + 3 + len(value):]
        self.assertRaises(MalformedMessage, wire.decode, longer)

    @given(every_message, st.integers(0, 20))
    def test_shortened_fixed_fields(self, message, which):
        """
        Shortening any fixed-size value by one byte makes it malformed.
        """
        raw = wire.encode(message)
        fixed = [(at, tag, value) for at, tag, value in _fields(raw) if tag not in _VARIABLE and value]
        if not fixed:
            return
        at, tag, value = fixed[which % len(fixed)]
        shorter = raw[:at] + tlv(tag, value[:-1]) + raw[at + 3 + len(value):]
        self.assertRaises(MalformedMessage, wire.decode, shorter)


# Tags whose value has no fixed size: strings, properties, padding, session
# entries, Noise messages, cursors (1-16 bytes; their bounds are tested in
# CorpusTests).
_VARIABLE = {0x01, 0x06, 0x07, 0x09, 0x0C, 0x0D, 0x11, 0x17, 0x1F, 0x23}


def _fields(raw: bytes):
    """
    The (offset, tag, value) of each top-level field of a control datagram.
    """
    at = 10
    while at < len(raw):
        tag, length = raw[at], (raw[at + 1] << 8) | raw[at + 2]
        yield at, tag, raw[at + 3 : at + 3 + length]
        at += 3 + length


class AuthenticationTests(SynchronousTestCase):
    """
    Every byte of a tag counts; short or odd frames never verify.
    """

    def test_every_control_tag_byte(self):
        """
        Changing any one of the 16 bytes of an C{AUTH} tag, or any byte
        before it, makes L{wire.verify} fail.
        """
        key = b"k" * 16
        raw = wire.encode(wire.Heartbeat(T, "alice", b"c" * 8), key)
        self.assertTrue(wire.verify(raw, key))
        self.assertTrue(wire.verify(raw, wire.Mac(key)))
        for at in range(len(raw)):
            for flip in (0x01, 0x80):
                tampered = raw[:at] + bytes([raw[at] ^ flip]) + raw[at + 1 :]
                self.assertFalse(wire.verify(tampered, key), at)

    def test_known_control_tag(self):
        """
        The C{AUTH} field is tag 0xFF, length 16, then the first 16 bytes of
        HMAC-SHA256 over everything before the tag value (a vector from an
        independent HMAC computation).
        """
        key = b"k" * 16
        raw = wire.encode(wire.Heartbeat(T, "alice", b"c" * 8), key)
        self.assertEqual(raw[-19:-16], b"\xff\x00\x10")
        self.assertEqual(raw[-16:].hex(), "47d800b220e302e800c55db8b071c9a6")

    def test_is_signed_length(self):
        """
        A message ends with an C{AUTH} field only if the field says 16
        bytes and the datagram is long enough to hold a header and one.
        """
        head = control(0x03, PEER, COOKIE)
        tag = b"a" * 16
        self.assertTrue(wire.is_signed(head + b"\xff\x00\x10" + tag))
        self.assertFalse(wire.is_signed(head + b"\xff\x00\x11" + tag))
        self.assertFalse(wire.is_signed(head + b"\xff\x01\x10" + tag))
        self.assertFalse(wire.is_signed(head + b"\xfe\x00\x10" + tag))
        self.assertFalse(wire.is_signed(head + b"\x17\x00\x10" + tag))
        # The shortest signed datagram: a bare header then the field.
        shortest = b"\xd1\x03" + T + b"\xff\x00\x10" + tag
        self.assertTrue(wire.is_signed(shortest))
        self.assertFalse(wire.is_signed(shortest[1:]))
        self.assertFalse(wire.is_signed(b"\xff\x00\x10" + tag))

    def test_verify_wrong_length_field(self):
        """
        A correct HMAC behind an C{AUTH} field whose length is not 16 does
        not verify.
        """
        key = b"k" * 16
        head = control(0x03, PEER, COOKIE) + b"\xff\x00\x11"
        raw = head + hmac.digest(key, head, "sha256")[:16]
        self.assertFalse(wire.verify(raw, key))

    @given(st.binary(min_size=4, max_size=40), keys)
    def test_data_tag_every_byte(self, body, key):
        """
        Changing any byte of a data datagram, tag included, fails
        L{wire.verify_data}.
        """
        raw = wire.encode_data((body[2] << 8) | body[3], body[4:], key)
        self.assertEqual(wire.verify_data(raw, key), body[4:])
        for at in range(len(raw)):
            tampered = raw[:at] + bytes([raw[at] ^ 0x40]) + raw[at + 1 :]
            self.assertIsNone(wire.verify_data(tampered, key))

    def test_data_minimum_size(self):
        """
        A data datagram needs its four framing bytes and its 8-byte tag: a
        shorter frame is refused even when its tag is right for what is
        there.
        """
        key = b"k" * 16
        self.assertEqual(wire.verify_data(wire.encode_data(1, b"", key), key), b"")
        for size in range(0, 4):
            body = b"\xd1\x40\x00\x01"[:size]
            forged = body + hashlib.blake2s(body, key=key, digest_size=8).digest()
            self.assertIsNone(wire.verify_data(forged, key), size)
        self.assertIsNone(wire.verify_data(b"", key))

    def test_data_tag_vector(self):
        """
        The data tag is keyed BLAKE2s-64 over the framing and payload.
        """
        key = bytes(range(16))
        raw = wire.encode_data(0x0102, b"abc", key)
        self.assertEqual(raw[:7], b"\xd1\x40\x01\x02abc")
        self.assertEqual(raw[7:], hashlib.blake2s(raw[:7], key=key, digest_size=8).digest())
        self.assertEqual(raw[7:].hex(), "857c1f0417263185")

    def test_relay_minimum_size(self):
        """
        A relay datagram needs its 11-byte header and 8-byte tag.
        """
        key = b"k" * 16
        good = wire.encode_relayed(b"a" * 8, 1, b"", key)
        self.assertEqual(len(good), 19)
        self.assertEqual(wire.verify_relayed(good, key), b"")
        self.assertEqual(wire.relayed_fields(good), (b"a" * 8, 1))
        for size in range(2, 11):
            body = (b"\xd1\x50" + b"a" * 8 + b"\x01")[:size]
            forged = body + hashlib.blake2s(body[2:], key=key, digest_size=8).digest()
            self.assertIsNone(wire.verify_relayed(forged, key), size)
            self.assertIsNone(wire.relayed_fields(forged), size)
        for at in range(2, len(good)):
            tampered = good[:at] + bytes([good[at] ^ 1]) + good[at + 1 :]
            self.assertIsNone(wire.verify_relayed(tampered, key), at)

    def test_relay_key_vector(self):
        """
        An allocation's key is the first 16 bytes of HMAC-SHA256(secret,
        "p2pnet relay " + allocation id); the vector was computed with
        C{openssl dgst -sha256 -hmac}.
        """
        self.assertEqual(wire.relay_key(b"relay secret", bytes(range(8))).hex(), "706a3308827877457a343ff9cfa5243c")

    def test_mac_key_lengths(self):
        """
        L{wire.Mac} pads keys up to the 64-byte block and hashes longer ones
        first, as HMAC does (RFC 2104): keys of 63, 64, 65 and 200 bytes
        give the standard library's HMAC-SHA256.
        """
        for size in (0, 1, 63, 64, 65, 200):
            key = bytes(i % 251 for i in range(size))
            self.assertEqual(wire.Mac(key).digest(b"message"), hmac.digest(key, b"message", "sha256"), size)


class HelperTests(SynchronousTestCase):
    def test_peek_type(self):
        """
        L{wire.peek_type} names the type byte of anything that starts with
        the p2pnet marker and is at least two bytes long, else None.
        """
        self.assertEqual(wire.peek_type(b"\xd1\x40"), 0x40)
        self.assertEqual(wire.peek_type(b"\xd1\x03" + T), 0x03)
        self.assertEqual(wire.peek_type(b"\xd1\xff"), 0xFF)
        self.assertIsNone(wire.peek_type(b"\xd1"))
        self.assertIsNone(wire.peek_type(b""))
        self.assertIsNone(wire.peek_type(b"\xd2\x03"))
        self.assertIsNone(wire.peek_type(b"\x00\x01\x00\x00"))

    def test_lists_become_tuples(self):
        """
        Repeated fields given as lists are stored as tuples, so messages
        stay hashable and compare equal to decoded ones.
        """
        address = Address("192.0.2.1", 80)
        message = wire.Register(T, "alice", [address])
        self.assertEqual(type(message.local), tuple)
        self.assertEqual(message, wire.Register(T, "alice", (address,)))
        self.assertEqual(hash(message), hash(wire.Register(T, "alice", (address,))))
        self.assertEqual(wire.Register(T, "alice").local, ())
        self.assertEqual(type(wire.SessionList(T, [], None, 0).sessions), tuple)

    def test_session_entry_encoding(self):
        """
        A session entry encodes every field, the mesh flag included, in
        the order the corpus uses.
        """
        info = wire.SessionInfo(b"s" * 8, "n", "g", "h", 1, 4, True, (("map", "dust"),))
        self.assertEqual(
            info.encode_value(),
            GOOD_ENTRY.replace(tlv(0x12, b"\x00"), tlv(0x12, b"\x01")) + tlv(0x09, b"map\0dust"),
        )
        self.assertEqual(wire.SessionInfo(b"s" * 8, "n", "g", "h", 1, 4).encode_value(), GOOD_ENTRY)
        raw = wire.encode(wire.SessionList(T, (info,), b"c", 1))
        self.assertEqual(wire.decode(raw).sessions, (info,))

    def test_property_names_without_nul(self):
        """
        A property name with a NUL cannot be encoded: the decoder would
        split the property at it, giving a different name and value.
        """
        message = wire.HostSession(T, "alice", b"c" * 8, "game", "g", 4, properties=(("a\0b", "c"),))
        error = self.assertRaises(ValueError, wire.encode, message)
        self.assertIn("property names cannot contain NUL", str(error))
        # A NUL in the value is fine: only the first one separates.
        message = wire.HostSession(T, "alice", b"c" * 8, "game", "g", 4, properties=(("a", "b\0c"),))
        self.assertEqual(wire.decode(wire.encode(message)), message)

    def test_encoder_limits(self):
        """
        The encoder takes strings up to 255 bytes and refuses longer ones,
        and refuses fixed-size values of the wrong size, saying which.
        """
        raw = wire.encode(wire.Heartbeat(T, "a" * 255, b"c" * 8))
        self.assertEqual(raw[10:13], b"\x01\x00\xff")
        error = self.assertRaises(ValueError, wire.encode, wire.Heartbeat(T, "a" * 256, b"c" * 8))
        self.assertIn("longer than 255 bytes", str(error))
        error = self.assertRaises(ValueError, wire.encode, wire.Heartbeat(T, "alice", b"c" * 9))
        self.assertIn("cookie must be 8 bytes", str(error))

    def test_address_encoding(self):
        """
        Addresses encode as family (4 or 6), port, packed address; a scoped
        IPv6 literal (which C{inet_pton} refuses) encodes without its scope.
        """
        def public_field(address):
            raw = wire.encode(wire.HeartbeatAck(T, address, 60))
            return raw[13 : 13 + raw[12]]

        self.assertEqual(public_field(Address("192.0.2.1", 80)), IPV4)
        self.assertEqual(public_field(Address("::1", 65535)), b"\x06\xff\xff" + bytes(15) + b"\x01")
        self.assertEqual(public_field(Address("fe80::1%eth0", 80)), b"\x06\x00\x50\xfe\x80" + bytes(13) + b"\x01")

    def test_message_encode_method(self):
        """
        C{message.encode()} is L{wire.encode} without a key.
        """
        message = wire.Heartbeat(T, "alice", b"c" * 8)
        self.assertEqual(message.encode(), control(0x03, PEER, COOKIE))


class PaddedTests(SynchronousTestCase):
    """
    L{wire.padded}: requests padded so that the introducer's answer is
    never larger than the request.
    """

    def test_default_sizes(self):
        """
        Each padded request type has its own encoded size (docs/protocol.md).
        """
        cases = [
            (wire.Register(T, "alice"), 96),
            (wire.Heartbeat(T, "alice", b"c" * 8), 56),
            (wire.HostSession(T, "alice", b"c" * 8, "game", "g", 4), 64),
            (wire.Introduce(T, "alice", b"c" * 8, target="bob"), 400),
            (wire.ListSessions(T), 1200),
            (wire.RelayRequest(T, "alice", b"c" * 8, "bob", b"i" * 8), 160),
            (wire.CandidateOffer(T, "alice", b"c" * 8, "bob", b"i" * 8, Address("192.0.2.1", 80)), 160),
            (wire.Proof(T, "alice", b"x" * 16, b"p" * 16), 96),
        ]
        for message, size in cases:
            raw = wire.encode(wire.padded(message))
            self.assertEqual(len(raw), size, type(message).__name__)
            self.assertEqual(raw[-size + len(wire.encode(message)) :][:1], b"\x17")
            self.assertEqual(attrs_evolve(wire.decode(raw), padding=None), message)

    def test_explicit_size_and_limits(self):
        """
        With an explicit size: exactly that size when at least a field
        header (3 bytes) is missing; no padding when nothing is missing
        or the message is already longer (an old padding is dropped); an
        empty padding field when fewer than 3 bytes are missing.
        """
        message = wire.Heartbeat(T, "alice", b"c" * 8)
        self.assertEqual(len(wire.encode(message)), 29)
        self.assertEqual(len(wire.encode(wire.padded(message, 40))), 40)
        self.assertEqual(len(wire.encode(wire.padded(message, 32))), 32)
        self.assertEqual(wire.padded(message, 32).padding, b"")
        self.assertEqual(wire.padded(message, 30).padding, b"")
        self.assertEqual(wire.padded(message, 29), message)
        self.assertIsNone(wire.padded(message, 29).padding)
        self.assertIsNone(wire.padded(attrs_evolve(message, padding=b"x" * 50), 20).padding)
        self.assertEqual(wire.padded(attrs_evolve(message, padding=b"x" * 50), 40).padding, bytes(8))

    def test_without_padding_field(self):
        """
        Messages without a padding field come back unchanged; types
        without a default size are not padded.
        """
        answer = wire.Registered(T, Address("192.0.2.1", 80), 60, b"c" * 8)
        self.assertIs(wire.padded(answer, 500), answer)
        probe = wire.Probe(T, b"i" * 8)
        self.assertIs(wire.padded(probe), probe)
        unregister = wire.Unregister(T, "alice", b"c" * 8)
        self.assertIs(wire.padded(unregister), unregister)
        hello = wire.Hello(T, b"i" * 8, "alice", 1)
        self.assertIs(wire.padded(hello), hello)
