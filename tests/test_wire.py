"""
Tests for L{p2pnet.wire}, the p2pnet codec.
"""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pnet import wire
from p2pnet.address import Address
from p2pnet.errors import MalformedMessage

txids = st.binary(min_size=8, max_size=8)
ids8 = st.binary(min_size=8, max_size=8)
keys = st.binary(min_size=16, max_size=16)
cookies = st.binary(min_size=8, max_size=8)
short_text = st.text(max_size=40)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
addresses = st.builds(Address, st.one_of(ipv4, ipv6), st.integers(0, 65535))
address_lists = st.lists(addresses, max_size=4).map(tuple)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
properties = st.lists(
    st.tuples(st.text(max_size=10).filter(lambda k: "\0" not in k), st.text(max_size=20)),
    max_size=3,
).map(tuple)
optional = st.none().__or__
paddings = st.none() | st.binary(max_size=64)

session_infos = st.builds(
    wire.SessionInfo, ids8, short_text, short_text, short_text, u16, u16, st.booleans(), properties
)

messages = st.one_of(
    st.builds(
        wire.Register, txids, short_text, address_lists, st.none() | cookies,
        st.none() | st.integers(0, 255), paddings,
    ),
    st.builds(wire.Registered, txids, addresses, u32, cookies),
    st.builds(wire.Heartbeat, txids, short_text, cookies, paddings),
    st.builds(wire.HeartbeatAck, txids, addresses, u32),
    st.builds(wire.Unregister, txids, short_text, cookies),
    st.builds(
        wire.HostSession, txids, short_text, cookies, short_text, short_text, u16,
        st.none() | st.integers(0, 255), properties, paddings,
    ),
    st.builds(wire.SessionHosted, txids, ids8),
    st.builds(wire.Unhost, txids, short_text, cookies, ids8),
    st.builds(
        wire.ListSessions, txids, st.none() | short_text, st.none() | st.binary(min_size=1, max_size=16),
        properties, st.none() | short_text, st.none() | st.integers(0, 255), st.none() | u16, paddings,
    ),
    st.builds(
        wire.SessionList, txids, st.lists(session_infos, max_size=3).map(tuple),
        st.none() | st.binary(min_size=1, max_size=16), u32,
    ),
    st.builds(
        wire.Introduce, txids, short_text, cookies, st.none() | short_text, st.none() | ids8, paddings
    ),
    st.builds(
        wire.Introduction, txids, ids8, short_text, addresses, address_lists, keys,
        st.integers(0, 255), st.none() | ids8, st.none() | st.integers(0, 255), st.none() | u16,
    ),
    st.builds(wire.IntroAck, txids, ids8),
    st.builds(wire.RelayRequest, txids, short_text, cookies, short_text, ids8, paddings),
    st.builds(wire.RelayOffer, txids, ids8, ids8, addresses, keys, st.integers(0, 1)),
    st.builds(wire.ReverseRequest, txids, short_text, cookies, short_text, ids8),
    st.builds(wire.Reverse, txids, short_text, ids8, addresses),
    st.builds(wire.Error, txids, u16, short_text),
    st.builds(wire.Probe, txids, ids8),
    st.builds(wire.Hello, txids, ids8, short_text, u16, address_lists, st.none() | u32),
    st.builds(wire.HelloAck, txids, ids8, short_text, u16, addresses),
    st.builds(wire.Keepalive, txids, ids8, u32),
    st.builds(wire.Close, txids, ids8),
)


class RoundTripTests(SynchronousTestCase):
    """
    Every message survives encode/decode unchanged.
    """

    @given(messages)
    def test_round_trip(self, message):
        """
        Decoding an encoded message gives an equal message.
        """
        self.assertEqual(wire.decode(wire.encode(message)), message)

    @given(messages, keys)
    def test_signed_round_trip(self, message, key):
        """
        A signed message verifies with its key, not with another key, and
        still decodes to the same message.
        """
        raw = wire.encode(message, key)
        self.assertTrue(wire.verify(raw, key))
        self.assertFalse(wire.verify(raw, bytes(b ^ 1 for b in key)))
        self.assertFalse(wire.verify(wire.encode(message), key))
        self.assertEqual(wire.decode(raw), message)

    @given(u16, st.binary(max_size=100), keys)
    def test_data_round_trip(self, conn_id, payload, key):
        """
        Data frames carry exactly four bytes of framing, plus the tag when
        signed; a tampered frame fails verification.
        """
        plain = wire.encode_data(conn_id, payload)
        self.assertEqual(len(plain), len(payload) + 4)
        self.assertEqual(wire.decode(plain), wire.Data(conn_id, payload))
        signed = wire.encode_data(conn_id, payload, key)
        self.assertEqual(len(signed), len(payload) + 4 + wire.DATA_TAG_SIZE)
        self.assertEqual(wire.verify_data(signed, key), payload)
        tampered = signed[:4] + bytes([signed[4] ^ 0xFF]) + signed[5:] if payload else signed[:-1] + b"\0"
        if tampered != signed:
            self.assertIsNone(wire.verify_data(tampered, key))


