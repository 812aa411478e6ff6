"""
Tests for L{p2pnet.stun}, the STUN codec: the RFC 5769 test vectors,
round trips for every attribute kind, and hostile input.
"""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pnet.address import Address
from p2pnet.errors import MalformedMessage
from p2pnet.stun import (
    AlternateServer,
    AttributeType,
    ChangeRequest,
    ErrorCode,
    Fingerprint,
    MappedAddress,
    MessageClass,
    MessageIntegrity,
    MessageIntegritySha256,
    Method,
    Nonce,
    OtherAddress,
    Padding,
    RawAttribute,
    Realm,
    ResponseOrigin,
    ResponsePort,
    Software,
    StunMessage,
    UnknownAttributes,
    Username,
    XorMappedAddress,
    check_fingerprint,
    decode,
    decode_xor_address,
    encode,
    encode_xor_address,
    long_term_key,
    looks_like_stun,
    short_term_key,
    verify_integrity,
)

# RFC 5769 section 2: the test vectors, as published (padding in the first
# three is spaces, which receivers must ignore).
SAMPLE_TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
SAMPLE_PASSWORD = "VOkJxbRl1RmTxUk/WvJxBt"

SAMPLE_REQUEST = bytes.fromhex(
    "00010058"
    "2112a442"
    "b7e7a701bc34d686fa87dfae"
    "80220010" "5354554e20746573742063" "6c69656e74"
    "00240004" "6e0001ff"
    "80290008" "932ff9b151263b36"
    "00060009" "6576746a3a68367659202020"
    "00080014" "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    "80280004" "e57a3bcf"
)

SAMPLE_IPV4_RESPONSE = bytes.fromhex(
    "0101003c"
    "2112a442"
    "b7e7a701bc34d686fa87dfae"
    "8022000b" "7465737420766563746f7220"
    "00200008" "0001a147e112a643"
    "00080014" "2b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    "80280004" "c07d4c96"
)

SAMPLE_IPV6_RESPONSE = bytes.fromhex(
    "01010048"
    "2112a442"
    "b7e7a701bc34d686fa87dfae"
    "8022000b" "7465737420766563746f7220"
    "00200014" "0002a1470113a9faa5d3f179bc25f4b5bed2b9d9"
    "00080014" "a382954e4be67bf11784c97c8292c275bfe3ed41"
    "80280004" "c8fb0b4c"
)

LONG_TERM_TID = bytes.fromhex("78ad3433c6ad72c029da412e")
LONG_TERM_USERNAME = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
LONG_TERM_PASSWORD = "The\u00adM\u00aatr\u2168"  # "TheMatrIX" after SASLprep
LONG_TERM_REQUEST = bytes.fromhex(
    "00010060"
    "2112a442"
    "78ad3433c6ad72c029da412e"
    "00060012" "e3839ee38388e383aae38383e382afe382b90000"
    "0015001c" "662f2f3439396b39353464364f4c33346f4c39465354767936347341"
    "0014000b" "6578616d706c652e6f726700"
    "00080014" "f67024656dd64a3e02b8e0712e85c9a28ca89666"
)


