"""
Tests for L{p2pnet.secure._replay}, the replay window.
"""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pnet.secure._replay import ReplayWindow


class Reference:
    """
    The window's rule written the slow, obvious way: every number ever
    accepted in a set, plus the highest one.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen: set[int] = set()
        self.highest = -1

    def accept(self, number: int) -> bool:
        if number in self.seen:
            return False
        if number <= self.highest - self.size:
            return False
        self.seen.add(number)
        self.highest = max(self.highest, number)
        return True


u32 = st.integers(0, 0xFFFFFFFF)


def clustered(draw_base: int, offsets: list[int]) -> list[int]:
    return [min(0xFFFFFFFF, max(0, draw_base + o)) for o in offsets]


# Sequences that exercise the window's edges: numbers near each other (with
# repeats and reorderings) around a base anywhere in the u32 range.
sequences = st.builds(
    clustered,
    st.one_of(st.just(0), u32, st.just(0xFFFFFFFF - 40)),
    st.lists(st.integers(-5, 40), max_size=120),
)


class ReplayWindowTests(SynchronousTestCase):
    def test_fresh_window_accepts_anything(self) -> None:
        """
        A new window has seen nothing: zero, one and the largest u32 number
        may all be new.
        """
        window = ReplayWindow(2048)
        for n in (0, 1, 2047, 2048, 0xFFFFFFFF):
            self.assertTrue(window.check(n))
        self.assertEqual(window.highest, -1)

    def test_initial_slots_hold_no_number(self) -> None:
        """
        Before anything is marked, no number at or below a later highest one
        appears seen just because its slot was never written.
        """
        window = ReplayWindow(4)
        window.mark(7)
        # 4, 5 and 6 are inside the window (7 - 3 .. 7) and were never marked.
        self.assertEqual([window.check(n) for n in (4, 5, 6, 7)], [True, True, True, False])
        for size in (2, 3, 5):
            window = ReplayWindow(size)
            window.mark(size - 1)  # the first numbers, each in its own slot
            self.assertEqual([window.check(n) for n in range(size)], [True] * (size - 1) + [False])
    # Equivalent: the slots starting at (i - 1) % size (not congruent to
    # i either, for every size >= 2).

    def test_second_time_refused(self) -> None:
        """
        A number marked once is refused afterwards, in order and out of
        order.
        """
        window = ReplayWindow(2048)
        for n in (5, 3, 4, 2000):
            self.assertTrue(window.check(n))
            window.mark(n)
            self.assertFalse(window.check(n))
        for n in (5, 3, 4, 2000):
            self.assertFalse(window.check(n))
        self.assertTrue(window.check(6))

    def test_edge_of_window(self) -> None:
        """
        With a window of 2048 and 5000 the highest number, 2953 (= 5000 -
        2047) is still inside the window and may be new; 2952 is too old.
        """
        window = ReplayWindow(2048)
        window.mark(5000)
        self.assertTrue(window.check(2953))
        self.assertFalse(window.check(2952))
        self.assertFalse(window.check(0))
        window.mark(2953)
        self.assertFalse(window.check(2953))

    def test_slot_reuse(self) -> None:
        """
        A number that shares its slot with one marked earlier (2048 apart)
        is still new.
        """
        window = ReplayWindow(2048)
        window.mark(10)
        self.assertTrue(window.check(2058))
        window.mark(2058)
        self.assertFalse(window.check(2058))
        self.assertFalse(window.check(10))
        self.assertTrue(window.check(11))

    def test_mark_too_old_changes_nothing(self) -> None:
        """
        Marking a number already outside the window neither moves the
        highest number nor spoils the slot it would share with a live number.
        """
        window = ReplayWindow(4)
        window.mark(9)
        window.mark(1)  # slot 1, shared with 5 and 9
        self.assertEqual(window.highest, 9)
        self.assertTrue(window.check(7))
        self.assertFalse(window.check(9))

    def test_mark_just_outside_changes_nothing(self) -> None:
        """
        A number exactly the window's size below the highest is outside:
        marking it does not spoil the slot it shares with the highest.
        """
        window = ReplayWindow(4)
        window.mark(9)
        window.mark(5)  # 9 - 5 == 4: outside; slot 1, shared with 9
        self.assertFalse(window.check(9))
        self.assertFalse(window.check(5))
        window.mark(6)  # 9 - 6 == 3: inside
        self.assertFalse(window.check(6))
        self.assertFalse(window.check(9))

    # Equivalent: mark() with '>=' for '>' (marking the highest number
    # again sets it to itself).

    def test_largest_number(self) -> None:
        """
        The largest u32 packet number can be marked and is then refused.
        """
        window = ReplayWindow(2048)
        self.assertTrue(window.accept(0xFFFFFFFF))
        self.assertFalse(window.accept(0xFFFFFFFF))
        self.assertTrue(window.accept(0xFFFFFFFE))
        self.assertFalse(window.accept(0xFFFFFFFF - 2048))

    def test_size_validated(self) -> None:
        """
        A window must hold at least two numbers.
        """
        error = self.assertRaises(ValueError, ReplayWindow, 1)
        self.assertEqual(str(error), "replay window size must be an int >= 2, not 1")
        self.assertRaises(ValueError, ReplayWindow, 0)
        self.assertRaises(ValueError, ReplayWindow, 2048.0)

    def test_check_does_not_record(self) -> None:
        """
        L{ReplayWindow.check} alone records nothing: a packet that fails
        authentication after the check leaves its number available.
        """
        window = ReplayWindow(2048)
        self.assertTrue(window.check(100))
        self.assertTrue(window.check(100))
        self.assertEqual(window.highest, -1)
        window.mark(1)
        self.assertTrue(window.check(100))

    @given(st.integers(2, 64), sequences)
    def test_matches_reference(self, size: int, numbers: list[int]) -> None:
        """
        For any sequence of numbers, with repeats and in any order, the
        window accepts exactly what the set-based reference accepts.
        """
        window = ReplayWindow(size)
        reference = Reference(size)
        for n in numbers:
            self.assertEqual(window.accept(n), reference.accept(n), (n, numbers))
            self.assertEqual(window.highest, reference.highest)

    @given(st.integers(2, 64), sequences)
    def test_each_number_at_most_once(self, size: int, numbers: list[int]) -> None:
        """
        Whatever the sequence, no number is accepted twice, and a number
        above everything seen is always accepted.
        """
        window = ReplayWindow(size)
        accepted = []
        highest = -1
        for n in numbers:
            ok = window.accept(n)
            if n > highest:
                self.assertTrue(ok)
                highest = n
            if ok:
                accepted.append(n)
        self.assertEqual(len(accepted), len(set(accepted)))

    @given(st.lists(st.integers(0, 6000), max_size=300))
    def test_default_window_matches_reference(self, numbers: list[int]) -> None:
        """
        The session's window of 2048 agrees with the reference over
        sequences spanning more than two windows.
        """
        window = ReplayWindow()
        self.assertEqual(window.size, 2048)
        reference = Reference(2048)
        for n in numbers:
            self.assertEqual(window.accept(n), reference.accept(n))

    @given(st.integers(2, 64), sequences, st.integers(0, 100))
    def test_old_numbers_refused(self, size: int, numbers: list[int], below: int) -> None:
        """
        After any sequence, every number C{size} or more below the highest
        is refused, marked or not.
        """
        window = ReplayWindow(size)
        for n in numbers:
            window.accept(n)
        probe = window.highest - size - below
        if probe >= 0:
            self.assertFalse(window.check(probe))
