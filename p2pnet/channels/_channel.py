"""
What the game declares once per connection: its channels, each with a
delivery mode, and the events and statistics the machine reports.
"""

from __future__ import annotations

import enum

from attrs import field, frozen

#: How many channels a connection may declare (ids 0-255).
MAX_CHANNELS = 256


class Delivery(enum.Enum):
    """
    How a channel delivers its messages.

      - C{UNRELIABLE}: at most once, in any order, maybe not at all;
      - C{UNRELIABLE_SEQUENCED}: at most once, never an older message after
        a newer one (late ones are dropped);
      - C{RELIABLE_UNORDERED}: exactly once, in the order they complete;
      - C{RELIABLE_ORDERED}: exactly once, in the order they were sent;
      - C{RELIABLE_SEQUENCED}: the newest message is delivered reliably;
        an older one may be skipped, never delivered after a newer one.
    """

    UNRELIABLE = 0
    UNRELIABLE_SEQUENCED = 1
    RELIABLE_UNORDERED = 2
    RELIABLE_ORDERED = 3
    RELIABLE_SEQUENCED = 4

    @property
    def reliable(self) -> bool:
        return self.value >= 2

    @property
    def sequenced(self) -> bool:
        return self in (Delivery.UNRELIABLE_SEQUENCED, Delivery.RELIABLE_SEQUENCED)


def _check_id(instance, attribute, value):
    if not 0 <= value < MAX_CHANNELS:
        raise ValueError(f"channel ids are 0 to {MAX_CHANNELS - 1}, not {value}")


def _check_weight(instance, attribute, value):
    if not value > 0:
        raise ValueError("a channel's weight must be positive")


@frozen
class Channel:
    """
    One channel of a connection.  Both sides must declare the same
    channels.

    @ivar id: 0 to 255.
    @ivar delivery: the L{Delivery} mode.
    @ivar priority: channels with a smaller number are served first; a
        channel is only served when every channel with a smaller number has
        nothing it may send.
    @ivar weight: channels of the same priority share the link in
        proportion to their weights.
    """

    id: int = field(validator=_check_id)
    delivery: Delivery = field(default=Delivery.RELIABLE_ORDERED)
    priority: int = 0
    weight: float = field(default=1.0, validator=_check_weight)


@frozen
class MessageReceived:
    """
    A whole message arrived on C{channel}.
    """

    channel: int
    data: bytes


@frozen
class Writable:
    """
    The send buffer fell below its low-water mark after L{writable} was
    false: the game may send again.
    """


@frozen
class PathMtuChanged:
    """
    The largest datagram known to cross the path changed.

    @ivar size: the UDP payload size now used, in bytes.
    """

    size: int


@frozen
class ChannelStats:
    """
    One channel's counters.

    @ivar queued_messages: messages waiting to be sent or acknowledged.
    @ivar queued_bytes: their bytes.
    @ivar oldest_age: seconds since the oldest of them was given to
        C{send}, or 0.
    """

    id: int
    messages_sent: int
    messages_received: int
    queued_messages: int
    queued_bytes: int
    oldest_age: float


@frozen
class ConnectionStats:
    """
    A snapshot of one connection's channel machine.

    @ivar srtt: smoothed round-trip time, seconds (RFC 9002's initial
        333 ms before the first sample).
    @ivar rttvar: the RTT variation (jitter), seconds.
    @ivar min_rtt: the smallest RTT seen, seconds (0 before any sample).
    @ivar loss: packets declared lost / packets sent (ack-eliciting ones).
    @ivar send_rate: bytes sent per second, smoothed over about a second.
    @ivar bandwidth: the congestion controller's bottleneck bandwidth
        estimate, bytes per second (0 before the first sample).
    @ivar path_mtu: the UDP payload size in use.
    """

    srtt: float
    rttvar: float
    min_rtt: float
    latest_rtt: float
    loss: float
    packets_sent: int
    packets_received: int
    packets_lost: int
    bytes_sent: int
    bytes_received: int
    send_rate: float
    bandwidth: float
    pacing_rate: float
    congestion_window: int
    bytes_in_flight: int
    path_mtu: int
    queued_messages: int
    queued_bytes: int
    oldest_age: float
    dropped_frames: int
    channels: tuple = ()
