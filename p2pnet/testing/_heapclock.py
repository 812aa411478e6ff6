"""
A deterministic clock for tests and simulations that scales to many
pending calls.

L{twisted.internet.task.Clock} keeps its pending calls in a list and sorts
the whole list on every C{callLater} and after every call it runs: with a
simulated network of a thousand hosts (tens of thousands of packets and
timers in flight) that sorting is nearly all the CPU time.  L{HeapClock}
keeps them in a binary heap instead and runs the same calls in the same
order at the same times.

Ordering, as in C{Clock}: calls run in order of their time; calls due at
the same time run in the order they were scheduled; a call scheduled (or
moved) during C{advance} to a time not after the new current time runs in
that same C{advance}, in time order with everything else that is due.  A
call moved with C{reset} or C{delay} keeps C{Clock}'s place among calls
due at the same time: C{Clock} sorts its list stably, so a call moved
later lands before the calls already due at its new time, one moved
earlier after them, and calls moved between two sorts keep their previous
relative order.
"""

from __future__ import annotations

import heapq
from typing import Callable, Iterable, Sequence

from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

__all__ = ["HeapClock"]


class _HeapCall(DelayedCall):
    """
    A L{DelayedCall} that tells its clock whenever its time changes
    (C{DelayedCall} itself reports only moves to an earlier time).

    @ivar key: C{(time, order)}: where the call stands in its clock's
        order as of the clock's last sort point.
    """

    key: tuple[float, int]

    def __init__(self, clock: HeapClock, time: float, func, args, kw) -> None:
        super().__init__(time, func, args, kw, clock._cancelled, _no_reset, clock.seconds)
        self._clock = clock

    def reset(self, secondsFromNow: float) -> None:
        super().reset(secondsFromNow)
        self._clock._moved(self)

    def delay(self, secondsLater: float) -> None:
        super().delay(secondsLater)
        self._clock._moved(self)


def _no_reset(call: DelayedCall) -> None:
    return None


@implementer(IReactorTime)
class HeapClock:
    """
    A drop-in replacement for L{twisted.internet.task.Clock} with a heap of
    pending calls: C{callLater}, C{seconds}, C{getDelayedCalls}, C{advance}
    and C{pump}, with the same ordering.

    @ivar rightNow: the current time (as on C{Clock}).
    """

    def __init__(self) -> None:
        self.rightNow = 0.0
        # Entries are (time, order, call); an entry whose key is no longer
        # its call's key, or whose call was cancelled or made, is stale and
        # skipped when it surfaces.
        self._heap: list[tuple[float, int, _HeapCall]] = []
        self._live: set[_HeapCall] = set()
        self._moved_calls: dict[_HeapCall, tuple[float, int]] = {}
        self._next = 0
        self._front = 0

    def seconds(self) -> float:
        """
        The current time.
        """
        return self.rightNow

    def callLater(self, delay: float, callable: Callable[..., object], *args: object, **kw: object) -> IDelayedCall:
        """
        See L{IReactorTime.callLater}.
        """
        if self._moved_calls:
            self._settle()
        call = _HeapCall(self, self.rightNow + delay, callable, args, kw)
        self._next += 1
        call.key = (call.time, self._next)
        self._live.add(call)
        heapq.heappush(self._heap, (call.time, self._next, call))
        return call

    def getDelayedCalls(self) -> Sequence[IDelayedCall]:
        """
        The pending calls, in the order they are due.
        """
        if self._moved_calls:
            self._settle()
        return sorted(self._live, key=_key)

    @property
    def calls(self) -> Sequence[IDelayedCall]:
        """
        The pending calls (C{Clock.calls}), in the order they are due.
        """
        return self.getDelayedCalls()

    def advance(self, amount: float) -> None:
        """
        Move time forward by C{amount} seconds and run every call that is
        then due, including calls the calls schedule for a time not after
        the new current time.
        """
        self.rightNow += amount
        heap = self._heap
        while True:
            if self._moved_calls:
                self._settle()
            while heap:
                time, order, call = heap[0]
                if call.key[1] == order and not call.cancelled and not call.called:
                    break
                heapq.heappop(heap)
            if not heap or heap[0][0] > self.rightNow:
                return
            call = heapq.heappop(heap)[2]
            self._live.discard(call)
            call.called = 1
            call.func(*call.args, **call.kw)

    def pump(self, timings: Iterable[float]) -> None:
        """
        Advance by each of C{timings} in turn.
        """
        for amount in timings:
            self.advance(amount)

    # Bookkeeping

    def _cancelled(self, call: _HeapCall) -> None:
        self._live.discard(call)
        self._moved_calls.pop(call, None)
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._live):
            self._compact()

    def _moved(self, call: _HeapCall) -> None:
        if call not in self._moved_calls:
            self._moved_calls[call] = call.key

    def _settle(self) -> None:
        """
        Give every call moved since the last sort point its new place, as
        C{Clock}'s stable sort would: before the calls already due at its
        new time when it moved later, after them when it moved earlier,
        and in their previous order among calls moved alike.
        """
        moved = sorted(self._moved_calls.items(), key=lambda item: item[1])
        self._moved_calls.clear()
        later = []
        for call, old in moved:
            time = call.getTime()
            if time == old[0]:
                continue
            if time > old[0]:
                later.append(call)
            else:
                self._next += 1
                self._push(call, time, self._next)
        for call in reversed(later):
            self._front -= 1
            self._push(call, call.getTime(), self._front)

    def _push(self, call: _HeapCall, time: float, order: int) -> None:
        call.key = (time, order)
        heapq.heappush(self._heap, (time, order, call))

    def _compact(self) -> None:
        # In place: advance() holds the list.
        self._heap[:] = [entry for entry in self._heap if entry[2] in self._live and entry[2].key[1] == entry[1]]
        heapq.heapify(self._heap)


def _key(call: _HeapCall) -> tuple[float, int]:
    return call.key
