"""
The relay's allocation table: which address each member of an
allocation is bound to, with a global cap, a cap per source IP, and
eviction and expiry that keep established allocations over half-bound
ones.  Pure bookkeeping: time is passed in.

An allocation enters the table when its first member binds (after the
relay's challenge, see L{p2pnet._relayclient}) and is I{established}
once both members are bound.  Until then it is I{pending}: it forwards
nothing, lives at most C{unbound_timeout} seconds, and is the first to
go when the table is full.  An established allocation goes only after
C{idle_timeout} seconds without a datagram.
"""

from __future__ import annotations

from collections import OrderedDict

from p2pnet import wire


class Allocation:
    """
    One allocation's state.

    @ivar mac: the allocation key's tag state.
    @ivar members: each side's bound address, or None.
    @ivar proven: each side's stamp of its last accepted binding (a
        binding proof not newer than this is a replay).
    @ivar last: when the allocation last carried a datagram.
    @ivar created: when its first member bound.
    @ivar window, packets, bytes: the per-second cap's current window.
    """

    __slots__ = ("mac", "members", "proven", "last", "created", "established", "packets", "bytes", "window")

    def __init__(self, mac: wire.DatagramMac, now: float) -> None:
        self.mac = mac
        self.members: list[tuple | None] = [None, None]
        self.proven = [-1, -1]
        self.last = now
        self.created = now
        self.established = False
        self.window = now
        self.packets = 0
        self.bytes = 0


class AllocationTable:
    """
    Allocations by id, with caps.

    @param max_allocations: allocations at most; a new one beyond this
        evicts the oldest pending allocation, or is refused if every
        allocation is established.
    @param max_per_source: member bindings at most per source IP (each
        bound side counts once for its address's IP).
    @param idle_timeout: seconds without a datagram after which an
        allocation is forgotten.
    @param unbound_timeout: seconds after its first binding by which a
        pending allocation must be established, or is forgotten.
    @ivar entries: allocation id -> L{Allocation} (read by the relay's
        per-packet path; change it only through this class).
    """

    def __init__(
        self, max_allocations: int, max_per_source: int, idle_timeout: float, unbound_timeout: float
    ) -> None:
        if max_allocations < 1 or max_per_source < 1:
            raise ValueError("max_allocations and max_per_source must be at least 1")
        self.max_allocations = max_allocations
        self.max_per_source = max_per_source
        self.idle_timeout = idle_timeout
        self.unbound_timeout = unbound_timeout
        self.entries: dict[bytes, Allocation] = {}
        self._pending: OrderedDict[bytes, Allocation] = OrderedDict()
        self._per_source: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def bindings_from(self, ip: str) -> int:
        """
        How many member bindings C{ip} holds.
        """
        return self._per_source.get(ip, 0)

    def bind(
        self, allocation_id: bytes, mac: wire.DatagramMac, side: int, address: tuple, stamp: int, now: float
    ) -> tuple[Allocation | None, str]:
        """
        Bind C{side} of C{allocation_id} to C{address} (its binding proof
        carried C{stamp}), creating the allocation if it is new.

        @return: the allocation and what happened (C{"allocated"},
            C{"bound"}, C{"rebound"}, C{"evicted"} when a pending
            allocation made room), or None and the refusal's counter
            (C{"dropped-full"}, C{"dropped-source-full"}).
        """
        entry = self.entries.get(allocation_id)
        old = None if entry is None else entry.members[side]
        ip = address[0]
        if (old is None or old[0] != ip) and self._per_source.get(ip, 0) >= self.max_per_source:
            return None, "dropped-source-full"
        outcome = "bound"
        if entry is None:
            outcome = "allocated"
            if len(self.entries) >= self.max_allocations:
                if not self._pending:
                    return None, "dropped-full"
                victim_id, victim = self._pending.popitem(last=False)
                self._drop(victim_id, victim)
                outcome = "evicted"
            entry = self.entries[allocation_id] = self._pending[allocation_id] = Allocation(mac, now)
        elif old is not None and old != address:
            outcome = "rebound"
        if old is None or old[0] != ip:
            if old is not None:
                self._release(old[0])
            self._per_source[ip] = self._per_source.get(ip, 0) + 1
        entry.members[side] = address
        entry.proven[side] = stamp
        entry.last = now
        if not entry.established and entry.members[1 - side] is not None:
            entry.established = True
            del self._pending[allocation_id]
        return entry, outcome

    def expire(self, now: float) -> list[tuple[bytes, str]]:
        """
        Forget pending allocations older than C{unbound_timeout} and every
        allocation idle for C{idle_timeout}.

        @return: the forgotten ids, each with C{"unbound"} or C{"idle"}.
        """
        gone = []
        pending, young = self._pending, now - self.unbound_timeout
        while pending:
            allocation_id, entry = next(iter(pending.items()))
            if entry.created > young:
                break
            del pending[allocation_id]
            self._drop(allocation_id, entry)
            gone.append((allocation_id, "unbound"))
        deadline = now - self.idle_timeout
        for allocation_id in [a for a, entry in self.entries.items() if entry.last <= deadline]:
            entry = self.entries[allocation_id]
            self._pending.pop(allocation_id, None)
            self._drop(allocation_id, entry)
            gone.append((allocation_id, "idle"))
        return gone

    def _drop(self, allocation_id: bytes, entry: Allocation) -> None:
        del self.entries[allocation_id]
        for member in entry.members:
            if member is not None:
                self._release(member[0])

    def _release(self, ip: str) -> None:
        left = self._per_source[ip] - 1
        if left:
            self._per_source[ip] = left
        else:
            del self._per_source[ip]
