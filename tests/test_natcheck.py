"""
Tests for L{p2pnet.natcheck}: the RFC 5780 client against our own responder
behind a small simulated NAT, all driven by a L{Clock}.
"""

from __future__ import annotations

import io
import json

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from p2pnet._stunserver import StunResponder, StunServer, StunServerProtocol
from p2pnet.address import Address
from p2pnet.natcheck import (
    Behaviour,
    NatReport,
    StunClientProtocol,
    StunErrorResponse,
    StunTimeout,
    check_nat,
    main,
    run,
)
from p2pnet.stun import MessageClass, Method, StunMessage, decode, encode

EIM = Behaviour.ENDPOINT_INDEPENDENT
ADM = Behaviour.ADDRESS_DEPENDENT
APDM = Behaviour.ADDRESS_AND_PORT_DEPENDENT
UNKNOWN = Behaviour.UNKNOWN

PRIVATE_HOST = "10.0.0.2"
NAT_PUBLIC = "203.0.113.5"
STUN_A1 = "192.0.2.1"
STUN_A2 = "192.0.2.2"
LATENCY = 0.01


class FakePort:
    """
    A bound UDP socket on the simulated network: the protocol's transport
    and the C{IListeningPort}.
    """

    def __init__(self, network: Network, protocol, address: Address) -> None:
        self.network = network
        self.protocol = protocol
        self.address = address
        self.connected = True

    def write(self, data: bytes, addr: tuple) -> None:
        self.network.send(self.address, Address.from_tuple(addr), data)

    def getHost(self):
        return getattr(self, "address_reported", self.address)

    def stopListening(self) -> None:
        self.connected = False
        self.protocol.transport = None
        self.network.sockets.pop(self.address, None)


class Nat:
    """
    A NAT box with configurable mapping and filtering (RFC 4787), port
    preservation and hairpinning.
    """

    def __init__(self, mapping=EIM, filtering=EIM, preserve_ports=True, hairpin=True) -> None:
        self.mapping = mapping
        self.filtering = filtering
        self.preserve_ports = preserve_ports
        self.hairpin = hairpin
        self.mappings: dict[tuple, int] = {}
        self.internal: dict[int, Address] = {}
        self.allowed: dict[int, set] = {}
        self.next_port = 61000

    def outbound(self, source: Address, destination: Address) -> Address:
        key = {
            EIM: (source,),
            ADM: (source, destination.host),
            APDM: (source, destination),
        }[self.mapping]
        if key not in self.mappings:
            port = source.port
            if not self.preserve_ports or port in self.internal:
                port, self.next_port = self.next_port, self.next_port + 1
            self.mappings[key] = port
            self.internal[port] = source
        port = self.mappings[key]
        self.allowed.setdefault(port, set()).add(
            {EIM: None, ADM: destination.host, APDM: destination}[self.filtering]
        )
        return Address(NAT_PUBLIC, port)

    def inbound(self, source: Address, destination: Address) -> Address | None:
        internal = self.internal.get(destination.port)
        if internal is None:
            return None
        allowed = self.allowed[destination.port]
        if {EIM: None, ADM: source.host, APDM: source}[self.filtering] not in allowed:
            return None
        return internal


class Network:
    """
    The simulated Internet: a private host behind an optional L{Nat}, and
    public hosts.  Every datagram takes L{LATENCY} seconds.

    @ivar lose: how many upcoming datagrams from the private host to drop.
    """

    def __init__(self, clock: Clock, nat: Nat | None) -> None:
        self.clock = clock
        self.nat = nat
        self.sockets: dict[Address, FakePort] = {}
        self.lose = 0
        self.sent_by_client: list[tuple[Address, Address, bytes]] = []

    def bind(self, protocol, address: Address) -> FakePort:
        port = FakePort(self, protocol, address)
        self.sockets[address] = port
        protocol.makeConnection(port)
        return port

    def send(self, source: Address, destination: Address, data: bytes) -> None:
        if source.host == PRIVATE_HOST:
            self.sent_by_client.append((source, destination, data))
            if self.lose:
                self.lose -= 1
                return
            if self.nat is not None:
                source = self.nat.outbound(source, destination)
        self.clock.callLater(LATENCY, self.arrive, source, destination, data)

    def arrive(self, source: Address, destination: Address, data: bytes) -> None:
        if self.nat is not None and destination.host == NAT_PUBLIC:
            if source.host == NAT_PUBLIC and not self.nat.hairpin:
                return
            destination = self.nat.inbound(source, destination)
            if destination is None:
                return
        port = self.sockets.get(destination)
        if port is not None and port.connected:
            port.protocol.datagramReceived(data, source.as_tuple())


