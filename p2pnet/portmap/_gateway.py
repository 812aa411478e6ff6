"""
Where to send NAT-PMP and PCP requests: the default gateway, read from
the kernel's routing table (Linux C{/proc/net/route}), and which of our
addresses faces it.
"""

from __future__ import annotations

import socket
import struct

#: RTF_UP | RTF_GATEWAY
_UP_GATEWAY = 0x0001 | 0x0002


def parse_route_table(text: str) -> str | None:
    """
    The IPv4 default gateway in the text of C{/proc/net/route}, or None.

    Addresses there are hexadecimal in host (little-endian) byte order.
    """
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        try:
            destination, gateway, flags = int(fields[1], 16), int(fields[2], 16), int(fields[3], 16)
        except ValueError:
            continue
        if destination == 0 and flags & _UP_GATEWAY == _UP_GATEWAY and gateway:
            return socket.inet_ntoa(struct.pack("<I", gateway))
    return None


def default_gateway(path: str = "/proc/net/route") -> str | None:
    """
    The IPv4 default gateway, or None (no default route, or not Linux).
    """
    try:
        with open(path) as table:
            return parse_route_table(table.read())
    except OSError:
        return None


def local_address_towards(host: str) -> str | None:
    """
    The local address the kernel would send from towards C{host}
    (connecting a UDP socket sends nothing), or None.
    """
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((host, 9))
        return probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