class RFC5769Tests(SynchronousTestCase):
    """
    The published test vectors decode to the published values, and their
    integrity and fingerprints verify.
    """

    def test_vector_lengths(self) -> None:
        """
        The transcribed vectors have the lengths RFC 5769 gives (108, 80, 92
        and 116 bytes), so a transcription slip cannot hide.
        """
        self.assertEqual(
            [len(SAMPLE_REQUEST), len(SAMPLE_IPV4_RESPONSE), len(SAMPLE_IPV6_RESPONSE), len(LONG_TERM_REQUEST)],
            [108, 80, 92, 116],
        )

    def test_sample_request(self) -> None:
        """
        The sample request is a Binding request whose SOFTWARE, PRIORITY,
        ICE-CONTROLLED and USERNAME decode; its short-term MESSAGE-INTEGRITY
        and FINGERPRINT verify, and a wrong password does not.
        """
        message = decode(SAMPLE_REQUEST)
        self.assertEqual(message.method, Method.BINDING)
        self.assertEqual(message.message_class, MessageClass.REQUEST)
        self.assertEqual(message.transaction_id, SAMPLE_TID)
        self.assertEqual(message.get(Software), Software("STUN test client"))
        self.assertEqual(message.get(Username), Username("evtj:h6vY"))
        self.assertEqual(
            message.get_raw(AttributeType.PRIORITY),
            RawAttribute(AttributeType.PRIORITY, bytes.fromhex("6e0001ff")),
        )
        self.assertEqual(
            message.get_raw(AttributeType.ICE_CONTROLLED).value,
            bytes.fromhex("932ff9b151263b36"),
        )
        self.assertEqual(message.get(Fingerprint), Fingerprint(0xE57A3BCF))
        self.assertTrue(looks_like_stun(SAMPLE_REQUEST))
        self.assertTrue(check_fingerprint(SAMPLE_REQUEST))
        self.assertTrue(verify_integrity(SAMPLE_REQUEST, short_term_key(SAMPLE_PASSWORD)))
        self.assertFalse(verify_integrity(SAMPLE_REQUEST, short_term_key(SAMPLE_PASSWORD + "x")))

    def test_sample_request_reencodes(self) -> None:
        """
        Re-encoding the decoded sample request with the same key reproduces
        the vector, apart from the spaces it uses as padding.
        """
        message = decode(SAMPLE_REQUEST)
        data = encode(message, integrity_key=short_term_key(SAMPLE_PASSWORD))
        self.assertEqual(len(data), len(SAMPLE_REQUEST))
        self.assertEqual(data[:-36], SAMPLE_REQUEST[:-36].replace(b"Y   ", b"Y\0\0\0"))
        self.assertTrue(verify_integrity(data, short_term_key(SAMPLE_PASSWORD)))
        self.assertTrue(check_fingerprint(data))

    def test_ipv4_response(self) -> None:
        """
        The IPv4 sample response maps to 192.0.2.1:32853 and verifies.
        """
        message = decode(SAMPLE_IPV4_RESPONSE)
        self.assertEqual(message.message_class, MessageClass.SUCCESS)
        self.assertEqual(message.method, Method.BINDING)
        self.assertEqual(message.get(Software), Software("test vector"))
        self.assertEqual(message.mapped_address, Address("192.0.2.1", 32853))
        self.assertTrue(check_fingerprint(SAMPLE_IPV4_RESPONSE))
        self.assertTrue(verify_integrity(SAMPLE_IPV4_RESPONSE, short_term_key(SAMPLE_PASSWORD)))

    def test_ipv4_response_encodes_exactly(self) -> None:
        """
        Building the IPv4 response from its values reproduces the vector
        byte for byte except the padding after "test vector" (a space in the
        RFC, zero from us), and therefore the MAC and CRC.
        """
        message = StunMessage(
            Method.BINDING,
            MessageClass.SUCCESS,
            SAMPLE_TID,
            (Software("test vector"), XorMappedAddress(Address("192.0.2.1", 32853))),
        )
        data = encode(message, integrity_key=short_term_key(SAMPLE_PASSWORD))
        expected_body = SAMPLE_IPV4_RESPONSE[:44].replace(b"vector ", b"vector\0")
        self.assertEqual(data[:44], expected_body)
        self.assertEqual(decode(data).without_trailer(), message)

    def test_ipv6_response(self) -> None:
        """
        The IPv6 sample response maps to [2001:db8:1234:5678:11:2233:4455:6677]:32853
        and verifies.
        """
        message = decode(SAMPLE_IPV6_RESPONSE)
        self.assertEqual(
            message.mapped_address,
            Address("2001:db8:1234:5678:11:2233:4455:6677", 32853),
        )
        self.assertTrue(check_fingerprint(SAMPLE_IPV6_RESPONSE))
        self.assertTrue(verify_integrity(SAMPLE_IPV6_RESPONSE, short_term_key(SAMPLE_PASSWORD)))

    def test_long_term_request(self) -> None:
        """
        The long-term credential request carries the username, nonce and
        realm; its MESSAGE-INTEGRITY verifies with MD5(user:realm:SASLprep(pass))
        and it has no FINGERPRINT.
        """
        message = decode(LONG_TERM_REQUEST)
        self.assertEqual(message.transaction_id, LONG_TERM_TID)
        self.assertEqual(message.get(Username), Username(LONG_TERM_USERNAME))
        self.assertEqual(message.get(Nonce), Nonce("f//499k954d6OL34oL9FSTvy64sA"))
        self.assertEqual(message.get(Realm), Realm("example.org"))
        key = long_term_key(LONG_TERM_USERNAME, "example.org", LONG_TERM_PASSWORD)
        self.assertEqual(key, long_term_key(LONG_TERM_USERNAME, "example.org", "TheMatrIX"))
        self.assertTrue(verify_integrity(LONG_TERM_REQUEST, key))
        self.assertFalse(check_fingerprint(LONG_TERM_REQUEST))
        self.assertFalse(
            verify_integrity(LONG_TERM_REQUEST, long_term_key(LONG_TERM_USERNAME, "example.org", "TheMatrix"))
        )

    def test_long_term_request_encodes_exactly(self) -> None:
        """
        The long-term request, which uses zero padding, is reproduced byte
        for byte from its values.
        """
        message = StunMessage.request(
            Method.BINDING,
            (Username(LONG_TERM_USERNAME), Nonce("f//499k954d6OL34oL9FSTvy64sA"), Realm("example.org")),
            transaction_id=LONG_TERM_TID,
        )
        key = long_term_key(LONG_TERM_USERNAME, "example.org", LONG_TERM_PASSWORD)
        self.assertEqual(encode(message, integrity_key=key, fingerprint=False), LONG_TERM_REQUEST)


