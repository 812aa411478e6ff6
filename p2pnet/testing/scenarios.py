"""
Ready-made simulated scenarios: an introducer on the simulated internet and
two p2pnet peers behind sites of named kinds.

Used by the NAT matrix tests, the loss trials, C{p2pnet demo} and the
benchmarks; games can use L{add_site} to put their own hosts behind the
same kinds of NAT.
"""

from __future__ import annotations

import random
from typing import Callable

from attrs import define, field
from twisted.python.failure import Failure

from p2pnet._handshake import HandshakeConfig
from p2pnet._registry import Registry
from p2pnet.address import Address
from p2pnet.endpoint import PeerConfig, PeerConnection, PeerEndpoint, PeerFactory, PeerProtocol, StatusEvent
from p2pnet.introducer import IntroducerProtocol, RelaySettings
from p2pnet.relay import RelayProtocol
from p2pnet._stunserver import StunResponder, StunServerProtocol
from p2pnet.testing._heapclock import HeapClock
from p2pnet.testing._simnet import Allocation, Filtering, Mapping, Network, SimHost

#: Site kinds, each a host and what stands between it and the internet.
SITE_KINDS: dict[str, str] = {
    "public": "a host with a public address, no NAT, no firewall",
    "firewall": "a public address behind a stateful firewall (no NAT)",
    "full-cone": "NAT: endpoint-independent mapping and filtering",
    "restricted": "NAT: endpoint-independent mapping, address-dependent filtering",
    "port-restricted": "NAT: endpoint-independent mapping, address-and-port-dependent filtering",
    "symmetric": "NAT: address-and-port-dependent mapping and filtering, random ports",
    "poisoned": "port-restricted NAT that keeps rejecting a flow once it rejected "
    "an unsolicited packet of it",
    "double-nat": "port-restricted home NAT behind a port-restricted carrier-grade NAT",
}

#: Further kinds for hard-NAT work (not in the plain NAT matrix).
EXTRA_KINDS: dict[str, str] = {
    "sequential": "NAT: address-and-port-dependent mapping and filtering, sequential ports",
}

INTRODUCER = Address("192.0.2.10", 3478)
RELAY = Address("192.0.2.20", 3479)


def add_site(network: Network, kind: str, index: int, behind_existing=None) -> SimHost:
    """
    Add a site of C{kind} to C{network} and return its host.

    @param index: distinguishes this site's box names and addresses.
    @param behind_existing: put the host behind this existing box instead
        (two hosts on one LAN).
    """
    if behind_existing is not None:
        return network.add_host(behind=behind_existing, name=f"host{index}")
    if kind == "public":
        return network.add_host(f"198.18.0.{10 + index}", name=f"host{index}")
    if kind == "firewall":
        box = network.add_firewall(f"fw{index}")
        return network.add_host(f"198.18.1.{10 + index}", behind=box, name=f"host{index}")
    public_ip = f"203.0.113.{10 + index}"
    nat_options = {
        "full-cone": dict(filtering=Filtering.ENDPOINT_INDEPENDENT),
        "restricted": dict(filtering=Filtering.ADDRESS_DEPENDENT),
        "port-restricted": dict(),
        "symmetric": dict(mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT, allocation=Allocation.RANDOM),
        "sequential": dict(mapping=Mapping.ADDRESS_AND_PORT_DEPENDENT, allocation=Allocation.SEQUENTIAL),
        "poisoned": dict(poisoned=True),
    }
    if kind in nat_options:
        box = network.add_nat(f"nat{index}", public_ip, lan=f"10.{index}.0.0/24", **nat_options[kind])
        return network.add_host(behind=box, name=f"host{index}")
    if kind == "double-nat":
        cgn = network.add_nat(f"cgn{index}", public_ip, lan=f"100.64.{index}.0/24")
        home = network.add_nat(f"home{index}", f"100.64.{index}.2", parent=cgn, lan=f"10.{index}.0.0/24")
        return network.add_host(behind=home, name=f"host{index}")
    raise ValueError(
        f"unknown site kind {kind!r}; expected one of {', '.join([*SITE_KINDS, *EXTRA_KINDS])}"
    )


def seeded_bytes(rng: random.Random) -> Callable[[int], bytes]:
    return lambda n: rng.getrandbits(8 * n).to_bytes(n, "big") if n else b""


class _Recorder(PeerProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes) -> None:
        self.received.append(data)


class _Factory(PeerFactory):
    def __init__(self) -> None:
        self.built: list[_Recorder] = []

    def build_protocol(self, peer_id: str) -> PeerProtocol:
        protocol = _Recorder()
        self.built.append(protocol)
        return protocol


