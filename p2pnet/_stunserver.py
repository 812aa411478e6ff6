"""
A STUN Binding server, with RFC 5780 NAT behaviour discovery when it has an
alternate address.

L{StunResponder} is the decision part: bytes in, bytes out plus the name of
the local socket to send from.  It has no sockets and no clock, so the
introducer can call it from its own datagram handler when
L{p2pnet.stun.looks_like_stun} says a datagram is STUN.

Plain Binding requests, the bulk of the traffic, take a quick path that
builds the answer straight from bytes (see L{StunResponder.quick_bindings});
the same bytes as the generic decode/encode path, which answers the rest.

L{StunServerProtocol} and L{listen_stun} are a small standalone server
around it: up to four UDP sockets (primary, alternate port, alternate IP,
both), as RFC 5780 needs.

Socket names, relative to the configured primary address C{A1:P1} and
alternate C{A2:P2}::

    "primary"   A1:P1        "alt-port"  A1:P2
    "alt-ip"    A2:P1        "alt-both"  A2:P2
"""

from __future__ import annotations

import struct
import zlib
from socket import AF_INET, AF_INET6, inet_pton
from typing import Callable

from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from p2pnet._udpread import listen_udp
from p2pnet._udpwrite import FastDatagramWriting
from p2pnet.address import Address
from p2pnet.errors import MalformedMessage
from p2pnet.stun import (
    HEADER_LENGTH,
    MAGIC_COOKIE,
    AttributeType,
    ChangeRequest,
    MappedAddress,
    MessageClass,
    Method,
    OtherAddress,
    Padding,
    ResponseOrigin,
    ResponsePort,
    Software,
    StunMessage,
    UnknownAttributes,
    XorMappedAddress,
    decode,
    encode,
    is_comprehension_required,
    looks_like_stun,
    TYPED_ATTRIBUTES,
)

__all__ = ["SOCKET_NAMES", "StunReply", "StunResponder", "StunServerProtocol", "StunServer", "listen_stun"]

#: The four sockets of an RFC 5780 server, indexed by (alternate IP?, alternate port?).
SOCKET_NAMES = {
    (False, False): "primary",
    (False, True): "alt-port",
    (True, False): "alt-ip",
    (True, True): "alt-both",
}
_ROLES = {name: role for role, name in SOCKET_NAMES.items()}

#: Comprehension-required attributes a Binding request may carry that this
#: server understands (or may safely ignore): everything the codec decodes,
#: plus the ICE attributes of connectivity checks.
_UNDERSTOOD = TYPED_ATTRIBUTES | {AttributeType.PRIORITY, AttributeType.USE_CANDIDATE}

# -- the quick Binding path: wire layouts --------------------------------------
#
# A success response built by StunResponder._quick_binding is, byte for byte,
# what encode() makes of the generic path's answer: the header, then
# XOR-MAPPED-ADDRESS and MAPPED-ADDRESS of the source (which change with every
# request), then the attributes that depend only on the receiving socket
# (OTHER-ADDRESS, RESPONSE-ORIGIN, SOFTWARE: a per-socket template), then
# FINGERPRINT.

#: Header, XOR-MAPPED-ADDRESS and MAPPED-ADDRESS for an IPv4 source.
_V4_HEAD = struct.Struct("!HHI12s" "HHBBHI" "HHBBH4s")
#: The same for an IPv6 source.
_V6_HEAD = struct.Struct("!HHI12s" "HHBBH16s" "HHBBH16s")
_V4_ADDRESSES_LENGTH = 2 * (4 + 8)
_V6_ADDRESSES_LENGTH = 2 * (4 + 20)
_FINGERPRINT_LENGTH = 4 + 4
#: XORed into the CRC-32 of a message to make its FINGERPRINT.
_FINGERPRINT_XOR = 0x5354554E
#: An IPv6 XOR-MAPPED-ADDRESS is XORed with the cookie and transaction id.
_V6_MASK_PREFIX = struct.pack("!I", MAGIC_COOKIE)
_FINGERPRINT_HEADER = struct.pack("!HH", AttributeType.FINGERPRINT, 4)
_BINDING_SUCCESS = 0x0101
_PORT_MASK = MAGIC_COOKIE >> 16
_ATTRIBUTE_HEADER = struct.Struct("!HH")
_SOFTWARE = int(AttributeType.SOFTWARE)
_FINGERPRINT = int(AttributeType.FINGERPRINT)
_XOR_MAPPED_ADDRESS = int(AttributeType.XOR_MAPPED_ADDRESS)
_MAPPED_ADDRESS = int(AttributeType.MAPPED_ADDRESS)
#: Sockets (local addresses) a responder keeps quick-path templates for.
_MAX_TEMPLATES = 64
#: Source addresses a L{StunServer} remembers.
_MAX_SOURCES = 1024


