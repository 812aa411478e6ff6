"""
Find out what kind of NAT we are behind: RFC 5780 behaviour discovery.

L{check_nat} asks one RFC 5780 server (the p2pnet introducer with an
alternate address, coturn with two listening IPs, ...) or several plain
STUN servers, and returns a L{NatReport}: public address, mapping and
filtering behaviour, port preservation, hairpinning, and a one-line verdict
for players.

L{main} is the C{p2pnet natcheck} command.
"""

from __future__ import annotations

import argparse
import enum
import ipaddress
import json
import socket
import sys
from typing import Callable, TextIO

from attrs import field, frozen
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pnet.address import Address
from p2pnet.errors import ConnectionClosed, MalformedMessage, P2PError
from p2pnet.stun import (
    ChangeRequest,
    MessageClass,
    Method,
    OtherAddress,
    Software,
    StunMessage,
    decode,
    encode,
    looks_like_stun,
)

__all__ = [
    "Behaviour",
    "NatReport",
    "NatCheckFailed",
    "StunTimeout",
    "StunErrorResponse",
    "StunClientProtocol",
    "check_nat",
    "run",
    "main",
]

#: Default time one STUN test waits for its answer, in seconds.
DEFAULT_TIMEOUT = 3.0
#: Default number of retransmissions within that time (so 3 tries).
DEFAULT_RETRIES = 2


class Behaviour(enum.Enum):
    """
    How a NAT maps or filters (RFC 4787 terms).
    """

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"
    #: The mapping changes with the destination, but the servers available
    #: could not tell whether by address or by address and port.
    ENDPOINT_DEPENDENT = "endpoint-dependent"
    UNKNOWN = "unknown"


class NatCheckFailed(P2PError):
    """
    The NAT check could not run: no STUN server answered usefully.
    """


class StunTimeout(NatCheckFailed):
    """
    A STUN server did not answer any of our tries.

    @ivar server: the server asked.
    @ivar tries: how many requests were sent.
    """

    def __init__(self, server: Address, tries: int) -> None:
        super().__init__(f"no answer from {server} after {tries} tries")
        self.server = server
        self.tries = tries


class StunErrorResponse(NatCheckFailed):
    """
    A STUN server answered with an error.
    """

    def __init__(self, server: Address, code: int, reason: str) -> None:
        super().__init__(f"{server} answered with error {code} {reason}".rstrip())
        self.server = server
        self.code = code
        self.reason = reason


def _verdict(report: NatReport) -> str:
    if report.behind_nat is False and report.filtering in (
        Behaviour.ENDPOINT_INDEPENDENT,
        Behaviour.UNKNOWN,
    ):
        return "no NAT in the way: direct connections should work with most peers"
    if report.mapping is Behaviour.ENDPOINT_INDEPENDENT or report.behind_nat is False:
        if report.filtering is Behaviour.ADDRESS_AND_PORT_DEPENDENT:
            return (
                "direct connections should work with most peers; peers behind "
                "symmetric NATs need the birthday search (both sides run the NAT "
                "check) or a relay"
            )
        return "direct connections should work with most peers"
    if report.mapping is Behaviour.UNKNOWN and report.mapping_port_dependent is False:
        return (
            "direct connections should work with most peers (your NAT keeps one "
            "public port towards every port of a server; a server with one IP "
            "address cannot tell more, see the notes)"
        )
    if report.mapping is Behaviour.UNKNOWN:
        return "could not tell how your NAT behaves; some peers may need a relay"
    return "you will need a relay for peers behind strict NATs"


