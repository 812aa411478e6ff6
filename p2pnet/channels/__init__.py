"""
Channels: messages over a connection, reliable or not, ordered or not, of
any size up to a cap, congestion-controlled and paced.

  - L{p2pnet.channels._frames}: the frames' bytes (docs/channels.md);
  - L{p2pnet.channels._recovery}: acknowledgements, RTT and loss detection
    (RFC 9002);
  - L{p2pnet.channels._congestion}: a BBR-style congestion controller and
    the pacer;
  - L{p2pnet.channels._pmtu}: path MTU discovery (RFC 8899);
  - L{p2pnet.channels._send} and L{p2pnet.channels._receive}: each
    channel's queues, retransmission, ordering and reassembly;
  - L{p2pnet.channels._machine}: L{ChannelMachine}, the sans-IO machine a
    connection drives.
"""

from p2pnet.channels._channel import (
    MAX_CHANNELS,
    Channel,
    ChannelStats,
    ConnectionStats,
    Delivery,
    MessageReceived,
    PathMtuChanged,
    Writable,
)
from p2pnet.channels._machine import MAX_MESSAGE, OVERHEAD, ChannelMachine

__all__ = [
    "MAX_CHANNELS",
    "MAX_MESSAGE",
    "OVERHEAD",
    "Channel",
    "ChannelMachine",
    "ChannelStats",
    "ConnectionStats",
    "Delivery",
    "MessageReceived",
    "PathMtuChanged",
    "Writable",
]