class IntegrityTests(SynchronousTestCase):
    """
    MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT as written by
    L{encode}.
    """

    def message(self) -> StunMessage:
        return StunMessage.request(
            attributes=[Username("alice"), Software("p2pnet")],
            transaction_id=b"\x01" * 12,
        )

    def test_sha256_integrity(self) -> None:
        """
        With C{sha256=True} the message carries a 32-byte
        MESSAGE-INTEGRITY-SHA256 (and no SHA-1 one) that verifies with the
        key and not with another.
        """
        data = encode(self.message(), integrity_key=b"key", sha256=True)
        decoded = decode(data)
        self.assertEqual(len(decoded.get(MessageIntegritySha256).mac), 32)
        self.assertIsNone(decoded.get(MessageIntegrity))
        self.assertTrue(verify_integrity(data, b"key"))
        self.assertFalse(verify_integrity(data, b"other"))

    def test_integrity_covers_the_body(self) -> None:
        """
        Changing one byte of a protected attribute breaks the integrity
        check.
        """
        data = bytearray(encode(self.message(), integrity_key=b"key", fingerprint=False))
        data[25] ^= 0x01
        self.assertFalse(verify_integrity(bytes(data), b"key"))

    def test_unprotected_message_does_not_verify(self) -> None:
        """
        A message without MESSAGE-INTEGRITY never verifies.
        """
        self.assertFalse(verify_integrity(encode(self.message()), b"key"))

    def test_attributes_after_integrity_are_ignored(self) -> None:
        """
        Attributes after MESSAGE-INTEGRITY (other than FINGERPRINT) are
        dropped by the decoder, as RFC 8489 requires.
        """
        data = encode(self.message(), integrity_key=b"key", fingerprint=False)
        extra = struct.pack("!HH", AttributeType.SOFTWARE, 4) + b"evil"
        tampered = data[:2] + struct.pack("!H", len(data) - 20 + 8) + data[4:] + extra
        decoded = decode(tampered)
        self.assertEqual(decoded.attributes[-1], decode(data).attributes[-1])
        self.assertTrue(verify_integrity(tampered, b"key"))

    def test_bad_fingerprint_is_malformed(self) -> None:
        """
        A message whose FINGERPRINT does not match is rejected.
        """
        data = bytearray(encode(self.message()))
        data[-1] ^= 0xFF
        self.assertFalse(check_fingerprint(bytes(data)))
        self.assertRaises(MalformedMessage, decode, bytes(data))

    def test_attribute_after_fingerprint_is_malformed(self) -> None:
        """
        FINGERPRINT must be the last attribute.
        """
        data = encode(self.message())
        extra = struct.pack("!HH", AttributeType.SOFTWARE, 4) + b"late"
        tampered = data[:2] + struct.pack("!H", len(data) - 20 + 8) + data[4:] + extra
        self.assertRaises(MalformedMessage, decode, tampered)

    def test_encode_replaces_existing_trailer(self) -> None:
        """
        Stale MESSAGE-INTEGRITY and FINGERPRINT attributes in the message are
        not written; fresh ones are.
        """
        stale = StunMessage.request(
            attributes=[Software("x"), MessageIntegrity(b"\0" * 20), Fingerprint(1)],
            transaction_id=b"\x02" * 12,
        )
        data = encode(stale, integrity_key=b"k")
        self.assertTrue(verify_integrity(data, b"k"))
        self.assertTrue(check_fingerprint(data))
        self.assertEqual(len(decode(data).attributes), 3)