class MacTests(SynchronousTestCase):
    @given(st.binary(max_size=150), st.binary(max_size=300))
    def test_same_as_hmac(self, key, message):
        """
        L{wire.Mac} gives HMAC-SHA256, for keys shorter than, as long as and
        longer than the hash's 64-byte block.
        """
        self.assertEqual(wire.Mac(key).digest(message), hmac.digest(key, message, "sha256"))

    @given(st.binary(max_size=100), keys)
    def test_sign_interchangeable_with_key(self, message, key):
        """
        C{sign} and C{verify} give and accept the same bytes with a
        L{wire.Mac} as with its plain key, and the Mac is reusable.
        """
        mac = wire.Mac(key)
        message = bytes(wire.HEADER_SIZE) + message  # as long as a control message header
        signed = wire.sign(message, key)
        self.assertEqual(wire.sign(message, mac), signed)
        self.assertTrue(wire.verify(signed, mac))
        self.assertTrue(wire.verify(wire.sign(message, mac), key))
        self.assertFalse(wire.verify(signed, wire.Mac(bytes(b ^ 1 for b in key))))


class DatagramMacTests(SynchronousTestCase):
    def test_known_tags(self):
        """
        Datagram tags are keyed BLAKE2s with an 8-byte digest (RFC 7693):
        fixed vectors pin the wire format, and a 32-byte digest cut to 8
        bytes is a different function.
        """
        # The BLAKE2s-256 example of RFC 7693, appendix B, checks the hash.
        self.assertEqual(
            hashlib.blake2s(b"abc").hexdigest(), "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"
        )
        key = bytes(range(16))
        self.assertEqual(wire.datagram_tag(key, b"").hex(), "f09b980f484956ea")
        self.assertEqual(wire.DatagramMac(key).tag(b"abc").hex(), "e50bdaf489c3c6ab")
        self.assertEqual(wire.datagram_tag(key, b"abc").hex(), "e50bdaf489c3c6ab")
        self.assertNotEqual(wire.datagram_tag(key, b"abc"), hashlib.blake2s(b"abc", key=key).digest()[:8])

    @given(u16, st.binary(max_size=100), keys, ids8, st.integers(0, 1))
    def test_interchangeable_with_key(self, conn_id, payload, key, allocation, side):
        """
        Data and relay tags are the same bytes with a L{wire.DatagramMac}
        as with its plain key, and the DatagramMac is reusable.
        """
        mac = wire.DatagramMac(key)
        data = wire.encode_data(conn_id, payload, key)
        self.assertEqual(wire.encode_data(conn_id, payload, mac), data)
        self.assertEqual(wire.verify_data(data, mac), payload)
        self.assertEqual(wire.verify_data(wire.encode_data(conn_id, payload, mac), key), payload)
        relayed = wire.encode_relayed(allocation, side, payload, key)
        self.assertEqual(wire.encode_relayed(allocation, side, payload, mac), relayed)
        self.assertEqual(wire.verify_relayed(relayed, mac), payload)
        self.assertIsNone(wire.verify_data(data[:-1] + bytes([data[-1] ^ 1]), mac))
        self.assertIsNone(wire.verify_relayed(relayed, wire.DatagramMac(bytes(b ^ 1 for b in key))))


class RelayFramingTests(SynchronousTestCase):
    @given(ids8, st.integers(0, 1), st.binary(max_size=100), keys)
    def test_relay_round_trip(self, allocation, side, inner, key):
        """
        A relay datagram carries allocation, side and inner datagram, and
        verifies only with the allocation key.
        """
        raw = wire.encode_relayed(allocation, side, inner, key)
        self.assertEqual(wire.relayed_fields(raw), (allocation, side))
        self.assertEqual(wire.verify_relayed(raw, key), inner)
        self.assertIsNone(wire.verify_relayed(raw, bytes(b ^ 1 for b in key)))

    @given(st.sampled_from(wire.NAT_BEHAVIOURS), st.sampled_from(wire.NAT_BEHAVIOURS))
    def test_nat_packing(self, mapping, filtering):
        """
        NAT behaviours survive packing into one byte.
        """
        self.assertEqual(wire.unpack_nat(wire.pack_nat(mapping, filtering)), (mapping, filtering))