@define
class PairResult:
    """
    What happened when peer A connected to peer B.

    @ivar outcome_a: A's L{PeerConnection}, or the Failure of its connect.
    @ivar incoming_b: the connections B accepted.
    @ivar connect_time: seconds from A's connect() to A's connection.
    @ivar start_time: seconds from A's start() to its result.
    @ivar events: every L{StatusEvent}, as C{(time, side, event)}.
    """

    outcome_a: PeerConnection | Failure | None = None
    incoming_b: list[PeerConnection] = field(factory=list)
    connect_time: float | None = None
    start_time: float | None = None
    events: list[tuple[float, str, StatusEvent]] = field(factory=list)
    network: Network | None = None
    leftover_calls: int = 0
    bound_ports_after: int = 0

    @property
    def connected(self) -> bool:
        return isinstance(self.outcome_a, PeerConnection) and bool(self.incoming_b)

    @property
    def path(self) -> str | None:
        if isinstance(self.outcome_a, PeerConnection) and self.outcome_a.path is not None:
            return self.outcome_a.path.value
        return None


@define
class PairContext:
    """
    The running pair, for L{run_pair}'s C{then} hook.

    @ivar received_b: protocols B built for incoming connections (each has
        C{received}, a list of datagrams).
    """

    clock: HeapClock
    network: Network
    peer_a: PeerEndpoint
    peer_b: PeerEndpoint
    received_b: list
    step: float

    def run(self, seconds: float) -> None:
        _run_until(self.clock, self.step, seconds, lambda: False)


