"""
The p2pnet relay: forwards authenticated datagrams between the two members
of an allocation when no direct path exists.

Allocations are handed out by the introducer (L{wire.RelayOffer}); their
keys derive from the relay's secret (L{wire.relay_key}), so the relay needs
no state from the introducer and can run in its own process.

The relay forwards only between addresses that proved themselves.  A
member's authenticated frame from an address its side is not bound to is
not forwarded: the relay challenges that address, and binds the side
there (or moves it, when the member's NAT rebinds) only when the answer
comes back from it, with a proof that cannot be replayed
(L{p2pnet._relayclient}).  A member who spoofs a victim's address, or
replays a captured frame, gets at most one challenge no larger than its
frame sent there, and moves nothing.  The table of allocations
(L{p2pnet._relaytable}) caps bindings per source IP and in total, evicts
half-bound allocations first and forgets them soon; datagrams are capped
per allocation and per source IP, and log lines by a budget.

Like a TURN server, the relay authenticates a member's address, not each
datagram: a tag is checked whenever a side binds or moves to an address,
and a datagram from the address its side is bound to is forwarded on the
strength of that address and the allocation id (the receiving member
checks every tag itself, so nothing forged reaches an application).
C{verify_all} checks every datagram's tag as well, at about 0.5
microseconds a datagram.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Iterable
from hmac import compare_digest

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from p2pnet import wire
from p2pnet._ratelimit import LogBudget, RateLimiter, SourceLimiter
from p2pnet._relayclient import ANSWER, BIND_FRAME_SIZE, encode_challenge
from p2pnet._relayprobe import STATUS_PROBE, answer_probe
from p2pnet._relaytable import AllocationTable
from p2pnet._udpwrite import FastDatagramWriting

_MAGIC = wire.MAGIC
_RELAYED_TYPE = int(wire.MessageType.RELAYED)
_SMALLEST = wire.RELAY_HEADER_SIZE + wire.DATA_TAG_SIZE
_TAG = wire.DATA_TAG_SIZE
_FORWARD = bytes((wire.MAGIC, wire.MessageType.RELAY_FORWARD))
_STAMP = slice(wire.RELAY_HEADER_SIZE, wire.RELAY_HEADER_SIZE + 8)
_PROOF = slice(wire.RELAY_HEADER_SIZE + 8, wire.RELAY_HEADER_SIZE + 16)


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
    @param max_allocations: allocations at most; beyond, a new one evicts
        the oldest half-bound allocation or is refused.
    @param max_per_source: member bindings at most per source IP.
    @param unbound_timeout: seconds a half-bound allocation may wait for
        its second member.
    @param challenge_lifetime: seconds within which a challenge must be
        answered.
    @param challenge_rate: challenges per second per allocation side and
        source IP (bursts of twice as many).
    @param log_rate: log lines per second about single allocations (0:
        all); what is held back is summed up at the next sweep.
    @param verify_all: check the tag of every datagram, not only of those
        that bind or move a side (see the module docstring).
    @param stats_interval: seconds between statistics log lines (0:
        never); checked at each sweep, so lines come at most that often.
    @ivar allocations: allocation id -> state, for inspection.
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
        max_per_source: int = 256,
        unbound_timeout: float = 15.0,
        challenge_lifetime: float = 10.0,
        challenge_rate: float = 4.0,
        log_rate: float = 10.0,
        stats_interval: float = 0.0,
    ) -> None:
        self._clock = clock
        self._secret = secret
        self._proof_key = hmac.digest(secret, b"p2pnet relay binding proof", "sha256")
        self.idle_timeout = idle_timeout
        self.unbound_timeout = unbound_timeout
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        self.source_limiter = source_limiter
        self.verify_all = verify_all
        self.table = AllocationTable(max_allocations, max_per_source, idle_timeout, unbound_timeout)
        self.allocations = self.table.entries
        self._challenge_lifetime_ms = int(challenge_lifetime * 1000)
        self._challenges = RateLimiter(challenge_rate, 2 * challenge_rate)
        self._last_stamp = -1
        self._log_budget = LogBudget(log_rate)
        self._stats: Counter[str] = Counter()
        # The per-packet path counts in plain integers; L{stats} folds them in.
        self._forwarded = 0
        self._forwarded_bytes = 0
        self._sweep_call = None
        self._stats_interval = stats_interval
        self._last_stats = 0.0

    @property
    def stats(self) -> Counter[str]:
        """
        Event counters: C{forwarded} datagrams and C{forwarded-bytes},
        C{allocations} created, C{challenges} sent, C{bound} and
        C{rebound} sides, C{expired} and C{evicted} allocations,
        C{dropped-*} by reason.
        """
        stats = self._stats
        if self._forwarded:
            stats["forwarded"] += self._forwarded
            stats["forwarded-bytes"] += self._forwarded_bytes
            self._forwarded = self._forwarded_bytes = 0
        return stats

    @property
    def sweep_interval(self) -> float:
        """
        Seconds between sweeps: half the shorter of the two lifetimes.
        """
        return min(self.idle_timeout, self.unbound_timeout) / 2

    def startProtocol(self) -> None:
        self._last_stats = self._clock.seconds()
        self._sweep_call = self._clock.callLater(self.sweep_interval, self._sweep)

    def stopProtocol(self) -> None:
        if self._sweep_call is not None and self._sweep_call.active():
            self._sweep_call.cancel()
        self._sweep_call = None

    def _sweep(self) -> None:
        now = self._clock.seconds()
        for allocation_id, why in self.table.expire(now):
            self._stats["expired"] += 1
            self._note(
                "expired", "allocation {allocation} expired ({why})", now, allocation=allocation_id.hex(), why=why
            )
        self._log_budget.report_held(self.log)
        if self._stats_interval and now - self._last_stats >= self._stats_interval:
            self._last_stats = now
            self.log.info(
                "{allocations} allocations; counters: {counters}",
                allocations=len(self.allocations),
                counters=dict(self.stats),
            )
        self._sweep_call = self._clock.callLater(self.sweep_interval, self._sweep)

    def _note(self, kind: str, line: str, now: float, **fields: object) -> None:
        if self._log_budget.allow(kind, now):
            self.log.info(line, **fields)

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
                    if size < _SMALLEST or data[0] != _MAGIC or data[1] != _RELAYED_TYPE:
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
                    side = data[10]
                    entry = allocations.get(data[2:10])
                    if side > 1 or entry is None or entry.members[side] != addr:
                        self._unproven(data, addr, side, entry, now)
                        continue
                    # A datagram from the address its side is bound to: its
                    # tag is checked only with verify_all (wire.verify_relayed,
                    # inlined: bytes 2..-8).
                    if verify_all and not compare_digest(entry.mac.tag(data[2:-_TAG]), data[-_TAG:]):
                        self._stats["dropped-unauthenticated"] += 1
                        continue
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

    # -- binding: the slow path ----------------------------------------------

    def _unproven(self, data: bytes, addr: tuple, side: int, entry, now: float) -> None:
        """
        A frame that is not from its side's bound address: a binding proof
        (the answer to a challenge), or a member's frame from an address
        it has not proven, which is challenged and not forwarded.
        """
        if side > 1:
            if side & ~1 == ANSWER:
                self._bind(data, addr, side & 1, entry, now)
            elif side == STATUS_PROBE:
                self._status(data, addr)
            else:
                self._stats["dropped-malformed"] += 1
            return
        allocation_id = data[2:10]
        mac = entry.mac if entry is not None else wire.DatagramMac(wire.relay_key(self._secret, allocation_id))
        if not compare_digest(mac.tag(data[2:-_TAG]), data[-_TAG:]):
            self._stats["dropped-unauthenticated"] += 1
            return
        # Never more bytes to an unproven address than it (or whoever
        # spoofed it) sent: a frame smaller than a challenge gets none.
        if len(data) < BIND_FRAME_SIZE:
            self._stats["dropped-unproven-small"] += 1
            return
        # Per allocation side and address IP: spoofed replays of a captured
        # frame from other addresses cannot use up a member's challenges.
        if not self._challenges.allow((data[2:11], addr[0]), now):
            self._stats["dropped-challenge-limited"] += 1
            return
        stamp = max(int(now * 1000), self._last_stamp + 1)
        self._last_stamp = stamp
        stamp_bytes = stamp.to_bytes(8, "big")
        nonce = stamp_bytes + self._proof(allocation_id, side, stamp_bytes, addr)
        self.transport.write(encode_challenge(allocation_id, side, nonce, mac), addr)
        self._stats["challenges"] += 1

    def _status(self, data: bytes, addr: tuple) -> None:
        """
        An introducer's status probe: answer with our allocation count
        (L{p2pnet._relayprobe}; the answer is as large as the probe).
        """
        answer = answer_probe(data, self._secret, len(self.allocations))
        if answer is None:
            self._stats["dropped-unauthenticated"] += 1
            return
        self.transport.write(answer, addr)
        self._stats["status-probes"] += 1

    def _proof(self, allocation_id: bytes, side: int, stamp: bytes, addr: tuple) -> bytes:
        """
        The MAC half of a nonce: binds the challenge to its allocation,
        side, stamp and the address it was sent to.
        """
        where = f"{addr[0]}|{addr[1]}".encode()
        return hashlib.blake2s(
            allocation_id + bytes((side,)) + stamp + where, key=self._proof_key, digest_size=8
        ).digest()

    def _bind(self, data: bytes, addr: tuple, side: int, entry, now: float) -> None:
        """
        The answer to a challenge: bind C{side} to C{addr} if the proof is
        ours, for this address, fresh, newer than the side's last binding
        and tagged with the allocation key.
        """
        if len(data) != BIND_FRAME_SIZE:
            self._stats["dropped-malformed"] += 1
            return
        allocation_id = data[2:10]
        stamp_bytes = data[_STAMP]
        stamp = int.from_bytes(stamp_bytes, "big")
        if stamp > self._last_stamp or stamp < now * 1000 - self._challenge_lifetime_ms:
            self._stats["dropped-stale-proof"] += 1
            return
        if not compare_digest(self._proof(allocation_id, side, stamp_bytes, addr), data[_PROOF]):
            self._stats["dropped-bad-proof"] += 1
            return
        mac = entry.mac if entry is not None else wire.DatagramMac(wire.relay_key(self._secret, allocation_id))
        if not compare_digest(mac.tag(data[2:-_TAG]), data[-_TAG:]):
            self._stats["dropped-unauthenticated"] += 1
            return
        if entry is not None and stamp <= entry.proven[side]:
            self._stats["dropped-replay"] += 1
            return
        bound, outcome = self.table.bind(allocation_id, mac, side, addr, stamp, now)
        if bound is None:
            self._stats[outcome] += 1
            self._note(outcome, "refused binding {allocation} to {source}: {why}", now,
                       allocation=allocation_id.hex(), source=addr, why=outcome)
            return
        self._stats["bound"] += 1
        if outcome == "rebound":
            self._stats["rebound"] += 1
        elif outcome in ("allocated", "evicted"):
            self._stats["allocations"] += 1
            if outcome == "evicted":
                self._stats["evicted"] += 1
            self._note("allocation", "allocation {allocation} in use", now, allocation=allocation_id.hex())
