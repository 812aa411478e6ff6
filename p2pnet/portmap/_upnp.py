"""
UPnP-IGD port mapping: SSDP discovery (M-SEARCH to 239.255.255.250:1900),
the gateway's device description, and the WANIPConnection SOAP actions
(C{GetExternalIPAddress}, C{AddPortMapping}, C{AddAnyPortMapping} on
version 2, C{DeletePortMapping}).

The pure parts (building and parsing SSDP, descriptions and SOAP) come
first; L{UPnPClient} does the HTTP with C{twisted.web.client.Agent}, so no
call blocks the reactor and p2pnet needs no new dependency.  Everything
from the network is capped in size, and the description URL must point at
the host that answered the search (a forged answer cannot send our HTTP
requests elsewhere).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urljoin, urlsplit
from xml.etree import ElementTree

from attrs import frozen
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.web.client import Agent, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from p2pnet.errors import MalformedMessage, P2PError

SSDP_GROUP = "239.255.255.250"
SSDP_PORT = 1900
IGD = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
#: Services that can map ports, best first.
SERVICES = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)
#: Bytes read at most from a description or a SOAP answer.
MAX_BODY = 65536
#: Bytes of an SSDP answer looked at.
MAX_SSDP = 2048


class UPnPError(P2PError):
    """
    The gateway refused a UPnP action (C{code} is the UPnP error code,
    e.g. 718 ConflictInMappingEntry, 725 OnlyPermanentLeasesSupported).
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def encode_search(st: str = IGD, mx: int = 1) -> bytes:
    """
    An SSDP M-SEARCH for C{st}, answers wanted within C{mx} seconds.
    """
    return (
        "M-SEARCH * HTTP/1.1\r\n"
        f"HOST: {SSDP_GROUP}:{SSDP_PORT}\r\n"
        'MAN: "ssdp:discover"\r\n'
        f"MX: {mx}\r\n"
        f"ST: {st}\r\n"
        "\r\n"
    ).encode("ascii")


def decode_search_answer(data: bytes, source: str) -> str:
    """
    The description URL (LOCATION) of an SSDP answer from C{source}.

    @raise MalformedMessage: not an HTTP 200 answer with an C{http://}
        LOCATION on C{source} itself.
    """
    lines = data[:MAX_SSDP].decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 200"):
        raise MalformedMessage("not an SSDP answer")
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "location":
            location = value.strip()
            parts = urlsplit(location)
            if parts.scheme != "http" or parts.hostname != source:
                raise MalformedMessage(f"SSDP LOCATION {location!r} is not on {source}")
            return location
    raise MalformedMessage("SSDP answer without LOCATION")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _parse_xml(body: bytes):
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        # No document type is legitimate in UPnP; refusing it rules out
        # entity expansion attacks whatever the XML parser.
        raise MalformedMessage("XML with a DOCTYPE")
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError as e:
        raise MalformedMessage(f"bad XML: {e}") from None


@frozen
class Service:
    """
    A port mapping service of a gateway.

    @ivar service_type: e.g. C{urn:schemas-upnp-org:service:WANIPConnection:1}.
    @ivar control_url: absolute URL of its SOAP endpoint.
    """

    service_type: str
    control_url: str


def parse_description(body: bytes, location: str) -> Service:
    """
    The best port mapping service in a device description fetched from
    C{location}; its control URL must stay on C{location}'s host.

    @raise MalformedMessage: no such service, or bad XML.
    """
    root = _parse_xml(body[:MAX_BODY])
    found: dict[str, str] = {}
    base = location
    for element in root.iter():
        name = _local(element.tag)
        if name == "URLBase" and element.text:
            base = element.text.strip()
        if name != "service":
            continue
        fields = {_local(child.tag): (child.text or "").strip() for child in element}
        kind = fields.get("serviceType", "")
        if kind in SERVICES and fields.get("controlURL") and kind not in found:
            found[kind] = fields["controlURL"]
    for kind in SERVICES:
        if kind in found:
            url = urljoin(base, found[kind])
            if urlsplit(url).scheme != "http" or urlsplit(url).hostname != urlsplit(location).hostname:
                raise MalformedMessage(f"control URL {url!r} is not on the gateway")
            return Service(kind, url)
    raise MalformedMessage("no WANIPConnection or WANPPPConnection service")


def _escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def encode_soap(service_type: str, action: str, arguments: tuple[tuple[str, str], ...]) -> bytes:
    """
    The SOAP envelope for C{action} of C{service_type}.
    """
    body = "".join(f"<{name}>{_escape(value)}</{name}>" for name, value in arguments)
    return (
        '<?xml version="1.0"?>\r\n'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
        f'<s:Body><u:{action} xmlns:u="{service_type}">{body}</u:{action}></s:Body></s:Envelope>'
    ).encode("utf-8")