class StunReply(tuple):
    """
    What L{StunResponder.respond} returns: a C{(data, via)} pair, so that
    C{data, via = reply} works, plus L{destination}.

    @ivar data: the encoded response.
    @ivar via: the name of the local socket to send it from (L{SOCKET_NAMES}).
    @ivar destination: where to send it: the request's source, or its source
        IP with the port from RESPONSE-PORT.
    """

    destination: Address

    def __new__(cls, data: bytes, via: str, destination: Address) -> StunReply:
        # tuple.__new__ rather than super(): one is built per answer.
        self = tuple.__new__(cls, (data, via))
        self.destination = destination
        return self

    @property
    def data(self) -> bytes:
        return self[0]

    @property
    def via(self) -> str:
        return self[1]

    def __repr__(self) -> str:
        return f"StunReply({len(self[0])} bytes, via={self[1]!r}, destination={self.destination})"


class StunResponder:
    """
    Answers STUN Binding requests (RFC 8489) and, with C{other_address},
    RFC 5780 behaviour-discovery requests.

    @param software: the SOFTWARE text in every answer (C{None} for none).
    @param other_address: the alternate address C{A2:P2}: OTHER-ADDRESS of
        requests received on the primary socket.  Use the primary IP for an
        alternate port only, or the primary port for an alternate IP only.
        C{None}: a plain RFC 8489 server.
    @param rate_limiter: called with the request's source L{Address};
        returns C{False} to drop the request unanswered.
    @param primary_address: the primary address C{A1:P1}.  Needed when
        requests can arrive on the alternate sockets; if omitted, each
        request's C{local} address is taken as the primary.

    @cvar quick_bindings: answer plain Binding requests (no attributes, or
        only SOFTWARE and FINGERPRINT) without decoding them into messages:
        the same bytes as the generic path, several times faster.  Every
        other request takes the generic path.  Set to C{False} (on the class
        or an instance) to send everything through the generic path.
    """

    quick_bindings = True

    def __init__(
        self,
        software: str | None = "p2pnet",
        other_address: Address | None = None,
        rate_limiter: Callable[[Address], bool] | None = None,
        *,
        primary_address: Address | None = None,
    ) -> None:
        self.software = software
        self.other_address = other_address
        self.rate_limiter = rate_limiter
        self.primary_address = primary_address
        #: Receiving socket -> the quick path's template for it: see
        #: L{_binding_template}.
        self._templates: dict[Address, tuple] = {}

    # -- the RFC 5780 address plan -----------------------------------------

    def _plan(self, local: Address) -> dict[str, Address] | None:
        """
        The addresses of the sockets this server has (two or four), or
        C{None} without an alternate.
        """
        other = self.other_address
        if other is None:
            return None
        primary = self.primary_address or local
        plan = {"primary": primary}
        if other.port != primary.port:
            plan["alt-port"] = Address(primary.host, other.port)
        if other.host != primary.host:
            plan["alt-ip"] = Address(other.host, primary.port)
            if other.port != primary.port:
                plan["alt-both"] = other
        return plan if len(plan) > 1 else None

    @staticmethod
    def _role_of(local: Address, plan: dict[str, Address]) -> tuple[bool, bool]:
        for name, address in plan.items():
            if address == local:
                return _ROLES[name]
        # Bound to a wildcard address, or called with an unexpected socket:
        # judge by port alone.
        alt_port = plan.get("alt-port")
        return (False, alt_port is not None and local.port == alt_port.port)

    @staticmethod
    def _other_of(role: tuple[bool, bool], plan: dict[str, Address]) -> Address:
        """
        OTHER-ADDRESS for a request received on the socket with C{role}: the
        socket differing in both IP and port, or with a single alternate, the
        other of the two.
        """
        flipped = SOCKET_NAMES[(not role[0], not role[1])]
        if flipped in plan:
            return plan[flipped]
        mine = SOCKET_NAMES[role]
        return next(address for name, address in plan.items() if name != mine)

    # -- answering -----------------------------------------------------------

    def respond(self, data: bytes, source: Address, local: Address) -> StunReply | None:
        """
        Answer one datagram.

        @param data: the datagram as received.
        @param source: where it came from.
        @param local: the address of the socket it arrived on.
        @return: the answer, the socket to send it from and where to send
            it; or C{None} to drop the datagram (not STUN, an indication or
            response, rate-limited, or an undeliverable answer).
        """
        if not looks_like_stun(data):
            return None
        if data[0] & 0x01 or data[1] & 0x10:
            # The class bits (C1 C0) are not 00: not a request.
            return None
        if self.rate_limiter is not None and not self.rate_limiter(source):
            return None
        if self.quick_bindings and data.__class__ is bytes and data[0] == 0 and data[1] == 1:
            reply = self._quick_binding(data, source, local)
            if reply is not None:
                return reply
        return self._answer(data, source, local)

    def _answer(self, data: bytes, source: Address, local: Address) -> StunReply | None:
        """
        The generic path: answer a framed, admitted request by decoding it.
        """
        plan = self._plan(local)
        via = "primary" if plan is None else SOCKET_NAMES[self._role_of(local, plan)]
        try:
            request = decode(data)
        except MalformedMessage:
            return self._bad_request(data, source, via)
        if request.method != Method.BINDING:
            return self._error(request, 400, "Bad Request: only Binding is served here", source, via, limit=len(data))
        unknown = [
            a.type
            for a in request.attributes
            if is_comprehension_required(a.type) and a.type not in _UNDERSTOOD
        ]
        if unknown:
            return self._error(
                request, 420, "Unknown Attribute", source, via, (UnknownAttributes(unknown),), len(data)
            )
        change = request.get(ChangeRequest)
        response_port = request.get(ResponsePort)
        padding = request.get(Padding)
        if response_port is not None and response_port.port == 0:
            return self._error(request, 400, "Bad Request: RESPONSE-PORT 0", source, via, limit=len(data))
        if padding is not None and response_port is not None:
            return self._error(request, 400, "Bad Request: PADDING with RESPONSE-PORT", source, via, limit=len(data))
        destination = source if response_port is None else Address(source.host, response_port.port)
        if plan is None:
            if change is not None and (change.change_ip or change.change_port):
                return self._error(
                    request, 420, "Unknown Attribute: no alternate address",
                    source, via, (UnknownAttributes([AttributeType.CHANGE_REQUEST]),), len(data),
                )
            attributes = [XorMappedAddress(source), MappedAddress(source)]
            send_via = "primary"
        else:
            ip_alt, port_alt = self._role_of(local, plan)
            if change is not None:
                ip_alt ^= change.change_ip
                port_alt ^= change.change_port
            send_via = SOCKET_NAMES[(ip_alt, port_alt)]
            if send_via not in plan:
                return self._error(
                    request, 420, "Unknown Attribute: no such alternate address",
                    source, via, (UnknownAttributes([AttributeType.CHANGE_REQUEST]),), len(data),
                )
            other = self._other_of(self._role_of(local, plan), plan)
            attributes = [
                XorMappedAddress(source),
                MappedAddress(source),
                OtherAddress(other),
                ResponseOrigin(plan[send_via]),
            ]
        if padding is not None:
            # RFC 5780 wants the path MTU; answering with no more than was
            # asked for keeps the server from amplifying.
            attributes.append(Padding(padding.length))
        if self.software is not None:
            attributes.append(Software(self.software))
        return StunReply(encode(request.success(attributes)), send_via, destination)

    # -- the quick path for plain Binding requests ---------------------------

    def _quick_binding(self, data: bytes, source: Address, local: Address) -> StunReply | None:
        """
        Answer a framed Binding request straight from its bytes, if it is
        one the quick path knows: no attributes, or only SOFTWARE (valid
        UTF-8) and a correct FINGERPRINT (last), from an IPv4 or unscoped
        IPv6 source.

        @return: exactly what the generic path would answer, or C{None} if
            the generic path must decide.
        """
        end = len(data)
        offset = HEADER_LENGTH
        while offset < end:
            attribute_type, length = _ATTRIBUTE_HEADER.unpack_from(data, offset)
            value_end = offset + 4 + length
            following = value_end + (-length & 3)
            if following > end:
                return None
            if attribute_type == _SOFTWARE:
                try:
                    data[offset + 4 : value_end].decode("utf-8")
                except UnicodeDecodeError:
                    return None
            elif attribute_type == _FINGERPRINT:
                if (
                    length != 4
                    or following != end
                    or int.from_bytes(data[offset + 4 : value_end], "big")
                    != zlib.crc32(data[:offset]) ^ _FINGERPRINT_XOR
                ):
                    return None
            else:
                return None
            offset = following
        templates = self._templates
        template = templates.get(local)
        if (
            template is None
            or template[0] is not self.software
            or template[1] is not self.other_address
            or template[2] is not self.primary_address
        ):
            # None yet, or made before the settings changed (listen_stun
            # sets the alternates once its sockets are bound).
            if len(templates) >= _MAX_TEMPLATES:
                templates.clear()
            template = templates[local] = self._binding_template(local)
        tail = template[3]
        if tail is None:
            return None
        via = template[4]
        tid = data[8:20]
        host = source.host
        port = source.port
        try:
            if ":" in host:
                packed = inet_pton(AF_INET6, host)
                mask = _V6_MASK_PREFIX + tid
                head = _V6_HEAD.pack(
                    _BINDING_SUCCESS, _V6_ADDRESSES_LENGTH + len(tail) + _FINGERPRINT_LENGTH,
                    MAGIC_COOKIE, tid,
                    _XOR_MAPPED_ADDRESS, 20, 0, 2, port ^ _PORT_MASK,
                    (int.from_bytes(packed, "big") ^ int.from_bytes(mask, "big")).to_bytes(16, "big"),
                    _MAPPED_ADDRESS, 20, 0, 2, port, packed,
                )
            else:
                packed = inet_pton(AF_INET, host)
                head = _V4_HEAD.pack(
                    _BINDING_SUCCESS, _V4_ADDRESSES_LENGTH + len(tail) + _FINGERPRINT_LENGTH,
                    MAGIC_COOKIE, tid,
                    _XOR_MAPPED_ADDRESS, 8, 0, 1, port ^ _PORT_MASK,
                    int.from_bytes(packed, "big") ^ MAGIC_COOKIE,
                    _MAPPED_ADDRESS, 8, 0, 1, port, packed,
                )
        except OSError:
            # Not a literal inet_pton takes (a scoped IPv6 address, say).
            return None
        body = head + tail
        crc = zlib.crc32(body) ^ _FINGERPRINT_XOR
        return StunReply(body + _FINGERPRINT_HEADER + crc.to_bytes(4, "big"), via, source)

    def _binding_template(self, local: Address) -> tuple:
        """
        The quick path's template for requests received on C{local}: the
        settings it was made from (C{software}, C{other_address},
        C{primary_address}); what the generic path's answer to a plain
        Binding request carries after MAPPED-ADDRESS (OTHER-ADDRESS and
        RESPONSE-ORIGIN for an RFC 5780 server, then SOFTWARE), encoded, or
        C{None} to leave such requests to the generic path; and the socket
        the answer leaves from.
        """
        software, other, primary = self.software, self.other_address, self.primary_address
        unusable = (software, other, primary, None, None)
        plan = self._plan(local)
        if plan is None:
            attributes = []
            via = "primary"
        else:
            role = self._role_of(local, plan)
            via = SOCKET_NAMES[role]
            if via not in plan:
                return unusable
            attributes = [OtherAddress(self._other_of(role, plan)), ResponseOrigin(plan[via])]
        if software is not None:
            attributes.append(Software(software))
        try:
            tail = encode(
                StunMessage(Method.BINDING, MessageClass.SUCCESS, bytes(12), attributes), fingerprint=False
            )[HEADER_LENGTH:]
        except ValueError:
            return unusable
        if _V6_ADDRESSES_LENGTH + len(tail) + _FINGERPRINT_LENGTH > 0xFFFF:
            # Too long to encode: the generic path says so.
            return unusable
        return (software, other, primary, tail, via)

    def _error(
        self,
        request: StunMessage,
        code: int,
        reason: str,
        source: Address,
        via: str,
        extra: tuple = (),
        limit: int | None = None,
    ) -> StunReply | None:
        """
        An error answer, no larger than C{limit} bytes (the request's
        size): without SOFTWARE, then without a reason phrase if need be,
        or none at all (an error answer must not amplify).
        """
        attempts = [(reason, True), (reason, False), ("", False)]
        for phrase, software in attempts:
            attributes = list(extra)
            if software and self.software is not None:
                attributes.append(Software(self.software))
            raw = encode(request.error(code, phrase, attributes))
            if limit is None or len(raw) <= limit:
                return StunReply(raw, via, source)
        return None

    def _bad_request(self, data: bytes, source: Address, via: str) -> StunReply | None:
        """
        Answer a framed but unparseable request with 400, echoing its
        method and transaction id.
        """
        message_type = (data[0] << 8) | data[1]
        method = (message_type & 0x000F) | ((message_type & 0x00E0) >> 1) | ((message_type & 0x3E00) >> 2)
        request = StunMessage(method, MessageClass.REQUEST, bytes(data[8:20]))
        return self._error(request, 400, "Bad Request", source, via, limit=len(data))


