"""
The replay window: which packet numbers of one key epoch were already
accepted.

A receiver keeps one L{ReplayWindow} per key epoch it holds.  For each
packet it asks L{ReplayWindow.check} before decrypting (a cheap refusal of
replays) and calls L{ReplayWindow.mark} only once the packet authenticated,
so a forged packet can neither use up a number nor move the window.

The window remembers the highest number marked and which of the C{size}
numbers ending at it were marked.  A number above the highest is always
new; a number C{size} or more below it is refused, since the window no
longer knows whether it was seen (RFC 4303 section 3.4.3 and RFC 9000
section 12.3 use the same rule).

The record is a ring of C{size} slots, slot C{n % size} holding the last
number marked there: C{n} was seen exactly when its slot holds C{n}, since a
later number that reuses the slot is at least C{size} above C{n} and so has
already pushed C{n} out of the window.  Both operations are a comparison
and one array access, whatever the order packets arrive in.
"""

from __future__ import annotations

from array import array

#: The smallest window a secure session may use (issue 13).
MINIMUM_WINDOW = 2048


class ReplayWindow:
    """
    The packet numbers (unsigned 32-bit) of one key epoch seen so far.

    @ivar size: how many numbers below the highest one the window remembers.
    @ivar highest: the highest number marked, or -1 before the first (read
        it, never set it).
    """

    __slots__ = ("size", "highest", "_slots")

    def __init__(self, size: int = MINIMUM_WINDOW) -> None:
        """
        @param size: the window's length in packet numbers, at least 2.  A
            secure session uses at least L{MINIMUM_WINDOW}; tests use small
            windows to reach its edges quickly.
        """
        if not isinstance(size, int) or size < 2:
            raise ValueError(f"replay window size must be an int >= 2, not {size!r}")
        self.size = size
        self.highest = -1
        # Slot i starts with a value that is not congruent to i modulo size,
        # so no packet number is ever found in it before it was marked.
        self._slots = array("I", [(i + 1) % size for i in range(size)])

    def check(self, number: int) -> bool:
        """
        May C{number} be new?  True when it is above every number marked, or
        inside the window and not marked; False for a number marked already
        or too old to tell.
        """
        highest = self.highest
        if number > highest:
            return True
        if highest - number >= self.size:
            return False
        return self._slots[number % self.size] != number

    def mark(self, number: int) -> None:
        """
        Record C{number} as seen: call only after L{check} said it may be
        new and its packet authenticated.  Marking a number that is already
        outside the window changes nothing.
        """
        highest = self.highest
        if number > highest:
            self.highest = number
        elif highest - number >= self.size:
            return
        self._slots[number % self.size] = number

    def accept(self, number: int) -> bool:
        """
        L{check} then L{mark}: True (and recorded) when C{number} is new.
        For callers with nothing to authenticate in between.
        """
        if self.check(number):
            self.mark(number)
            return True
        return False
