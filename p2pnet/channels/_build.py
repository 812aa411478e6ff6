"""
Building packets: which frames of which channels go into the next
datagram (L{build}), and how one channel's retransmissions and queued
messages are cut to fit (L{fill}).
"""

from __future__ import annotations

import struct
from typing import Optional

from p2pnet.channels import _frames as F
from p2pnet.channels._recovery import SentPacket
from p2pnet.channels._send import ChannelSender, Chunk

#: Do not start a fragment smaller than this to fill the end of a packet.
MIN_FRAGMENT = 64

_message = struct.Struct(">BBHH")
_unreliable = struct.Struct(">BBH")
_fragment = struct.Struct(">BBHIIH")
_packet_number = struct.Struct(">BI")
_PROBE = bytes([F.PROBE])
_ACK_NOW = bytes([F.ACK_NOW])


def build(machine, now: float, probe: bool = False, ack_only: bool = False) -> Optional[bytes]:
    """
    The next packet of C{machine}: its ACK if one is owed, then as much
    channel data as fits (none if C{ack_only}); a PROBE if C{probe} and
    there is no data.  C{None} if there was nothing to put in it.
    """
    number = machine._next_pn
    max_payload = machine.pmtu.size - machine.overhead
    if probe and machine.sent.pto_count >= 2:
        max_payload = min(max_payload, machine.pmtu.base - machine.overhead)
    parts = [_packet_number.pack(F.PACKET_NUMBER, number & 0xFFFFFFFF)]
    size = F.PACKET_NUMBER_SIZE
    ack_largest = -1
    received = machine.received
    if received.unacked_eliciting and received.ranges:
        ranges = received.ack_ranges()
        delay = int((now - received.largest_time) / F.ACK_DELAY_UNIT)
        ack = F.encode_ack(ranges[0][1], delay, ranges)
        parts.append(ack)
        size += len(ack)
        ack_largest = ranges[0][1]
    chunks: list[Chunk] = []
    wrote = False
    if not ack_only:
        # One byte kept for ACK_NOW.
        space = max_payload - size - 1
        empty = space
        vclock = machine._vclock
        for sender in machine._schedule():
            before = space
            space = fill(sender, space, empty, parts, chunks)
            if space != before:
                wrote = True
                vclock[sender.channel.priority] = sender.vtime
                sender.vtime += (before - space) / sender.channel.weight
            if not sender.has_data():
                del machine._active[sender]
            if space < MIN_FRAGMENT:
                break
        if not wrote:
            if not probe:
                return None
            parts.append(_PROBE)
            wrote = True
        if probe or (
            machine.sent.bytes_in_flight + 2 * (max_payload + machine.overhead)
            > machine.congestion.window
        ):
            # This packet (nearly) fills the window: waiting for the
            # peer's usual ack count or delay would stall us.
            parts.append(_ACK_NOW)
    payload = b"".join(parts)
    machine._next_pn = number + 1
    if ack_largest >= 0:
        received.on_ack_sent()
    wire_size = len(payload) + machine.overhead
    machine.packets_sent += 1
    machine.bytes_sent += wire_size
    machine._rate_bytes += wire_size
    if now - machine._rate_start >= 0.25:
        machine._count_rate(now)
    if wrote:
        sent = machine.sent
        congestion = machine.congestion
        packet = SentPacket(number, now, wire_size, True, True, chunks, ack_largest)
        congestion.on_sent(packet, sent.bytes_in_flight, now)
        sent.on_sent(packet)
        machine.pacer.on_sent(now, wire_size, congestion.pacing_rate)
    return payload