class FakeReactor(Clock):
    """
    A clock whose C{listenUDP} binds sockets on the private host (or the
    public one when there is no NAT).
    """

    def __init__(self, nat: Nat | None) -> None:
        super().__init__()
        self.network = Network(self, nat)
        self.client_host = PRIVATE_HOST if nat is not None else NAT_PUBLIC
        self.next_port = 50000
        self.bound: list[FakePort] = []

    def listenUDP(self, port: int, protocol, interface: str = "", maxPacketSize: int = 8192):
        if port == 0:
            port, self.next_port = self.next_port, self.next_port + 1
        listening = self.network.bind(protocol, Address(self.client_host, port))
        # Sockets report the wildcard address they were bound to.
        listening.address_reported = Address(interface or "0.0.0.0", port)
        self.bound.append(listening)
        return listening


def start_stun_server(network: Network, *, alternate: bool = True, primary_port: int = 3478) -> StunServer:
    """
    Our own responder on the simulated network: an RFC 5780 server on
    192.0.2.1/192.0.2.2 ports 3478/3479, or plain servers on each of those
    four addresses.
    """
    if not alternate:
        for host in (STUN_A1, STUN_A2):
            for port in (primary_port, 3479):
                plain = StunServer(StunResponder())
                protocol = StunServerProtocol(plain, "primary", Address(host, port))
                plain.protocols["primary"] = protocol
                network.bind(protocol, Address(host, port))
        return plain
    primary = Address(STUN_A1, primary_port)
    other = Address(STUN_A2, 3479) if alternate else None
    server = StunServer(StunResponder(other_address=other, primary_address=primary))
    addresses = {"primary": primary}
    if alternate:
        addresses.update(
            {
                "alt-port": Address(STUN_A1, 3479),
                "alt-ip": Address(STUN_A2, primary_port),
                "alt-both": other,
            }
        )
    for name, address in addresses.items():
        protocol = StunServerProtocol(server, name, address)
        server.protocols[name] = protocol
        network.bind(protocol, address)
    return server


def settle(reactor: Clock, until: float | None = None) -> None:
    """
    Run the clock from one delayed call to the next until nothing is
    scheduled (or time C{until} is reached).
    """
    for _ in range(10000):
        calls = reactor.getDelayedCalls()
        if not calls:
            return
        next_time = min(c.getTime() for c in calls)
        if until is not None and next_time > until:
            reactor.advance(until - reactor.seconds())
            return
        reactor.advance(max(0.0, next_time - reactor.seconds()))
    raise AssertionError("the clock never settled")


