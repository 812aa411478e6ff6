"""
The sending half of each channel: queued messages, the pieces of them in
flight (chunks), retransmission of lost chunks, and the reservation of the
peer's receive budget.

A message gets its channel sequence number when its first byte is put in a
packet, so messages dropped before that (older unsent messages on a
sequenced channel) leave no gap.  A reliable message reserves its size
plus L{ENTRY_COST} of the peer's receive budget when it starts and gives
it back, in sequence order, once it and every earlier message of the
channel are acknowledged (on a sequenced channel: once it or a newer one
is), which is when the peer has freed the same bytes.
"""

from __future__ import annotations

from collections import deque

from p2pnet.channels._channel import Delivery
from p2pnet.channels._receive import ENTRY_COST, SEQ_WINDOW


class OutMessage:
    """
    A message given to C{send}.

    @ivar sent: how many of its bytes have been put in packets once.
    @ivar pending: chunks not yet acknowledged (reliable messages).
    """

    __slots__ = (
        "data",
        "size",
        "seq",
        "sent",
        "pending",
        "done",
        "abandoned",
        "queued_at",
        "reserved",
        "held",
        "sender",
    )

    def __init__(self, sender: "ChannelSender", data: bytes, queued_at: float) -> None:
        self.sender = sender
        self.data = data
        self.size = len(data)
        self.seq = -1
        self.sent = 0
        self.pending = 0
        self.done = False
        self.abandoned = False
        self.queued_at = queued_at
        self.reserved = 0
        self.held = True


class Chunk:
    """
    Bytes C{offset} to C{offset + length} of a reliable message, as put in
    one packet (and put again in a later one if that packet is lost).

    @ivar parts: when the path MTU shrank and the chunk had to be re-sent
        in smaller pieces, those pieces: acknowledging the original
        acknowledges them all.
    """

    __slots__ = ("message", "offset", "length", "acked", "parts", "queued")

    def __init__(self, message: OutMessage, offset: int, length: int) -> None:
        self.message = message
        self.offset = offset
        self.length = length
        self.acked = False
        self.parts = None
        self.queued = False


class ChannelSender:
    """
    One channel's send state.

    @ivar queue: messages not yet completely sent once.
    @ivar retransmit: lost chunks to send again, before any new data.
    @ivar reserved: started reliable messages holding receive budget, in
        sequence order.
    """

    def __init__(self, channel, reservations: "SendBuffer") -> None:
        self.channel = channel
        self.buffer = reservations
        self.delivery = channel.delivery
        self.reliable = channel.delivery.reliable
        self.sequenced = channel.delivery.sequenced
        self.unreliable = channel.delivery is Delivery.UNRELIABLE
        self.reservations = reservations
        self.queue: deque[OutMessage] = deque()
        self.retransmit: deque[Chunk] = deque()
        self.reserved: deque[OutMessage] = deque()
        self.next_seq = 0
        self.vtime = 0.0
        self.held_bytes = 0
        self.held_messages = 0
        self.sent_count = 0

    def enqueue(self, message: OutMessage) -> None:
        """
        Queue C{message}; on a sequenced channel drop the older messages
        not yet started (and, reliable, stop retransmitting started ones).
        """
        if self.sequenced:
            while self.queue and self.queue[-1].sent == 0:
                self.abandon(self.queue.pop())
            for old in self.queue:
                self.abandon(old)
            if self.reliable:
                for old in self.reserved:
                    self.abandon(old)
        self.queue.append(message)
        self.held_bytes += message.size
        self.held_messages += 1
        self.buffer.held += message.size

    def abandon(self, message: OutMessage) -> None:
        message.abandoned = True
        self.unhold(message)

    def unhold(self, message: OutMessage) -> None:
        """
        C{message} no longer counts against the send buffer.
        """
        if message.held:
            message.held = False
            self.held_bytes -= message.size
            self.held_messages -= 1
            self.buffer.held -= message.size

    def has_data(self) -> bool:
        return bool(self.retransmit) or bool(self.queue)

    def may_start(self, message: OutMessage) -> bool:
        """
        Whether C{message} (not yet started) may be started now: within
        the sequence window and the peer's receive budget.

        On a sequenced channel the new message takes over the reservations
        of the abandoned messages before it: the peer frees their
        reassembly as soon as it sees any frame of a newer message, before
        it takes the new message's share, so holding the larger of the two
        always covers what it holds for the channel.
        """
        if not self.reliable:
            return True
        if self.sequenced:
            inherited = sum(old.reserved for old in self.reserved if old.abandoned)
            need = max(message.size + ENTRY_COST, inherited)
            if not self.reservations.try_take(need - inherited):
                return False
            for old in [m for m in self.reserved if m.abandoned]:
                self.reserved.remove(old)
                old.reserved = 0
            message.reserved = need
            return True
        if self.reserved and self.next_seq - self.reserved[0].seq >= SEQ_WINDOW:
            return False
        if not self.reservations.try_take(message.size + ENTRY_COST):
            return False
        message.reserved = message.size + ENTRY_COST
        return True

    def start(self, message: OutMessage) -> None:
        """
        C{message}'s first byte is going out (after L{may_start} said yes).
        """
        message.seq = self.next_seq
        self.next_seq += 1
        self.sent_count += 1
        if self.reliable:
            self.reserved.append(message)

    def on_chunk_acked(self, chunk: Chunk) -> bool:
        """
        @return: whether this completed a message.
        """
        if chunk.acked:
            return False
        chunk.acked = True
        message = chunk.message
        if chunk.parts is not None:
            completed = False
            for part in chunk.parts:
                completed = self.on_chunk_acked(part) or completed
            return completed
        message.pending -= 1
        if message.pending == 0 and message.sent == message.size and not message.done:
            self._on_done(message)
            return True
        return False

    def _on_done(self, message: OutMessage) -> None:
        message.done = True
        self.unhold(message)
        reserved = self.reserved
        if self.sequenced:
            while reserved and reserved[0].seq <= message.seq:
                self._release(reserved.popleft())
        else:
            while reserved and reserved[0].done:
                self._release(reserved.popleft())

    def _release(self, message: OutMessage) -> None:
        self.reservations.give(message.reserved)
        message.reserved = 0

    def on_chunk_lost(self, chunk: Chunk) -> None:
        if chunk.acked or chunk.queued:
            return
        message = chunk.message
        if message.done or message.abandoned:
            return
        if chunk.parts is not None:
            for part in chunk.parts:
                self.on_chunk_lost(part)
            return
        chunk.queued = True
        self.retransmit.append(chunk)

    def oldest_age(self, now: float) -> float:
        oldest = None
        if self.reserved:
            oldest = self.reserved[0].queued_at
        if self.queue and (oldest is None or self.queue[0].queued_at < oldest):
            oldest = self.queue[0].queued_at
        return 0.0 if oldest is None else max(0.0, now - oldest)

class SendBuffer:
    """
    What the sender holds, and its view of the peer's receive budget.

    @ivar held: bytes of messages queued or not yet acknowledged.
    @ivar used: bytes of the peer's receive budget reserved.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.held = 0

    def try_take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size