class StunServer:
    """
    A L{StunResponder} serving a set of named sockets; created by
    L{listen_stun}.

    @ivar protocols: socket name -> its L{StunServerProtocol}.
    """

    log = Logger()

    def __init__(self, responder: StunResponder) -> None:
        self.responder = responder
        self.protocols: dict[str, StunServerProtocol] = {}
        self.answered = 0
        self.dropped = 0
        #: Recent sources' C{(host, port)} tuples -> their L{Address}:
        #: building one checks the host, which costs a quarter as much as
        #: answering a plain Binding request, and clients send several.
        self._sources: dict[tuple, Address] = {}

    def receive(self, data: bytes, addr: tuple, receiver: StunServerProtocol) -> None:
        """
        L{handle} a datagram from C{addr}, a C{(host, port)} tuple as
        C{recvfrom} gives it.
        """
        sources = self._sources
        source = sources.get(addr)
        if source is None:
            if len(sources) >= _MAX_SOURCES:
                sources.clear()
            source = sources[addr] = Address.from_tuple(addr)
        self.handle(data, source, receiver)

    def handle(self, data: bytes, source: Address, receiver: StunServerProtocol) -> None:
        reply = self.responder.respond(data, source, receiver.local)
        if reply is None:
            self.dropped += 1
            return
        answer, via = reply
        sender = self.protocols.get(via)
        if sender is None or sender.transport is None:
            self.log.debug("no {via} socket for a STUN answer to {source}", via=via, source=source)
            self.dropped += 1
            return
        try:
            sender.write_datagram(answer, reply.destination.as_tuple())
        except OSError as e:
            self.log.debug("could not answer {source}: {e}", source=source, e=e)
            self.dropped += 1
            return
        self.answered += 1


