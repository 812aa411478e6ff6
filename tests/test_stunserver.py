"""
Tests for L{p2pnet._stunserver}: the Binding responder, RFC 5780 behaviour
discovery, and the small UDP server around it.
"""

from __future__ import annotations

import struct
import zlib

from hypothesis import given, settings, strategies as st
from twisted.internet.error import CannotListenError
from twisted.trial.unittest import SynchronousTestCase

from p2pnet._stunserver import _MAX_SOURCES, StunResponder, StunServer, StunServerProtocol, listen_stun
from p2pnet.address import Address
from p2pnet.stun import (
    AttributeType,
    ChangeRequest,
    ErrorCode,
    MappedAddress,
    MessageIntegrity,
    MessageClass,
    Method,
    OtherAddress,
    Padding,
    RawAttribute,
    ResponseOrigin,
    ResponsePort,
    Software,
    StunMessage,
    UnknownAttributes,
    Username,
    XorMappedAddress,
    check_fingerprint,
    decode,
    encode,
)

CLIENT = Address("198.51.100.7", 40000)
PRIMARY = Address("192.0.2.1", 3478)
OTHER = Address("192.0.2.2", 3479)
TID = b"\x11" * 12
#: Error answers are never larger than the request (they must not
#: amplify): requests that expect one carry this much SOFTWARE.
PAD = Software("x" * 60)


def binding(*attributes, method: int = Method.BINDING) -> bytes:
    return encode(StunMessage.request(method, attributes, transaction_id=TID))


