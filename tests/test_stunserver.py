"""
Tests for L{p2pnet._stunserver}: the Binding responder, RFC 5780 behaviour
discovery, and the small UDP server around it.
"""

from __future__ import annotations

import struct

from twisted.internet.error import CannotListenError
from twisted.trial.unittest import SynchronousTestCase

from p2pnet._stunserver import StunResponder, StunServer, StunServerProtocol, listen_stun
from p2pnet.address import Address
from p2pnet.stun import (
    AttributeType,
    ChangeRequest,
    ErrorCode,
    MappedAddress,
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
    XorMappedAddress,
    check_fingerprint,
    decode,
    encode,
)

CLIENT = Address("198.51.100.7", 40000)
PRIMARY = Address("192.0.2.1", 3478)
OTHER = Address("192.0.2.2", 3479)
TID = b"\x11" * 12


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
        response, via, _ = self.answer(binding(method=Method.ALLOCATE))
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
        data = struct.pack("!HHI", 0x0001, len(bad_attribute), 0x2112A442) + TID + bad_attribute
        response, _, _ = self.answer(data)
        self.assertEqual(response.error_code.code, 400)
        self.assertEqual(response.transaction_id, TID)

    def test_change_request_without_alternate_gets_420(self) -> None:
        """
        A CHANGE-REQUEST asking for a change when there is no alternate
        address gets 420 (RFC 5780 section 6.1).
        """
        response, _, _ = self.answer(binding(ChangeRequest(change_ip=True, change_port=True)))
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
        body, via = responder.respond(binding(ChangeRequest(change_ip=True)), CLIENT, PRIMARY)
        self.assertEqual((decode(body).error_code.code, via), (420, "primary"))
        body, via = responder.respond(binding(), CLIENT, Address(PRIMARY.host, 4000))
        self.assertEqual((decode(body).get(OtherAddress).address, via), (PRIMARY, "alt-port"))

    def test_errors_leave_from_the_receiving_socket(self) -> None:
        """
        An error answer to a request received on an alternate socket is sent
        from that socket.
        """
        response, via = self.answer(binding(RawAttribute(0x7001, b"")), "alt-ip")
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
        protocol.datagramReceived(binding(ChangeRequest(change_ip=True)), ("127.0.0.1", 7))
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
