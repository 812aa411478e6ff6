"""
L{p2pnet.portmap.PortMapper} against a scripted router on a fake reactor:
the choice of protocol, renewals, deletes, refusals and forged answers
(the error paths a real miniupnpd cannot be made to produce; the lab
tests in tests/test_netlab_portmap.py use the real daemon).
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from p2pnet.address import Address
from p2pnet.portmap import Mapping, PortMapper, _natpmp, _pcp

from tests.helpers import FakeDatagramTransport, seeded_bytes

GATEWAY = "10.1.0.1"
ME = "10.1.0.2"


class FakeReactor(Clock):
    """
    A Clock whose listenUDP hands out recording transports.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sockets: list[tuple[object, FakeDatagramTransport]] = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        transport = FakeDatagramTransport(ME, 40000 + len(self.sockets))
        transport.stopped = False

        def stop():
            transport.stopped = True

        transport.stopListening = stop
        self.sockets.append((protocol, transport))
        protocol.makeConnection(transport)
        return transport


def sent(reactor: FakeReactor, port: int = 5351) -> list[bytes]:
    return [data for _, t in reactor.sockets for data, addr in t.written if addr == (GATEWAY, port)]


def answer(reactor: FakeReactor, data: bytes, source=(GATEWAY, 5351)) -> None:
    protocol, _ = reactor.sockets[0]
    protocol.datagramReceived(data, source)


def pmp_external(result=0) -> bytes:
    return bytes.fromhex(f"00 80 {result:04x} 00000010 0b000002")


def pmp_mapped(internal=4000, external=50000, lifetime=7200, result=0) -> bytes:
    return bytes.fromhex(f"00 81 {result:04x} 00000010 {internal:04x} {external:04x} {lifetime:08x}")


def pcp_answer(opcode, result=0, lifetime=7200, nonce=b"", internal=4000, external=50001) -> bytes:
    head = bytes.fromhex(f"02 {0x80 | opcode:02x} 00 {result:02x} {lifetime:08x} 00000010") + bytes(12)
    if not nonce:
        return head
    return head + nonce + bytes.fromhex(f"11 000000 {internal:04x} {external:04x} 00000000000000000000ffff0b000002")


class MapperTestCase(SynchronousTestCase):
    def make(self, protocols=("pcp", "nat-pmp"), **kw):
        self.reactor = FakeReactor()
        self.changes: list = []
        self.random = seeded_bytes(7)
        mapper = PortMapper(
            self.reactor,
            4000,
            gateway=GATEWAY,
            local_ip=lambda host: ME,
            protocols=protocols,
            random_bytes=self.random,
            on_change=self.changes.append,
            **kw,
        )
        return mapper

    def nonce(self) -> bytes:
        # The PCP request's nonce, read from what was sent.
        for data in sent(self.reactor):
            if data[:2] == b"\x02\x01":
                return data[24:36]
        raise AssertionError("no PCP MAP sent")