def build_mtu_probe(machine, size: int, now: float) -> bytes:
    """
    A path MTU probe of C{size} bytes on the wire: packet number, PROBE,
    padding.
    """
    number = machine._next_pn
    machine._next_pn += 1
    head = _packet_number.pack(F.PACKET_NUMBER, number & 0xFFFFFFFF) + _PROBE
    payload = head + bytes(size - machine.overhead - len(head))
    packet = SentPacket(number, now, size, True, False, [], -1, mtu_probe=True)
    machine.sent.on_sent(packet)
    machine.pmtu.on_probe_sent(size)
    machine.packets_sent += 1
    machine.bytes_sent += size
    return payload


def fill(sender: ChannelSender, space: int, empty: int, parts: list, chunks: list) -> int:
    """
    Put as much of C{sender}'s data as fits in C{space} bytes.

    @return: the space left.
    """
    retransmit = sender.retransmit
    while retransmit:
        chunk = retransmit[0]
        message = chunk.message
        if chunk.acked or message.done or message.abandoned:
            retransmit.popleft()
            chunk.queued = False
            continue
        whole = chunk.offset == 0 and chunk.length == message.size
        need = chunk.length + (F.MESSAGE_HEADER if whole else F.FRAGMENT_HEADER)
        if need > space:
            if space < empty:
                return space
            # The path MTU shrank below this chunk: send it in pieces.
            _split(chunk, empty - F.FRAGMENT_HEADER)
            continue
        retransmit.popleft()
        chunk.queued = False
        if whole:
            parts.append(_message.pack(F.MESSAGE, sender.channel.id, message.seq & 0xFFFF, chunk.length))
            parts.append(message.data)
        else:
            _put_fragment(parts, sender, message, chunk.offset, chunk.length)
        chunks.append(chunk)
        space -= need
    queue = sender.queue
    reliable = sender.reliable
    unreliable = sender.unreliable
    while queue:
        message = queue[0]
        if message.abandoned:
            queue.popleft()
            continue
        offset = message.sent
        if offset == 0:
            whole_need = message.size + (F.UNRELIABLE_HEADER if unreliable else F.MESSAGE_HEADER)
            if whole_need > space and whole_need <= empty:
                return space
            if whole_need > space and space - F.FRAGMENT_HEADER < MIN_FRAGMENT:
                return space
            if not sender.may_start(message):
                return space
            sender.start(message)
            if whole_need <= space:
                if unreliable:
                    parts.append(_unreliable.pack(F.UNRELIABLE, sender.channel.id, message.size))
                else:
                    parts.append(_message.pack(F.MESSAGE, sender.channel.id, message.seq & 0xFFFF, message.size))
                parts.append(message.data)
                space -= whole_need
                message.sent = message.size
                queue.popleft()
                if reliable:
                    message.pending += 1
                    chunks.append(Chunk(message, 0, message.size))
                else:
                    sender.unhold(message)
                continue
        length = min(message.size - offset, space - F.FRAGMENT_HEADER)
        if length < MIN_FRAGMENT and length < message.size - offset:
            return space
        _put_fragment(parts, sender, message, offset, length)
        space -= F.FRAGMENT_HEADER + length
        message.sent = offset + length
        if reliable:
            message.pending += 1
            chunks.append(Chunk(message, offset, length))
        if message.sent == message.size:
            queue.popleft()
            if not reliable:
                sender.unhold(message)
        else:
            return space
    return space

def _put_fragment(parts, sender, message, offset, length) -> None:
    parts.append(
        _fragment.pack(
            F.FRAGMENT, sender.channel.id, message.seq & 0xFFFF, message.size, offset, length
        )
    )
    parts.append(message.data[offset : offset + length])

def _split(chunk: Chunk, piece: int) -> None:
    message = chunk.message
    retransmit = message.sender.retransmit
    retransmit.popleft()
    chunk.queued = False
    pieces = []
    offset, end = chunk.offset, chunk.offset + chunk.length
    while offset < end:
        length = min(piece, end - offset)
        part = Chunk(message, offset, length)
        part.queued = True
        pieces.append(part)
        offset += length
    chunk.parts = pieces
    message.pending += len(pieces) - 1
    retransmit.extendleft(reversed(pieces))