class NatCheckTests(SynchronousTestCase):
    """
    L{check_nat} classifies each simulated NAT correctly.
    """

    def check(self, nat: Nat | None, *, servers=None, local_host=None, alternate=True, **kwargs):
        reactor = FakeReactor(nat)
        start_stun_server(reactor.network, alternate=alternate)
        if servers is None:
            servers = [Address(STUN_A1, 3478)]
        d = check_nat(reactor, servers, local_host=local_host, **kwargs)
        settle(reactor)
        self.assertEqual(reactor.getDelayedCalls(), [])
        self.assertTrue(all(not port.connected for port in reactor.bound))
        self.reactor = reactor
        return d

    def report(self, nat: Nat | None, **kwargs) -> NatReport:
        return self.successResultOf(self.check(nat, **kwargs))

    def test_no_nat(self) -> None:
        """
        With no NAT, the public address is our own; mapping and filtering
        are endpoint-independent and the verdict says so.
        """
        report = self.report(None, local_host=NAT_PUBLIC)
        self.assertEqual(report.public_address, Address(NAT_PUBLIC, 50000))
        self.assertEqual(report.local_address, Address(NAT_PUBLIC, 50000))
        self.assertIs(report.behind_nat, False)
        self.assertEqual((report.mapping, report.filtering), (EIM, EIM))
        self.assertTrue(report.rfc5780)
        self.assertTrue(report.hairpin)
        self.assertEqual(report.verdict, "no NAT in the way: direct connections should work with most peers")

    def test_full_cone(self) -> None:
        """
        An endpoint-independent NAT that preserves ports: EIM, EIF, port
        preserved, direct connections should work.
        """
        report = self.report(Nat(EIM, EIM), local_host=PRIVATE_HOST)
        self.assertEqual(report.public_address, Address(NAT_PUBLIC, 50000))
        self.assertEqual(report.local_address, Address(PRIVATE_HOST, 50000))
        self.assertIs(report.behind_nat, True)
        self.assertEqual((report.mapping, report.filtering), (EIM, EIM))
        self.assertTrue(report.port_preserved)
        self.assertEqual(report.verdict, "direct connections should work with most peers")

    def test_restricted_cone(self) -> None:
        """
        Address-dependent filtering is detected (the change-port answer gets
        in, the change-IP one does not).
        """
        report = self.report(Nat(EIM, ADM))
        self.assertEqual((report.mapping, report.filtering), (EIM, ADM))
        self.assertEqual(report.verdict, "direct connections should work with most peers")

    def test_port_restricted_cone(self) -> None:
        """
        Address-and-port-dependent filtering with endpoint-independent
        mapping: peers behind symmetric NATs need the birthday search or a
        relay.
        """
        report = self.report(Nat(EIM, APDM))
        self.assertEqual((report.mapping, report.filtering), (EIM, APDM))
        self.assertIn("symmetric NATs need the birthday search", report.verdict)

    def test_symmetric(self) -> None:
        """
        A symmetric NAT with random ports: address-and-port-dependent mapping,
        no port preservation, and a relay verdict.
        """
        report = self.report(Nat(APDM, APDM, preserve_ports=False))
        self.assertEqual((report.mapping, report.filtering), (APDM, APDM))
        self.assertFalse(report.port_preserved)
        self.assertIs(report.behind_nat, True)
        self.assertEqual(report.verdict, "you will need a relay for peers behind strict NATs")

    def test_address_dependent_mapping(self) -> None:
        """
        A NAT that keeps one mapping per destination IP is address-dependent.
        """
        report = self.report(Nat(ADM, ADM))
        self.assertEqual(report.mapping, ADM)

    def test_no_hairpin(self) -> None:
        """
        A NAT that does not hairpin is reported as such.
        """
        self.assertFalse(self.report(Nat(hairpin=False)).hairpin)
        self.assertTrue(self.report(Nat(hairpin=True)).hairpin)

    def test_port_preserving_nat_without_local_host(self) -> None:
        """
        Without our local IP, a port-preserving NAT cannot be told from no
        NAT: C{behind_nat} is C{None}.  A NAT that changes the port is
        detected anyway.
        """
        self.assertIsNone(self.report(Nat()).behind_nat)
        self.assertIs(self.report(Nat(preserve_ports=False)).behind_nat, True)

    def test_loss_is_retransmitted(self) -> None:
        """
        If the first request is lost, the retransmission still gets the
        answer.
        """
        reactor = FakeReactor(Nat())
        start_stun_server(reactor.network)
        reactor.network.lose = 1
        d = check_nat(reactor, [Address(STUN_A1, 3478)])
        settle(reactor)
        report = self.successResultOf(d)
        first_two = [decode(data).transaction_id for _, _, data in reactor.network.sent_by_client[:2]]
        self.assertEqual(first_two[0], first_two[1])
        self.assertEqual(report.mapping, EIM)

    def test_no_answer(self) -> None:
        """
        A server that never answers fails the check with "no answer from
        ... after 3 tries" after the timeout; the three tries leave at 0,
        timeout/7 and 3*timeout/7.
        """
        reactor = FakeReactor(Nat())
        d = check_nat(reactor, [Address("192.0.2.99", 3478)], timeout=7.0, retries=2)
        times = []
        original = reactor.network.send

        def record(source, destination, data):
            times.append(reactor.seconds())
            original(source, destination, data)

        reactor.network.send = record
        settle(reactor)
        failure = self.failureResultOf(d, StunTimeout)
        self.assertEqual(str(failure.value), "no answer from 192.0.2.99:3478 after 3 tries")
        self.assertEqual([round(t, 6) for t in times], [1.0, 3.0])
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_no_answer_schedule(self) -> None:
        """
        The retransmission interval doubles: with timeout 7 and 2 retries,
        requests leave at 0, 1 and 3 seconds and the test fails at 7.
        """
        reactor = FakeReactor(Nat())
        d = check_nat(reactor, [Address("192.0.2.99", 3478)], timeout=7.0, retries=2)
        sent = reactor.network.sent_by_client
        self.assertEqual(len(sent), 1)
        reactor.advance(1)
        self.assertEqual(len(sent), 2)
        reactor.advance(2)
        self.assertEqual(len(sent), 3)
        reactor.advance(3.9)
        self.assertNoResult(d)
        reactor.advance(0.1)
        reactor.advance(0)
        self.failureResultOf(d, StunTimeout)
        self.assertEqual(len(sent), 3)

    def test_result_is_delivered_on_a_later_turn(self) -> None:
        """
        The report Deferred does not fire from inside the datagram handler
        but on a later reactor turn.
        """
        reactor = FakeReactor(None)
        start_stun_server(reactor.network, alternate=False)
        d = check_nat(reactor, [Address(STUN_A1, 3478)], local_host=NAT_PUBLIC)
        reactor.advance(LATENCY)
        reactor.advance(LATENCY)
        # The hairpin test's datagram is the last one; deliver it by hand.
        [last] = [c for c in reactor.getDelayedCalls() if c.func == reactor.network.arrive]
        func, args = last.func, last.args
        last.cancel()
        func(*args)
        self.assertNoResult(d)
        reactor.advance(0)
        self.successResultOf(d)

    def test_plain_server(self) -> None:
        """
        A single plain STUN server yields the public address, unknown
        mapping and filtering, and notes saying why.
        """
        report = self.report(Nat(), alternate=False)
        self.assertFalse(report.rfc5780)
        self.assertEqual((report.mapping, report.filtering), (UNKNOWN, UNKNOWN))
        self.assertEqual(report.public_address, Address(NAT_PUBLIC, 50000))
        self.assertTrue(any("RFC 5780" in note for note in report.notes))
        self.assertIn("could not tell", report.verdict)

    def test_several_plain_servers(self) -> None:
        """
        With plain servers on two IPs, the same public address means
        endpoint-independent mapping and different ones endpoint-dependent;
        a third server on a second port of one IP tells address-dependent
        from address-and-port-dependent.
        """
        two = [Address(STUN_A1, 3478), Address(STUN_A2, 3478)]
        three = two + [Address(STUN_A1, 3479)]
        self.assertEqual(self.report(Nat(EIM), servers=two, alternate=False).mapping, EIM)
        self.assertEqual(
            self.report(Nat(APDM), servers=two, alternate=False).mapping,
            Behaviour.ENDPOINT_DEPENDENT,
        )
        symmetric = self.report(Nat(APDM), servers=three, alternate=False)
        self.assertEqual(symmetric.mapping, APDM)
        self.assertEqual(len(symmetric.public_addresses), 3)
        self.assertEqual(self.report(Nat(ADM), servers=three, alternate=False).mapping, ADM)

    def test_unreachable_server_among_others_is_noted(self) -> None:
        """
        A server that does not answer is noted while the others are used.
        """
        report = self.report(Nat(), servers=[Address("192.0.2.99", 1), Address(STUN_A1, 3478)])
        self.assertIn("no answer from 192.0.2.99:1 after 3 tries", report.notes)
        self.assertEqual(report.mapping, EIM)

    def test_error_response(self) -> None:
        """
        A server answering the first test with an error fails the check with
        its code and reason.
        """
        reactor = FakeReactor(Nat())

        class Refuser:
            def datagramReceived(self, data, addr):
                request = decode(data)
                reply = encode(request.error(403, "Forbidden"))
                reactor.network.send(Address(STUN_A1, 3478), Address.from_tuple(addr), reply)

            def makeConnection(self, transport):
                pass

        reactor.network.bind(Refuser(), Address(STUN_A1, 3478))
        d = check_nat(reactor, [Address(STUN_A1, 3478)])
        settle(reactor)
        failure = self.failureResultOf(d, StunErrorResponse)
        self.assertEqual(str(failure.value), "192.0.2.1:3478 answered with error 403 Forbidden")


