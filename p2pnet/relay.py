"""
The p2pnet relay: forwards authenticated datagrams between the two members
of an allocation when no direct path exists.

Allocations are handed out by the introducer (L{wire.RelayOffer}); their
keys derive from the relay's secret (L{wire.relay_key}), so the relay needs
no state from the introducer and can run in its own process.  The relay
learns each member's address from its first authenticated datagram (and
follows it when the member's NAT rebinds), forwards to the other member,
caps packets and bytes per allocation and per source, and forgets
allocations that stay idle.

Like a TURN server, the relay authenticates a member's address, not each
datagram: a tag is checked whenever a side binds or moves to an address,
and a datagram from the address its side is bound to is forwarded on the
strength of that address and the allocation id (the receiving member
checks every tag itself, so nothing forged reaches an application).
C{verify_all} checks every datagram's tag as well, at about 0.5
microseconds a datagram.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from hmac import compare_digest

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from p2pnet import wire
from p2pnet._ratelimit import SourceLimiter
from p2pnet._udpwrite import FastDatagramWriting

_MAGIC = wire.MAGIC
_RELAYED_TYPE = int(wire.MessageType.RELAYED)
_SMALLEST = wire.RELAY_HEADER_SIZE + wire.DATA_TAG_SIZE
_TAG = wire.DATA_TAG_SIZE
_FORWARD = bytes((wire.MAGIC, wire.MessageType.RELAY_FORWARD))


class _Allocation:
    __slots__ = ("mac", "members", "last", "packets", "bytes", "window")

    def __init__(self, key: bytes, now: float) -> None:
        self.mac = wire.DatagramMac(key)
        self.members: list[tuple | None] = [None, None]
        self.last = now
        self.window = now
        self.packets = 0
        self.bytes = 0


class RelayProtocol(FastDatagramWriting, DatagramProtocol):
    """
    The relay's UDP protocol.

    @param secret: the secret allocation keys derive from (shared with the
        introducer that hands out allocations).
    @param idle_timeout: seconds after which an allocation nobody used is
        forgotten (its members can bind again with the same key).
    @param max_packets: packets per second per allocation.
    @param max_bytes: bytes per second per allocation.
    @param source_limiter: per-source-IP packets and bytes per second,
        or None.
    @param max_allocations: refuse new allocations beyond this many.
    @param verify_all: check the tag of every datagram, not only of those
        that bind or move a side (see the module docstring).
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        secret: bytes,
        idle_timeout: float = 60.0,
        max_packets: int = 2000,
        max_bytes: int = 2_000_000,
        source_limiter: SourceLimiter | None = None,
        max_allocations: int = 100_000,
        verify_all: bool = False,
    ) -> None:
        self._clock = clock
        self._secret = secret
        self.idle_timeout = idle_timeout
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        self.source_limiter = source_limiter
        self._max_allocations = max_allocations
        self.verify_all = verify_all
        self.allocations: dict[bytes, _Allocation] = {}
        self._stats: Counter[str] = Counter()
        # The per-packet path counts in plain integers; L{stats} folds them in.
        self._forwarded = 0
        self._forwarded_bytes = 0
        self._sweep_call = None

    @property
    def stats(self) -> Counter[str]:
        """
        Event counters: C{forwarded} datagrams and C{forwarded-bytes},
        C{allocations} in use, C{expired}, C{rebound}, C{dropped-*} by
        reason.
        """
        stats = self._stats
        if self._forwarded:
            stats["forwarded"] += self._forwarded
            stats["forwarded-bytes"] += self._forwarded_bytes
            self._forwarded = self._forwarded_bytes = 0
        return stats

    def startProtocol(self) -> None:
        self._sweep_call = self._clock.callLater(self.idle_timeout / 2, self._sweep)

    def stopProtocol(self) -> None:
        if self._sweep_call is not None and self._sweep_call.active():
            self._sweep_call.cancel()
        self._sweep_call = None

    def _sweep(self) -> None:
        deadline = self._clock.seconds() - self.idle_timeout
        for allocation_id in [a for a, entry in self.allocations.items() if entry.last <= deadline]:
            del self.allocations[allocation_id]
            self.stats["expired"] += 1
            self.log.info("allocation {allocation} expired", allocation=allocation_id.hex())
        self._sweep_call = self._clock.callLater(self.idle_timeout / 2, self._sweep)

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        self.datagrams_received(((data, addr),))

    def datagrams_received(self, datagrams: Iterable[tuple[bytes, tuple]]) -> None:
        """
        Relay each C{(data, address)} of C{datagrams}: the per-packet path,
        one loop for a whole batch (L{p2pnet._udpread.FastReadPort} hands
        over everything readable at once; L{datagramReceived} a batch of
        one).  The clock is read once per batch: a batch takes at most a
        few milliseconds.
        """
        # Keep this loop short: see docs/performance.md, section 6.
        now = self._clock.seconds()
        allocations = self.allocations
        refused_by_source = None if self.source_limiter is None else self.source_limiter.refused
        max_packets, max_bytes = self.max_packets, self.max_bytes
        verify_all = self.verify_all
        write = self.current_writer()
        forwarded = forwarded_bytes = 0
        try:
            for data, addr in datagrams:
                try:
                    size = len(data)
                    if size < _SMALLEST or data[0] != _MAGIC or data[1] != _RELAYED_TYPE or data[10] > 1:
                        self._stats["dropped-malformed"] += 1
                        continue
                    if not addr[1]:
                        # A spoofed source: a member bound to port 0 could
                        # never be forwarded to (sendto refuses it).
                        self._stats["dropped-source-port-0"] += 1
                        continue
                    if refused_by_source is not None:
                        refused = refused_by_source(addr[0], now, size)
                        if refused is not None:
                            self._stats[refused] += 1
                            continue
                    allocation_id = data[2:10]
                    side = data[10]
                    entry = allocations.get(allocation_id)
                    if entry is None:
                        entry = self._first_use(data, allocation_id, now)
                        if entry is None:
                            continue
                        entry.members[side] = addr
                    else:
                        members = entry.members
                        if members[side] != addr or verify_all:
                            # A side binds or moves only with a good tag
                            # (wire.verify_relayed, inlined: bytes 2..-8).
                            if not compare_digest(entry.mac.tag(data[2:-_TAG]), data[-_TAG:]):
                                self._stats["dropped-unauthenticated"] += 1
                                continue
                            if members[side] != addr:
                                if members[side] is not None:
                                    self._stats["rebound"] += 1
                                members[side] = addr
                    entry.last = now
                    if now - entry.window >= 1.0:
                        entry.window = now
                        entry.packets = 0
                        entry.bytes = 0
                    entry.packets += 1
                    entry.bytes += size
                    if entry.packets > max_packets or entry.bytes > max_bytes:
                        self._stats["dropped-over-cap"] += 1
                        continue
                    other = entry.members[1 - side]
                    if other is None:
                        self._stats["dropped-peer-not-bound"] += 1
                        continue
                    write(_FORWARD + data[2:], other)
                    forwarded += 1
                    forwarded_bytes += size
                except Exception:
                    self._stats["internal-error"] += 1
                    self.log.failure("bug: unexpected error relaying a datagram from {source}", source=addr)
        finally:
            self._forwarded += forwarded
            self._forwarded_bytes += forwarded_bytes

    def _first_use(self, data: bytes, allocation_id: bytes, now: float) -> _Allocation | None:
        """
        The new allocation C{data} proves real (its tag verifies under the
        key derived from the secret), or None, counted, if it does not or
        the relay is full.
        """
        key = wire.relay_key(self._secret, allocation_id)
        if wire.verify_relayed(data, key) is None:
            self.stats["dropped-unauthenticated"] += 1
            return None
        if len(self.allocations) >= self._max_allocations:
            self.stats["dropped-full"] += 1
            return None
        entry = self.allocations[allocation_id] = _Allocation(key, now)
        self.stats["allocations"] += 1
        self.log.info("allocation {allocation} in use", allocation=allocation_id.hex())
        return entry
