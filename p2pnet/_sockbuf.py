"""
The endpoint's socket receive buffer.

Channels send in bursts (a reactor's timer wakes a millisecond or more
late, and the pacer sends what it was owed), and a Python receiver can be
descheduled for a few milliseconds: with Linux's default 208 kB buffer a
bulk transfer in the kernel lab lost 20-30% of its datagrams at the
receiver's socket (0% link loss), against none with 4 MiB
(docs/performance.md, section 13).  The kernel caps the size at
C{net.core.rmem_max} (and doubles it for its bookkeeping); a refusal is
ignored.
"""

from __future__ import annotations

import socket

#: Bytes asked for the receive buffer.
RECEIVE_BUFFER = 4 * 1024 * 1024


def grow_receive_buffer(port, size: int = RECEIVE_BUFFER) -> None:
    """
    Ask for a C{size}-byte receive buffer on a listening UDP C{port}'s
    socket, if it is smaller; never raises.
    """
    try:
        handle = port.getHandle()
        if handle.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < size:
            handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    except (OSError, AttributeError, TypeError):
        pass
