"""
The channel machine: one per connection, sans-IO in the style of
aioquic's C{QuicConnection}.  The owner feeds it decrypted plaintexts
(L{ChannelMachine.receive}) and timer expiries
(L{ChannelMachine.handle_timer}), asks it for plaintexts to seal and send
(L{ChannelMachine.datagrams_to_send}) and for the next deadline
(L{ChannelMachine.get_timer}), and reads events
(L{ChannelMachine.next_event}).  It never reads a clock: every entry point
takes C{now}.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Iterable, Optional, Union

from p2pnet.channels import _frames as F
from p2pnet.channels._channel import (
    ConnectionStats,
    MessageReceived,
    PathMtuChanged,
    Writable,
)
from p2pnet.channels._build import build, build_mtu_probe
from p2pnet.channels._congestion import Bbr, Pacer
from p2pnet.channels._pmtu import BASE_SIZE, MAX_SIZE, PathMtu
from p2pnet.channels._receive import Budget, ChannelReceiver, OverBudget
from p2pnet.channels._recovery import (
    MAX_ACK_DELAY,
    ReceivedPackets,
    SentPackets,
)
from p2pnet.channels._send import ChannelSender, Chunk, OutMessage, SendBuffer
from p2pnet.channels._stats import snapshot
from p2pnet.errors import MalformedMessage, MessageTooLarge, SendBufferFull

#: The default message cap (issue 15): 16 MiB.
MAX_MESSAGE = 16 * 1024 * 1024
#: Bytes a packet costs beyond the channel plaintext: 4 of path framing
#: and 24 of AEAD (packet number, epoch and tag).
OVERHEAD = 28


class ChannelMachine:
    """
    Channels over one connection.

    @ivar writable: whether the send buffer is below its high-water mark
        (an C{IPushProducer} should pause while it is false).
    """

    def __init__(
        self,
        channels: Iterable,
        *,
        max_message: int = MAX_MESSAGE,
        receive_buffer: Optional[int] = None,
        send_buffer: Optional[int] = None,
        high_water: int = 4 * 1024 * 1024,
        low_water: int = 1024 * 1024,
        base_mtu: int = BASE_SIZE,
        max_mtu: int = MAX_SIZE,
        pmtu_discovery: bool = True,
        overhead: int = OVERHEAD,
        coalesce_delay: float = 0.002,
        max_ack_delay: float = MAX_ACK_DELAY,
    ) -> None:
        channels = list(channels)
        if receive_buffer is None:
            receive_buffer = 2 * max_message + 1024 * 1024
        if receive_buffer < max_message + 1024:
            raise ValueError("receive_buffer must hold at least one whole message")
        if send_buffer is None:
            send_buffer = 4 * max_message
        self.max_message = max_message
        self.send_limit = send_buffer
        self.high_water = high_water
        self.low_water = low_water
        self.overhead = overhead
        self.coalesce_delay = coalesce_delay
        self._senders: list[Optional[ChannelSender]] = [None] * 256
        self._receivers: list[Optional[ChannelReceiver]] = [None] * 256
        self._buffer = SendBuffer(receive_buffer)
        self._budget = Budget(receive_buffer)
        self._events: deque = deque()
        for channel in channels:
            if self._senders[channel.id] is not None:
                raise ValueError(f"channel {channel.id} declared twice")
            self._senders[channel.id] = ChannelSender(channel, self._buffer)
            self._receivers[channel.id] = ChannelReceiver(
                channel, self._budget, max_message, self._deliver
            )
        self._channels = [c for c in channels]
        # Channels with something to send (a dict for a stable order).
        self._active: dict[ChannelSender, None] = {}
        self._vclock: dict[int, float] = {}
        self.sent = SentPackets(max_ack_delay)
        self.received = ReceivedPackets(max_ack_delay)
        self.pmtu = PathMtu(base_mtu, min(max_mtu, 65000), pmtu_discovery)
        self.congestion = Bbr(self.pmtu.size)
        self.pacer = Pacer()
        self._next_pn = 0
        self._now = 0.0
        self._flush = False
        self._hold_deadline: Optional[float] = None
        self._blocked = False
        self._probes = 0
        self._ack_now = False
        self._want_writable = False
        self._writable_callbacks: list[Callable[[], None]] = []
        self.packets_sent = 0
        self.packets_received = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.dropped_frames = 0
        self.refused_packets = 0
        self._rate_bytes = 0
        self._rate_start = 0.0
        self.send_rate = 0.0
        self._handlers = {
            F.MESSAGE: self._on_message,
            F.UNRELIABLE: self._on_unreliable,
            F.FRAGMENT: self._on_fragment,
            F.ACK: self._on_ack,
            F.PROBE: _ignore,
            F.ACK_NOW: self._on_ack_now,
        }

    # -- the game's side ---------------------------------------------------

    def send(
        self, channel: int, data: bytes, *, flush: bool = True, now: Optional[float] = None
    ) -> None:
        """
        Queue one message on C{channel}.

        @param flush: C{False} lets the machine hold the message up to
            C{coalesce_delay} to share a datagram with later ones.
        @param now: the time, if the owner knows it (for queue ages).
        @raise MessageTooLarge: if C{data} is over the message cap.
        @raise SendBufferFull: if the send buffer is full.
        @raise ValueError: if the channel was not declared.
        """
        sender = self._senders[channel] if 0 <= channel < 256 else None
        if sender is None:
            raise ValueError(f"channel {channel} was not declared")
        size = len(data)
        if size > self.max_message:
            raise MessageTooLarge(size, self.max_message)
        held = self._buffer.held
        if held and held + size > self.send_limit:
            raise SendBufferFull(f"{held} bytes already queued")
        if now is not None:
            self._now = now
        sender.enqueue(OutMessage(sender, bytes(data), self._now))
        self._activate(sender)
        self._blocked = False
        if flush:
            self._flush = True
        elif self._hold_deadline is None:
            self._hold_deadline = self._now + self.coalesce_delay
        if self._buffer.held >= self.high_water:
            self._want_writable = True

    @property
    def writable(self) -> bool:
        return self._buffer.held < self.high_water

    def when_writable(self, callback: Callable[[], None]) -> None:
        """
        Call C{callback} (once) when the send buffer next drains below the
        low-water mark, at the end of the L{receive} or L{handle_timer}
        call that drained it; at once if L{writable} already.
        """
        if self.writable:
            callback()
            return
        self._want_writable = True
        self._writable_callbacks.append(callback)

    def next_event(self):
        """
        The oldest event not yet read (L{MessageReceived}, L{Writable},
        L{PathMtuChanged}), or C{None}.
        """
        if self._events:
            return self._events.popleft()
        return None

    # -- the owner's side --------------------------------------------------

    def receive(self, data: Union[bytes, list], now: float) -> None:
        """
        Take one authenticated plaintext: either the bytes (channel frames,
        optionally followed by PADDING) or the channel frames the secure
        layer already parsed from it.

        @raise MalformedMessage: if the bytes are not channel frames or do
            not start with a packet number; the machine is then unchanged.
        """
        self._now = now
        if isinstance(data, (bytes, bytearray, memoryview)):
            frames = F.parse_packet_raw(data)
            size = len(data) + self.overhead
        else:
            frames = [F.to_raw(frame) for frame in data]
            size = 0
        if not frames or frames[0][0] != F.PACKET_NUMBER:
            raise MalformedMessage("a channel packet starts with its packet number")
        for frame in frames[1:]:
            if frame[0] == F.PACKET_NUMBER:
                raise MalformedMessage("a packet number in the middle of a packet")
        received = self.received
        number = F.expand_packet_number(frames[0][1], received.largest + 1)
        if number <= received.floor or received.contains(number):
            return
        eliciting = False
        self._ack_now = False
        handlers = self._handlers
        try:
            for frame in frames[1:]:
                kind = frame[0]
                if kind != F.ACK:
                    eliciting = True
                handlers[kind](frame, now)
        except OverBudget:
            self.refused_packets += 1
            self._after_input()
            return
        received.on_received(number, eliciting, now)
        if self._ack_now:
            received.ack_deadline = now
        self.packets_received += 1
        self.bytes_received += size
        if self._want_writable:
            self._after_input()

    def handle_timer(self, now: float) -> None:
        """
        The deadline from L{get_timer} passed (calling it early is
        harmless).
        """
        self._now = now
        lost, probe = self.sent.on_timeout(now)
        if lost:
            self._on_lost(lost, now)
        if probe:
            if self.sent.pto_count >= 3 and self.pmtu.size > self.pmtu.base:
                # Nothing at all is acknowledged: maybe a black hole.
                self.pmtu.fall_back(now)
                self._mtu_changed()
            for packet in self.sent.oldest_unacked(2):
                for chunk in packet.chunks:
                    self._lose_chunk(chunk)
            self._probes = 2
        self.pmtu.on_timer(now)
        self._after_input()

    def get_timer(self) -> Optional[float]:
        """
        The next time L{handle_timer} (then L{datagrams_to_send}) must be
        called, or C{None}.
        """
        best = self.sent.get_timer()
        ack = self.received.ack_deadline
        if ack is not None and (best is None or ack < best):
            best = ack
        if self.pmtu.state == "search_complete":
            raise_at = self.pmtu.next_probe_time
            if best is None or raise_at < best:
                best = raise_at
        if self._probes:
            return self._now
        if self._active and not self._blocked and self._can_send_data():
            if self._flush or self._hold_deadline is not None or self._has_retransmit():
                ready_at = self._now if self._data_ready(self._now) else self._hold_deadline
                send_at = max(ready_at, self.pacer.next_time)
                if best is None or send_at < best:
                    best = send_at
        return best

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """
        The plaintexts to seal and send now, each at most the current
        maximum payload (path MTU minus L{OVERHEAD}).
        """
        self._now = now
        out: list[bytes] = []
        pmtu = self.pmtu
        if pmtu.state == "searching" and pmtu.probe_size is None and self.sent.rtt.has_sample:
            size = pmtu.probe_due(now)
            if size is not None:
                out.append(build_mtu_probe(self, size, now))
        sent = self.sent
        congestion = self.congestion
        received = self.received
        while True:
            if self._probes:
                self._probes -= 1
                out.append(build(self, now, probe=True))
                continue
            if (
                self._active
                and not self._blocked
                and (self._flush or (self._hold_deadline is not None and now >= self._hold_deadline) or self._has_retransmit())
                and sent.bytes_in_flight + pmtu.size <= congestion.window
                and self.pacer.next_time <= now
            ):
                payload = build(self, now)
                if payload is not None:
                    out.append(payload)
                    continue
                self._blocked = True
            deadline = received.ack_deadline
            if deadline is not None and now >= deadline:
                if received.ranges:
                    out.append(build(self, now, ack_only=True))
                else:
                    received.on_ack_sent()
            break
        if not self._active:
            self._flush = False
            self._hold_deadline = None
            if sent.bytes_in_flight < congestion.window and congestion.app_limited_until <= congestion.delivered:
                congestion.on_app_limited(sent.bytes_in_flight)
        return out

    # -- statistics ----------------------------------------------------------

    def stats(self, now: Optional[float] = None) -> ConnectionStats:
        """
        A snapshot of the connection's counters (see L{ConnectionStats}).
        """
        return snapshot(self, self._now if now is None else now)

    # -- receiving -----------------------------------------------------------

    def _deliver(self, channel: int, data: bytes) -> None:
        self._events.append(MessageReceived(channel, data))

    def _on_unreliable(self, frame, now: float) -> None:
        receiver = self._receivers[frame[1]]
        if receiver is None or not receiver.unreliable:
            self.dropped_frames += 1
            return
        receiver.on_unreliable(frame[2])

    def _on_message(self, frame, now: float) -> None:
        receiver = self._receivers[frame[1]]
        if receiver is None or receiver.unreliable:
            self.dropped_frames += 1
            return
        receiver.on_message(frame[2], frame[3])

    def _on_fragment(self, frame, now: float) -> None:
        _, channel, seq, total, offset, data = frame
        receiver = self._receivers[channel]
        if receiver is None or not receiver.on_fragment(seq, total, offset, data):
            self.dropped_frames += 1

    def _on_ack_now(self, frame, now: float) -> None:
        self._ack_now = True

    def _on_ack(self, frame, now: float) -> None:
        _, truncated, delay, first, more = frame
        largest_sent = self._next_pn - 1
        largest = F.expand_packet_number(truncated, largest_sent)
        if largest > largest_sent:
            self.dropped_frames += 1
            return
        try:
            ranges = F.absolute_ranges(largest, first, more)
        except MalformedMessage:
            self.dropped_frames += 1
            return
        acked, lost = self.sent.on_ack(ranges, delay * F.ACK_DELAY_UNIT, now)
        if not acked:
            if lost:
                self._on_lost(lost, now)
            return
        pmtu = self.pmtu
        for packet in acked:
            for chunk in packet.chunks:
                chunk.message.sender.on_chunk_acked(chunk)
            if packet.ack_largest >= 0:
                self.received.on_ack_acked(packet.ack_largest)
            if packet.mtu_probe:
                if pmtu.on_probe_acked(packet.size, now):
                    self._mtu_changed()
            else:
                pmtu.on_packet_acked(packet.size)
        self._blocked = False
        self.congestion.on_acked(acked, self.sent.bytes_in_flight, self.sent.rtt.latest, now)
        if lost:
            self._on_lost(lost, now)

    def _on_lost(self, lost: list, now: float) -> None:
        pmtu = self.pmtu
        for packet in lost:
            if packet.mtu_probe:
                pmtu.on_probe_lost(packet.size, now)
                continue
            for chunk in packet.chunks:
                self._lose_chunk(chunk)
            if packet.ack_eliciting and pmtu.on_packet_lost(packet.size, now):
                self._mtu_changed()
        self.congestion.on_lost(lost, now)

    def _lose_chunk(self, chunk: Chunk) -> None:
        sender = chunk.message.sender
        sender.on_chunk_lost(chunk)
        if sender.retransmit:
            self._activate(sender)
            self._blocked = False

    def _activate(self, sender: ChannelSender) -> None:
        """
        C{sender} has data: a channel that was idle starts at the virtual
        time of its priority level, so idling earns it no credit.
        """
        if sender not in self._active:
            floor = self._vclock.get(sender.channel.priority, 0.0)
            if sender.vtime < floor:
                sender.vtime = floor
            self._active[sender] = None

    def _mtu_changed(self) -> None:
        self.congestion.max_datagram = self.pmtu.size
        self._events.append(PathMtuChanged(self.pmtu.size))

    def _after_input(self) -> None:
        if self._want_writable and self._buffer.held <= self.low_water:
            self._want_writable = False
            self._events.append(Writable())
            callbacks, self._writable_callbacks = self._writable_callbacks, []
            for callback in callbacks:
                callback()

    # -- sending -------------------------------------------------------------

    def _data_ready(self, now: float) -> bool:
        if self._flush:
            return True
        if self._hold_deadline is not None and now >= self._hold_deadline:
            return True
        return self._has_retransmit()

    def _has_retransmit(self) -> bool:
        for sender in self._active:
            if sender.retransmit:
                return True
        return False

    def _can_send_data(self) -> bool:
        return self.sent.bytes_in_flight + self.pmtu.size <= self.congestion.window

    def _schedule(self) -> list[ChannelSender]:
        active = self._active
        if len(active) == 1:
            return list(active)
        return sorted(active, key=_order)

    def _count_rate(self, now: float) -> None:
        """
        Fold the bytes sent in the last quarter second or more into
        L{send_rate}.
        """
        sample = self._rate_bytes / (now - self._rate_start)
        self.send_rate = sample if not self.send_rate else 0.5 * self.send_rate + 0.5 * sample
        self._rate_bytes = 0
        self._rate_start = now

def _order(sender: ChannelSender):
    return (sender.channel.priority, sender.vtime, sender.channel.id)


def _ignore(frame, now: float) -> None:
    return None