class ClientProtocolTests(SynchronousTestCase):
    """
    L{StunClientProtocol} matches answers by transaction id.
    """

    def setUp(self) -> None:
        self.reactor = FakeReactor(None)
        self.client = StunClientProtocol(self.reactor)
        self.reactor.listenUDP(0, self.client)
        self.server = Address(STUN_A1, 3478)

    def test_unrelated_answers_are_ignored(self) -> None:
        """
        Answers with other transaction ids, garbage and indications do not
        complete a request.
        """
        d = self.client.request(StunMessage.request(transaction_id=b"\1" * 12), self.server)
        other = StunMessage(Method.BINDING, MessageClass.SUCCESS, b"\2" * 12)
        indication = StunMessage(Method.BINDING, MessageClass.INDICATION, b"\1" * 12)
        for data in (encode(other), b"garbage", encode(indication), encode(other)[:-1]):
            self.client.datagramReceived(data, self.server.as_tuple())
        self.assertNoResult(d)
        answer = StunMessage(Method.BINDING, MessageClass.SUCCESS, b"\1" * 12)
        self.client.datagramReceived(encode(answer), self.server.as_tuple())
        message, source = self.successResultOf(d)
        self.assertEqual((message, source), (decode(encode(answer)), self.server))
        self.reactor.advance(LATENCY)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_cancel_stops_retransmission(self) -> None:
        """
        Cancelling a request stops its timers.
        """
        d = self.client.request(StunMessage.request(), self.server)
        d.cancel()
        self.failureResultOf(d)
        self.reactor.advance(LATENCY)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_fails_pending(self) -> None:
        """
        Stopping the client fails its pending requests.
        """
        from p2pnet.errors import ConnectionClosed

        d = self.client.request(StunMessage.request(), self.server)
        self.client.stop()
        self.failureResultOf(d, ConnectionClosed)
        self.reactor.advance(LATENCY)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class CommandLineTests(SynchronousTestCase):
    """
    C{p2pnet natcheck}'s options and output.
    """

    def test_no_server_is_a_usage_error(self) -> None:
        """
        Without --stun the command exits 2 and tells the user to pass one.
        """
        err = io.StringIO()
        self.patch(__import__("sys"), "stderr", err)
        self.assertEqual(main([]), 2)
        self.assertIn("pass --stun HOST:PORT", err.getvalue())

    def test_bad_options(self) -> None:
        """
        Unknown options, a bad server address or a bad timeout exit 2.
        """
        self.patch(__import__("sys"), "stderr", io.StringIO())
        self.assertEqual(main(["--frobnicate"]), 2)
        self.assertEqual(main(["--stun", "1.2.3.4:notaport"]), 2)
        self.assertEqual(main(["--stun", "1.2.3.4:99999"]), 2)
        self.assertEqual(main(["--stun", "1.2.3.4:3478", "--timeout", "0"]), 2)

    def test_help(self) -> None:
        """
        --help exits 0.
        """
        self.patch(__import__("sys"), "stdout", io.StringIO())
        self.assertEqual(main(["--help"]), 0)

    def run_command(self, nat: Nat | None, targets, **kwargs) -> tuple[int, str, str]:
        reactor = FakeReactor(nat)
        start_stun_server(reactor.network)
        out, err = io.StringIO(), io.StringIO()
        d = run(reactor, targets, out=out, err=err, local_host_for=lambda host, port: None, **kwargs)
        for _ in range(100):
            reactor.advance(0.5)
        return self.successResultOf(d), out.getvalue(), err.getvalue()

    def test_json(self) -> None:
        """
        --json prints one JSON object with the report's fields.
        """
        status, out, err = self.run_command(Nat(APDM, APDM), [(STUN_A1, 3478)], json_output=True)
        self.assertEqual((status, err), (0, ""))
        result = json.loads(out)
        self.assertEqual(result["mapping"], "address-and-port-dependent")
        self.assertEqual(result["filtering"], "address-and-port-dependent")
        self.assertEqual(result["public_address"], f"{NAT_PUBLIC}:50000")
        self.assertEqual(result["verdict"], "you will need a relay for peers behind strict NATs")
        self.assertEqual(out.count("\n"), 1)

    def test_readable(self) -> None:
        """
        Without --json the report is readable text ending in the verdict.
        """
        status, out, _ = self.run_command(Nat(), [(STUN_A1, 3478)])
        self.assertEqual(status, 0)
        self.assertIn("mapping:         endpoint-independent", out)
        self.assertTrue(out.rstrip().endswith("verdict: direct connections should work with most peers"))

    def test_router_offers(self) -> None:
        """
        With a router probe, the report ends with what the router offers
        for port mapping, and --json carries it as C{port_mapping}.
        """
        offers = {"pcp": "answered", "nat-pmp": "no answer"}
        probe = lambda reactor: succeed(offers)  # noqa: E731
        status, out, _ = self.run_command(Nat(), [(STUN_A1, 3478)], router_probe=probe)
        self.assertEqual(status, 0)
        self.assertTrue(out.rstrip().endswith("port mapping (pcp): answered\nport mapping (nat-pmp): no answer"))
        status, out, _ = self.run_command(Nat(), [(STUN_A1, 3478)], router_probe=probe, json_output=True)
        self.assertEqual(json.loads(out)["port_mapping"], offers)

    def test_failure_is_one_line(self) -> None:
        """
        When no server answers, one line goes to stderr and the status is 1.
        """
        status, out, err = self.run_command(Nat(), [("192.0.2.99", 3478)], timeout=1.0)
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err, "p2pnet natcheck: no answer from 192.0.2.99:3478 after 3 tries\n")


class SendFailureTests(SynchronousTestCase):
    """
    A socket error while sending fails the check with a clear message.
    """

    def test_unsendable(self) -> None:
        """
        If the first request cannot be sent at all, the check fails at once
        with "cannot send to ...".
        """
        from p2pnet.natcheck import NatCheckFailed

        reactor = FakeReactor(Nat())

        def refuse(source, destination, data):
            raise OSError("Network is unreachable")

        reactor.network.send = refuse
        d = check_nat(reactor, [Address(STUN_A1, 3478)])
        reactor.advance(0)
        failure = self.failureResultOf(d, NatCheckFailed)
        self.assertEqual(str(failure.value), "cannot send to 192.0.2.1:3478: Network is unreachable")
        self.assertEqual(reactor.getDelayedCalls(), [])
