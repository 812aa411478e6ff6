"""
The statistics snapshot of a channel machine.
"""

from __future__ import annotations

from p2pnet.channels._channel import ChannelStats, ConnectionStats


def snapshot(machine, now: float) -> ConnectionStats:
    """
    C{machine}'s counters as a L{ConnectionStats}.
    """
    rtt = machine.sent.rtt
    channels = []
    queued_messages = queued_bytes = 0
    oldest = 0.0
    for channel in machine._channels:
        sender = machine._senders[channel.id]
        age = sender.oldest_age(now)
        oldest = max(oldest, age)
        queued_messages += sender.held_messages
        queued_bytes += sender.held_bytes
        channels.append(
            ChannelStats(
                channel.id,
                sender.sent_count,
                machine._receivers[channel.id].received_count,
                sender.held_messages,
                sender.held_bytes,
                age,
            )
        )
    eliciting_sent = machine.sent.acked_count + machine.sent.lost_count
    return ConnectionStats(
        srtt=rtt.smoothed,
        rttvar=rtt.variation,
        min_rtt=rtt.minimum if rtt.has_sample else 0.0,
        latest_rtt=rtt.latest,
        loss=machine.sent.lost_count / eliciting_sent if eliciting_sent else 0.0,
        packets_sent=machine.packets_sent,
        packets_received=machine.packets_received,
        packets_lost=machine.sent.lost_count,
        bytes_sent=machine.bytes_sent,
        bytes_received=machine.bytes_received,
        send_rate=machine.send_rate,
        bandwidth=machine.congestion.bandwidth,
        pacing_rate=machine.congestion.pacing_rate,
        congestion_window=machine.congestion.window,
        bytes_in_flight=machine.sent.bytes_in_flight,
        path_mtu=machine.pmtu.size,
        queued_messages=queued_messages,
        queued_bytes=queued_bytes,
        oldest_age=oldest,
        dropped_frames=machine.dropped_frames,
        channels=tuple(channels),
    )
