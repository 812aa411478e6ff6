"""
Introductions to a host that does not take them: a host killed a moment
ago is still registered (its last heartbeat is recent) and a joiner would
punch towards it until the handshake times out.  The host acknowledges
its copy of every introduction at once, so when it has left
L{UNANSWERED} copies unacknowledged (sent over 1.75 s) and sent no
heartbeat since, the introducer tells the joiner: a C{HOST_GONE} error
carrying the transaction id of the joiner's introduction.  The joiner's
endpoint fails that connection with L{p2pnet.errors.HostGone} if it heard
nothing from the host yet (a host alive behind a lossy path has usually
answered its hellos by then).

L{HostWatch} only keeps the list; the introducer's one-second sweep asks
it what is due.
"""

from __future__ import annotations

from collections import deque

from attrs import frozen

from p2pnet.address import Address


#: Copies of the host's introduction sent unacknowledged before it counts
#: as gone (the Pusher's schedule sends them at 0, 0.25, 0.75, 1.75 s).
UNANSWERED = 4


@frozen
class Watched:
    """
    One introduction whose host has not acknowledged it yet.
    """

    check_at: float
    introduced_at: float
    intro_id: bytes
    host_id: str
    host_address: tuple
    requester_id: str
    requester_address: Address
    txid: bytes
    #: What the request (if unauthenticated) still pays for at its source
    #: (a L{p2pnet._pushes.Budget}), or None.
    budget: object = None


class HostWatch:
    """
    Introductions to check, oldest first, at most L{MAX} (the oldest go).
    """

    MAX = 65_536
    #: Seconds after the introduction of the first check.
    FIRST_CHECK = 1.75

    def __init__(self) -> None:
        self._watched: deque[Watched] = deque()

    def __len__(self) -> int:
        return len(self._watched)

    def watch(self, entry: Watched) -> None:
        if len(self._watched) >= self.MAX:
            self._watched.popleft()
        self._watched.append(entry)

    def due(self, now: float) -> list[Watched]:
        """
        Remove and return the entries to check now.
        """
        due = []
        watched = self._watched
        while watched and watched[0].check_at <= now:
            due.append(watched.popleft())
        return due

    def clear(self) -> None:
        self._watched.clear()