class PlainResponderTests(SynchronousTestCase):
    """
    Without an alternate address the responder is a plain RFC 8489 Binding
    server.
    """

    def setUp(self) -> None:
        self.responder = StunResponder()

    def answer(self, data: bytes, local: Address = PRIMARY) -> tuple[StunMessage, str, Address]:
        reply = self.responder.respond(data, CLIENT, local)
        self.assertIsNotNone(reply)
        body, via = reply
        self.assertTrue(check_fingerprint(body))
        return decode(body), via, reply.destination

    def test_binding_success(self) -> None:
        """
        A Binding request gets a success response with the same transaction
        id, XOR-MAPPED-ADDRESS and MAPPED-ADDRESS of the source, SOFTWARE and
        FINGERPRINT, sent from the primary socket back to the source.
        """
        response, via, destination = self.answer(binding())
        self.assertEqual(response.message_class, MessageClass.SUCCESS)
        self.assertEqual(response.method, Method.BINDING)
        self.assertEqual(response.transaction_id, TID)
        self.assertEqual(response.get(XorMappedAddress), XorMappedAddress(CLIENT))
        self.assertEqual(response.get(MappedAddress), MappedAddress(CLIENT))
        self.assertEqual(response.get(Software), Software("p2pnet"))
        self.assertIsNone(response.get(OtherAddress))
        self.assertIsNone(response.get(ResponseOrigin))
        self.assertEqual((via, destination), ("primary", CLIENT))

    def test_ipv6_source(self) -> None:
        """
        An IPv6 client gets its IPv6 address back.
        """
        source = Address("2001:db8::5", 1234)
        reply = self.responder.respond(binding(), source, Address("2001:db8::1", 3478))
        self.assertEqual(decode(reply[0]).mapped_address, source)

    def test_software_can_be_omitted(self) -> None:
        """
        With C{software=None} no SOFTWARE attribute is sent.
        """
        reply = StunResponder(software=None).respond(binding(), CLIENT, PRIMARY)
        self.assertIsNone(decode(reply[0]).get(Software))

    def test_not_stun_is_dropped(self) -> None:
        """
        Datagrams that are not STUN get no answer.
        """
        self.assertIsNone(self.responder.respond(b"hello, introducer", CLIENT, PRIMARY))

    def test_indications_and_responses_are_dropped(self) -> None:
        """
        Binding indications, success and error responses get no answer.
        """
        for message_class in (MessageClass.INDICATION, MessageClass.SUCCESS, MessageClass.ERROR):
            data = encode(StunMessage(Method.BINDING, message_class, TID))
            self.assertIsNone(self.responder.respond(data, CLIENT, PRIMARY), message_class)

    def test_other_methods_get_400(self) -> None:
        """
        A request for another method (here TURN Allocate) gets 400.
        """
        response, via, _ = self.answer(binding(PAD, method=Method.ALLOCATE))
        self.assertEqual(response.message_class, MessageClass.ERROR)
        self.assertEqual(response.method, Method.ALLOCATE)
        self.assertEqual(response.error_code.code, 400)
        self.assertEqual(via, "primary")

    def test_unknown_comprehension_required_attribute_gets_420(self) -> None:
        """
        An unknown comprehension-required attribute gets 420 listing it in
        UNKNOWN-ATTRIBUTES; unknown comprehension-optional ones are ignored.
        """
        response, _, _ = self.answer(binding(RawAttribute(0x7777, b"x"), RawAttribute(0xC001, b"y")))
        self.assertEqual(response.error_code.code, 420)
        self.assertEqual(response.get(UnknownAttributes), UnknownAttributes([0x7777]))
        response, _, _ = self.answer(binding(RawAttribute(0xC001, b"y")))
        self.assertEqual(response.message_class, MessageClass.SUCCESS)

    def test_ice_attributes_are_understood(self) -> None:
        """
        PRIORITY and USE-CANDIDATE (ICE connectivity checks) do not cause 420.
        """
        response, _, _ = self.answer(
            binding(RawAttribute(AttributeType.PRIORITY, b"\0\0\0\1"), RawAttribute(AttributeType.USE_CANDIDATE))
        )
        self.assertEqual(response.message_class, MessageClass.SUCCESS)

    def test_malformed_request_gets_400(self) -> None:
        """
        A framed request whose attributes cannot be parsed gets 400 with the
        same transaction id.
        """
        bad_attribute = struct.pack("!HH", AttributeType.XOR_MAPPED_ADDRESS, 4) + b"\0\x09\0\0"
        bad_attribute += struct.pack("!HH", AttributeType.SOFTWARE, 60) + b"x" * 60
        data = struct.pack("!HHI", 0x0001, len(bad_attribute), 0x2112A442) + TID + bad_attribute
        response, _, _ = self.answer(data)
        self.assertEqual(response.error_code.code, 400)
        self.assertEqual(response.transaction_id, TID)

    def test_change_request_without_alternate_gets_420(self) -> None:
        """
        A CHANGE-REQUEST asking for a change when there is no alternate
        address gets 420 (RFC 5780 section 6.1).
        """
        response, _, _ = self.answer(binding(ChangeRequest(change_ip=True, change_port=True), PAD))
        self.assertEqual(response.error_code.code, 420)
        self.assertEqual(response.get(UnknownAttributes), UnknownAttributes([AttributeType.CHANGE_REQUEST]))

    def test_empty_change_request_is_answered(self) -> None:
        """
        A CHANGE-REQUEST with no flags set is an ordinary Binding request.
        """
        response, via, _ = self.answer(binding(ChangeRequest()))
        self.assertEqual((response.message_class, via), (MessageClass.SUCCESS, "primary"))

    def test_response_port(self) -> None:
        """
        RESPONSE-PORT sends the answer to the source IP at that port.
        """
        _, _, destination = self.answer(binding(ResponsePort(5555)))
        self.assertEqual(destination, Address(CLIENT.host, 5555))

    def test_padding_with_response_port_gets_400(self) -> None:
        """
        PADDING together with RESPONSE-PORT is a bad request (RFC 5780 6.1).
        """
        response, _, destination = self.answer(binding(ResponsePort(5555), Padding(8)))
        self.assertEqual(response.error_code.code, 400)
        self.assertEqual(destination, CLIENT)

    def test_padding_is_echoed_not_amplified(self) -> None:
        """
        A request with PADDING gets PADDING of the same length back, not
        more.
        """
        response, _, _ = self.answer(binding(Padding(64)))
        self.assertEqual(response.get(Padding), Padding(64))

    def test_rate_limiter(self) -> None:
        """
        The rate limiter sees each request's source, and a refusal drops the
        request unanswered.
        """
        seen = []

        def limiter(source: Address) -> bool:
            seen.append(source)
            return len(seen) < 2

        responder = StunResponder(rate_limiter=limiter)
        self.assertIsNotNone(responder.respond(binding(), CLIENT, PRIMARY))
        self.assertIsNone(responder.respond(binding(), CLIENT, PRIMARY))
        self.assertEqual(seen, [CLIENT, CLIENT])


