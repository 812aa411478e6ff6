"""
The introducer's pushes: messages it sends unasked (introductions, relay
offers, candidates) and retransmits until acknowledged, paced per
destination and, for unauthenticated requests, paid for by the request.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Callable

from twisted.internet.interfaces import IReactorTime


class Budget:
    """
    Bytes an unauthenticated request pays for: its own size, less what was
    sent because of it so far to its source (the address a forged request
    would aim at).  Pushes to the other side of an introduction go to an
    address that proved itself and acknowledges them; they are paced per
    destination, not paid for (charging them to the requester left
    introductions unsent under loss).
    """

    __slots__ = ("left", "source")

    def __init__(self, left: int, source: tuple) -> None:
        self.left = left
        self.source = source


class Pusher:
    """
    Sends pushes and retransmits them on L{GAPS} until acknowledged.

    At most L{WINDOW} pushes are in flight (sent, not acknowledged) per
    destination; the rest wait their turn (at most
    L{MAX_QUEUED_PER_DESTINATION} per destination, L{MAX_QUEUED} in all),
    so a mesh join sends a window's worth, then one more per
    acknowledgement.  A destination that lets a push run its whole schedule
    unacknowledged is not listening: what waits for it is dropped.  A push
    made for a request with a L{Budget} is sent once whatever the budget,
    and retransmitted only while the budget pays for it.

    @param write: C{(bytes, (host, port)) -> None}.
    @param stats: counters to count in.
    """

    #: Gaps between retransmits.
    GAPS = (0.25, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0)
    WINDOW = 16
    MAX_QUEUED_PER_DESTINATION = 2048
    MAX_QUEUED = 100_000

    def __init__(self, clock: IReactorTime, write: Callable[[bytes, tuple], object], stats: Counter) -> None:
        self._clock = clock
        self._write = write
        self.stats = stats
        self._pushes: dict[tuple[bytes, tuple], object] = {}
        self._in_flight: dict[tuple, int] = {}
        self._queued: dict[tuple, deque] = {}
        self._queued_count = 0
        # Copies sent so far of each push awaiting its acknowledgement.
        self._sent: dict[tuple[bytes, tuple], int] = {}

    def sent_unacknowledged(self, push_id: bytes, to: tuple) -> int:
        """
        How many copies of C{push_id} went to C{to} without an
        acknowledgement (0 once acknowledged, given up, or still queued).
        """
        return self._sent.get((push_id, to), 0)

    def push(self, push_id: bytes, raw: bytes, to: tuple, budget: Budget | None = None) -> None:
        """
        Send C{raw} to C{to} now or when the window allows, and again until
        L{acknowledged} with C{push_id}.  C{budget} pays only for what goes
        to its own source.
        """
        if budget is not None and budget.source != to:
            budget = None
        flight = self._in_flight.get(to, 0)
        if flight < self.WINDOW:
            self._in_flight[to] = flight + 1
            self._transmit(push_id, raw, to, 0, budget)
            return
        queue = self._queued.get(to)
        if queue is None:
            queue = self._queued[to] = deque()
        if len(queue) >= self.MAX_QUEUED_PER_DESTINATION or self._queued_count >= self.MAX_QUEUED:
            self.stats["dropped-push-queue-full"] += 1
            return
        queue.append((push_id, raw, budget))
        self._queued_count += 1

    def _transmit(self, push_id: bytes, raw: bytes, to: tuple, attempt: int, budget: Budget | None) -> None:
        key = (push_id, to)
        if budget is None or not attempt or budget.left >= len(raw):
            if budget is not None:
                budget.left -= len(raw)
            self._write(raw, to)
            self.stats["sent"] += 1
        else:
            # The request did not pay for another copy: none is sent, but
            # the schedule runs on (an acknowledgement still counts).
            self.stats["push-retransmits-unpaid"] += 1
        if attempt >= len(self.GAPS):
            self._pushes.pop(key, None)
            self._sent.pop(key, None)
            self.stats["introductions-unacknowledged"] += 1
            dropped = self._queued.pop(to, ())
            self._queued_count -= len(dropped)
            self.stats["introductions-unacknowledged"] += len(dropped)
            self._done(to)
            return
        self._sent[key] = attempt + 1
        self._pushes[key] = self._clock.callLater(
            self.GAPS[attempt], self._transmit, push_id, raw, to, attempt + 1, budget
        )

    def _done(self, to: tuple) -> None:
        queue = self._queued.get(to)
        if queue:
            push_id, raw, budget = queue.popleft()
            self._queued_count -= 1
            if not queue:
                del self._queued[to]
            self._transmit(push_id, raw, to, 0, budget)
            return
        flight = self._in_flight.get(to, 0) - 1
        if flight > 0:
            self._in_flight[to] = flight
        else:
            self._in_flight.pop(to, None)

    def __len__(self) -> int:
        """
        Pushes in flight or waiting.
        """
        return len(self._pushes) + self._queued_count

    def acknowledged(self, push_id: bytes, source: tuple) -> bool:
        """
        C{source} acknowledged C{push_id}: stop retransmitting it (only an
        acknowledgement from where it was sent counts).
        """
        call = self._pushes.pop((push_id, source), None)
        self._sent.pop((push_id, source), None)
        if call is None:
            return False
        if call.active():
            call.cancel()
        self._done(source)
        return True

    def stop(self) -> None:
        """
        Cancel every retransmit and forget what waits.
        """
        pushes, self._pushes = self._pushes, {}
        self._sent = {}
        self._in_flight, self._queued, self._queued_count = {}, {}, 0
        for call in pushes.values():
            if call.active():
                call.cancel()