class PortMapperTests(MapperTestCase):
    def test_probes_sent_at_once(self):
        """
        PCP ANNOUNCE and the NAT-PMP external address request leave at
        start, to the gateway's port 5351.
        """
        mapper = self.make()
        mapper.start()
        self.assertEqual(
            sent(self.reactor),
            [bytes.fromhex("0200 0000 00000000 00000000000000000000ffff0a010002"), b"\x00\x00"],
        )
        mapper.stop()

    def test_nobody_answers(self):
        """
        Without a router the result is None after the retransmissions
        (0, 0.25, 0.75 s; given up at 1.75 s), nothing is logged as an
        error, and no timer is left behind.
        """
        mapper = self.make()
        d = mapper.start()
        self.reactor.advance(0.25)
        self.reactor.advance(0.5)
        self.assertEqual(len(sent(self.reactor)), 6)
        self.assertNoResult(d)
        self.reactor.advance(1.0)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(mapper.offers, {"pcp": "no answer", "nat-pmp": "no answer"})
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(len(sent(self.reactor)), 6)
        mapper.stop()

    def test_nat_pmp(self):
        """
        A NAT-PMP-only router: the external address, then the mapping;
        renewed at half the lifetime; deleted on stop.
        """
        mapper = self.make(protocols=("nat-pmp",))
        d = mapper.start()
        answer(self.reactor, pmp_external())
        self.assertEqual(sent(self.reactor)[-1], bytes.fromhex("00 01 0000 0fa0 0000 00001c20"))
        answer(self.reactor, pmp_mapped())
        mapping = Mapping("nat-pmp", Address("11.0.0.2", 50000), 4000, 7200)
        self.assertEqual(self.successResultOf(d), mapping)
        self.assertEqual(self.changes, [mapping])
        self.reactor.advance(3599)
        self.assertEqual(len(sent(self.reactor)), 2)
        self.reactor.advance(1)
        # The renewal asks for the same external port.
        self.assertEqual(sent(self.reactor)[-1], bytes.fromhex("00 01 0000 0fa0 c350 00001c20"))
        answer(self.reactor, pmp_mapped())
        self.assertEqual(self.changes, [mapping])
        mapper.stop()
        self.assertEqual(sent(self.reactor)[-1], bytes.fromhex("00 01 0000 0fa0 0000 00000000"))
        self.assertTrue(all(t.stopped for _, t in self.reactor.sockets))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_pcp(self):
        """
        PCP answers first: MAP with a fresh nonce; the delete repeats the
        nonce and the assigned address with lifetime 0.
        """
        mapper = self.make()
        d = mapper.start()
        answer(self.reactor, pcp_answer(0))
        nonce = self.nonce()
        answer(self.reactor, pcp_answer(1, nonce=nonce))
        self.assertEqual(self.successResultOf(d), Mapping("pcp", Address("11.0.0.2", 50001), 4000, 7200))
        mapper.stop()
        self.assertEqual(
            sent(self.reactor)[-1],
            bytes.fromhex("02 01 0000 00000000 00000000000000000000ffff0a010002")
            + nonce
            + bytes.fromhex("11 000000 0fa0 c351 00000000000000000000ffff0b000002"),
        )

    def test_pcp_wrong_nonce(self):
        """
        A MAP answer with another nonce (forged, or for another client)
        is ignored.
        """
        mapper = self.make(protocols=("pcp",))
        d = mapper.start()
        answer(self.reactor, pcp_answer(0))
        answer(self.reactor, pcp_answer(1, nonce=bytes(12)))
        self.assertNoResult(d)
        self.assertIsNone(mapper.mapping)
        mapper.stop()

    def test_answer_from_elsewhere(self):
        """
        Answers count only from the gateway's address and port 5351.
        """
        mapper = self.make(protocols=("nat-pmp",))
        d = mapper.start()
        answer(self.reactor, pmp_external(), ("10.1.0.66", 5351))
        answer(self.reactor, pmp_external(), (GATEWAY, 5350))
        self.assertEqual(len(sent(self.reactor)), 1)
        self.assertEqual(mapper.offers, {"nat-pmp": "no answer"})
        self.assertNoResult(d)
        mapper.stop()

    def test_refused_then_other_protocol(self):
        """
        When the first protocol to answer refuses the mapping, the next
        one that answered is used.
        """
        mapper = self.make()
        d = mapper.start()
        answer(self.reactor, pmp_external())
        answer(self.reactor, pcp_answer(0))
        answer(self.reactor, pmp_mapped(external=0, lifetime=0, result=_natpmp.NOT_AUTHORIZED))
        nonce = self.nonce()
        answer(self.reactor, pcp_answer(1, nonce=nonce))
        self.assertEqual(self.successResultOf(d).protocol, "pcp")
        self.assertEqual(mapper.offers["nat-pmp"], "refused: nat-pmp: not authorized / refused")
        mapper.stop()

    def test_everyone_refuses(self):
        """
        A router that refuses everything: the result is None, no mapping,
        no change reported.
        """
        mapper = self.make()
        d = mapper.start()
        answer(self.reactor, pcp_answer(0, result=_pcp.NOT_AUTHORIZED))
        answer(self.reactor, pmp_external(result=_natpmp.NETWORK_FAILURE))
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(
            mapper.offers,
            {"pcp": "refused: pcp: not authorized", "nat-pmp": "refused: nat-pmp: network failure"},
        )
        self.assertEqual(self.changes, [])
        mapper.stop()

    def test_renewal_changes_port(self):
        """
        A renewal that comes back with another port reports the change.
        """
        mapper = self.make(protocols=("nat-pmp",))
        mapper.start()
        answer(self.reactor, pmp_external())
        answer(self.reactor, pmp_mapped())
        self.reactor.advance(3600)
        answer(self.reactor, pmp_mapped(external=50002))
        self.assertEqual([m.external.port for m in self.changes], [50000, 50002])
        mapper.stop()

    def test_renewal_fails_then_lost(self):
        """
        Unanswered renewals are retried at half the time left; at the end
        the mapping is reported lost.
        """
        mapper = self.make(protocols=("nat-pmp",), lifetime=8)
        mapper.start()
        answer(self.reactor, pmp_external())
        answer(self.reactor, pmp_mapped(lifetime=8))
        for _ in range(20):
            self.reactor.advance(1)
        self.assertEqual(self.changes[-1], None)
        self.assertIsNone(mapper.mapping)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        mapper.stop()

    def test_no_gateway(self):
        """
        Without a gateway (and without UPnP) the result is None at once.
        """
        reactor = FakeReactor()
        mapper = PortMapper(reactor, 4000, gateway=None, protocols=("pcp", "nat-pmp"))
        self.assertIsNone(self.successResultOf(mapper.start()))
        self.assertEqual(reactor.sockets, [])


