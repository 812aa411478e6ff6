"""
Deterministic simulated networks for testing Twisted UDP code through NATs
and firewalls.

Build a L{Network} on a L{twisted.internet.task.Clock}, add NAT boxes,
firewalls and hosts, and use each host as the C{reactor} of the code under
test.  See C{docs/testing.md}.
"""

from p2pnet.testing._heapclock import HeapClock
from p2pnet.testing._simnet import (
    DEFAULT_TTL,
    DROP_REASONS,
    Allocation,
    FirewallBox,
    Filtering,
    Mapping,
    NatBox,
    NatMapping,
    Network,
    NetworkStats,
    SimHost,
    TraceEvent,
)

__all__ = [
    "DEFAULT_TTL",
    "DROP_REASONS",
    "Allocation",
    "FirewallBox",
    "Filtering",
    "HeapClock",
    "Mapping",
    "NatBox",
    "NatMapping",
    "Network",
    "NetworkStats",
    "SimHost",
    "TraceEvent",
]
