"""
The relays an introducer hands allocations out on: several of them, each
allocation on the least loaded relay that is alive, and when a relay stops
answering, its allocations moved to another.

L{RelayPool} is the bookkeeping (pure; time passed in): which relays
there are, their load and liveness, and which allocations this introducer
handed out on each.  L{RelayMonitor} is its socket: it probes every relay
with an address (L{p2pnet._relayprobe}) every C{interval} seconds and
declares one dead when no answer came for C{dead_after} seconds; its
owner (the introducer) then moves that relay's allocations
(L{IntroducerProtocol.relay_died}).  A relay in the introducer's own
process (no address) lives and dies with the introducer and is not
probed.

Load is the relay's allocation count from its latest answer plus the
allocations handed out on it since (for an unprobed relay: its own count,
read in process, or what this introducer handed out).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

from attrs import define
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from p2pnet import wire
from p2pnet._relayprobe import encode_probe, read_answer
from p2pnet.address import Address


@define
class RelaySettings:
    """
    A relay an introducer hands allocations out for.

    @ivar secret: the relay's secret (allocation keys derive from it).
    @ivar address: where peers reach the relay; None for a relay on the
        introducer's own host, whose port C{port_of()} tells once bound
        (offers then carry 0.0.0.0, which peers read as "the introducer's
        host").
    @ivar allocations: C{() -> int}, the relay's allocation count, for a
        relay in this process (its load without probing).
    """

    secret: bytes
    address: Address | None = None
    port_of: Callable[[], int] | None = None
    allocations: Callable[[], int] | None = None

    def offer_address(self) -> Address:
        if self.address is not None:
            return self.address
        return Address("0.0.0.0", self.port_of() if self.port_of is not None else 0)


@define(eq=False)
class RelayState:
    """
    What the pool knows of one relay.

    @ivar alive: answered a probe within C{dead_after} (always, unprobed).
    @ivar reported: its allocation count in its latest answer.
    @ivar handed: allocations handed out on it since that answer.
    @ivar nonce: the latest probe's, the only answer taken.
    """

    settings: RelaySettings
    alive: bool = True
    last_heard: float = 0.0
    reported: int = 0
    handed: int = 0
    nonce: bytes | None = None

    @property
    def probed(self) -> bool:
        return self.settings.address is not None

    @property
    def load(self) -> int:
        if self.settings.allocations is not None:
            return self.settings.allocations() + self.handed
        return self.reported + self.handed

    @property
    def name(self) -> str:
        return str(self.settings.address) if self.settings.address is not None else "in-process relay"


@define(eq=False)
class AllocationRecord:
    """
    An allocation this introducer handed out: on which relay, for which
    introduction and peers (so that it can be moved).
    """

    allocation: bytes
    intro_id: bytes
    peers: tuple[str, str]
    relay: RelayState


class RelayPool:
    """
    Several relays, their load and liveness, and the allocations handed out
    on each (see the module docstring).

    @param relays: the relays, in order of preference on equal load.
    @param dead_after: seconds without an answer before a probed relay is
        taken for dead.
    @param capacity: allocations remembered for moving them, at most (the
        oldest are forgotten first: they are no longer moved).
    """

    def __init__(self, relays: list[RelaySettings], dead_after: float = 3.0, capacity: int = 65536) -> None:
        if not relays:
            raise ValueError("a relay pool needs at least one relay")
        self.relays = [RelayState(settings) for settings in relays]
        self.dead_after = dead_after
        self.capacity = capacity
        self._records: OrderedDict[bytes, AllocationRecord] = OrderedDict()

    def start(self, now: float) -> None:
        """
        Probed relays count as alive until C{dead_after} from C{now}.
        """
        for relay in self.relays:
            relay.last_heard = now

    def choose(self) -> RelayState | None:
        """
        The least loaded relay that is alive (the first on equal load), or
        None when none is.
        """
        best = None
        for relay in self.relays:
            if relay.alive and (best is None or relay.load < best.load):
                best = relay
        return best

    def assign(self, allocation: bytes, intro_id: bytes, peers: tuple[str, str]) -> RelayState | None:
        """
        Put a new allocation on the L{choose}n relay and remember it.
        """
        relay = self.choose()
        if relay is None:
            return None
        relay.handed += 1
        records = self._records
        while len(records) >= self.capacity:
            records.popitem(last=False)
        records[allocation] = AllocationRecord(allocation, intro_id, peers, relay)
        return relay

    def relay_of(self, allocation: bytes) -> RelayState | None:
        """
        The relay C{allocation} was put on, if remembered.
        """
        record = self._records.get(allocation)
        return None if record is None else record.relay

    def take_records(self, relay: RelayState) -> list[AllocationRecord]:
        """
        Forget and return the allocations on C{relay}, oldest first.
        """
        taken = [record for record in self._records.values() if record.relay is relay]
        for record in taken:
            del self._records[record.allocation]
        return taken

    def tick(self, now: float, random_bytes: Callable[[int], bytes]) -> tuple[list[tuple[bytes, tuple]], list[RelayState]]:
        """
        The probes to send now, C{(datagram, address)}, and the relays that
        have just been taken for dead.
        """
        probes, died = [], []
        for relay in self.relays:
            if not relay.probed:
                continue
            if relay.alive and now - relay.last_heard >= self.dead_after:
                relay.alive = False
                died.append(relay)
            relay.nonce = random_bytes(8)
            probes.append((encode_probe(relay.settings.secret, relay.nonce), relay.settings.address.as_tuple()))
        return probes, died

    def heard(self, data: bytes, source: Address, now: float) -> RelayState | None:
        """
        A datagram that came to the monitor's socket: if it is the answer
        to a relay's latest probe, that relay is alive with the load it
        reports (returned); anything else changes nothing (None).
        """
        for relay in self.relays:
            if relay.settings.address != source or relay.nonce is None:
                continue
            load = read_answer(data, relay.settings.secret, relay.nonce)
            if load is None:
                return None
            relay.nonce = None
            relay.reported = load
            relay.handed = 0
            relay.last_heard = now
            relay.alive = True
            return relay
        return None


def moved_offers(record: AllocationRecord, allocation: bytes, relay: RelayState, new_txid: Callable[[], bytes]):
    """
    The two L{wire.RelayOffer}s that move C{record}'s pair to C{allocation}
    on C{relay}: C{[(peer id, offer), ...]}, each with the side it had
    (side 0 for the smaller peer id, as when it was first handed out).
    """
    key = wire.relay_key(relay.settings.secret, allocation)
    first, second = sorted(record.peers)
    return [
        (peer, wire.RelayOffer(new_txid(), record.intro_id, allocation, relay.settings.offer_address(), key, side))
        for side, peer in enumerate((first, second))
    ]


class RelayMonitor(DatagramProtocol):
    """
    Probes the pool's relays from its own socket every C{interval}
    seconds, and calls C{died(relay)} for each relay that stopped
    answering.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        pool: RelayPool,
        random_bytes: Callable[[int], bytes],
        died: Callable[[RelayState], object],
        interval: float = 1.0,
    ) -> None:
        self._clock = clock
        self.pool = pool
        self._random_bytes = random_bytes
        self._died = died
        self.interval = interval
        self._call = None
        self.dropped = 0

    def startProtocol(self) -> None:
        self.pool.start(self._clock.seconds())
        self._tick()

    def stopProtocol(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _tick(self) -> None:
        self._call = self._clock.callLater(self.interval, self._tick)
        probes, died = self.pool.tick(self._clock.seconds(), self._random_bytes)
        for raw, to in probes:
            try:
                self.transport.write(raw, to)
            except OSError as e:
                self.log.debug("could not probe {relay}: {error}", relay=to, error=str(e))
        for relay in died:
            self.log.warn("relay {relay} stopped answering: moving its allocations", relay=relay.name)
            try:
                self._died(relay)
            except Exception:
                self.log.failure("bug: moving the allocations of {relay}", relay=relay.name)

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        try:
            source = Address(addr[0], addr[1])
        except (TypeError, ValueError):
            self.dropped += 1
            return
        alive_before = {relay: relay.alive for relay in self.pool.relays}
        relay = self.pool.heard(data, source, self._clock.seconds())
        if relay is None:
            self.dropped += 1
        elif not alive_before[relay]:
            self.log.info("relay {relay} answers again", relay=relay.name)
