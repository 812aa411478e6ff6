"""
What the introducer remembers of recent introductions: who they were
between (so a relay request must name one of the requester's own), which
ones allocated a relay (capped per registration), and which joins wait for
the joiner's acknowledgement.  Pure bookkeeping; time is passed in.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

from p2pnet._registry import Registration, RegistryError
from p2pnet.wire import ErrorCode


def lag_ms(receiver: Registration, other: Registration) -> int | None:
    """
    The C{lag} of C{receiver}'s introduction to C{other}: how many
    milliseconds longer C{other}'s measured round trip to the introducer
    is (0 if not longer, rounded up), or None unless both were measured.
    """
    if receiver.rtt is None or other.rtt is None:
        return None
    # Round to microseconds first so that float noise cannot add a
    # millisecond to an exact difference.
    return min(0xFFFF, max(0, math.ceil(round((other.rtt - receiver.rtt) * 1000.0, 3))))


class IntroductionMemory:
    """
    Recent introductions, oldest first, at most C{capacity} of them for at
    most C{lifetime} seconds.

    @param max_allocations: relay allocations one peer id may hold among
        the remembered introductions.
    """

    def __init__(self, capacity: int = 65536, lifetime: float = 300.0, max_allocations: int = 16) -> None:
        self.capacity = capacity
        self.lifetime = lifetime
        self.max_allocations = max_allocations
        # intro id -> (when, both peer ids, its relay allocation if any)
        self._introductions: OrderedDict[bytes, tuple[float, frozenset, bytes | None]] = OrderedDict()
        self._allocations: dict[str, int] = {}
        # intro id -> (session id, joiner, joiner's address)
        self._joins: OrderedDict[bytes, tuple[bytes, str, tuple]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._introductions)

    def remember(self, intro_id: bytes, one: str, other: str, now: float) -> None:
        """
        Keep a new introduction between C{one} and C{other}.
        """
        intros = self._introductions
        while intros and (len(intros) >= self.capacity or next(iter(intros.values()))[0] < now - self.lifetime):
            _, (_, sides, allocation) = intros.popitem(last=False)
            if allocation is not None:
                for side in sides:
                    self._release(side)
        intros[intro_id] = (now, frozenset((one, other)), None)

    def when(self, intro_id: bytes) -> float | None:
        """
        When introduction C{intro_id} was made, if it is remembered.
        """
        remembered = self._introductions.get(intro_id)
        return None if remembered is None else remembered[0]

    def _release(self, peer_id: str) -> None:
        left = self._allocations.get(peer_id, 0) - 1
        if left > 0:
            self._allocations[peer_id] = left
        else:
            self._allocations.pop(peer_id, None)

    def relay_allocation(
        self, intro_id: bytes, requester: str, target: str, random_bytes: Callable[[int], bytes]
    ) -> tuple[bytes, bool]:
        """
        The relay allocation for a relay request for C{intro_id} between
        C{requester} and C{target}: the one made when either side asked
        first, or a new one (counted against both sides' cap).

        @return: C{(allocation id, whether it is new)}.
        @raise RegistryError: C{UNKNOWN_PEER} unless C{intro_id} is a
            remembered introduction of exactly these two; C{RATE_LIMITED}
            when either holds too many allocations.
        """
        remembered = self._introductions.get(intro_id)
        if remembered is None or remembered[1] != frozenset((requester, target)):
            raise RegistryError(ErrorCode.UNKNOWN_PEER, "no such introduction of yours")
        if remembered[2] is not None:
            return remembered[2], False
        for side in remembered[1]:
            if self._allocations.get(side, 0) >= self.max_allocations:
                raise RegistryError(ErrorCode.RATE_LIMITED, "too many relay allocations")
        for side in remembered[1]:
            self._allocations[side] = self._allocations.get(side, 0) + 1
        allocation = random_bytes(8)
        self._introductions[intro_id] = (remembered[0], remembered[1], allocation)
        return allocation, True

    def replace_allocation(self, intro_id: bytes, allocation: bytes) -> None:
        """
        Introduction C{intro_id}'s relay allocation moved to C{allocation}
        (its relay died): later relay requests for it get the new one.
        Nothing if the introduction is forgotten.
        """
        remembered = self._introductions.get(intro_id)
        if remembered is not None and remembered[2] is not None:
            self._introductions[intro_id] = (remembered[0], remembered[1], allocation)

    def remember_join(self, intro_id: bytes, session_id: bytes, joiner: str, address: tuple) -> None:
        """
        The joiner's copy of introduction C{intro_id} went to C{address};
        its acknowledgement from there confirms the join.
        """
        joins = self._joins
        while len(joins) >= self.capacity:
            joins.popitem(last=False)
        joins[intro_id] = (session_id, joiner, address)

    def acknowledged_join(self, intro_id: bytes, source: tuple) -> tuple[bytes, str] | None:
        """
        The C{(session id, joiner)} an acknowledgement from C{source}
        confirms, or None (not a join, or not from the joiner).
        """
        join = self._joins.get(intro_id)
        if join is None or join[2] != source:
            return None
        del self._joins[intro_id]
        return join[0], join[1]