class HeaderTests(SynchronousTestCase):
    """
    The message type packs the method and class as RFC 8489 figure 3 says.
    """

    def test_binding_types(self) -> None:
        """
        Binding request, indication, success and error are 0x0001, 0x0011,
        0x0101 and 0x0111.
        """
        for message_class, expected in [
            (MessageClass.REQUEST, 0x0001),
            (MessageClass.INDICATION, 0x0011),
            (MessageClass.SUCCESS, 0x0101),
            (MessageClass.ERROR, 0x0111),
        ]:
            data = encode(StunMessage(Method.BINDING, message_class, b"\0" * 12), fingerprint=False)
            self.assertEqual(struct.unpack("!H", data[:2])[0], expected)

    def test_turn_methods(self) -> None:
        """
        An Allocate request is 0x0003 and a Data indication 0x0017.
        """
        allocate = encode(StunMessage.request(Method.ALLOCATE, transaction_id=b"\0" * 12), fingerprint=False)
        data = encode(StunMessage(Method.DATA, MessageClass.INDICATION, b"\0" * 12), fingerprint=False)
        self.assertEqual(allocate[:2], b"\x00\x03")
        self.assertEqual(data[:2], b"\x00\x17")

    def test_looks_like_stun(self) -> None:
        """
        C{looks_like_stun} accepts a framed message and rejects wrong top
        bits, a wrong cookie, a length that is not a multiple of 4, or one
        that disagrees with the datagram.
        """
        good = encode(StunMessage.request(transaction_id=b"\0" * 12))
        self.assertTrue(looks_like_stun(good))
        self.assertFalse(looks_like_stun(b"\x40" + good[1:]))
        self.assertFalse(looks_like_stun(good[:4] + b"\0\0\0\0" + good[8:]))
        self.assertFalse(looks_like_stun(good + b"\0\0\0\0"))
        self.assertFalse(looks_like_stun(good[:2] + b"\x00\x09" + good[4:] + b"\0"))
        self.assertFalse(looks_like_stun(good[:19]))
        self.assertFalse(looks_like_stun(b""))

    def test_xor_address_uses_transaction_id_for_ipv6(self) -> None:
        """
        An IPv6 XOR address depends on the transaction id; an IPv4 one does
        not.
        """
        v6 = Address("2001:db8::1", 5)
        self.assertNotEqual(encode_xor_address(v6, b"\0" * 12), encode_xor_address(v6, b"\1" * 12))
        v4 = Address("192.0.2.1", 5)
        self.assertEqual(encode_xor_address(v4, b"\0" * 12), encode_xor_address(v4, b"\1" * 12))
        self.assertEqual(decode_xor_address(encode_xor_address(v6, b"\7" * 12), b"\7" * 12), v6)


# ---------------------------------------------------------------------------
# Property tests.

ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
addresses = st.builds(Address, st.one_of(ipv4, ipv6), st.integers(0, 65535))
text = st.text(max_size=40)
address_kinds = st.sampled_from([MappedAddress, XorMappedAddress, OtherAddress, ResponseOrigin, AlternateServer])
text_kinds = st.sampled_from([Software, Username, Realm, Nonce])

# Types the codec decodes itself, which a RawAttribute must not use (it
# would decode as the typed value instead).
_TYPED = {
    AttributeType.MAPPED_ADDRESS, AttributeType.XOR_MAPPED_ADDRESS, AttributeType.OTHER_ADDRESS,
    AttributeType.RESPONSE_ORIGIN, AttributeType.ALTERNATE_SERVER, AttributeType.SOFTWARE,
    AttributeType.USERNAME, AttributeType.REALM, AttributeType.NONCE, AttributeType.ERROR_CODE,
    AttributeType.UNKNOWN_ATTRIBUTES, AttributeType.CHANGE_REQUEST, AttributeType.RESPONSE_PORT,
    AttributeType.PADDING, AttributeType.MESSAGE_INTEGRITY, AttributeType.MESSAGE_INTEGRITY_SHA256,
    AttributeType.FINGERPRINT,
}