@frozen
class NatReport:
    """
    What L{check_nat} found out.

    @ivar servers: the STUN servers asked.
    @ivar local_address: our socket's address (host C{0.0.0.0} or C{::}
        when it is not known which interface was used).
    @ivar public_addresses: every distinct reflexive address the servers
        reported, first server's first.
    @ivar behind_nat: C{False} if the public address is our own, C{True}
        if it differs, C{None} if our local IP is not known and the port
        was preserved.
    @ivar mapping: how the NAT picks public addresses.
    @ivar filtering: which inbound packets the NAT lets through.
    @ivar port_preserved: whether the public port equals our local port.
    @ivar hairpin: whether a packet to our own public address came back to
        us; C{None} if not tested.
    @ivar rfc5780: whether an RFC 5780 server was available (otherwise
        filtering cannot be tested).
    @ivar notes: caveats found along the way, for people.
    @ivar mapping_port_dependent: whether the mapping changed when only
        the server's port changed (the one mapping test a server with one
        IP address can run: C{False} means endpoint-independent or
        address-dependent); C{None} when not tested that way.
    """

    servers: tuple[Address, ...] = field(converter=tuple)
    local_address: Address
    public_addresses: tuple[Address, ...] = field(converter=tuple)
    behind_nat: bool | None
    mapping: Behaviour
    filtering: Behaviour
    port_preserved: bool
    hairpin: bool | None
    rfc5780: bool
    notes: tuple[str, ...] = field(converter=tuple, default=())
    mapping_port_dependent: bool | None = None

    @property
    def public_address(self) -> Address:
        """
        The public address the first answering server saw.
        """
        return self.public_addresses[0]

    @property
    def verdict(self) -> str:
        """
        One line for players about what this means for connecting to peers.
        """
        return _verdict(self)

    def as_dict(self) -> dict:
        """
        A JSON-ready summary (addresses as C{"host:port"} strings).
        """
        return {
            "servers": [str(a) for a in self.servers],
            "local_address": str(self.local_address),
            "public_address": str(self.public_address),
            "public_addresses": [str(a) for a in self.public_addresses],
            "behind_nat": self.behind_nat,
            "mapping": self.mapping.value,
            "filtering": self.filtering.value,
            "port_preserved": self.port_preserved,
            "hairpin": self.hairpin,
            "rfc5780": self.rfc5780,
            "notes": list(self.notes),
            "mapping_port_dependent": self.mapping_port_dependent,
            "verdict": self.verdict,
        }

    def format(self) -> str:
        """
        A readable multi-line report.
        """

        def yes_no(value: bool | None) -> str:
            return {True: "yes", False: "no", None: "unknown"}[value]

        kind = "RFC 5780 behaviour discovery" if self.rfc5780 else "plain STUN"
        lines = [
            f"NAT check against {', '.join(str(a) for a in self.servers)} ({kind})",
            f"  public address:  {', '.join(str(a) for a in self.public_addresses)}",
            f"  local address:   {self.local_address}",
            f"  behind a NAT:    {yes_no(self.behind_nat)}",
            f"  mapping:         {self.mapping.value}",
            f"  filtering:       {self.filtering.value}",
            f"  port preserved:  {yes_no(self.port_preserved)}",
            f"  hairpinning:     {yes_no(self.hairpin)}",
        ]
        lines.extend(f"  note:            {note}" for note in self.notes)
        lines.append(f"verdict: {self.verdict}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# The client socket.


class _Transaction:
    def __init__(self, deferred: Deferred, destination: Address, tries: int) -> None:
        self.deferred = deferred
        self.destination = destination
        self.tries = tries
        self.timer = None


class StunClientProtocol(DatagramProtocol):
    """
    Sends STUN requests from one UDP socket and matches answers to them by
    transaction id, retransmitting as RFC 8489 section 6.2.1 describes:
    the interval doubles after each try, and the transaction fails when the
    time is up.

    A request from elsewhere carrying the transaction id of one of ours
    (our own request, hairpinned back by the NAT) also completes it.

    @param reactor: provides C{callLater}.
    """

    log = Logger()

    def __init__(self, reactor) -> None:
        self._reactor = reactor
        self._pending: dict[bytes, _Transaction] = {}

    def request(
        self,
        message: StunMessage,
        destination: Address,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> Deferred:
        """
        Send C{message} to C{destination} until it is answered.

        The first retransmission comes after C{timeout / (2 ** (retries + 1) - 1)}
        seconds and each later one after twice the previous interval, so
        that the last try gets as long as all before it together and the
        transaction ends after C{timeout}.

        @return: a Deferred firing with C{(answer, source)}, where C{answer}
            is the decoded success or error response (or hairpinned
            request), or failing with L{StunTimeout}.  Cancelling it stops
            the retransmissions.
        """
        tid = message.transaction_id
        data = encode(message)
        interval = timeout / (2 ** (retries + 1) - 1)

        def cancel(_: Deferred) -> None:
            transaction = self._pending.pop(tid, None)
            if transaction is not None and transaction.timer is not None and transaction.timer.active():
                transaction.timer.cancel()

        transaction = _Transaction(Deferred(cancel), destination, 0)
        self._pending[tid] = transaction

        def send(remaining: int, wait: float) -> None:
            if self.transport is None:
                self._finish(tid, Failure(ConnectionClosed("the STUN client socket is closed")))
                return
            try:
                self.transport.write(data, destination.as_tuple())
            except OSError as e:
                self._finish(tid, Failure(NatCheckFailed(f"cannot send to {destination}: {e}")))
                return
            transaction.tries += 1
            if remaining > 0:
                transaction.timer = self._reactor.callLater(wait, send, remaining - 1, wait * 2)
            else:
                transaction.timer = self._reactor.callLater(wait, give_up)

        def give_up() -> None:
            transaction.timer = None
            self._finish(tid, Failure(StunTimeout(destination, transaction.tries)))

        send(retries, interval)
        return transaction.deferred

    def _finish(self, tid: bytes, result) -> None:
        transaction = self._pending.pop(tid, None)
        if transaction is None:
            return
        if transaction.timer is not None and transaction.timer.active():
            transaction.timer.cancel()
        if isinstance(result, Failure):
            transaction.deferred.errback(result)
        else:
            transaction.deferred.callback(result)

    def datagramReceived(self, datagram: bytes, addr: tuple) -> None:
        if not looks_like_stun(datagram):
            return
        try:
            message = decode(datagram)
        except MalformedMessage as e:
            self.log.debug("dropped a malformed STUN answer from {addr}: {e}", addr=addr, e=e)
            return
        if message.message_class is MessageClass.INDICATION:
            return
        if message.transaction_id in self._pending:
            self._finish(message.transaction_id, (message, Address.from_tuple(addr)))

    def stop(self) -> None:
        """
        Fail every pending request with L{ConnectionClosed}.
        """
        for tid in list(self._pending):
            self._finish(tid, Failure(ConnectionClosed("the NAT check was stopped")))


# ---------------------------------------------------------------------------
# The check.


def _binding(*attributes) -> StunMessage:
    return StunMessage.request(Method.BINDING, (Software("p2pnet natcheck"), *attributes))


async def _outcome(deferred: Deferred):
    """
    C{(True, result)} or C{(False, exception)}; never raises P2PErrors.
    """
    try:
        return True, await deferred
    except NatCheckFailed as e:
        return False, e
    except ConnectionClosed as e:
        return False, e


class _Check:
    """
    One run of L{check_nat}: owns its sockets.
    """

    def __init__(self, reactor, servers, timeout, retries, interface, local_host, on_mapping=None, on_answer=None) -> None:
        self.reactor = reactor
        self.on_mapping = on_mapping
        self.on_answer = on_answer
        self.servers = servers
        self.timeout = timeout
        self.retries = retries
        self.interface = interface
        self.local_host = local_host
        self.ports: list = []
        self.notes: list[str] = []
        self.port_dependent: bool | None = None
        self.closed = False

    def open_socket(self) -> StunClientProtocol:
        if self.closed:
            raise ConnectionClosed("the NAT check was stopped")
        client = StunClientProtocol(self.reactor)
        self.ports.append((self.reactor.listenUDP(0, client, interface=self.interface), client))
        return client

    def close(self) -> None:
        self.closed = True
        # Failing a request can run the check on to close() again.
        ports, self.ports = self.ports, []
        for port, client in ports:
            port.stopListening()
        for port, client in ports:
            client.stop()

    def ask(self, client: StunClientProtocol, server: Address, *attributes) -> Deferred:
        return client.request(_binding(*attributes), server, timeout=self.timeout, retries=self.retries)

    async def mapped(self, client: StunClientProtocol, server: Address) -> tuple[bool, object]:
        """
        Binding test: C{(True, response)} or C{(False, exception)}.
        """
        ok, result = await _outcome(self.ask(client, server))
        if not ok:
            return ok, result
        response, _ = result
        if response.message_class is MessageClass.ERROR:
            error = response.error_code
            code, reason = (error.code, error.reason) if error else (500, "without an ERROR-CODE")
            return False, StunErrorResponse(server, code, reason)
        if response.mapped_address is None:
            return False, NatCheckFailed(f"{server} answered without a mapped address")
        return True, response

    async def filtered(self, server: Address, change: ChangeRequest) -> bool | None:
        """
        Filtering test from a fresh socket: C{True} if the answer from the
        changed address got through, C{False} if nothing came, C{None} if
        the server refused the change.
        """
        client = self.open_socket()
        ok, result = await _outcome(self.ask(client, server, change))
        if not ok:
            return False if isinstance(result, StunTimeout) else None
        response, _ = result
        return response.message_class is MessageClass.SUCCESS

    async def hairpin(self, client: StunClientProtocol, public: Address) -> bool:
        ok, result = await _outcome(self.ask(client, public))
        return ok

    async def run(self) -> NatReport:
        main = self.open_socket()
        local_port = self.ports[0][0].getHost().port
        local_host = self.local_host or self.ports[0][0].getHost().host
        local = Address(local_host, local_port)
        first = await gatherResults([Deferred.fromCoroutine(self.mapped(main, s)) for s in self.servers])
        answers = [(s, r) for s, (ok, r) in zip(self.servers, first) if ok]
        for server, (ok, error) in zip(self.servers, first):
            if not ok:
                self.notes.append(str(error))
        if not answers:
            raise first[0][1]
        if self.on_answer is not None and not self.closed:
            self.on_answer()
        public = [r.mapped_address for _, r in answers]
        m1 = public[0]
        unspecified = ipaddress.ip_address(local_host).is_unspecified
        if m1 == local:
            behind_nat = False
        elif m1.port != local_port or not unspecified:
            behind_nat = True
        else:
            behind_nat = None
        discovery = next(((s, r.get(OtherAddress)) for s, r in answers if r.get(OtherAddress)), None)
        hairpin = Deferred.fromCoroutine(self.hairpin(main, m1))
        if discovery is not None:
            server, other = discovery
            if ipaddress.ip_address(other.address.host).is_unspecified:
                # A p2pnet introducer bound to every address names its
                # alternate port on "any" address: the one we asked.
                other = OtherAddress(Address(server.host, other.address.port))
            m1 = next(r.mapped_address for s, r in answers if s == server)
            async def mapping_told():
                found = await self.rfc5780_mapping(main, server, other.address, m1)
                self.tell_mapping(Behaviour.ENDPOINT_INDEPENDENT if behind_nat is False else found)
                return found

            mapping, extra = await gatherResults(
                [
                    Deferred.fromCoroutine(mapping_told()),
                    Deferred.fromCoroutine(self.rfc5780_filtering(server, other.address)),
                ]
            )
            filtering = extra
        else:
            if behind_nat is False:
                mapping = Behaviour.ENDPOINT_INDEPENDENT
            else:
                mapping = self.compare_mappings(answers)
            self.tell_mapping(mapping)
            filtering = Behaviour.UNKNOWN
            self.notes.append(
                "no server offered RFC 5780 behaviour discovery (OTHER-ADDRESS), "
                "so filtering was not tested"
            )
        if behind_nat is False:
            mapping = Behaviour.ENDPOINT_INDEPENDENT
        hairpinned = await hairpin
        return NatReport(
            servers=self.servers,
            local_address=local,
            public_addresses=tuple(dict.fromkeys(public)),
            behind_nat=behind_nat,
            mapping=mapping,
            filtering=filtering,
            port_preserved=public[0].port == local_port,
            hairpin=hairpinned,
            rfc5780=discovery is not None,
            notes=tuple(self.notes),
            mapping_port_dependent=self.port_dependent,
        )

    def tell_mapping(self, mapping: Behaviour) -> None:
        if self.on_mapping is not None and not self.closed:
            self.on_mapping(mapping, self.port_dependent)

    async def rfc5780_mapping(
        self, client: StunClientProtocol, server: Address, other: Address, m1: Address
    ) -> Behaviour:
        """
        RFC 5780 section 4.3, tests II and III.
        """
        if other.host == server.host:
            ok, result = await self.mapped(client, Address(server.host, other.port))
            if not ok:
                self.notes.append(f"mapping test to the alternate port failed: {result}")
                return Behaviour.UNKNOWN
            self.port_dependent = result.mapped_address != m1
            if self.port_dependent:
                return Behaviour.ADDRESS_AND_PORT_DEPENDENT
            self.notes.append(
                "the server has only one IP address: endpoint-independent and "
                "address-dependent mapping look the same"
            )
            return Behaviour.UNKNOWN
        ok, result = await self.mapped(client, Address(other.host, server.port))
        if not ok:
            self.notes.append(f"mapping test to the alternate address failed: {result}")
            return Behaviour.UNKNOWN
        m2 = result.mapped_address
        if m2 == m1:
            return Behaviour.ENDPOINT_INDEPENDENT
        if other.port == server.port:
            return Behaviour.ENDPOINT_DEPENDENT
        ok, result = await self.mapped(client, other)
        if not ok:
            self.notes.append(f"mapping test to the alternate address and port failed: {result}")
            return Behaviour.ENDPOINT_DEPENDENT
        if result.mapped_address == m2:
            return Behaviour.ADDRESS_DEPENDENT
        return Behaviour.ADDRESS_AND_PORT_DEPENDENT

    async def rfc5780_filtering(self, server: Address, other: Address) -> Behaviour:
        """
        RFC 5780 section 4.4, tests II and III, each from its own fresh
        socket (so earlier tests cannot have opened the NAT) and both at
        once.
        """
        ip_differs, port_differs = other.host != server.host, other.port != server.port
        tests = []
        if ip_differs:
            tests.append(self.filtered(server, ChangeRequest(change_ip=True, change_port=port_differs)))
        if port_differs:
            tests.append(self.filtered(server, ChangeRequest(change_port=True)))
        results = await gatherResults([Deferred.fromCoroutine(t) for t in tests])
        if None in results:
            self.notes.append("the server refused a CHANGE-REQUEST, so filtering is unknown")
            return Behaviour.UNKNOWN
        if ip_differs and port_differs:
            from_other_ip, from_other_port = results
            if from_other_ip:
                return Behaviour.ENDPOINT_INDEPENDENT
            if from_other_port:
                return Behaviour.ADDRESS_DEPENDENT
            return Behaviour.ADDRESS_AND_PORT_DEPENDENT
        if port_differs:
            if results[0]:
                self.notes.append(
                    "the server has only one IP address: endpoint-independent and "
                    "address-dependent filtering look the same"
                )
                return Behaviour.UNKNOWN
            return Behaviour.ADDRESS_AND_PORT_DEPENDENT
        if results[0]:
            return Behaviour.ENDPOINT_INDEPENDENT
        self.notes.append("the server has only one port: could not tell how strict filtering is")
        return Behaviour.UNKNOWN

    def compare_mappings(self, answers) -> Behaviour:
        """
        Mapping behaviour from several plain STUN servers' answers.
        """
        if len(answers) < 2:
            self.notes.append("one plain STUN server cannot show how the NAT maps; pass more --stun servers")
            return Behaviour.UNKNOWN
        other_ip = [
            a.mapped_address == b.mapped_address
            for i, (s, a) in enumerate(answers)
            for t, b in answers[i + 1 :]
            if s.host != t.host
        ]
        other_port = [
            a.mapped_address == b.mapped_address
            for i, (s, a) in enumerate(answers)
            for t, b in answers[i + 1 :]
            if s.host == t.host and s.port != t.port
        ]
        if other_ip and all(other_ip):
            return Behaviour.ENDPOINT_INDEPENDENT
        if other_ip:
            if not other_port:
                return Behaviour.ENDPOINT_DEPENDENT
            return Behaviour.ADDRESS_DEPENDENT if all(other_port) else Behaviour.ADDRESS_AND_PORT_DEPENDENT
        if other_port and not all(other_port):
            return Behaviour.ADDRESS_AND_PORT_DEPENDENT
        self.notes.append("the servers share one IP address: endpoint-independent and address-dependent mapping look the same")
        return Behaviour.UNKNOWN


def check_nat(
    reactor,
    servers: list[Address],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    interface: str | None = None,
    local_host: str | None = None,
    on_mapping: Callable[[Behaviour, bool | None], None] | None = None,
    on_answer: Callable[[], None] | None = None,
) -> Deferred:
    """
    Find out how the NAT between us and C{servers} behaves.

    With an RFC 5780 server (one whose answer carries OTHER-ADDRESS) this
    runs the mapping, filtering and hairpinning tests of RFC 5780 section 4;
    with plain STUN servers it compares their answers (filtering stays
    unknown).  Servers that do not answer are listed in the report's notes
    as long as one answers.

    @param reactor: provides C{listenUDP} and C{callLater}.
    @param timeout: how long each test waits for its answer.
    @param retries: retransmissions within that time.
    @param interface: the local address to bind; C{0.0.0.0} or C{::} by
        default (after the first server's family).
    @param local_host: our IP address on the route to the servers, if
        known, to tell "no NAT" from a port-preserving NAT.
    @param on_mapping: called with the mapping behaviour and
        C{mapping_port_dependent} (see L{NatReport}) as soon as they are
        known, before the filtering tests end (a peer needs only these to
        pick its part in the birthday search).
    @param on_answer: called once the first servers answered (so the
        mapping tests are under way).
    @return: a Deferred firing with a L{NatReport} on a later reactor turn,
        or failing with L{NatCheckFailed} (for example L{StunTimeout}) if no
        server answered.  Cancelling it closes the check's sockets and
        stops its timers.
    """
    if not servers:
        raise ValueError("check_nat needs at least one STUN server")
    if interface is None:
        interface = "::" if servers[0].is_ipv6 else "0.0.0.0"
    check = _Check(reactor, list(servers), timeout, retries, interface, local_host, on_mapping, on_answer)
    result: Deferred = Deferred(lambda _: check.close())

    def done(outcome):
        check.close()
        if not result.called:
            reactor.callLater(0, _deliver, result, outcome)
        # Cancelled: whatever it came to is of no interest.

    Deferred.fromCoroutine(check.run()).addBoth(done)
    return result


def _deliver(deferred: Deferred, outcome) -> None:
    if deferred.called:
        return  # cancelled
    if isinstance(outcome, Failure):
        deferred.errback(outcome)
    else:
        deferred.callback(outcome)


# ---------------------------------------------------------------------------
# The command line.


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2pnet natcheck",
        description=(
            "Find out what kind of NAT you are behind and whether direct "
            "connections to other players are likely to work."
        ),
    )
    parser.add_argument(
        "--stun",
        metavar="HOST:PORT",
        action="append",
        default=[],
        help="a STUN server to ask: your introducer, or any RFC 5780 or plain STUN "
        "server; repeat for several (port defaults to 3478)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    parser.add_argument(
        "--no-router",
        action="store_true",
        help="do not ask the router which port mapping protocols (NAT-PMP, PCP, UPnP-IGD) it offers",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long each test waits for an answer (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        metavar="N",
        help=f"retransmissions within that time (default {DEFAULT_RETRIES})",
    )
    return parser


def _split_target(text: str) -> tuple[str, int]:
    """
    C{"host:port"}, C{"[v6]:port"}, C{"host"} (port 3478) -> C{(host, port)}.

    @raise ValueError: with a message for the user.
    """
    text = text.strip()
    try:
        address = Address.parse(text, default_port=3478)
        return address.host, address.port
    except ValueError:
        pass
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, "3478"
    if not host or any(c in host for c in "[]:/ ") or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad STUN server {text!r}: expected HOST:PORT")
    if all(c.isdigit() or c == "." for c in host):
        # Digits and dots mean an IPv4 address (Address.parse refused it),
        # never a host name to look up.
        raise ValueError(f"bad STUN server {text!r}: {host!r} is not an IP address")
    return host, int(port_text)


def _route_source(host: str, port: int) -> str | None:
    """
    The local IP the system would use to reach C{host}; no packet is sent.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port))
            return probe.getsockname()[0]
    except OSError:
        return None


async def _resolve(reactor, targets: list[tuple[str, int]]) -> list[Address]:
    servers = []
    for host, port in targets:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            try:
                host = await reactor.resolve(host)
            except Exception as e:
                raise NatCheckFailed(f"cannot resolve {host}: {e}") from None
        servers.append(Address(host, port))
    return servers


def run(
    reactor,
    targets: list[tuple[str, int]],
    *,
    json_output: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    out: TextIO | None = None,
    err: TextIO | None = None,
    local_host_for: Callable[[str, int], str | None] = _route_source,
    router_probe: Callable[[object], Deferred] | None = None,
) -> Deferred:
    """
    Run the check and print the result: the body of C{p2pnet natcheck}.

    @param targets: C{(host, port)} pairs; host names are resolved.
    @param local_host_for: finds our local IP towards a server.
    @param router_probe: C{reactor -> Deferred} firing with what the
        router offers for port mapping (protocol -> answer, see
        L{p2pnet.portmap.probe_router}); None to skip.
    @return: a Deferred firing with the exit status: 0 after printing a
        report, 1 after printing a one-line error.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err

    async def go() -> int:
        try:
            servers = await _resolve(reactor, targets)
            local_host = local_host_for(servers[0].host, servers[0].port)
            report = await check_nat(
                reactor, servers, timeout=timeout, retries=retries, local_host=local_host
            )
        except NatCheckFailed as e:
            print(f"p2pnet natcheck: {e}", file=err)
            return 1
        offers = await router_probe(reactor) if router_probe is not None else None
        if json_output:
            record = report.as_dict()
            if offers is not None:
                record["port_mapping"] = offers
            print(json.dumps(record), file=out)
        else:
            print(report.format(), file=out)
            if offers is not None:
                for protocol, answer in offers.items():
                    print(f"port mapping ({protocol}): {answer}", file=out)
        return 0

    return Deferred.fromCoroutine(go())


def main(argv: list[str] | None = None) -> int:
    """
    C{p2pnet natcheck [--stun HOST:PORT ...] [--json] [--timeout S]}.

    @return: 0 on success, 1 if the check failed, 2 for bad options.
    """
    parser = _parser()
    try:
        options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    if not options.stun:
        print(
            "p2pnet natcheck: no STUN server given; pass --stun HOST:PORT "
            "(your introducer's address, or any public STUN server)",
            file=sys.stderr,
        )
        return 2
    if options.timeout <= 0 or options.retries < 0:
        print("p2pnet natcheck: --timeout must be positive and --retries at least 0", file=sys.stderr)
        return 2
    try:
        targets = [_split_target(text) for text in options.stun]
    except ValueError as e:
        print(f"p2pnet natcheck: {e}", file=sys.stderr)
        return 2

    from twisted.internet import task

    status: list[int] = []

    def router_probe(reactor) -> Deferred:
        from p2pnet.portmap import default_gateway, probe_router

        return probe_router(reactor, default_gateway())

    def body(reactor) -> Deferred:
        return run(
            reactor,
            targets,
            json_output=options.json,
            timeout=options.timeout,
            retries=options.retries,
            router_probe=None if options.no_router else router_probe,
        ).addCallback(status.append)

    try:
        task.react(body)
    except SystemExit:
        pass
    return status[0] if status else 1