class RFC5780ResponderTests(SynchronousTestCase):
    """
    With an alternate address the responder is an RFC 5780 server.
    """

    def setUp(self) -> None:
        self.responder = StunResponder(other_address=OTHER, primary_address=PRIMARY)
        self.addresses = {
            "primary": PRIMARY,
            "alt-port": Address(PRIMARY.host, OTHER.port),
            "alt-ip": Address(OTHER.host, PRIMARY.port),
            "alt-both": OTHER,
        }

    def answer(self, data: bytes, received_on: str = "primary") -> tuple[StunMessage, str]:
        body, via = self.responder.respond(data, CLIENT, self.addresses[received_on])
        return decode(body), via

    def test_binding_carries_other_address_and_response_origin(self) -> None:
        """
        A plain Binding request on the primary socket is answered from it,
        with OTHER-ADDRESS (the alternate IP and port) and RESPONSE-ORIGIN.
        """
        response, via = self.answer(binding())
        self.assertEqual(via, "primary")
        self.assertEqual(response.get(OtherAddress), OtherAddress(OTHER))
        self.assertEqual(response.get(ResponseOrigin), ResponseOrigin(PRIMARY))
        self.assertEqual(response.mapped_address, CLIENT)

    def test_change_requests_on_primary(self) -> None:
        """
        Change IP, change port and both select the matching socket, and
        RESPONSE-ORIGIN names it (RFC 5780 table 1).
        """
        for change, expected in [
            (ChangeRequest(change_ip=True), "alt-ip"),
            (ChangeRequest(change_port=True), "alt-port"),
            (ChangeRequest(change_ip=True, change_port=True), "alt-both"),
        ]:
            response, via = self.answer(binding(change))
            self.assertEqual(via, expected)
            self.assertEqual(response.get(ResponseOrigin), ResponseOrigin(self.addresses[expected]))
            self.assertEqual(response.get(OtherAddress), OtherAddress(OTHER))

    def test_requests_on_alternate_sockets(self) -> None:
        """
        Requests received on an alternate socket name the socket differing
        in both IP and port as OTHER-ADDRESS, and changes are relative to
        the receiving socket.
        """
        response, via = self.answer(binding(), "alt-both")
        self.assertEqual((via, response.get(OtherAddress).address), ("alt-both", PRIMARY))
        response, via = self.answer(binding(ChangeRequest(change_ip=True)), "alt-ip")
        self.assertEqual(via, "primary")
        self.assertEqual(response.get(OtherAddress).address, self.addresses["alt-port"])
        response, via = self.answer(binding(ChangeRequest(change_port=True)), "alt-port")
        self.assertEqual(via, "primary")

    def test_without_primary_address_local_is_primary(self) -> None:
        """
        Without C{primary_address}, the socket a request arrived on is taken
        as the primary (the introducer's single-socket case).
        """
        responder = StunResponder(other_address=OTHER)
        body, via = responder.respond(binding(ChangeRequest(change_port=True)), CLIENT, PRIMARY)
        self.assertEqual(via, "alt-port")
        self.assertEqual(decode(body).get(ResponseOrigin).address, Address(PRIMARY.host, OTHER.port))

    def test_alternate_port_only(self) -> None:
        """
        With only an alternate port, change-port works, OTHER-ADDRESS names
        the other port, and change-IP gets 420.
        """
        responder = StunResponder(other_address=Address(PRIMARY.host, 4000), primary_address=PRIMARY)
        body, via = responder.respond(binding(ChangeRequest(change_port=True)), CLIENT, PRIMARY)
        self.assertEqual(via, "alt-port")
        self.assertEqual(decode(body).get(OtherAddress).address, Address(PRIMARY.host, 4000))
        body, via = responder.respond(binding(ChangeRequest(change_ip=True), PAD), CLIENT, PRIMARY)
        self.assertEqual((decode(body).error_code.code, via), (420, "primary"))
        body, via = responder.respond(binding(), CLIENT, Address(PRIMARY.host, 4000))
        self.assertEqual((decode(body).get(OtherAddress).address, via), (PRIMARY, "alt-port"))

    def test_errors_leave_from_the_receiving_socket(self) -> None:
        """
        An error answer to a request received on an alternate socket is sent
        from that socket.
        """
        response, via = self.answer(binding(RawAttribute(0x7001, b""), PAD), "alt-ip")
        self.assertEqual((response.error_code.code, via), (420, "alt-ip"))


