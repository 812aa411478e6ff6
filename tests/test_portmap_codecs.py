"""
The port mapping codecs against the byte layouts of RFC 6886 (NAT-PMP),
RFC 6887 (PCP) and the UPnP-IGD / SSDP texts, with literal bytes.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pnet.errors import MalformedMessage
from p2pnet.portmap import _natpmp, _pcp, _upnp
from p2pnet.portmap._gateway import parse_route_table


class NatPmpTests(SynchronousTestCase):
    def test_external_address_request(self):
        """
        The external address request is version 0, opcode 0 (RFC 6886 3.2).
        """
        self.assertEqual(_natpmp.encode_external_address_request(), b"\x00\x00")

    def test_map_request(self):
        """
        A UDP mapping request: version, opcode 1, two reserved bytes,
        internal port, suggested external port, lifetime (RFC 6886 3.3).
        """
        self.assertEqual(
            _natpmp.encode_map_request(4500, 0, 7200),
            bytes.fromhex("00 01 0000 1194 0000 00001c20"),
        )

    def test_delete_request(self):
        """
        Deleting: lifetime 0 and external port 0 (RFC 6886 3.4).
        """
        self.assertEqual(_natpmp.encode_map_request(4500, 0, 0), bytes.fromhex("00 01 0000 1194 0000 00000000"))

    def test_external_address_response(self):
        self.assertEqual(
            _natpmp.decode_response(bytes.fromhex("00 80 0000 00000e10 cb007105")),
            _natpmp.ExternalAddressResponse(0, 3600, "203.0.113.5"),
        )

    def test_map_response(self):
        self.assertEqual(
            _natpmp.decode_response(bytes.fromhex("00 81 0003 00000e10 1194 c350 00001c20")),
            _natpmp.MapResponse(1, 3, 3600, 4500, 50000, 7200),
        )

    def test_unsupported_version_answer(self):
        """
        An 8-byte answer to an unknown opcode still gives its result code.
        """
        answer = _natpmp.decode_response(bytes.fromhex("00 82 0001 00000005"))
        self.assertEqual((answer.opcode, answer.result), (2, 1))

    def test_rejects(self):
        for data in (
            b"\x00\x80\x00",  # short
            bytes.fromhex("02 80 0000 00000e10 cb007105"),  # PCP version
            bytes.fromhex("00 01 0000 1194 0000 00001c20"),  # a request
            bytes.fromhex("00 81 0000 00000e10 1194"),  # truncated map answer
        ):
            self.assertRaises(MalformedMessage, _natpmp.decode_response, data)

    @given(st.binary(max_size=40))
    def test_arbitrary_bytes(self, data):
        try:
            _natpmp.decode_response(data)
        except MalformedMessage:
            pass


NONCE = bytes(range(12))
MAPPED_ZERO = "00000000000000000000ffff00000000"


class PcpTests(SynchronousTestCase):
    def test_announce_request(self):
        """
        ANNOUNCE is the bare 24-byte header: version 2, opcode 0, lifetime
        0, the client address IPv4-mapped (RFC 6887 7.1, 14.1).
        """
        self.assertEqual(
            _pcp.encode_announce_request("192.0.2.33"),
            bytes.fromhex("02 00 0000 00000000 00000000000000000000ffffc0000221"),
        )

    def test_map_request(self):
        """
        MAP: header, then nonce, protocol, 3 reserved bytes, internal port,
        suggested external port and address (RFC 6887 11.1).
        """
        self.assertEqual(
            _pcp.encode_map_request("192.168.1.2", NONCE, 4000, 7200),
            bytes.fromhex(
                "02 01 0000 00001c20 00000000000000000000ffffc0a80102"
                "000102030405060708090a0b 11 000000 0fa0 0000" + MAPPED_ZERO
            ),
        )

    def test_map_request_suggesting(self):
        self.assertEqual(
            _pcp.encode_map_request("192.168.1.2", NONCE, 4000, 0, 50000, "203.0.113.5")[-20:],
            bytes.fromhex("0fa0 c350 00000000000000000000ffffcb007105"),
        )

    def test_map_response(self):
        """
        The answer: R bit, result, lifetime, epoch, 12 reserved bytes, then
        the MAP data with the assigned port and address.
        """
        data = bytes.fromhex(
            "02 81 00 00 00001c20 0000abcd 000000000000000000000000"
            "000102030405060708090a0b 11 000000 0fa0 c350 00000000000000000000ffffcb007105"
        )
        self.assertEqual(
            _pcp.decode_response(data),
            _pcp.Response(1, 0, 7200, 0xABCD, NONCE, 17, 4000, 50000, "203.0.113.5"),
        )

    def test_error_without_opcode_data(self):
        data = bytes.fromhex("02 81 00 02 0000001e 00000010 000000000000000000000000")
        self.assertEqual(_pcp.decode_response(data), _pcp.Response(1, 2, 30, 16))

    def test_announce_response(self):
        data = bytes.fromhex("02 80 00 00 00000000 00000010 000000000000000000000000")
        self.assertEqual(_pcp.decode_response(data).opcode, 0)

    def test_rejects(self):
        good = bytes.fromhex("02 80 00 00 00000000 00000010 000000000000000000000000")
        for data in (
            good[:20],  # short
            good + b"\x00",  # not a multiple of 4
            b"\x00" + good[1:],  # NAT-PMP version
            good[:1] + b"\x00" + good[2:],  # a request (no R bit)
            bytes.fromhex("02 81 00 00 00001c20 00000000") + bytes(12) + NONCE,  # short MAP success
            good + bytes(1100),  # too long
        ):
            self.assertRaises(MalformedMessage, _pcp.decode_response, data)

    @given(st.binary(max_size=80))
    def test_arbitrary_bytes(self, data):
        try:
            _pcp.decode_response(data)
        except MalformedMessage:
            pass


DESCRIPTION = b"""<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType>
<controlURL>/ctl/L3F</controlURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>/ctl/IPConn</controlURL>
</service></serviceList></device></deviceList></device></deviceList></device></root>"""


class UPnPTests(SynchronousTestCase):
    def test_search(self):
        self.assertEqual(
            _upnp.encode_search(),
            b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n"
            b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n",
        )

    def test_search_answer(self):
        answer = (
            b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n"
            b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
            b"Location: http://10.1.0.1:5000/rootDesc.xml\r\n\r\n"
        )
        self.assertEqual(_upnp.decode_search_answer(answer, "10.1.0.1"), "http://10.1.0.1:5000/rootDesc.xml")

    def test_search_answer_elsewhere(self):
        """
        A LOCATION on another host than the answer's source is refused, so
        a forged answer cannot aim our HTTP requests at a third party.
        """
        answer = b"HTTP/1.1 200 OK\r\nLOCATION: http://198.51.100.9/x.xml\r\n\r\n"
        self.assertRaises(MalformedMessage, _upnp.decode_search_answer, answer, "10.1.0.1")
        answer = b"HTTP/1.1 200 OK\r\nLOCATION: https://10.1.0.1/x.xml\r\n\r\n"
        self.assertRaises(MalformedMessage, _upnp.decode_search_answer, answer, "10.1.0.1")
        answer = b"NOTIFY * HTTP/1.1\r\nLOCATION: http://10.1.0.1/x.xml\r\n\r\n"
        self.assertRaises(MalformedMessage, _upnp.decode_search_answer, answer, "10.1.0.1")

    def test_description(self):
        """
        The WANIPConnection control URL is found in the nested devices and
        made absolute against the description's URL.
        """
        self.assertEqual(
            _upnp.parse_description(DESCRIPTION, "http://10.1.0.1:5000/rootDesc.xml"),
            _upnp.Service("urn:schemas-upnp-org:service:WANIPConnection:1", "http://10.1.0.1:5000/ctl/IPConn"),
        )

    def test_description_control_elsewhere(self):
        """
        A control URL on another host is refused.
        """
        body = DESCRIPTION.replace(b"/ctl/IPConn", b"http://198.51.100.9/ctl")
        self.assertRaises(MalformedMessage, _upnp.parse_description, body, "http://10.1.0.1:5000/rootDesc.xml")

    def test_description_doctype(self):
        """
        Documents with a DOCTYPE (entity expansion) are refused.
        """
        body = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><root>&a;</root>'
        self.assertRaises(MalformedMessage, _upnp.parse_description, body, "http://10.1.0.1/")

    def test_soap_request(self):
        self.assertEqual(
            _upnp.encode_soap(
                "urn:schemas-upnp-org:service:WANIPConnection:1",
                "DeletePortMapping",
                _upnp.delete_arguments(50000),
            ),
            b'<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            b's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>'
            b'<u:DeletePortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">'
            b"<NewRemoteHost></NewRemoteHost><NewExternalPort>50000</NewExternalPort>"
            b"<NewProtocol>UDP</NewProtocol></u:DeletePortMapping></s:Body></s:Envelope>",
        )

    def test_soap_answer(self):
        body = (
            b'<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            b'<u:GetExternalIPAddressResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">'
            b"<NewExternalIPAddress>11.0.0.2</NewExternalIPAddress></u:GetExternalIPAddressResponse>"
            b"</s:Body></s:Envelope>"
        )
        self.assertEqual(_upnp.decode_soap(body, "GetExternalIPAddress"), {"NewExternalIPAddress": "11.0.0.2"})

    def test_soap_fault(self):
        body = (
            b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>'
            b"<faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>"
            b'<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>718</errorCode>'
            b"<errorDescription>ConflictInMappingEntry</errorDescription></UPnPError>"
            b"</detail></s:Fault></s:Body></s:Envelope>"
        )
        error = self.assertRaises(_upnp.UPnPError, _upnp.decode_soap, body, "AddPortMapping")
        self.assertEqual(error.code, 718)


ROUTES = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "eth0\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    "eth0\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
)


class GatewayTests(SynchronousTestCase):
    def test_default_route(self):
        """
        The gateway of the default route, little-endian hex in the table.
        """
        self.assertEqual(parse_route_table(ROUTES), "10.0.1.1")

    def test_no_default_route(self):
        self.assertIsNone(parse_route_table(ROUTES.splitlines()[0] + "\n" + ROUTES.splitlines()[1]))
        self.assertIsNone(parse_route_table(ROUTES.replace("\t0003\t", "\t0001\t")))
