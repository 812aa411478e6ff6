"""
An eventual-send queue: run callbacks on a later reactor turn, in order.

User-facing Deferreds and callbacks go through it so that user code never
runs inside a state machine transition (and cannot re-enter one).
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger


class EventualQueue:
    """
    Calls queued functions on the next reactor turn, in the order queued;
    one pending delayed call at most.
    """

    def __init__(self, clock: IReactorTime, log: Logger, what: str = "callback") -> None:
        self._clock = clock
        self._log = log
        self._what = what
        self._queue: list[tuple[Callable, tuple]] = []
        self._call = None

    def __call__(self, function: Callable, *args: object) -> None:
        self._queue.append((function, args))
        if self._call is None:
            self._call = self._clock.callLater(0, self._drain)

    def _drain(self) -> None:
        self._call = None
        queue, self._queue = self._queue, []
        for function, args in queue:
            try:
                function(*args)
            except Exception:
                self._log.failure("error in a {what} {function}", what=self._what, function=function)
