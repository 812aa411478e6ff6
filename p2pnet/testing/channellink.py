"""
A deterministic link between two channel machines, for tests and
benchmarks: a virtual clock, a seeded RNG, and per direction a
propagation delay, jitter (which reorders), random loss, duplication, a
bottleneck rate with a drop-tail queue, and a largest datagram size.

It drives each L{p2pnet.channels.ChannelMachine} the way a connection
would: after every input it collects C{datagrams_to_send(now)} and arms
one timer at C{get_timer()}.
"""

from __future__ import annotations

import heapq
import random
from typing import Callable, Optional

from attrs import define, field

from p2pnet.channels._machine import OVERHEAD


@define
class Direction:
    """
    One direction of the link.

    @ivar delay: one-way propagation delay, seconds.
    @ivar jitter: extra delay drawn uniformly from [0, jitter) per datagram.
    @ivar loss: probability that a datagram is dropped.
    @ivar duplicate: probability that a datagram is delivered twice.
    @ivar rate: bottleneck rate in bytes per second, or C{None}.
    @ivar queue: the bottleneck's buffer, bytes.
    @ivar mtu: the largest datagram (UDP payload) that crosses, or C{None}.
    """

    delay: float = 0.05
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    rate: Optional[float] = None
    queue: int = 256 * 1024
    mtu: Optional[int] = None
    busy_until: float = 0.0
    sent: int = 0
    dropped: int = 0
    delivered_bytes: int = 0


@define
class Link:
    """
    Two machines and the link between them.

    @ivar now: the virtual time.
    @ivar received: per side (0 = C{a}, 1 = C{b}), the events each
        machine produced, with the time: C{(now, event)}.
    """

    a: object
    b: object
    ab: Direction = field(factory=Direction)
    ba: Direction = field(factory=Direction)
    seed: int = 0
    now: float = 0.0
    received: list = field(factory=lambda: [[], []])
    on_event: Optional[Callable] = None
    _heap: list = field(factory=list)
    _counter: int = 0
    _armed: list = field(factory=lambda: [None, None])
    _rng: random.Random = None
    steps: int = 0

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def machine(self, side: int):
        return self.a if side == 0 else self.b

    def at(self, when: float, action: Callable[[], None]) -> None:
        """
        Run C{action} at virtual time C{when}, then let both machines send.
        """
        self._push(when, self._app, action)

    def kick(self) -> None:
        """
        Let both machines send what they have now.
        """
        self._service(0)
        self._service(1)

    def idle(self) -> bool:
        """
        Whether neither machine holds a message or a packet in flight.
        """
        for machine in (self.a, self.b):
            if machine.sent.bytes_in_flight or machine._buffer.held:
                return False
        return True

    def drop_in_flight(self) -> None:
        """
        Lose every datagram on its way (the path went away).
        """
        arrive = self._arrive
        self._heap[:] = [entry for entry in self._heap if entry[2] != arrive]
        heapq.heapify(self._heap)

    def run(
        self,
        until: float = float("inf"),
        max_steps: int = 10_000_000,
        stop: Optional[Callable[[], bool]] = None,
    ) -> None:
        """
        Process events in time order until none is left before C{until}, or
        until C{stop()} (checked after every event) is true.
        """
        self.kick()
        heap = self._heap
        while heap and heap[0][0] <= until:
            if stop is not None and stop():
                return
            when, _, handler, argument = heapq.heappop(heap)
            self.now = max(self.now, when)
            handler(argument)
            self.steps += 1
            if self.steps > max_steps:
                raise RuntimeError("the link ran too many steps (a busy timer?)")
        if until != float("inf"):
            self.now = max(self.now, until)

    def _push(self, when: float, handler, argument) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (when, self._counter, handler, argument))

    def _app(self, action) -> None:
        action()
        self.kick()

    def _service(self, side: int) -> None:
        machine = self.machine(side)
        direction = self.ab if side == 0 else self.ba
        for datagram in machine.datagrams_to_send(self.now):
            self._transmit(direction, 1 - side, datagram)
        self._drain_events(side)
        deadline = machine.get_timer()
        if deadline is not None and deadline != self._armed[side]:
            self._armed[side] = deadline
            self._push(max(deadline, self.now), self._timer, (side, deadline))

    def _timer(self, argument) -> None:
        side, deadline = argument
        if self._armed[side] != deadline:
            return
        self._armed[side] = None
        self.machine(side).handle_timer(self.now)
        self._service(side)

    def _arrive(self, argument) -> None:
        side, datagram = argument
        self.machine(side).receive(datagram, self.now)
        self._service(side)

    def _drain_events(self, side: int) -> None:
        machine = self.machine(side)
        sink = self.received[side]
        while True:
            event = machine.next_event()
            if event is None:
                return
            sink.append((self.now, event))
            if self.on_event is not None:
                self.on_event(side, self.now, event)

    def _transmit(self, direction: Direction, to: int, datagram: bytes) -> None:
        direction.sent += 1
        size = len(datagram) + OVERHEAD
        rng = self._rng
        if direction.mtu is not None and size > direction.mtu:
            direction.dropped += 1
            return
        if direction.loss and rng.random() < direction.loss:
            direction.dropped += 1
            return
        leave = self.now
        if direction.rate is not None:
            start = max(self.now, direction.busy_until)
            if (start - self.now) * direction.rate > direction.queue:
                direction.dropped += 1
                return
            leave = start + size / direction.rate
            direction.busy_until = leave
        copies = 2 if direction.duplicate and rng.random() < direction.duplicate else 1
        for _ in range(copies):
            arrival = leave + direction.delay
            if direction.jitter:
                arrival += rng.random() * direction.jitter
            direction.delivered_bytes += size
            self._push(arrival, self._arrive, (to, datagram))