class MalformedTests(SynchronousTestCase):
    """
    The decoder raises only L{MalformedMessage}, whatever it is given.
    """

    @given(st.binary(max_size=300))
    def test_arbitrary_bytes(self, data):
        """
        Arbitrary bytes either decode or raise MalformedMessage.
        """
        try:
            wire.decode(data)
        except MalformedMessage:
            pass

    @given(st.binary(max_size=300))
    def test_arbitrary_after_header(self, tail):
        """
        Arbitrary bytes after a valid header (any known type) either decode
        or raise MalformedMessage.
        """
        for type_ in wire.MessageType:
            try:
                wire.decode(bytes((wire.MAGIC, type_)) + bytes(8) + tail)
            except MalformedMessage:
                pass

    @given(messages, st.data())
    def test_mutated(self, message, data):
        """
        A valid message with bytes flipped, cut or inserted either decodes
        or raises MalformedMessage.
        """
        raw = _mutate(wire.encode(message), data, 4)
        try:
            wire.decode(raw)
        except MalformedMessage:
            pass

    def test_reasons(self):
        """
        The error says what was wrong.
        """
        cases = {
            b"": "too short",
            b"\x00\x01" + bytes(18): "not a p2pnet datagram",
            b"\xd2\x01" + bytes(8): "unsupported p2pnet version 2",
            b"\xd1\x7f" + bytes(8): "unknown message type",
            b"\xd1\x03" + bytes(8): "lacks PEER_ID",
            b"\xd1\x03" + bytes(8) + b"\x01\x00\x05ab": "runs past the end",
            b"\xd1\x03" + bytes(8) + b"\x01\x00\x01a\x01\x00\x01b": "repeats PEER_ID",
            b"\xd1\x03" + bytes(8) + b"\xff\x00\x01x\x01\x00\x01a": "AUTH field is not last",
        }
        for raw, reason in cases.items():
            error = self.assertRaises(MalformedMessage, wire.decode, raw)
            self.assertIn(reason, str(error))

    def test_not_stun(self):
        """
        No p2pnet datagram can be taken for STUN (first two bits zero) or
        TURN ChannelData (first byte 0x40-0x7F).
        """
        raw = wire.encode(wire.Heartbeat(bytes(8), "a", bytes(8)))
        self.assertGreaterEqual(raw[0], 0x80)
        self.assertGreaterEqual(wire.encode_data(1, b"x")[0], 0x80)

    def test_encoder_refuses_unrepresentable(self):
        """
        Values that cannot be encoded raise ValueError in the encoder.
        """
        self.assertRaises(ValueError, wire.encode, wire.Heartbeat(bytes(8), "x" * 300, bytes(8)))
        self.assertRaises(ValueError, wire.Heartbeat, bytes(7), "x", bytes(8))


heartbeats = st.builds(wire.Heartbeat, txids, short_text, cookies, paddings)


def _mutate(raw: bytes, data, changes: int = 3) -> bytes:
    """
    C{raw} with up to C{changes} bytes flipped, cuts or insertions.
    """
    raw = bytearray(raw)
    for _ in range(data.draw(st.integers(1, changes))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        position = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if action == "flip" and raw:
            raw[position] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[position:]
        else:
            raw[position:position] = data.draw(st.binary(min_size=1, max_size=4))
    return bytes(raw)


class HeartbeatFastPathTests(SynchronousTestCase):
    """
    L{wire.parse_heartbeat} and L{wire.encode_heartbeat_ack} agree with
    the generic codec.
    """

    @given(heartbeats, st.none() | keys)
    def test_parses_what_encode_makes(self, message, key):
        """
        Every heartbeat L{wire.encode} makes, padded or not, signed or not,
        is parsed to its txid, peer id and cookie.
        """
        raw = wire.encode(message, key)
        self.assertEqual(wire.parse_heartbeat(raw), (message.txid, message.peer_id, message.cookie))

    @given(heartbeats | messages, st.none() | keys, st.data())
    def test_never_disagrees(self, message, key, data):
        """
        For any datagram, valid or mangled, the fast parser either declines
        (None) or returns exactly what L{wire.decode} finds.
        """
        raw = wire.encode(message, key)
        if data.draw(st.booleans()):
            raw = _mutate(raw, data)
        parsed = wire.parse_heartbeat(raw)
        if parsed is None:
            return
        decoded = wire.decode(raw)
        self.assertIsInstance(decoded, wire.Heartbeat)
        self.assertEqual(parsed, (decoded.txid, decoded.peer_id, decoded.cookie))

    def test_declines_other_layouts(self):
        """
        Heartbeats in a layout L{wire.encode} does not make, and other
        messages, are left to the generic decoder.
        """
        heartbeat = wire.Heartbeat(b"t" * 8, "alice", b"c" * 8)
        raw = wire.encode(heartbeat)
        peer_field, cookie_field = raw[10:18], raw[18:]
        self.assertEqual(wire.decode(raw[:10] + cookie_field + peer_field), heartbeat)
        self.assertIsNone(wire.parse_heartbeat(raw[:10] + cookie_field + peer_field))
        self.assertIsNone(wire.parse_heartbeat(raw + b"\x17\x00\x05abc"))
        self.assertIsNone(wire.parse_heartbeat(raw[:-1]))
        self.assertIsNone(wire.parse_heartbeat(wire.encode(wire.Unregister(b"t" * 8, "alice", b"c" * 8))))
        self.assertIsNone(wire.parse_heartbeat(raw[:13] + b"\xff" + raw[14:]))

    @given(txids, addresses, u32, st.none() | keys)
    def test_ack_equals_encode(self, txid, public, lifetime, key):
        """
        The fast heartbeat answer is byte for byte the generic encoding.
        """
        self.assertEqual(
            wire.encode_heartbeat_ack(txid, public, lifetime, key),
            wire.encode(wire.HeartbeatAck(txid, public, lifetime), key),
        )