class FakeTransport:
    """
    Records what a protocol sends.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple]] = []

    def write(self, data: bytes, addr: tuple) -> None:
        self.sent.append((data, addr))


class FakePort:
    def __init__(self, protocol, host: str, port: int) -> None:
        self.protocol = protocol
        self.host, self.port = host, port
        self.stopped = False

    def getHost(self):
        return self

    def stopListening(self) -> None:
        self.stopped = True


class FakeUDPReactor:
    """
    Just enough C{IReactorUDP} for L{listen_stun}: hands out ports, refuses
    the ones listed in C{busy}.
    """

    def __init__(self, busy=()) -> None:
        self.busy = set(busy)
        self.ports: list[FakePort] = []
        self.next_port = 50000

    def listenUDP(self, port: int, protocol, interface: str = "") -> FakePort:
        if (interface, port) in self.busy:
            raise CannotListenError(interface, port, OSError("in use"))
        if port == 0:
            port, self.next_port = self.next_port, self.next_port + 1
        listening = FakePort(protocol, interface, port)
        protocol.transport = FakeTransport()
        self.ports.append(listening)
        return listening


class ServerTests(SynchronousTestCase):
    """
    L{listen_stun} binds the sockets RFC 5780 needs and answers from the
    right one.
    """

    def test_plain_server(self) -> None:
        """
        With no alternates, one socket is bound and answers Binding requests
        to their source.
        """
        reactor = FakeUDPReactor()
        ports = listen_stun(reactor, Address("127.0.0.1", 0))
        self.assertEqual(len(ports), 1)
        protocol = ports[0].protocol
        protocol.datagramReceived(binding(), ("127.0.0.1", 1234))
        [(data, addr)] = protocol.transport.sent
        self.assertEqual(addr, ("127.0.0.1", 1234))
        self.assertEqual(decode(data).mapped_address, Address("127.0.0.1", 1234))

    def test_four_sockets(self) -> None:
        """
        With an alternate IP and port, four sockets are bound (alternate-IP
        ones on the same ports as the primary IP's), and a change-IP-and-port
        request received on the primary is answered from the alternate pair.
        """
        reactor = FakeUDPReactor()
        ports = listen_stun(reactor, Address("127.0.0.1", 0), "127.0.0.2", 0)
        self.assertEqual(
            [(p.host, p.port) for p in ports],
            [("127.0.0.1", 50000), ("127.0.0.1", 50001), ("127.0.0.2", 50000), ("127.0.0.2", 50001)],
        )
        primary, _, _, both = (p.protocol for p in ports)
        primary.datagramReceived(binding(ChangeRequest(True, True)), ("127.0.0.1", 999))
        self.assertEqual(primary.transport.sent, [])
        [(data, addr)] = both.transport.sent
        response = decode(data)
        self.assertEqual(addr, ("127.0.0.1", 999))
        self.assertEqual(response.get(ResponseOrigin).address, Address("127.0.0.2", 50001))
        self.assertEqual(response.get(OtherAddress).address, Address("127.0.0.2", 50001))

    def test_bind_failure_closes_the_others(self) -> None:
        """
        If one of the sockets cannot be bound, the ones already bound are
        closed and the error propagates.
        """
        reactor = FakeUDPReactor(busy={("127.0.0.2", 3478)})
        self.assertRaises(
            CannotListenError, listen_stun, reactor, Address("127.0.0.1", 3478), "127.0.0.2", 3479
        )
        self.assertEqual([p.stopped for p in reactor.ports], [True, True])

    def test_missing_socket_drops(self) -> None:
        """
        A server without the socket a change request needs answers 420 from
        the receiving socket rather than failing.
        """
        server = StunServer(StunResponder(other_address=Address("127.0.0.1", 2), primary_address=Address("127.0.0.1", 1)))
        protocol = StunServerProtocol(server, "primary", Address("127.0.0.1", 1))
        protocol.transport = FakeTransport()
        server.protocols["primary"] = protocol
        protocol.datagramReceived(binding(ChangeRequest(change_port=True)), ("127.0.0.1", 7))
        self.assertEqual((protocol.transport.sent, server.dropped), ([], 1))
        protocol.datagramReceived(binding(ChangeRequest(change_ip=True), PAD), ("127.0.0.1", 7))
        [(data, _)] = protocol.transport.sent
        self.assertEqual(decode(data).get(ErrorCode).code, 420)


class ResponsePortZeroTests(SynchronousTestCase):
    """
    RESPONSE-PORT 0 names no port.
    """

    def test_response_port_zero_gets_400(self) -> None:
        """
        A request asking for the answer at port 0 gets 400 at its source.
        """
        reply = StunResponder().respond(binding(ResponsePort(0)), CLIENT, PRIMARY)
        self.assertEqual(decode(reply[0]).error_code.code, 400)
        self.assertEqual(reply.destination, CLIENT)


class FailingTransport(FakeTransport):
    def write(self, data: bytes, addr: tuple) -> None:
        raise OSError("network is unreachable")


class WriteFailureTests(SynchronousTestCase):
    """
    A socket error while answering drops the answer without breaking the
    server.
    """

    def test_write_error_is_counted(self) -> None:
        """
        An OSError from the transport counts as a dropped answer.
        """
        server = StunServer(StunResponder())
        protocol = StunServerProtocol(server, "primary", PRIMARY)
        protocol.transport = FailingTransport()
        server.protocols["primary"] = protocol
        protocol.datagramReceived(binding(), CLIENT.as_tuple())
        self.assertEqual((server.answered, server.dropped), (0, 1))


# -- the quick Binding path ----------------------------------------------------

ports = st.integers(0, 65535)
tids = st.binary(min_size=12, max_size=12)
ipv4_addresses = st.builds(Address, st.ip_addresses(v=4).map(str), ports)
ipv6_addresses = st.builds(Address, st.ip_addresses(v=6).map(str), ports)
sources = st.one_of(
    ipv4_addresses,
    ipv6_addresses,
    st.sampled_from([Address("fe80::1%eth0", 5), Address("::ffff:192.0.2.9", 7), CLIENT]),
)


def _attribute(attribute_type: int, value: bytes, length: int | None = None) -> bytes:
    """
    An encoded attribute, padded; with C{length}, one that claims that many
    bytes of value instead.
    """
    if length is None:
        length = len(value)
    return struct.pack("!HH", attribute_type, length) + value + bytes(-len(value) % 4)


@st.composite
def plain_requests(draw) -> bytes:
    """
    Binding requests of the shapes the quick path takes, built byte by byte,
    and its near misses: SOFTWARE that is not UTF-8, a FINGERPRINT that is
    wrong, short or not last, an attribute running past the end.
    """
    tid = draw(tids)
    values = draw(st.lists(st.text(max_size=12).map(str.encode) | st.binary(max_size=9), max_size=2))
    body = b"".join(_attribute(AttributeType.SOFTWARE, value) for value in values)
    ending = draw(
        st.sampled_from(
            ["none", "fingerprint", "wrong fingerprint", "short fingerprint", "fingerprint, then more", "overrun"]
        )
    )
    quick_types = st.sampled_from([AttributeType.SOFTWARE, AttributeType.FINGERPRINT])
    if ending == "overrun":
        value = draw(st.binary(max_size=8))
        body += _attribute(draw(quick_types), value, len(value) + draw(st.integers(1, 8)))
    elif ending == "short fingerprint":
        body += _attribute(AttributeType.FINGERPRINT, draw(st.binary(max_size=3)))
    elif ending != "none":
        after = _attribute(draw(quick_types), b"x") if ending == "fingerprint, then more" else b""
        head = struct.pack("!HHI12s", 0x0001, len(body) + 8 + len(after), 0x2112A442, tid)
        crc = zlib.crc32(head + body) ^ 0x5354554E
        if ending == "wrong fingerprint":
            crc ^= 1 << draw(st.integers(0, 31))
        body += _attribute(AttributeType.FINGERPRINT, struct.pack("!I", crc)) + after
    return struct.pack("!HHI12s", 0x0001, len(body), 0x2112A442, tid) + body


#: Attributes of requests of any shape: those of the quick path, and
#: everything it must leave to the generic path.
request_attributes = st.one_of(
    st.builds(Software, st.text(max_size=20)),
    st.builds(RawAttribute, st.just(AttributeType.SOFTWARE), st.binary(max_size=9)),
    st.builds(RawAttribute, st.just(AttributeType.FINGERPRINT), st.binary(max_size=6)),
    st.builds(ChangeRequest, st.booleans(), st.booleans()),
    st.builds(ResponsePort, ports),
    st.builds(Padding, st.integers(0, 12)),
    st.builds(XorMappedAddress, sources),
    st.builds(Username, st.text(max_size=8)),
    st.builds(MessageIntegrity, st.binary(min_size=20, max_size=20)),
    st.builds(
        RawAttribute,
        st.sampled_from(
            [
                AttributeType.PRIORITY,
                AttributeType.USE_CANDIDATE,
                AttributeType.ICE_CONTROLLING,
                AttributeType.MESSAGE_INTEGRITY,
                AttributeType.CHANGE_REQUEST,
                0x7777,
                0xC001,
            ]
        ),
        st.binary(max_size=9),
    ),
)


def _request(
    method: int, message_class: MessageClass, tid: bytes, attributes: list, fingerprint: bool
) -> bytes:
    return encode(StunMessage(method, message_class, tid, attributes), fingerprint=fingerprint)


#: Requests of any shape, method and class.
requests = st.builds(
    _request,
    st.sampled_from([Method.BINDING] * 6 + [Method.ALLOCATE, 0x0FFF]),
    st.sampled_from([MessageClass.REQUEST] * 6 + list(MessageClass)),
    tids,
    st.lists(request_attributes, max_size=3),
    st.booleans(),
)


def mutate(raw: bytes, data) -> bytes:
    """
    Flip, cut or insert bytes, rewrite the length of the first attribute,
    or append one; then, mostly, mend the header's length field so the
    damage gets past the framing check to the attribute parsers.
    """
    raw = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "attribute length", "append"]))
        position = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if action == "flip" and raw:
            raw[position] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[position:]
        elif action == "insert":
            raw[position:position] = data.draw(st.binary(min_size=1, max_size=4))
        elif action == "append":
            raw += _attribute(data.draw(st.sampled_from([AttributeType.SOFTWARE, 0xC001])), b"x")
        elif len(raw) >= 24:
            raw[22:24] = data.draw(st.integers(0, 40)).to_bytes(2, "big")
    if len(raw) >= 20 and data.draw(st.integers(0, 3)):
        raw[2:4] = (len(raw) - 20).to_bytes(2, "big")
    return bytes(raw)


#: Alternate addresses: both differ, port only, IP only, neither (no RFC
#: 5780 service), an IPv6 one.
alternates = st.sampled_from(
    [
        None,
        OTHER,
        Address(PRIMARY.host, 4000),
        Address("192.0.2.2", PRIMARY.port),
        PRIMARY,
        Address("2001:db8::2", 3479),
    ]
)


@st.composite
def servers(draw) -> tuple[Address | None, Address | None, Address]:
    """
    An alternate address, a primary address, and the socket a request
    arrives on: mostly one of the server's own sockets, else a wildcard
    bind or an unrelated address.
    """
    other = draw(alternates)
    primary = draw(st.sampled_from([None, PRIMARY, PRIMARY]))
    base = primary or PRIMARY
    own = [base]
    if other is not None:
        own += [Address(base.host, other.port), Address(other.host, base.port), other]
    elsewhere = [Address("0.0.0.0", 3479), Address("0.0.0.0", base.port), Address("2001:db8::1", 3478)]
    local = draw(st.sampled_from(own) | st.sampled_from(own) | st.sampled_from(elsewhere))
    return other, primary, local


def outcome(responder: StunResponder, data: bytes, source: Address, local: Address):
    reply = responder.respond(data, source, local)
    return None if reply is None else (reply.data, reply.via, reply.destination)


class GenericOnlyResponder(StunResponder):
    quick_bindings = False


class CountingResponder(StunResponder):
    """
    Counts the requests that reach the generic path.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.generic = 0

    def _answer(self, data, source, local):
        self.generic += 1
        return super()._answer(data, source, local)


class QuickBindingTests(SynchronousTestCase):
    """
    Plain Binding requests are answered without decoding them, with exactly
    the bytes the generic path makes; every other datagram is left to the
    generic path.
    """

    @settings(max_examples=1000)
    @given(
        plain_requests() | requests,
        sources,
        servers(),
        st.none() | st.text(max_size=30),
        st.none() | st.booleans(),
        st.data(),
    )
    def test_same_as_generic(self, data, source, server, software, admit, draw) -> None:
        """
        For any request (plain, with SOFTWARE and/or FINGERPRINT, with other
        attributes, another method or class, mangled or truncated) from an
        IPv4 or IPv6 source, a responder with the quick path and one without
        return the same answer (or both none), for plain and RFC 5780
        configurations, and consult the rate limiter alike.
        """
        other, primary, local = server
        if draw.draw(st.booleans()):
            data = mutate(data, draw)
        responders = []
        for kind in (StunResponder, GenericOnlyResponder):
            consulted: list[Address] = []
            limiter = None if admit is None else (lambda s, seen=consulted: seen.append(s) or admit)
            responders.append((kind(software, other, limiter, primary_address=primary), consulted))
        (quick, quick_consulted), (generic, generic_consulted) = responders
        expected = outcome(generic, data, source, local)
        self.assertEqual(outcome(quick, data, source, local), expected)
        # Again, now from the per-socket template.
        self.assertEqual(outcome(quick, data, source, local), expected)
        self.assertEqual(quick_consulted, generic_consulted * 2)

    @given(
        tids,
        ipv4_addresses | ipv6_addresses,
        st.sampled_from([(), (Software("natcheck"),)]),
        st.booleans(),
    )
    def test_quick_answers_decode(self, tid, source, attributes, fingerprint) -> None:
        """
        A quick answer is a well-formed Binding success response carrying
        the source as XOR-MAPPED-ADDRESS and MAPPED-ADDRESS.
        """
        data = encode(StunMessage.request(Method.BINDING, attributes, tid), fingerprint=fingerprint)
        reply = StunResponder(other_address=OTHER, primary_address=PRIMARY).respond(data, source, PRIMARY)
        response = decode(reply.data)
        self.assertTrue(check_fingerprint(reply.data))
        self.assertEqual((response.message_class, response.transaction_id), (MessageClass.SUCCESS, tid))
        self.assertEqual(response.get(XorMappedAddress), XorMappedAddress(source))
        self.assertEqual(response.get(MappedAddress), MappedAddress(source))

    def test_quick_path_taken(self) -> None:
        """
        The request shapes common clients send (our load generator's and
        aioice's bare request, natcheck's SOFTWARE and FINGERPRINT, either
        alone) from IPv4 and IPv6 sources, to plain and RFC 5780 servers,
        never reach the generic path; anything else does, as does
        everything with C{quick_bindings} off.
        """
        quick = [
            binding(),
            encode(StunMessage.request(Method.BINDING, (), TID), fingerprint=False),
            binding(Software("p2pnet natcheck")),
            encode(StunMessage.request(Method.BINDING, (Software("x"),), TID), fingerprint=False),
        ]
        generic = [
            binding(ChangeRequest()),
            binding(ChangeRequest(change_port=True), PAD),
            binding(ResponsePort(5555)),
            binding(Padding(8)),
            binding(RawAttribute(AttributeType.PRIORITY, b"\0\0\0\1")),
            binding(RawAttribute(AttributeType.SOFTWARE, b"\xff"), RawAttribute(0xC001, b"x" * 60)),
            binding(PAD, method=Method.ALLOCATE),
            binding(PAD)[:-1] + bytes([binding(PAD)[-1] ^ 1]),
        ]
        for arguments in [{}, {"other_address": OTHER, "primary_address": PRIMARY}]:
            responder = CountingResponder(**arguments)
            for source in (CLIENT, Address("2001:db8::5", 1234)):
                for data in quick:
                    self.assertIsNotNone(responder.respond(data, source, PRIMARY))
            self.assertEqual(responder.generic, 0)
            for data in generic:
                self.assertIsNotNone(responder.respond(data, CLIENT, PRIMARY))
            self.assertEqual(responder.generic, len(generic))
            responder.respond(binding(), Address("fe80::1%eth0", 5), PRIMARY)
            self.assertEqual(responder.generic, len(generic) + 1)
        responder = CountingResponder()
        responder.quick_bindings = False
        responder.respond(binding(), CLIENT, PRIMARY)
        self.assertEqual(responder.generic, 1)

    def test_settings_changed_after_answering(self) -> None:
        """
        Changing the alternate, the primary or the SOFTWARE text after
        answering (as L{listen_stun} sets the alternates once its sockets
        are bound) changes the quick answers as it does the generic ones.
        """
        quick, generic = StunResponder(), GenericOnlyResponder()
        changes = [
            ("other_address", OTHER),
            ("primary_address", Address(OTHER.host, PRIMARY.port)),
            ("software", "something else"),
            ("software", None),
            ("other_address", None),
        ]
        for name, value in changes:
            before = outcome(quick, binding(), CLIENT, PRIMARY)
            setattr(quick, name, value)
            setattr(generic, name, value)
            after = outcome(quick, binding(), CLIENT, PRIMARY)
            self.assertEqual(after, outcome(generic, binding(), CLIENT, PRIMARY))
            self.assertNotEqual(after, before, name)

    def assert_sources_within_bounds(self, receive, last_written, server: StunServer) -> None:
        """
        Requests from more sources than the server remembers are each
        answered at their own address, and the table stays bounded.
        """
        for n in range(_MAX_SOURCES + 5):
            source = ("198.51.100.7", 1000 + n % (_MAX_SOURCES + 1))
            receive(binding(), source)
            data, addr = last_written()
            self.assertEqual(addr, source)
            self.assertEqual(decode(data).mapped_address, Address(*addr))
            self.assertLessEqual(len(server._sources), _MAX_SOURCES)
        self.assertEqual(server.answered, _MAX_SOURCES + 5)

    def test_sources_remembered_within_bounds(self) -> None:
        """
        The server answers each source at its own address however many it
        has seen, and forgets them rather than growing without bound.
        """
        server = StunServer(StunResponder())
        protocol = StunServerProtocol(server, "primary", PRIMARY)
        protocol.transport = FakeTransport()
        server.protocols["primary"] = protocol
        self.assert_sources_within_bounds(
            protocol.datagramReceived, lambda: protocol.transport.sent[-1], server
        )

    def test_introducer_sources_within_bounds(self) -> None:
        """
        The introducer's STUN path, too, answers each source at its own
        address and keeps a bounded table of them.
        """
        from twisted.internet.task import Clock

        from p2pnet._registry import Registry
        from p2pnet.introducer import IntroducerProtocol
        from tests.helpers import FakeDatagramTransport

        protocol = IntroducerProtocol(Clock(), Registry(30.0, bytes), bytes, stun_responder=StunResponder())
        protocol.makeConnection(FakeDatagramTransport())
        self.assert_sources_within_bounds(
            protocol.datagramReceived, lambda: protocol.transport.written[-1], protocol.stun_server
        )
        self.assertEqual(protocol.stats["stun-answered"], _MAX_SOURCES + 5)
        protocol.doStop()
