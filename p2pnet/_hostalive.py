"""
Whether a registered peer is still there: the introducer refuses to
introduce anyone to a peer that stopped heartbeating, so a joiner learns at
once that the host is gone (L{p2pnet.errors.HostGone}) instead of punching
towards it until its handshake times out.

A registration lives for the registration lifetime (60 s by default, four
heartbeats) so that a few lost heartbeats do not drop it; a peer silent
for one and a half heartbeat intervals has missed a heartbeat and its
retransmissions, which a live peer on a working network does not.
"""

from __future__ import annotations

from p2pnet._registry import Registration, RegistryError
from p2pnet.wire import ErrorCode


def check_alive(registration: Registration, now: float, silent_after: float) -> None:
    """
    @raise RegistryError: C{HOST_GONE} if C{registration} sent nothing for
        longer than C{silent_after} seconds.
    """
    silence = now - registration.refreshed
    if silence > silent_after:
        raise RegistryError(
            ErrorCode.HOST_GONE,
            f"{registration.peer_id!r} is gone: no heartbeat for {silence:.0f}s",
        )
