"""
Tests for L{p2pnet.testing.HeapClock}: the same calls, in the same order,
at the same times as L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from p2pnet.testing import HeapClock

# Few distinct delays, so that many calls fall due at the same time.
delays = st.sampled_from([-1.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 3.0])
indices = st.integers(0, 40)

#: One step of a program run on both clocks.
steps = st.one_of(
    st.tuples(st.just("call"), delays, st.none() | st.tuples(st.sampled_from(["call", "cancel", "reset", "delay"]), delays, indices)),
    st.tuples(st.just("cancel"), indices),
    st.tuples(st.just("reset"), indices, delays),
    st.tuples(st.just("delay"), indices, delays),
    st.tuples(st.just("advance"), st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.0, 2.0, 5.0])),
    st.tuples(st.just("pending")),
)


class _Run:
    """
    A program of schedules, cancels, resets, delays and advances on one
    clock; calls may, when they run, schedule, cancel, reset or delay
    others.  C{log} records what ran, when, and what was pending.
    """

    def __init__(self, clock) -> None:
        self.clock = clock
        self.calls = []
        self.log = []

    def schedule(self, delay, then=None):
        name = len(self.calls)
        self.calls.append(self.clock.callLater(delay, self.fire, name, then))

    def fire(self, name, then):
        self.log.append(("ran", name, self.clock.seconds()))
        if then is not None:
            self.act(then)

    def act(self, action):
        kind, delay, index = action
        if kind == "call":
            self.schedule(delay)
            return
        if not self.calls:
            return
        call = self.calls[index % len(self.calls)]
        try:
            if kind == "cancel":
                call.cancel()
            elif kind == "reset":
                call.reset(delay)
            else:
                call.delay(delay)
            self.log.append((kind, index % len(self.calls)))
        except (AlreadyCalled, AlreadyCancelled) as e:
            self.log.append((kind, type(e).__name__))

    def step(self, step):
        if step[0] == "call":
            self.schedule(step[1], step[2])
        elif step[0] in ("cancel", "reset", "delay"):
            self.act((step[0], step[-1] if step[0] != "cancel" else 0.0, step[1]))
        elif step[0] == "advance":
            self.clock.advance(step[1])
            self.log.append(("now", self.clock.seconds()))
        else:
            pending = sorted((c.getTime(), self.calls.index(c)) for c in self.clock.getDelayedCalls())
            self.log.append(("pending", pending, [c.active() for c in self.calls]))


class SameAsClockTests(SynchronousTestCase):
    """
    L{HeapClock} behaves exactly as L{Clock}.
    """

    @given(st.lists(steps, max_size=80))
    def test_same_runs(self, program):
        """
        Any program of schedules (including from inside calls, in the past,
        and at equal times), cancels, resets, delays and advances runs the
        same calls at the same times in the same order on both clocks.
        """
        runs = [_Run(Clock()), _Run(HeapClock())]
        for step in program + [("advance", 100.0), ("pending",)]:
            for run in runs:
                run.step(step)
        self.assertEqual(runs[1].log, runs[0].log)

    def test_interface(self):
        """
        L{HeapClock} provides L{IReactorTime}.
        """
        self.assertTrue(verifyObject(IReactorTime, HeapClock()))

    def test_same_time_in_order(self):
        """
        Calls due at the same time run in the order they were scheduled.
        """
        clock = HeapClock()
        ran = []
        for name in "abcde":
            clock.callLater(1.0, ran.append, name)
        clock.advance(1.0)
        self.assertEqual(ran, list("abcde"))

    def test_scheduled_during_advance(self):
        """
        A call scheduled by a running call for a time not after the clock's
        new time runs in the same advance, in time order with the calls
        already due (one for 1.25 s before one for 1.5 s); one for later
        does not.
        """
        clock = HeapClock()
        ran = []

        def first():
            ran.append(("first", clock.seconds()))
            clock.callLater(-0.75, lambda: ran.append(("past", clock.seconds())))
            clock.callLater(0.0, lambda: ran.append(("now", clock.seconds())))
            clock.callLater(0.1, lambda: ran.append(("later", clock.seconds())))

        clock.callLater(1.0, first)
        clock.callLater(1.5, lambda: ran.append(("second", clock.seconds())))
        clock.advance(2.0)
        self.assertEqual(ran, [("first", 2.0), ("past", 2.0), ("second", 2.0), ("now", 2.0)])
        self.assertEqual([call.getTime() for call in clock.getDelayedCalls()], [2.1])

    def test_reset_places(self):
        """
        A call moved later lands before the calls already due at its new
        time, one moved earlier after them (as C{Clock}'s stable sort
        puts them).
        """
        for clock in (Clock(), HeapClock()):
            ran = []
            early = clock.callLater(1.0, ran.append, "early")
            clock.callLater(2.0, ran.append, "b")
            late = clock.callLater(3.0, ran.append, "late")
            early.reset(2.0)
            late.reset(2.0)
            clock.callLater(2.0, ran.append, "c")
            clock.advance(2.0)
            self.assertEqual(ran, ["early", "b", "late", "c"], clock)

    def test_moves_between_sorts(self):
        """
        Calls moved to the same time between two sort points (no
        C{callLater} or C{advance} in between) keep their previous order
        among themselves, whatever the order of the moves.
        """
        for clock in (Clock(), HeapClock()):
            ran = []
            a = clock.callLater(1.0, ran.append, "a")
            b = clock.callLater(1.5, ran.append, "b")
            x = clock.callLater(5.0, ran.append, "x")
            y = clock.callLater(6.0, ran.append, "y")
            clock.callLater(3.0, ran.append, "there")
            b.reset(3.0)
            a.reset(3.0)
            y.reset(3.0)
            x.delay(-2.0)
            clock.advance(3.0)
            self.assertEqual(ran, ["a", "b", "there", "x", "y"], clock)

    def test_cancel_and_errors(self):
        """
        Cancelled calls do not run and leave the pending list; cancelling
        or resetting a call twice or after it ran raises as C{Clock}'s
        calls do.
        """
        clock = HeapClock()
        ran = []
        call = clock.callLater(1.0, ran.append, "x")
        other = clock.callLater(1.0, ran.append, "y")
        call.cancel()
        self.assertFalse(call.active())
        self.assertEqual(clock.getDelayedCalls(), [other])
        self.assertRaises(AlreadyCancelled, call.cancel)
        self.assertRaises(AlreadyCancelled, call.reset, 1.0)
        clock.advance(1.0)
        self.assertEqual(ran, ["y"])
        self.assertRaises(AlreadyCalled, other.cancel)
        self.assertRaises(AlreadyCalled, other.delay, 1.0)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_many_cancelled(self):
        """
        Cancelling most of many calls (the heap is compacted) leaves the
        rest running in order, also when a call cancels others while the
        clock advances.
        """
        clock = HeapClock()
        ran = []
        calls = [clock.callLater(i * 0.01, ran.append, i) for i in range(1000)]

        def cancel_rest():
            for call in calls[501:]:
                if call.active():
                    call.cancel()

        clock.callLater(4.0, cancel_rest)
        for call in calls[:400]:
            if call.getTime() > 0.0:
                call.cancel()
        clock.advance(10.0)
        self.assertEqual(ran, [0] + list(range(400, 501)))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_pump_and_seconds(self):
        """
        C{pump} advances by each amount in turn; C{seconds} and C{getTime}
        follow.
        """
        clock = HeapClock()
        times = []
        clock.callLater(1.5, lambda: times.append(clock.seconds()))
        call = clock.callLater(2.0, lambda: times.append(clock.seconds()))
        self.assertEqual(call.getTime(), 2.0)
        clock.pump([1.0, 1.0, 1.0])
        self.assertEqual(times, [2.0, 2.0])
        self.assertEqual(clock.seconds(), 3.0)

    def test_exception_propagates(self):
        """
        An exception from a call comes out of C{advance}; the calls after
        it stay pending and run on the next C{advance}.
        """
        clock = HeapClock()
        ran = []
        clock.callLater(1.0, lambda: 1 / 0)
        clock.callLater(1.0, ran.append, "after")
        self.assertRaises(ZeroDivisionError, clock.advance, 1.0)
        self.assertEqual(ran, [])
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0)
        self.assertEqual(ran, ["after"])