def decode_soap(body: bytes, action: str) -> dict[str, str]:
    """
    The output arguments of a C{<action>Response}.

    @raise UPnPError: a SOAP fault (with the UPnP error code).
    @raise MalformedMessage: neither answer nor fault.
    """
    root = _parse_xml(body[:MAX_BODY])
    for element in root.iter():
        name = _local(element.tag)
        if name == action + "Response":
            return {_local(child.tag): (child.text or "").strip() for child in element}
        if name == "UPnPError":
            fields = {_local(child.tag): (child.text or "").strip() for child in element}
            code = fields.get("errorCode", "")
            raise UPnPError(
                f"UPnP error {code}: {fields.get('errorDescription', '')}",
                int(code) if code.isdigit() else None,
            )
    raise MalformedMessage(f"no {action}Response in the SOAP answer")


# -- I/O -----------------------------------------------------------------


class SSDPSearch(DatagramProtocol):
    """
    Sends M-SEARCHes and fires C{found} with the first valid LOCATION.
    """

    def __init__(self, found: Deferred, retransmits=(0.25, 0.5, 1.0), clock=None) -> None:
        self.found = found
        self.clock = clock
        self.retransmits = retransmits
        self._timer = None
        self._sends = 0
        self.dropped = 0

    def startProtocol(self) -> None:
        self._send()

    def _send(self) -> None:
        self._timer = None
        if self.found.called or self.transport is None:
            return
        if self._sends < len(self.retransmits):
            try:
                self.transport.write(encode_search(), (SSDP_GROUP, SSDP_PORT))
            except OSError:
                pass  # no route for multicast: nobody to answer
            self._timer = self.clock.callLater(self.retransmits[self._sends], self._send)
            self._sends += 1

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        if self.found.called:
            return
        try:
            location = decode_search_answer(data, addr[0])
        except MalformedMessage:
            self.dropped += 1
            return
        self.stop()
        self.found.callback(location)


class _CappedBody(Protocol):
    def __init__(self, done: Deferred, cap: int) -> None:
        self.done = done
        self.cap = cap
        self.parts: list[bytes] = []
        self.size = 0

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.cap:
            self.transport.stopProducing()
            if not self.done.called:
                self.done.errback(MalformedMessage(f"HTTP body over {self.cap} bytes"))
            return
        self.parts.append(data)

    def connectionLost(self, reason) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone) or self.size:
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(reason)


@implementer(IBodyProducer)
class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer):
        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def _read(response, cap: int = MAX_BODY) -> Deferred:
    done: Deferred = Deferred()
    response.deliverBody(_CappedBody(done, cap))
    return done.addCallback(lambda body: (response.code, body))


class UPnPClient:
    """
    SOAP calls on one gateway service, with a timeout on each.

    @param agent: a C{twisted.web.iweb.IAgent} (default: an L{Agent} on
        C{reactor}).
    """

    def __init__(self, reactor, agent=None, timeout: float = 2.0) -> None:
        self.reactor = reactor
        self.agent = agent if agent is not None else Agent(reactor, connectTimeout=timeout)
        self.timeout = timeout

    def get(self, url: str) -> Deferred:
        d = self.agent.request(b"GET", url.encode("ascii"))
        d.addCallback(_read)
        d.addTimeout(self.timeout, self.reactor)
        return d.addCallback(lambda answer: answer[1])

    def describe(self, location: str) -> Deferred:
        """
        Fetch and parse the description at C{location}: a L{Service}.
        """
        return self.get(location).addCallback(parse_description, location)

    def call(self, service: Service, action: str, arguments: tuple[tuple[str, str], ...]) -> Deferred:
        """
        Invoke C{action}: fires with its output arguments, or fails with
        L{UPnPError}.
        """
        headers = Headers(
            {
                b"Content-Type": [b'text/xml; charset="utf-8"'],
                b"SOAPAction": [f'"{service.service_type}#{action}"'.encode("ascii")],
            }
        )
        body = _Body(encode_soap(service.service_type, action, arguments))
        d = self.agent.request(b"POST", service.control_url.encode("ascii"), headers, body)
        d.addCallback(_read)
        d.addTimeout(self.timeout, self.reactor)
        return d.addCallback(lambda answer: decode_soap(answer[1], action))


def mapping_arguments(
    external_port: int, internal_port: int, internal_client: str, lifetime: int
) -> tuple[tuple[str, str], ...]:
    """
    The arguments of C{AddPortMapping} / C{AddAnyPortMapping} for UDP.
    """
    ipaddress.IPv4Address(internal_client)
    return (
        ("NewRemoteHost", ""),
        ("NewExternalPort", str(external_port)),
        ("NewProtocol", "UDP"),
        ("NewInternalPort", str(internal_port)),
        ("NewInternalClient", internal_client),
        ("NewEnabled", "1"),
        ("NewPortMappingDescription", "p2pnet"),
        ("NewLeaseDuration", str(lifetime)),
    )


def delete_arguments(external_port: int) -> tuple[tuple[str, str], ...]:
    """
    The arguments of C{DeletePortMapping} for a UDP mapping.
    """
    return (("NewRemoteHost", ""), ("NewExternalPort", str(external_port)), ("NewProtocol", "UDP"))