def run_pair(
    kind_a: str,
    kind_b: str,
    *,
    seed: int = 0,
    warmup: bool = True,
    loss: float = 0.0,
    latency_a: float = 0.005,
    latency_b: float = 0.010,
    introducer_latency: float = 0.0,
    same_lan: bool = False,
    hairpin: bool = False,
    until: float = 30.0,
    step: float = 0.005,
    trace=None,
    handshake: HandshakeConfig | None = None,
    relay: bool = False,
    block: bool = False,
    nat_check: bool = False,
    then: Callable[[PairContext], None] | None = None,
    defaults: bool = False,
    peer_config: PeerConfig | None = None,
) -> PairResult:
    """
    Build a fresh network, register A and B, have A connect to B, and run
    the clock until both sides know the outcome (or C{until} seconds).

    B's host link is slower than A's by default, so B's introduction
    arrives later: the race the warm-up exists for.

    @param loss: loss probability on each host's link, each direction.
    @param same_lan: put B behind A's NAT (C{kind_b} is then ignored).
    @param relay: run a p2pnet relay the introducer hands out.
    @param block: the internet drops UDP between A's and B's sites.
    @param nat_check: peers check their NAT at start, against the
        introducer's STUN service made an RFC 5780 server; A connects once
        both checks ended.
    @param then: called with a L{PairContext} once the connection attempt
        ended, before shutting down (to change the network and run on).
    @param defaults: everything as out of the box: the introducer as
        C{p2pnet introducer --port 3478} runs it on one IP address (its
        relay on port 3479, a second STUN port 3480) and peers with a
        default L{PeerConfig} (NAT check on); A connects as soon as both
        have started.  C{relay}, C{nat_check}, C{warmup} and C{handshake}
        are then ignored.
    @param peer_config: the peers' configuration with C{defaults}
        (default: C{PeerConfig()}).
    """
    clock = HeapClock()
    network = Network(clock, seed=seed, trace=trace)
    rng = random.Random(seed)
    random_bytes = seeded_bytes(rng)
    introducer_host = network.add_host(INTRODUCER.host, name="introducer")
    network.set_link(introducer_host, latency=introducer_latency)
    relay_settings = None
    relay_port = None
    if defaults:
        relay, nat_check = False, False
        secret = random_bytes(32)
        relay_port = introducer_host.listenUDP(INTRODUCER.port + 1, RelayProtocol(clock, secret))
        relay_settings = RelaySettings(secret, Address(INTRODUCER.host, INTRODUCER.port + 1))
    if relay:
        secret = random_bytes(32)
        relay_host = network.add_host(RELAY.host, name="relay")
        relay_port = relay_host.listenUDP(RELAY.port, RelayProtocol(clock, secret))
        relay_settings = RelaySettings(secret, RELAY)
    stun = StunResponder() if nat_check or defaults else None
    introducer = IntroducerProtocol(
        clock, Registry(60.0, random_bytes), random_bytes, relay=relay_settings, stun_responder=stun
    )
    introducer_port = introducer_host.listenUDP(INTRODUCER.port, introducer)
    extra_ports = []
    stun_alternate = Address("192.0.2.11", INTRODUCER.port)
    if defaults:
        # One IP address: a second port only.
        server = introducer.stun_server
        local = Address(INTRODUCER.host, INTRODUCER.port + 2)
        protocol = server.protocols["alt-port"] = StunServerProtocol(server, "alt-port", local)
        extra_ports.append(introducer_host.listenUDP(local.port, protocol))
        server.responder.primary_address = INTRODUCER
        server.responder.other_address = local
    if nat_check:
        # Make the introducer's STUN service an RFC 5780 server: alternate
        # port on its host, alternate IP on a second host beside it.
        server = introducer.stun_server
        alternate_host = network.add_host(stun_alternate.host, name="stun-alternate")
        sockets = {
            "alt-port": (introducer_host, Address(INTRODUCER.host, INTRODUCER.port + 2)),
            "alt-ip": (alternate_host, stun_alternate),
            "alt-both": (alternate_host, Address(stun_alternate.host, INTRODUCER.port + 2)),
        }
        for name, (host, local) in sockets.items():
            protocol = server.protocols[name] = StunServerProtocol(server, name, local)
            extra_ports.append(host.listenUDP(local.port, protocol))
        server.responder.primary_address = INTRODUCER
        server.responder.other_address = Address(stun_alternate.host, INTRODUCER.port + 2)

    host_a = add_site(network, kind_a, 1)
    if same_lan:
        box = host_a.behind
        if hairpin and hasattr(box, "hairpin"):
            box.hairpin = True
        host_b = add_site(network, kind_a, 2, behind_existing=box)
    else:
        host_b = add_site(network, kind_b, 2)
    network.set_link(host_a, latency=latency_a)
    network.set_link(host_b, latency=latency_b)

    config = PeerConfig(
        handshake=handshake or HandshakeConfig(warmup=warmup),
        nat_check=nat_check,
        stun_servers=(INTRODUCER,) if nat_check else (),
    ) if not defaults else (peer_config or PeerConfig())
    factory_b = _Factory()
    peer_a = PeerEndpoint(host_a, INTRODUCER, "A", config=config, random_bytes=random_bytes)
    peer_b = PeerEndpoint(host_b, INTRODUCER, "B", config=config, random_bytes=random_bytes, factory=factory_b)
    result = PairResult(network=network)
    peer_a.add_observer(lambda e: result.events.append((clock.seconds(), "A", e)))
    peer_b.add_observer(lambda e: result.events.append((clock.seconds(), "B", e)))

    started: list[object] = []
    began = clock.seconds()

    def a_started(outcome):
        result.start_time = clock.seconds() - began
        started.append(outcome)

    peer_a.start().addBoth(a_started)
    peer_b.start().addBoth(started.append)
    _run_until(clock, step, 10.0, lambda: len(started) == 2)
    for outcome in started:
        if isinstance(outcome, Failure):
            result.outcome_a = outcome
            _shutdown(clock, step, peer_a, peer_b, introducer_port)
            return result
    if nat_check:
        # The check runs beside the registration and its filtering tests
        # end later: connect once both know all their facts.
        _run_until(clock, step, 10.0, lambda: all(p.nat_report is not None for p in (peer_a, peer_b)))
    if block:
        network.block(peer_a.public_address.host, peer_b.public_address.host)
    if loss:
        network.set_link(host_a, latency=latency_a, loss=loss)
        network.set_link(host_b, latency=latency_b, loss=loss)

    begun = clock.seconds()
    outcomes: list[object] = []
    peer_a.connect("B", _Recorder()).addBoth(outcomes.append)

    def b_done() -> bool:
        connected = [c for c in peer_b.connections if c.is_open]
        return bool(connected) or not peer_b.connections

    _run_until(clock, step, until, lambda: bool(outcomes) and b_done())
    if outcomes:
        result.outcome_a = outcomes[0]
        if isinstance(outcomes[0], PeerConnection):
            result.connect_time = next(
                (t - begun for t, side, e in result.events if side == "A" and e.kind == "connected"),
                None,
            )
    result.incoming_b = [c for c in peer_b.connections if c.is_open]
    if then is not None:
        then(PairContext(clock, network, peer_a, peer_b, factory_b.built, step))
    _shutdown(clock, step, peer_a, peer_b, introducer_port)
    for port in ([relay_port] if relay_port is not None else []) + extra_ports:
        port.stopListening()
    _run_until(clock, step, 0.1, lambda: False)
    result.leftover_calls = len(clock.getDelayedCalls())
    result.bound_ports_after = len(host_a._ports) + len(host_b._ports)
    return result



def _run_until(clock: HeapClock, step: float, limit: float, done: Callable[[], bool]) -> None:
    deadline = clock.seconds() + limit
    while not done() and clock.seconds() < deadline:
        clock.advance(step)


def _shutdown(clock: HeapClock, step: float, peer_a, peer_b, introducer_port) -> None:
    peer_a.stop()
    peer_b.stop()
    _run_until(clock, step, 1.0, lambda: False)
    introducer_port.stopListening()
    _run_until(clock, step, 0.1, lambda: False)