class ProbeOnlyTests(SynchronousTestCase):
    def test_probe_only(self):
        """
        In probe-only mode (natcheck) the answers are recorded, with the
        external address NAT-PMP gave, and nothing is mapped.
        """
        reactor = FakeReactor()
        mapper = PortMapper(
            reactor, 9, gateway=GATEWAY, local_ip=lambda host: ME, protocols=("pcp", "nat-pmp"), probe_only=True
        )
        d = mapper.start()
        answer(reactor, pcp_answer(0))
        answer(reactor, pmp_external())
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(
            mapper.offers, {"pcp": "answered", "nat-pmp": "answered (external address 11.0.0.2)"}
        )
        self.assertEqual(len(sent(reactor)), 2)
        mapper.stop()


class FakeResponse:
    def __init__(self, code: int, body: bytes) -> None:
        self.code = code
        self.body = body

    def deliverBody(self, protocol) -> None:
        from twisted.python.failure import Failure
        from twisted.web.client import ResponseDone

        protocol.dataReceived(self.body)
        protocol.connectionLost(Failure(ResponseDone()))


class ScriptedIGD:
    """
    A fake C{IAgent}: a UPnP gateway at 10.1.0.1:5000 whose first
    AddPortMapping conflicts (718).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes, bytes]] = []

    def request(self, method, uri, headers=None, bodyProducer=None):
        from twisted.internet.defer import succeed

        from tests.test_portmap_codecs import DESCRIPTION

        action = b""
        if headers is not None:
            action = headers.getRawHeaders(b"SOAPAction")[0].split(b"#")[1].strip(b'"')
        body = bodyProducer.data if bodyProducer is not None else b""
        self.calls.append((method, uri, action))
        if method == b"GET":
            return succeed(FakeResponse(200, DESCRIPTION))
        if action == b"GetExternalIPAddress":
            return succeed(FakeResponse(200, soap("GetExternalIPAddressResponse",
                                                  b"<NewExternalIPAddress>11.0.0.2</NewExternalIPAddress>")))
        if action == b"AddPortMapping" and b"<NewExternalPort>4000<" in body:
            return succeed(FakeResponse(500, soap("Fault", b"<detail><UPnPError><errorCode>718</errorCode>"
                                                  b"<errorDescription>ConflictInMappingEntry</errorDescription>"
                                                  b"</UPnPError></detail>")))
        return succeed(FakeResponse(200, soap(action.decode() + "Response", b"")))


def soap(element: str, inner: bytes) -> bytes:
    return (
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        + f"<u:{element} xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\">".encode()
        + inner + f"</u:{element}></s:Body></s:Envelope>".encode()
    )


class UPnPMapperTests(SynchronousTestCase):
    def test_conflict_takes_another_port(self):
        """
        SSDP answer, description, external address, then AddPortMapping:
        a 718 conflict on our own port number is retried on another port;
        stop() deletes that port.
        """
        reactor = FakeReactor()
        igd = ScriptedIGD()
        changes = []
        mapper = PortMapper(reactor, 4000, gateway=None, local_ip=lambda host: ME, protocols=("upnp",),
                            random_bytes=seeded_bytes(1), agent=igd, on_change=changes.append)
        d = mapper.start()
        search, transport = reactor.sockets[0]
        self.assertEqual(transport.written[0][1], ("239.255.255.250", 1900))
        search.datagramReceived(b"HTTP/1.1 200 OK\r\nLOCATION: http://10.1.0.1:5000/rootDesc.xml\r\n\r\n",
                                (GATEWAY, 1900))
        mapping = self.successResultOf(d)
        self.assertEqual(mapping.protocol, "upnp")
        self.assertEqual(mapping.external.host, "11.0.0.2")
        self.assertNotEqual(mapping.external.port, 4000)
        self.assertEqual([c[2] for c in igd.calls],
                         [b"", b"GetExternalIPAddress", b"AddPortMapping", b"AddPortMapping"])
        self.assertEqual(igd.calls[1][1], b"http://10.1.0.1:5000/ctl/IPConn")
        self.successResultOf(mapper.stop())
        self.assertEqual(igd.calls[-1][2], b"DeletePortMapping")
        self.assertEqual(changes, [mapping])
        self.assertEqual(reactor.getDelayedCalls(), [])


class UnusableAddressTests(SynchronousTestCase):
    def test_unspecified_external_address(self):
        """
        A mapping whose external address is 0.0.0.0 (a router without a
        WAN address yet, or a forged answer) is not used, and is deleted.
        """
        reactor = FakeReactor()
        changes = []
        mapper = PortMapper(reactor, 4000, gateway=GATEWAY, local_ip=lambda host: ME, protocols=("nat-pmp",),
                            on_change=changes.append)
        d = mapper.start()
        answer(reactor, bytes.fromhex("00 80 0000 00000010 00000000"))
        answer(reactor, pmp_mapped())
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(changes, [])
        self.assertEqual(sent(reactor)[-1], bytes.fromhex("00 01 0000 0fa0 0000 00000000"))
        mapper.stop()


def pmp_external_at(epoch: int) -> bytes:
    return bytes.fromhex(f"00 80 0000 {epoch:08x} 0b000002")


def pmp_mapped_at(epoch: int, external=50000, lifetime=7200) -> bytes:
    return bytes.fromhex(f"00 81 0000 {epoch:08x} 0fa0 {external:04x} {lifetime:08x}")


def pcp_announce_at(epoch: int) -> bytes:
    return bytes.fromhex(f"02 80 00 00 00000000 {epoch:08x}") + bytes(12)


class EpochWatchTests(SynchronousTestCase):
    def test_nat_pmp_rule(self):
        """
        RFC 6886: the epoch must reach the previous one plus 7/8 of the
        client's elapsed time, less 2 seconds and 1 second of slack.
        """
        from p2pnet.portmap._epoch import EpochWatch

        watch = EpochWatch("nat-pmp")
        self.assertFalse(watch.saw(100, 0.0))
        self.assertFalse(watch.saw(167, 80.0))
        watch = EpochWatch("nat-pmp")
        watch.saw(100, 0.0)
        self.assertTrue(watch.saw(166, 80.0))
        self.assertTrue(watch.saw(10, 81.0))

    def test_pcp_rule(self):
        """
        RFC 6887: not back by more than a second, and the two elapsed
        times agree within 1/16 and 2 seconds either way.
        """
        from p2pnet.portmap._epoch import EpochWatch

        cases = [((100, 1.0), False), ((99, 1.0), False), ((98, 1.0), True),
                 ((136, 32.0), False), ((140, 32.0), True), ((102, 32.0), True)]
        for (epoch, now), lost in cases:
            watch = EpochWatch("pcp")
            watch.saw(100, 0.0)
            self.assertEqual(watch.saw(epoch, now), lost, (epoch, now))


class RouterRebootTests(MapperTestCase):
    def test_nat_pmp_reboot_maps_again(self):
        """
        A NAT-PMP router whose epoch restarts (it rebooted and forgot our
        mapping) is asked for the mapping again at once, at the check
        after the reboot rather than at the renewal an hour later.
        """
        mapper = self.make(protocols=("nat-pmp",), epoch_check=60)
        mapper.start()
        answer(self.reactor, pmp_external_at(16))
        answer(self.reactor, pmp_mapped_at(16))
        self.reactor.advance(59)
        self.assertEqual(len(sent(self.reactor)), 2)
        self.reactor.advance(1)
        self.assertEqual(sent(self.reactor)[-1], b"\x00\x00")
        answer(self.reactor, pmp_external_at(5))
        self.assertEqual(sent(self.reactor)[-1], bytes.fromhex("00 01 0000 0fa0 c350 00001c20"))
        answer(self.reactor, pmp_mapped_at(5, external=50003))
        self.assertEqual([m.external.port for m in self.changes], [50000, 50003])
        mapper.stop()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_nat_pmp_healthy_epoch(self):
        """
        An epoch that advanced with the time passed changes nothing: no
        new mapping request, the next check a period later.
        """
        mapper = self.make(protocols=("nat-pmp",), epoch_check=60)
        mapper.start()
        answer(self.reactor, pmp_external_at(16))
        answer(self.reactor, pmp_mapped_at(16))
        self.reactor.advance(60)
        answer(self.reactor, pmp_external_at(76))
        self.assertEqual(len(sent(self.reactor)), 3)
        self.reactor.advance(60)
        self.assertEqual(len(sent(self.reactor)), 4)
        self.assertEqual(sent(self.reactor)[-1], b"\x00\x00")
        self.assertEqual(self.changes, [Mapping("nat-pmp", Address("11.0.0.2", 50000), 4000, 7200)])
        mapper.stop()

    def test_pcp_reboot_maps_again(self):
        """
        A PCP server whose epoch goes backwards gets our MAP again at once.
        """
        mapper = self.make(protocols=("pcp",), epoch_check=60)
        mapper.start()
        answer(self.reactor, pcp_announce_at(1000))
        nonce = self.nonce()
        answer(self.reactor, pcp_answer(1, nonce=nonce))
        maps = [d for d in sent(self.reactor) if d[:2] == b"\x02\x01"]
        self.assertEqual(len(maps), 1)
        self.reactor.advance(60)
        answer(self.reactor, pcp_announce_at(3))
        maps = [d for d in sent(self.reactor) if d[:2] == b"\x02\x01"]
        self.assertEqual(len(maps), 2)
        mapper.stop()