body_attributes = st.one_of(
    st.builds(lambda kind, address: kind(address), address_kinds, addresses),
    st.builds(lambda kind, value: kind(value), text_kinds, text),
    st.builds(ErrorCode, st.integers(300, 699), text),
    st.builds(UnknownAttributes, st.lists(st.integers(0, 0xFFFF), max_size=6)),
    st.builds(ChangeRequest, st.booleans(), st.booleans()),
    st.builds(ResponsePort, st.integers(0, 65535)),
    st.builds(Padding, st.integers(0, 64)),
    st.builds(
        RawAttribute,
        st.integers(0, 0xFFFF).filter(lambda t: t not in _TYPED),
        st.binary(max_size=40),
    ),
)

messages = st.builds(
    StunMessage,
    st.integers(0, 0xFFF),
    st.sampled_from(list(MessageClass)),
    st.binary(min_size=12, max_size=12),
    st.lists(body_attributes, max_size=8),
)


class PropertyTests(SynchronousTestCase):
    """
    Round trips for every attribute kind, and hostile input only ever raises
    L{MalformedMessage}.
    """

    @given(messages)
    def test_round_trip_without_trailer(self, message: StunMessage) -> None:
        """
        Any message encodes and decodes back to itself.
        """
        data = encode(message, fingerprint=False)
        self.assertTrue(looks_like_stun(data))
        self.assertEqual(decode(data), message)

    @given(messages, st.binary(min_size=1, max_size=32), st.booleans())
    def test_round_trip_with_trailer(self, message: StunMessage, key: bytes, sha256: bool) -> None:
        """
        With integrity and fingerprint, the body survives and both verify.
        """
        data = encode(message, integrity_key=key, sha256=sha256)
        decoded = decode(data)
        self.assertEqual(decoded.without_trailer(), message)
        self.assertTrue(verify_integrity(data, key))
        self.assertTrue(check_fingerprint(data))
        self.assertIsInstance(decoded.attributes[-1], Fingerprint)

    @given(st.binary(max_size=200))
    def test_arbitrary_bytes(self, data: bytes) -> None:
        """
        Arbitrary bytes decode or raise L{MalformedMessage}, nothing else;
        the checks never raise.
        """
        try:
            decode(data)
        except MalformedMessage:
            pass
        check_fingerprint(data)
        verify_integrity(data, b"key")
        looks_like_stun(data)

    @given(st.binary(min_size=0, max_size=120))
    def test_framed_garbage(self, payload: bytes) -> None:
        """
        Random attribute bytes behind a valid header decode or raise
        L{MalformedMessage}.
        """
        payload = payload[: len(payload) // 4 * 4]
        data = struct.pack("!HHI", 0x0101, len(payload), 0x2112A442) + b"\5" * 12 + payload
        try:
            decode(data)
        except MalformedMessage:
            pass

    @given(messages, st.data())
    def test_mutated_messages(self, message: StunMessage, data) -> None:
        """
        A valid message with bytes flipped, cut or added decodes or raises
        L{MalformedMessage}, nothing else.
        """
        encoded = bytearray(encode(message, integrity_key=b"k", fingerprint=data.draw(st.booleans())))
        for _ in range(data.draw(st.integers(1, 4))):
            choice = data.draw(st.integers(0, 2))
            if choice == 0 and encoded:
                index = data.draw(st.integers(0, len(encoded) - 1))
                encoded[index] ^= data.draw(st.integers(1, 255))
            elif choice == 1:
                encoded = encoded[: data.draw(st.integers(0, len(encoded)))]
            else:
                encoded += data.draw(st.binary(min_size=1, max_size=8))
        try:
            decode(bytes(encoded))
        except MalformedMessage:
            pass
        verify_integrity(bytes(encoded), b"k")
        check_fingerprint(bytes(encoded))

    @given(messages)
    def test_length_fields_are_rewritten_consistently(self, message: StunMessage) -> None:
        """
        A message whose header length is changed by a multiple of 4 is
        rejected (it no longer matches the datagram).
        """
        data = encode(message)
        length = struct.unpack("!H", data[2:4])[0]
        bad = data[:2] + struct.pack("!H", (length + 4) & 0xFFFF) + data[4:]
        self.assertRaises(MalformedMessage, decode, bad)
