"""
An ordered map from integer keys to values, for the lobby: insert, remove
and "the entries after this key" each cost O(log n) (plus a short memory
move), however many entries it holds.

The keys are kept in chunks of sorted lists (the idea of the
C{sortedcontainers} package, in the few lines the lobby needs): a list of
the chunks' largest keys finds the chunk by bisection, and a chunk is small
enough that inserting into or deleting from it is a fast C{memmove}.
Appending a key larger than all others, the common case (sessions get
increasing sequence numbers), only touches the last chunk.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Generic, Iterator, TypeVar

V = TypeVar("V")


class OrderedIndex(Generic[V]):
    """
    Integer keys in ascending order, each with a value.

    @param chunk: keys per chunk (appends start a new chunk there; a
        chunk splits in two at twice this).
    """

    __slots__ = ("_keys", "_values", "_maxes", "_len", "_chunk")

    def __init__(self, chunk: int = 512) -> None:
        if chunk < 2:
            raise ValueError("a chunk holds at least 2 keys")
        self._chunk = chunk
        self._keys: list[list[int]] = []
        self._values: list[list[V]] = []
        self._maxes: list[int] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def insert(self, key: int, value: V) -> None:
        """
        Add C{key} with C{value}.

        @raise KeyError: if C{key} is already there.
        """
        maxes = self._maxes
        if not maxes or key > maxes[-1]:
            if not maxes or len(self._keys[-1]) >= self._chunk:
                self._keys.append([key])
                self._values.append([value])
                maxes.append(key)
            else:
                self._keys[-1].append(key)
                self._values[-1].append(value)
                maxes[-1] = key
            self._len += 1
            return
        i = bisect_left(maxes, key)
        keys = self._keys[i]
        j = bisect_left(keys, key)
        if keys[j] == key:
            raise KeyError(key)
        keys.insert(j, key)
        self._values[i].insert(j, value)
        self._len += 1
        if len(keys) >= 2 * self._chunk:
            half = len(keys) // 2
            values = self._values[i]
            self._keys[i : i + 1] = [keys[:half], keys[half:]]
            self._values[i : i + 1] = [values[:half], values[half:]]
            maxes[i : i + 1] = [keys[half - 1], keys[-1]]

    def remove(self, key: int) -> V:
        """
        Remove C{key}; return its value.

        @raise KeyError: if C{key} is not there.
        """
        maxes = self._maxes
        i = bisect_left(maxes, key)
        if i == len(maxes):
            raise KeyError(key)
        keys = self._keys[i]
        j = bisect_left(keys, key)
        if keys[j] != key:
            raise KeyError(key)
        del keys[j]
        value = self._values[i].pop(j)
        self._len -= 1
        if not keys:
            del self._keys[i], self._values[i], maxes[i]
        elif j == len(keys):
            maxes[i] = keys[-1]
        return value

    def after(self, key: int | None) -> Iterator[tuple[int, V]]:
        """
        The entries whose key is larger than C{key} (all, for None), in
        ascending order.  The index must not change while this is iterated.
        """
        for keys, values, start in self.runs_after(key):
            for k in range(start, len(keys)):
                yield keys[k], values[k]

    def runs_after(self, key: int | None) -> Iterator[tuple[list[int], list[V], int]]:
        """
        The entries after C{key} as runs C{(keys, values, start)}: the
        entries C{keys[start:]} and C{values[start:]} of one chunk, chunk
        after chunk (the lists themselves, not copies: read them only,
        while the index does not change).
        """
        maxes = self._maxes
        if key is None:
            i = j = 0
        else:
            i = bisect_right(maxes, key)
            if i == len(maxes):
                return
            j = bisect_right(self._keys[i], key)
        all_keys, all_values = self._keys, self._values
        while i < len(all_keys):
            yield all_keys[i], all_values[i], j
            i += 1
            j = 0

    def keys(self) -> list[int]:
        """
        Every key, in order (a fresh list; for tests and debugging).
        """
        return [k for keys in self._keys for k in keys]

