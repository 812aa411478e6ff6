"""
The receiving half of each channel: duplicate suppression, ordering,
sequencing and reassembly of fragments, within one shared byte budget.

A packet is accepted or refused as a whole: when a frame would push the
buffered bytes over the budget the machine stops, does not acknowledge the
packet, and the sender retransmits it later (by then the frames already
applied are duplicates and are dropped).  A well-behaved sender never gets
there (it reserves the same budget before it starts a message, see
L{p2pnet.channels._send}); a misbehaving one cannot make us hold more.
"""

from __future__ import annotations

from p2pnet.channels._channel import Delivery
from p2pnet.channels._frames import expand_sequence


#: What each reassembly, reordering or duplicate-suppression entry is
#: charged beyond its data (Python object overhead), so that many tiny
#: entries cannot hold more memory than the budget says.
ENTRY_COST = 128

#: Reliable messages may be at most this far ahead of the oldest one not
#: yet delivered (the sender keeps to it).
SEQ_WINDOW = 4096


class OverBudget(Exception):
    """
    Accepting this frame would exceed the receive budget.
    """


class Budget:
    """
    The bytes all channels of one connection may hold for reassembly and
    reordering.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.receivers: list = []

    def take(self, size: int) -> None:
        if self.used + size > self.limit:
            # Unreliable reassembly may always be given up.
            for receiver in self.receivers:
                receiver.drop_unreliable_partial()
            if self.used + size > self.limit:
                raise OverBudget()
        self.used += size

    def give(self, size: int) -> None:
        self.used -= size


class Partial:
    """
    A message being reassembled from fragments.

    @ivar spans: disjoint received [start, end) byte ranges, in order.
    """

    __slots__ = ("buffer", "spans", "received", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self.buffer = bytearray(total)
        self.spans: list[list[int]] = []
        self.received = 0

    def add(self, offset: int, data: bytes) -> bool:
        """
        Copy in C{data} at C{offset}.

        @return: whether the message is now complete.
        """
        end = offset + len(data)
        spans = self.spans
        if spans and spans[-1][1] == offset:
            spans[-1][1] = end
            self.received += len(data)
        elif not spans or spans[-1][1] < offset:
            spans.append([offset, end])
            self.received += len(data)
        else:
            merged = []
            start, stop = offset, end
            for low, high in spans:
                if high < start or low > stop:
                    merged.append([low, high])
                else:
                    start, stop = min(start, low), max(stop, high)
            merged.append([start, stop])
            merged.sort()
            self.spans = merged
            self.received = sum(high - low for low, high in merged)
        self.buffer[offset:end] = data
        return self.received == self.total


class ChannelReceiver:
    """
    One channel's receive state.

    @ivar base: for ordered channels the next sequence number to deliver;
        for unordered ones the lowest not yet delivered; for sequenced ones
        the newest seen (one more once it is delivered): anything older is
        dropped.
    """

    def __init__(self, channel, budget: Budget, max_message: int, deliver) -> None:
        self.channel = channel
        self.delivery = channel.delivery
        # Plain booleans: enum attribute lookups are slow on this path.
        self.reliable = channel.delivery.reliable
        self.unreliable = channel.delivery is Delivery.UNRELIABLE
        self.ordered = channel.delivery is Delivery.RELIABLE_ORDERED
        self.unordered = channel.delivery is Delivery.RELIABLE_UNORDERED
        self.windowed = self.ordered or self.unordered
        self.budget = budget
        self.max_message = max_message
        self.deliver = deliver
        self.base = 0
        self.pending: dict[int, bytes] = {}
        self.delivered: set[int] = set()
        self.partials: dict[int, Partial] = {}
        self.received_count = 0
        # Sequenced channels, and fragmented unreliable messages, never
        # deliver an older message once a newer one has been seen.
        self.forward_only = not self.windowed
        budget.receivers.append(self)

    def expand(self, seq: int) -> int:
        return expand_sequence(seq, self.base)

    def _stale(self, full: int) -> bool:
        """
        Whether a frame for message C{full} should be ignored: already
        delivered, or too far ahead for a reliable channel.
        """
        if full < self.base:
            return True
        if self.windowed:
            if full - self.base >= SEQ_WINDOW:
                return True
            return full in self.delivered
        return False

    def on_unreliable(self, data: bytes) -> None:
        self.received_count += 1
        self.deliver(self.channel.id, data)

    def on_message(self, seq: int, data: bytes) -> None:
        full = self.expand(seq)
        if self._stale(full):
            return
        if self.forward_only and full > self.base:
            self._move_to(full)
        partial = self.partials.pop(full, None)
        if partial is not None:
            self.budget.give(partial.total + ENTRY_COST)
        self._complete(full, data)

    def on_fragment(self, seq: int, total: int, offset: int, data: bytes) -> bool:
        """
        @return: C{False} if the frame is invalid (dropped and counted).
        @raise OverBudget: if starting this message would exceed the budget.
        """
        if total > self.max_message:
            return False
        full = self.expand(seq)
        if self._stale(full):
            return True
        if self.forward_only and full > self.base:
            self._move_to(full)
        partial = self.partials.get(full)
        if partial is None:
            if not self.reliable:
                # Unreliable data never holds a packet back: if it does
                # not fit, it is lost, like any unreliable message.
                self.drop_unreliable_partial()
                try:
                    self.budget.take(total + ENTRY_COST)
                except OverBudget:
                    return True
            else:
                self.budget.take(total + ENTRY_COST)
            partial = self.partials[full] = Partial(total)
        elif partial.total != total:
            return False
        if partial.add(offset, data):
            del self.partials[full]
            self.budget.give(total + ENTRY_COST)
            self._complete(full, bytes(partial.buffer))
        return True

    def _move_to(self, full: int) -> None:
        """
        A frame of message C{full} arrived on a channel that only moves
        forward: older messages will never be delivered, so their
        reassembly is given up now (the sender has abandoned them and
        counts on it, see L{p2pnet.channels._send}).
        """
        self.base = full
        for old in [s for s in self.partials if s < full]:
            self.budget.give(self.partials.pop(old).total + ENTRY_COST)

    def drop_unreliable_partial(self) -> None:
        if self.reliable or not self.partials:
            return
        for partial in self.partials.values():
            self.budget.give(partial.total + ENTRY_COST)
        self.partials.clear()

    def _complete(self, full: int, data: bytes) -> None:
        if self.ordered:
            if full != self.base:
                if full not in self.pending:
                    self.budget.take(len(data) + ENTRY_COST)
                    self.pending[full] = data
                return
            self._emit(data)
            self.base += 1
            pending = self.pending
            while self.base in pending:
                data = pending.pop(self.base)
                self.budget.give(len(data) + ENTRY_COST)
                self._emit(data)
                self.base += 1
        elif self.unordered:
            if full == self.base:
                self._emit(data)
                self.base += 1
                delivered = self.delivered
                while self.base in delivered:
                    delivered.discard(self.base)
                    self.budget.give(ENTRY_COST)
                    self.base += 1
            else:
                self.budget.take(ENTRY_COST)
                self.delivered.add(full)
                self._emit(data)
        else:
            # Sequenced, reliable or not: only ever forward.
            self._emit(data)
            self.base = full + 1
            for old in [s for s in self.partials if s < self.base]:
                self.budget.give(self.partials.pop(old).total + ENTRY_COST)

    def _emit(self, data: bytes) -> None:
        self.received_count += 1
        self.deliver(self.channel.id, data)

    def buffered(self) -> int:
        """
        The budget this channel holds (for tests and stats).
        """
        return (
            sum(len(d) + ENTRY_COST for d in self.pending.values())
            + sum(p.total + ENTRY_COST for p in self.partials.values())
            + ENTRY_COST * len(self.delivered)
        )
