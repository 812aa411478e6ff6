"""
The tunables of the handshake and heartbeat machine (L{HandshakeConfig}),
validated when made; the machine itself is L{p2pnet._handshake}.
"""

from __future__ import annotations

from attrs import field, frozen


def _positive(instance, attribute, value) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be greater than 0, not {value!r}")


def _non_negative(instance, attribute, value) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, not {value!r}")


@frozen
class HandshakeConfig:
    """
    Tunables of the handshake and heartbeat; the defaults suit the
    internet.  All times are seconds.

    @ivar warmup: send short-TTL probes before the first hello.
    @ivar warmup_ttl: the probes' IP TTL: enough to leave our own NAT and
        firewall (2 leaves one box), not enough to reach the peer's NAT.
    @ivar warmup_packets: probes per candidate.
    @ivar warmup_delay: pause between the probes and the first hello when
        the introduction carries no C{lag} (or C{adaptive_warmup} is off).
    @ivar adaptive_warmup: when the introduction carries a C{lag} (how much
        longer the peer's round trip to the introducer is than ours), pause
        that long plus C{warmup_margin} instead of C{warmup_delay}.
    @ivar warmup_margin: added to the lag for timer and measurement jitter.
    @ivar warmup_max: the longest adaptive pause.
    @ivar hello_intervals: retransmit gaps; the last repeats until timeout.
    @ivar reversal_after: ask the introducer for connection reversal if no
        answer came by then (once).
    @ivar timeout: give up on a direct path after this long (extended, up to
        twice as long, while hellos from the peer keep arriving).
    @ivar keepalive_interval: send a keepalive when we sent nothing for this
        long on an established path (real traffic counts).
    @ivar dead_after: declare the connection lost after hearing nothing
        authenticated for this long (the idle timeout).
    @ivar answer_timeout: while we send (the game's datagrams or channel
        messages), declare the connection lost when the peer answers
        nothing for this long (the active timeout, LiteNetLib's 5 s; see
        L{p2pnet._liveness}); None: only C{dead_after}.
    @ivar probe_interval: while an answer is owed, ask the peer for one
        (an echo request) after each this much silence.
    @ivar relay_only: never use or answer direct candidates; ask for a
        relay at once (keeps our addresses from the peer, like WebRTC's
        relay-only policy).
    @ivar hard_nat: use the hard-NAT strategies when the NAT facts call for
        them (see L{hard_nat_role}); False switches them off.
    @ivar predict_ports: against a peer whose NAT maps per destination, also
        send hellos to its public port + 1 ... + this many (sequential
        allocators hand out the next ports).
    @ivar birthday_sockets: on the hard side of an easy <-> hard pair, open
        this many extra sockets towards the easy side's public address.
    @ivar birthday_rate: on the easy side, probes per second to random
        ports of the hard side's public address.
    @ivar birthday_probes: at most this many random probes per handshake.
    @ivar relay_after: ask for a relay if no direct path validated by then
        (None: never use a relay).
    @ivar upgrade_intervals: while relayed, retry the direct candidates
        after these gaps (the last repeats).
    @ivar fallback_after: silence on a direct path after which the
        connection moves to the relay (default: two thirds of dead_after).
    @ivar claimed_hellos: hellos to a candidate nobody vouched for (the
        peer's own local addresses, and addresses its hellos name) until
        something is heard from it: the peer chooses those addresses, so
        they are kept to a few packets each, enough for a LAN path to
        answer, too few to make us a reflector at a third party.  The
        public address the introducer saw, ports on its host and sources
        we heard from are not limited.
    @ivar rescue_after: re-punch from fresh ports: at each of these times
        after the start, if no path is validated yet, open one extra
        socket on a port both sides derive from the introduction (see
        L{rescue_port}) and send hellos from it as well, to the peer's
        public address.  Both sides warm
        up towards each other's derived ports at the start, so these
        hellos meet open NATs even when the peer's NAT was poisoned by an
        early hello on the main ports (a lost or late introduction, a
        burst of them).  Needs C{warmup}; empty: never.
    """

    warmup: bool = True
    warmup_ttl: int = field(default=2, validator=_positive)
    warmup_packets: int = field(default=2, validator=_positive)
    warmup_delay: float = field(default=0.02, validator=_non_negative)
    adaptive_warmup: bool = True
    warmup_margin: float = field(default=0.001, validator=_non_negative)
    warmup_max: float = field(default=1.0, validator=_non_negative)
    hello_intervals: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
    reversal_after: float = field(default=2.0, validator=_positive)
    timeout: float = field(default=10.0, validator=_positive)
    keepalive_interval: float = field(default=15.0, validator=_positive)
    dead_after: float = field(default=45.0, validator=_positive)
    answer_timeout: float | None = 5.0
    probe_interval: float = field(default=1.0, validator=_positive)
    relay_only: bool = False
    hard_nat: bool = True
    predict_ports: int = field(default=8, validator=_non_negative)
    birthday_sockets: int = field(default=256, validator=_non_negative)
    birthday_rate: float = field(default=250.0, validator=_positive)
    birthday_probes: int = field(default=2000, validator=_non_negative)
    relay_after: float | None = 3.0
    upgrade_intervals: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0, 30.0)
    fallback_after: float | None = None
    claimed_hellos: int = field(default=4, validator=_non_negative)
    rescue_after: tuple[float, ...] = (0.5, 1.5, 3.0)

    @property
    def fallback(self) -> float:
        """
        Silence on a direct path before moving to the relay.
        """
        if self.fallback_after is not None:
            return self.fallback_after
        return self.dead_after * 2 / 3

    def __attrs_post_init__(self) -> None:
        if self.relay_after is not None and self.relay_after <= 0:
            raise ValueError("relay_after must be greater than 0 (or None for no relay)")
        if not self.upgrade_intervals or min(self.upgrade_intervals) <= 0:
            raise ValueError("upgrade_intervals must be a non-empty list of positive gaps")
        if self.fallback_after is not None and not 0 < self.fallback_after < self.dead_after:
            raise ValueError("fallback_after must be between 0 and dead_after")
        if not self.hello_intervals or min(self.hello_intervals) <= 0:
            raise ValueError("hello_intervals must be a non-empty list of positive gaps")
        if self.dead_after <= self.keepalive_interval:
            raise ValueError("dead_after must be longer than keepalive_interval")
        if self.answer_timeout is not None and not self.answer_timeout > self.probe_interval:
            raise ValueError("answer_timeout must be longer than probe_interval (or None: no active timeout)")
        if list(self.rescue_after) != sorted(self.rescue_after) or any(t <= 0 for t in self.rescue_after):
            raise ValueError("rescue_after must be increasing positive times")
