"""
The handshake and heartbeat machine shared by both ends of a connection.

Pure: no sockets.  Inputs are events (an introduction arrived, a hello was
received, a timer fired); outputs go through L{HandshakeOutputs} (send this
to that address with this TTL, report connected).  Time comes from the
injected clock, so C{twisted.internet.task.Clock} drives every test.

States (see docs/handshake.md for the diagram made by C{automat-visualize}):

  - C{idle}: created, introduction not yet acted on.
  - C{warming}: short-TTL probes have gone out to every candidate so our own
    NAT and firewall expect the peer; we wait before the first hello so the
    peer's warm-up can also go out before our hello arrives at its NAT: the
    introduction's C{lag} plus C{warmup_margin} when the introducer
    measured both sides, else C{warmup_delay}.
  - C{punching}: hellos to every candidate on a retransmit schedule; every
    hello received is answered to its source address (peer-reflexive); once,
    after C{reversal_after}, we ask the introducer to make the peer send
    first; after C{timeout} we give up.
  - C{connected}: a path is validated.  Keepalives keep idle paths open;
    silence for C{dead_after} loses the connection; an authenticated packet
    from a new source re-binds the path; a late answer from a local
    candidate upgrades a public path to the local one.
  - C{failed}, C{lost}, C{closed}: terminal; every timer is cancelled.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Protocol

from attrs import define, field
from automat import TypeMachineBuilder
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from p2pnet._handshakeconfig import HandshakeConfig
from p2pnet.address import Address, RelayRoute, is_relayed
from p2pnet.errors import HandshakeTimeout



class HandshakeOutputs(Protocol):
    """
    What the machine asks its owner (the connection) to do.
    """

    def send_probe(self, to: Address, ttl: int) -> None:
        """Send a warm-up probe to C{to} with IP TTL C{ttl}."""

    def send_hello(self, to: Address) -> None:
        """Send an authenticated hello to C{to}."""

    def send_answer(self, to: Address, txid: bytes) -> None:
        """Answer the hello C{txid} to the address it came from."""

    def send_keepalive(self, to: Address) -> None:
        """Send an authenticated keepalive to C{to}."""

    def send_close(self, to: Address) -> None:
        """Tell the peer at C{to} we are closing."""

    def request_reversal(self) -> None:
        """Ask the introducer to make the peer send first."""

    def request_relay(self) -> None:
        """Ask the introducer for a relay allocation shared with the peer."""

    def open_birthday_sockets(self, count: int, to: Address) -> None:
        """Open C{count} extra sockets and send a hello to C{to} from each."""

    def open_rescue_socket(self, port: int) -> None:
        """Open one extra socket bound to local port C{port}, to re-punch
        from (none if the port is taken)."""

    def send_rescue_hello(self, port: int, to: Address) -> None:
        """Send a hello to C{to} from the extra socket opened for C{port}
        (nothing if there is none)."""

    def status(self, kind: str) -> None:
        """Report progress (C{"warming"}, C{"punching"}, C{"reversal"},
        C{"relaying"})."""

    def connected(self, address: Address) -> None:
        """A path to C{address} is validated."""

    def path_changed(self, address: Address) -> None:
        """The path moved to C{address} (rebinding or upgrade)."""

    def failed(self, error: Exception) -> None:
        """No path could be validated; C{error} explains."""

    def lost(self, reason: str) -> None:
        """An established path went silent or the peer closed it."""


class Handshake(Protocol):
    """
    The machine's inputs.
    """

    def start(self) -> None:
        """The introduction arrived: begin."""

    def warmed(self) -> None:
        """The warm-up pause is over."""

    def retransmit(self) -> None:
        """The hello retransmit timer fired."""

    def reversal_due(self) -> None:
        """Nothing answered within C{reversal_after}."""

    def give_up(self) -> None:
        """The handshake timeout ran out."""

    def hello_received(self, source: Address, txid: bytes) -> None:
        """An authenticated hello arrived from C{source}."""

    def answer_received(self, source: Address) -> None:
        """An authenticated answer to one of our hellos arrived."""

    def traffic_received(self, source: Address) -> None:
        """Other authenticated traffic (keepalive, data) arrived."""

    def reverse_received(self) -> None:
        """The introducer says the peer cannot reach us: send first."""

    def keepalive_due(self) -> None:
        """The keepalive timer fired."""

    def peer_silent(self) -> None:
        """Nothing heard for C{dead_after}."""

    def peer_closed(self) -> None:
        """The peer said it closed."""

    def close(self) -> None:
        """We close."""

    def relay_due(self) -> None:
        """No direct path by C{relay_after}."""

    def relay_offered(self, route: RelayRoute) -> None:
        """The introducer handed us a relay allocation shared with the peer."""

    def upgrade_due(self) -> None:
        """Time to retry the direct candidates while relayed."""

    def path_silent(self) -> None:
        """Nothing heard on the current direct path for C{fallback_after}."""

    def probe_due(self) -> None:
        """Time for the next batch of random birthday probes."""

    def rescue_due(self) -> None:
        """No path by the next of C{rescue_after}: re-punch from a fresh port."""


@define
class HandshakeCore:
    """
    State shared by every state of the machine: configuration, candidates,
    what was tried and heard, the chosen path, and the timers.

    Timers live in C{timers} by name; every transition out of a state
    cancels the ones that state owned, so no timer outlives its state.
    """

    clock: IReactorTime
    outputs: HandshakeOutputs
    config: HandshakeConfig
    peer_id: str
    candidates: list[Address]
    local_candidates: frozenset[Address]
    timers: dict[str, IDelayedCall] = field(factory=dict)
    started: float = 0.0
    sent_hellos: int = 0
    tried: list[Address] = field(factory=list)
    heard: list[Address] = field(factory=list)
    path: Address | None = None
    last_sent: float = 0.0
    last_heard: float = 0.0
    reversal_requested: bool = False
    deadline_at: float = 0.0
    relay_route: RelayRoute | None = None
    relay_requested: bool = False
    upgrade_attempt: int = 0
    route_confirmed: bool = True
    own_nat: tuple[str, str] = ("unknown", "unknown")
    peer_nat: tuple[str, str] = ("unknown", "unknown")
    peer_lag: float | None = None
    rng: object = None
    probes_sent: int = 0
    last_heard_on_path: float = 0.0
    rescue_key: bytes | None = None
    initiator: bool = False
    rescue_ports: list[int] = field(factory=list)
    log: Logger = field(factory=Logger)
    public: Address | None = None
    hellos_to: dict[Address, int] = field(factory=dict)

    #: Candidates one connection keeps at most (introduction, learnt from
    #: hellos, predicted ports, relay routes together).
    MAX_CANDIDATES = 24

    def __attrs_post_init__(self) -> None:
        if self.public is None and self.candidates:
            self.public = self.candidates[0]

    def schedule(self, name: str, delay: float, input_: Callable[[], None]) -> None:
        self.cancel(name)

        def fire() -> None:
            del self.timers[name]
            input_()

        self.timers[name] = self.clock.callLater(max(0.0, delay), fire)

    def warmup_pause(self) -> float:
        """
        Seconds between the warm-up probes and the first hello.
        """
        config = self.config
        if config.adaptive_warmup and self.peer_lag is not None:
            return min(self.peer_lag + config.warmup_margin, config.warmup_max)
        return config.warmup_delay

    def cancel(self, name: str) -> None:
        call = self.timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def cancel_all(self) -> None:
        for name in list(self.timers):
            self.cancel(name)

    def add_candidate(self, address: Address) -> bool:
        if address in self.candidates or (self.config.relay_only and not is_relayed(address)):
            return False
        if len(self.candidates) >= self.MAX_CANDIDATES:
            return False
        self.candidates.append(address)
        return True

    def vouched_for(self, candidate: Address) -> bool:
        """
        Whether C{candidate} may get hellos without limit: it is relayed,
        we heard from it, or it is on the host the introducer saw the peer
        at.
        """
        return (
            is_relayed(candidate)
            or candidate in self.heard
            or (self.public is not None and not is_relayed(self.public) and candidate.host == self.public.host)
        )

    def hear(self, source: Address) -> None:
        self.last_heard = self.clock.seconds()
        if source == self.path:
            self.last_heard_on_path = self.last_heard
        if source not in self.heard:
            self.heard.append(source)

    def send_hellos(self, targets: list[Address] | None = None) -> None:
        budget = self.config.claimed_hellos
        for candidate in targets if targets is not None else self.candidates:
            if not self.vouched_for(candidate):
                sent = self.hellos_to.get(candidate, 0)
                if sent >= budget:
                    continue
                self.hellos_to[candidate] = sent + 1
            if candidate not in self.tried:
                self.tried.append(candidate)
            self.outputs.send_hello(candidate)
        self.sent_hellos += 1
        self.last_sent = self.clock.seconds()

    def next_gap(self) -> float:
        intervals = self.config.hello_intervals
        return intervals[min(self.sent_hellos - 1, len(intervals) - 1)]

    def elapsed(self) -> float:
        return self.clock.seconds() - self.started

    def direct_candidates(self) -> list[Address]:
        return [c for c in self.candidates if not is_relayed(c)]

    def rescuing(self) -> bool:
        """
        Whether this handshake re-punches from derived ports.
        """
        config = self.config
        return bool(
            config.rescue_after and config.warmup and not config.relay_only
            and self.rescue_key is not None and self.public_target() is not None
        )

    def public_target(self) -> Address | None:
        """
        The peer's public address as the introducer saw it, if we may send
        to it (the target of re-punching, port prediction and the birthday
        search), else None.
        """
        public = self.public
        if public is None or is_relayed(public) or not public.is_reachable:
            return None
        return public

    def send_rescue_hellos(self, ports: list[int] | None = None) -> None:
        # Only to the public address the introducer saw: a NAT between us
        # is what can be poisoned, and an address the peer merely claims
        # gets no more packets than the plain hellos send it.
        public = self.public_target()
        if public is None:
            return
        for port in self.rescue_ports if ports is None else ports:
            self.outputs.send_rescue_hello(port, public)

    def extend_deadline(self, inputs: Handshake, by: float) -> None:
        now = self.clock.seconds()
        extended = min(now + by, self.started + 2 * self.config.timeout)
        if extended > self.deadline_at:
            self.deadline_at = extended
            self.schedule("deadline", extended - now, inputs.give_up)


def _build() -> Callable[[HandshakeCore], Handshake]:
    machine = TypeMachineBuilder(Handshake, HandshakeCore)
    idle = machine.state("idle")
    warming = machine.state("warming")
    punching = machine.state("punching")
    connected = machine.state("connected")
    failed = machine.state("failed")
    lost = machine.state("lost")
    closed = machine.state("closed")

    # -- idle -------------------------------------------------------------
    idle.upon(Handshake.start).to(warming)(_begin)

    # -- warming and punching -------------------------------------------
    warming.upon(Handshake.warmed).to(punching)(_first_hellos)
    punching.upon(Handshake.retransmit).loop()(_retransmit)
    punching.upon(Handshake.rescue_due).loop()(_rescue)
    punching.upon(Handshake.reversal_due).loop()(_ask_reversal)
    punching.upon(Handshake.hello_received).loop()(_answer_while_punching)
    warming.upon(Handshake.hello_received).loop()(_answer_while_punching)
    punching.upon(Handshake.reverse_received).loop()(_send_first)
    warming.upon(Handshake.reverse_received).loop()(_send_first)
    warming.upon(Handshake.traffic_received).to(connected)(_validated)
    punching.upon(Handshake.traffic_received).to(connected)(_validated)
    punching.upon(Handshake.answer_received).to(connected)(_validated)
    warming.upon(Handshake.answer_received).loop()(_early_answer)
    punching.upon(Handshake.give_up).to(failed)(_fail)
    warming.upon(Handshake.give_up).to(failed)(_fail)

    # -- connected --------------------------------------------------------
    connected.upon(Handshake.hello_received).loop()(_answer_late_hello)
    connected.upon(Handshake.answer_received).loop()(_upgrade_or_refresh)
    connected.upon(Handshake.traffic_received).loop()(_refresh)
    connected.upon(Handshake.keepalive_due).loop()(_keepalive)
    connected.upon(Handshake.peer_silent).to(lost)(_silent)
    connected.upon(Handshake.peer_closed).to(lost)(_remote_close)
    connected.upon(Handshake.close).to(closed)(_close_connected)
    punching.upon(Handshake.close).to(closed)(_close_early)
    warming.upon(Handshake.close).to(closed)(_close_early)
    idle.upon(Handshake.close).to(closed)(_close_early)

    # -- relay ------------------------------------------------------------
    punching.upon(Handshake.relay_due).loop()(_ask_relay)
    warming.upon(Handshake.relay_due).loop()(_ask_relay)
    punching.upon(Handshake.relay_offered).loop()(_try_relay)
    warming.upon(Handshake.relay_offered).loop()(_try_relay)
    connected.upon(Handshake.relay_offered).loop()(_relay_for_later)
    connected.upon(Handshake.path_silent).loop()(_direct_went_quiet)
    punching.upon(Handshake.probe_due).loop()(_birthday_probes)
    connected.upon(Handshake.upgrade_due).loop()(_try_direct_again)

    # Anything else is ignored: stale timers cannot fire (they were
    # cancelled), but packets and calls still arrive in any state.
    ignored = {
        idle: ["warmed", "retransmit", "reversal_due", "give_up", "hello_received",
               "answer_received", "traffic_received", "reverse_received",
               "keepalive_due", "peer_silent", "peer_closed", "relay_due", "relay_offered",
               "upgrade_due", "path_silent", "probe_due", "rescue_due"],
        warming: ["start", "retransmit", "reversal_due", "keepalive_due", "peer_silent",
                  "peer_closed", "upgrade_due", "path_silent", "probe_due", "rescue_due"],
        punching: ["start", "warmed", "keepalive_due", "peer_silent", "peer_closed",
                   "upgrade_due", "path_silent"],
        connected: ["start", "warmed", "retransmit", "reversal_due", "give_up",
                    "reverse_received", "relay_due", "probe_due", "rescue_due"],
    }
    everything = [name for name in dir(Handshake) if not name.startswith("_")]
    for state in (failed, lost, closed):
        ignored[state] = everything
    for state, names in ignored.items():
        for name in names:
            state.upon(getattr(Handshake, name)).loop()(_ignore)

    return machine.build()


# The transitions, registered by _build() (module-level so that each is
# a function of its own: the mutation tester can then mutate and score it).


def _begin(inputs: Handshake, core: HandshakeCore) -> None:
    core.started = core.clock.seconds()
    core.last_heard = core.started
    config = core.config
    if config.relay_only:
        core.candidates[:] = [c for c in core.candidates if is_relayed(c)]
    if config.warmup and not config.relay_only:
        core.outputs.status("warming")
        for _ in range(config.warmup_packets):
            for candidate in core.direct_candidates():
                core.outputs.send_probe(candidate, config.warmup_ttl)
        if core.rescuing():
            # Open our NAT now for the peer's re-punch sockets: their
            # hellos may come long after ours went out.  The probes
            # die before the peer's NAT, so they cannot poison it.
            host = core.public_target().host
            for _ in range(config.warmup_packets):
                for rung in range(len(config.rescue_after)):
                    port = rescue_port(core.rescue_key, not core.initiator, rung)
                    core.outputs.send_probe(Address(host, port), config.warmup_ttl)
        core.schedule("warm", core.warmup_pause(), inputs.warmed)
    else:
        core.schedule("warm", 0.0, inputs.warmed)
    core.deadline_at = core.started + config.timeout
    core.schedule("deadline", config.timeout, inputs.give_up)
    if config.relay_after is not None:
        # When the NAT checks say plain punching cannot work, ask for
        # the relay at once (and still try direct in parallel).
        early = config.relay_only or not core.direct_candidates() or (
            direct_hopeless(core.own_nat, core.peer_nat)
            and not (config.hard_nat and hard_nat_role(core.own_nat, core.peer_nat) is not None)
        )
        core.schedule("relay", 0.0 if early else config.relay_after, inputs.relay_due)


def _first_hellos(inputs: Handshake, core: HandshakeCore) -> None:
    core.outputs.status("punching")
    role = (
        hard_nat_role(core.own_nat, core.peer_nat)
        if core.config.hard_nat and not core.config.relay_only
        else None
    )
    public = core.public_target()
    if role == "easy" and public is not None:
        # Port prediction for sequential allocators, then random
        # (birthday) probes for the rest.
        for k in range(1, core.config.predict_ports + 1):
            if public.port + k <= 65535:
                core.add_candidate(Address(public.host, public.port + k))
        if core.config.birthday_probes and core.rng is not None:
            core.outputs.status("birthday")
            core.schedule("probe", 0.0, inputs.probe_due)
    elif role == "hard" and public is not None and core.config.birthday_sockets:
        core.outputs.status("birthday")
        core.outputs.open_birthday_sockets(core.config.birthday_sockets, public)
    core.send_hellos()
    core.schedule("retransmit", core.next_gap(), inputs.retransmit)
    core.schedule("reversal", core.config.reversal_after - core.elapsed(), inputs.reversal_due)
    if core.rescuing():
        core.schedule("rescue", core.config.rescue_after[0] - core.elapsed(), inputs.rescue_due)


def _retransmit(inputs: Handshake, core: HandshakeCore) -> None:
    core.send_hellos()
    core.send_rescue_hellos()
    core.schedule("retransmit", core.next_gap(), inputs.retransmit)


def _rescue(inputs: Handshake, core: HandshakeCore) -> None:
    # Our early hellos may have reached the peer's NAT before its own
    # warm-up (its introduction came late), and some NATs then keep
    # rejecting that pair of ports.  A fresh port of ours, which the
    # peer warmed up towards at its start, makes a fresh pair.
    rungs = core.config.rescue_after
    rung = len(core.rescue_ports)
    port = rescue_port(core.rescue_key, core.initiator, rung)
    core.outputs.status("re-punching")
    core.outputs.open_rescue_socket(port)
    core.rescue_ports.append(port)
    # One hello from it at once; later ones ride the retransmit timer.
    core.send_rescue_hellos([port])
    if rung + 1 < len(rungs):
        core.schedule("rescue", rungs[rung + 1] - core.elapsed(), inputs.rescue_due)


def _ask_reversal(inputs: Handshake, core: HandshakeCore) -> None:
    # Relay-only: a reversal would hand the peer our public address.
    if not core.reversal_requested and not core.config.relay_only:
        core.reversal_requested = True
        core.outputs.status("reversal")
        core.outputs.request_reversal()


def _answer_while_punching(inputs: Handshake, core: HandshakeCore, source: Address, txid: bytes) -> None:
    if core.config.relay_only and not is_relayed(source):
        return
    core.hear(source)
    core.outputs.send_answer(source, txid)
    # A hello proves the path towards us; a hello of ours back along it
    # (a triggered check) validates the other direction without waiting
    # for the retransmit timer.  A new source is a peer-reflexive
    # candidate: the peer's NAT mapped it to a port nobody told us.
    core.add_candidate(source)
    core.send_hellos([source])
    # The peer is alive and punching (perhaps it learnt of us late):
    # give it time to finish, within twice the configured timeout.
    core.extend_deadline(inputs, core.config.timeout / 3)


def _send_first(inputs: Handshake, core: HandshakeCore) -> None:
    config = core.config
    if config.warmup:
        for candidate in core.direct_candidates():
            core.outputs.send_probe(candidate, config.warmup_ttl)
    core.sent_hellos = 0
    core.send_hellos()
    core.schedule("retransmit", core.next_gap(), inputs.retransmit)


def _validated(inputs: Handshake, core: HandshakeCore, source: Address) -> None:
    # (A relay-only handshake never sends to or answers a direct
    # candidate, so what validates here is relayed.)
    core.cancel_all()
    core.hear(source)
    core.path = source
    core.last_heard_on_path = core.clock.seconds()
    core.outputs.connected(source)
    # Tell the peer at once: if it is still punching (our answer to its
    # hello may have been lost) this validates its side too.
    core.outputs.send_keepalive(source)
    core.last_sent = core.clock.seconds()
    if source not in core.local_candidates:
        # Keep offering the local path: a LAN answer that arrives later
        # upgrades the connection (see upgrade_or_refresh).
        untried = [c for c in core.candidates if c in core.local_candidates]
        if untried:
            core.send_hellos(untried)
    if is_relayed(source):
        _arm_upgrade(inputs, core)
    _arm_heartbeat(inputs, core)


def _early_answer(inputs: Handshake, core: HandshakeCore, source: Address) -> None:
    # We sent no hello yet, so this cannot answer one of ours.
    core.hear(source)


def _fail(inputs: Handshake, core: HandshakeCore) -> None:
    core.cancel_all()
    core.outputs.failed(HandshakeTimeout(core.peer_id, core.tried, core.heard, core.elapsed()))


def _answer_late_hello(inputs: Handshake, core: HandshakeCore, source: Address, txid: bytes) -> None:
    # Late hellos (the peer is still punching, or probing our other
    # candidates) prove liveness but do not move the path: only the
    # peer's chosen traffic does.
    core.outputs.send_answer(source, txid)
    core.hear(source)
    # The peer is still punching; a keepalive on our path gives it a
    # second chance to validate if the answer is lost.
    core.outputs.send_keepalive(core.path)
    core.last_sent = core.clock.seconds()


def _upgrade_or_refresh(inputs: Handshake, core: HandshakeCore, source: Address) -> None:
    better = (
        is_relayed(core.path) and not is_relayed(source)
    ) or (source in core.local_candidates and core.path not in core.local_candidates)
    if better:
        core.hear(source)
        _move(core, source)
        core.cancel("upgrade")
        return
    core.hear(source)


def _keepalive(inputs: Handshake, core: HandshakeCore) -> None:
    now = core.clock.seconds()
    interval = core.config.keepalive_interval
    if now - core.last_sent >= interval - 1e-9:
        core.outputs.send_keepalive(core.path)
        core.last_sent = now
    core.schedule("keepalive", core.last_sent + interval - now, inputs.keepalive_due)


def _silent(inputs: Handshake, core: HandshakeCore) -> None:
    core.cancel_all()
    core.outputs.lost(f"nothing heard from {core.path} for {core.config.dead_after:g}s")


def _remote_close(inputs: Handshake, core: HandshakeCore) -> None:
    core.cancel_all()
    core.outputs.lost("the peer closed the connection")


def _close_connected(inputs: Handshake, core: HandshakeCore) -> None:
    core.cancel_all()
    core.outputs.send_close(core.path)


def _close_early(inputs: Handshake, core: HandshakeCore) -> None:
    core.cancel_all()


def _ask_relay(inputs: Handshake, core: HandshakeCore) -> None:
    _ask_for_relay(core)


def _try_relay(inputs: Handshake, core: HandshakeCore, route: RelayRoute) -> None:
    # The first route offered is the one to fall back to later, but
    # every route gets hellos: with TURN, our own allocation reaches
    # the peer only once the peer has sent to it (its NAT filters by
    # remote address), and our hellos to the peer's relayed address
    # are what open our NAT to the peer's allocation.  Using only the
    # first route deadlocks when both sides pick their own.
    if core.relay_route is None:
        core.relay_route = route
    if not core.add_candidate(route):
        return
    core.send_hellos([route])
    core.extend_deadline(inputs, core.config.timeout / 2)


def _relay_for_later(inputs: Handshake, core: HandshakeCore, route: RelayRoute) -> None:
    if core.relay_route is None:
        core.relay_route = route
        core.add_candidate(route)
    if not is_relayed(core.path):
        silence = core.clock.seconds() - core.last_heard_on_path
        if silence >= core.config.keepalive_interval:
            _fall_back(inputs, core)


def _direct_went_quiet(inputs: Handshake, core: HandshakeCore) -> None:
    if is_relayed(core.path):
        return
    if core.relay_route is not None:
        _fall_back(inputs, core)
    elif core.config.relay_after is not None:
        _ask_for_relay(core)


def _birthday_probes(inputs: Handshake, core: HandshakeCore) -> None:
    config = core.config
    public = core.public_target()
    tick = 0.02
    batch = max(1, round(config.birthday_rate * tick))
    for _ in range(min(batch, config.birthday_probes - core.probes_sent)):
        core.outputs.send_hello(Address(public.host, core.rng.randrange(1024, 65536)))
        core.probes_sent += 1
    if core.probes_sent < config.birthday_probes:
        core.schedule("probe", tick, inputs.probe_due)


def _try_direct_again(inputs: Handshake, core: HandshakeCore) -> None:
    if not is_relayed(core.path) or core.config.relay_only:
        return
    core.send_hellos(core.direct_candidates())
    core.last_sent = core.clock.seconds()
    core.upgrade_attempt += 1
    _arm_upgrade(inputs, core)


_DEPENDENT_MAPPING = {"address-dependent", "address-and-port-dependent", "endpoint-dependent"}


def hard_nat_role(own: tuple[str, str], peer: tuple[str, str]) -> str | None:
    """
    Our part in an easy <-> hard pair: C{"easy"} when only the peer's NAT
    maps per destination, C{"hard"} when only ours does, else None.
    """
    own_hard = own[0] in _DEPENDENT_MAPPING
    peer_hard = peer[0] in _DEPENDENT_MAPPING
    if peer_hard and not own_hard and own[0] != "unknown":
        return "easy"
    if own_hard and not peer_hard and peer[0] != "unknown":
        return "hard"
    return None


def rescue_port(key: bytes, initiator: bool, rung: int) -> int:
    """
    The local port the initiator (or the other side) re-punches from at
    C{rung} (see L{HandshakeConfig.rescue_after}): 1024-65535, derived
    from the introduction's key, so both sides, and nobody else, know it.
    """
    digest = hashlib.blake2s(
        bytes([1 if initiator else 0, rung & 0xFF]), key=key[:32], digest_size=4, person=b"p2prpnch"
    ).digest()
    return 1024 + int.from_bytes(digest, "big") % (65536 - 1024)


def direct_hopeless(own: tuple[str, str], peer: tuple[str, str]) -> bool:
    """
    Whether NAT facts (C{(mapping, filtering)} of each side) rule out a
    direct path by plain punching: one side maps per destination and the
    other filters by address and port (or also maps per destination).
    Unknown behaviour never rules anything out.
    """
    for hard, other in ((own, peer), (peer, own)):
        if hard[0] in _DEPENDENT_MAPPING and (
            other[1] == "address-and-port-dependent" or other[0] in _DEPENDENT_MAPPING
        ):
            return True
    return False


def _ignore(inputs: Handshake, core: HandshakeCore, *args: object) -> None:
    return None


def _arm_heartbeat(inputs: Handshake, core: HandshakeCore) -> None:
    interval = core.config.keepalive_interval
    core.schedule("keepalive", core.last_sent + interval - core.clock.seconds(), inputs.keepalive_due)
    _arm_dead(inputs, core)


def _arm_dead(inputs: Handshake, core: HandshakeCore) -> None:
    def check() -> None:
        if core.clock.seconds() - core.last_heard >= core.config.dead_after - 1e-9:
            inputs.peer_silent()
        else:
            _arm_dead(inputs, core)

    core.schedule("dead", core.last_heard + core.config.dead_after - core.clock.seconds(), check)
    if core.config.relay_after is not None:
        _arm_silence(inputs, core)


def _arm_silence(inputs: Handshake, core: HandshakeCore) -> None:
    def check() -> None:
        now = core.clock.seconds()
        if not is_relayed(core.path) and now - core.last_heard_on_path >= core.config.fallback - 1e-9:
            inputs.path_silent()
            if "silence" not in core.timers:
                core.schedule("silence", core.config.keepalive_interval, check)
        else:
            _arm_silence(inputs, core)

    delay = core.last_heard_on_path + core.config.fallback - core.clock.seconds()
    core.schedule("silence", delay if delay > 0 else core.config.keepalive_interval, check)


def _arm_upgrade(inputs: Handshake, core: HandshakeCore) -> None:
    intervals = core.config.upgrade_intervals
    core.schedule("upgrade", intervals[min(core.upgrade_attempt, len(intervals) - 1)], inputs.upgrade_due)


def _move(core: HandshakeCore, source) -> None:
    core.path = source
    core.last_heard_on_path = core.clock.seconds()
    core.outputs.path_changed(source)


def _ask_for_relay(core: HandshakeCore) -> None:
    """
    Ask the introducer for a relay, once per connection.
    """
    if not core.relay_requested:
        core.relay_requested = True
        core.outputs.status("relaying")
        core.outputs.request_relay()


def _fall_back(inputs: Handshake, core: HandshakeCore) -> None:
    """
    Move a silent direct path to the relay, and keep trying direct.
    """
    _move(core, core.relay_route)
    core.outputs.send_keepalive(core.relay_route)
    now = core.clock.seconds()
    core.last_sent = now
    # The relay forwards only once both members have bound to it, so the
    # first keepalive may die there: give the new path a full window and
    # answer the first thing heard on it.
    core.last_heard = now
    core.route_confirmed = False
    _arm_dead(inputs, core)
    core.upgrade_attempt = 0
    _arm_upgrade(inputs, core)


def _refresh(inputs: Handshake, core: HandshakeCore, source: Address) -> None:
    core.hear(source)
    if source == core.path:
        core.last_heard_on_path = core.clock.seconds()
        if is_relayed(source) and not core.route_confirmed:
            core.route_confirmed = True
            core.outputs.send_keepalive(source)
            core.last_sent = core.clock.seconds()
        return
    if is_relayed(source) and not is_relayed(core.path):
        # A relayed packet while we are direct: a late one, unless our direct
        # path went quiet and the peer moved to the relay.
        if core.clock.seconds() - core.last_heard_on_path < core.config.keepalive_interval:
            return
        _move(core, source)
        core.upgrade_attempt = 0
        _arm_upgrade(inputs, core)
        return
    if (
        core.initiator and not is_relayed(source) and not is_relayed(core.path)
        and source.is_ipv6 != core.path.is_ipv6
        and core.clock.seconds() - core.last_heard_on_path < core.config.keepalive_interval
    ):
        # Dual stack: each side takes the path that validated first, and
        # they may differ in family.  The initiator keeps its own while it
        # works; the other side follows it (no swapping back and forth).
        return
    _move(core, source)
    if not is_relayed(source):
        core.cancel("upgrade")


#: C{HandshakeCore -> Handshake}: build a machine around a core.
make_handshake = _build()