class StunServerProtocol(FastDatagramWriting, DatagramProtocol):
    """
    One UDP socket of a L{StunServer}.

    @ivar name: which socket this is (L{SOCKET_NAMES}).
    @ivar local: the address it is bound to.
    """

    def __init__(self, server: StunServer, name: str, local: Address) -> None:
        self.server = server
        self.name = name
        self.local = local

    def datagramReceived(self, datagram: bytes, addr: tuple) -> None:
        self.server.receive(datagram, addr, self)


def listen_stun(
    reactor,
    primary: Address,
    alternate_ip: str | None = None,
    alternate_port: int | None = None,
    *,
    software: str | None = "p2pnet",
    rate_limiter: Callable[[Address], bool] | None = None,
) -> list[IListeningPort]:
    """
    Bind the sockets of a STUN server and serve Binding requests on them.

    With neither alternate this is a plain RFC 8489 server on C{primary}.
    With both, it binds the four sockets of an RFC 5780 server: primary,
    alternate port, alternate IP, and both.  With one, the two sockets that
    exist.  Port 0 picks a free port (the alternate-IP sockets reuse the
    ports picked for the primary IP).

    @param reactor: an C{IReactorUDP}.
    @return: the listening ports, primary first; their C{.protocol.server}
        is the L{StunServer}.
    @raise twisted.internet.error.CannotListenError: if a socket cannot be
        bound (the others are closed again).
    """
    ports: list[IListeningPort] = []
    server = StunServer(StunResponder(software, None, rate_limiter))

    def bind(name: str, host: str, port: int) -> Address:
        protocol = StunServerProtocol(server, name, Address(host, port))
        listening = listen_udp(reactor, port, protocol, host)
        bound = Address(host, listening.getHost().port)
        protocol.local = bound
        server.protocols[name] = protocol
        ports.append(listening)
        return bound

    try:
        first = bind("primary", primary.host, primary.port)
        plan = {"primary": first}
        if alternate_port is not None:
            plan["alt-port"] = bind("alt-port", first.host, alternate_port)
        if alternate_ip is not None:
            plan["alt-ip"] = bind("alt-ip", alternate_ip, first.port)
            if alternate_port is not None:
                plan["alt-both"] = bind("alt-both", alternate_ip, plan["alt-port"].port)
    except BaseException:
        for listening in ports:
            listening.stopListening()
        raise
    if len(plan) > 1:
        other = Address(
            alternate_ip if alternate_ip is not None else first.host,
            plan["alt-port"].port if "alt-port" in plan else first.port,
        )
        server.responder.other_address = other
        server.responder.primary_address = first
    return ports
