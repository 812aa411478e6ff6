"""
NAT check results kept for a while, and what a peer tells its introducer
about its NAT.

A peer runs the NAT check (L{p2pnet.natcheck}) at every start unless a
result for the same local address and STUN servers is younger than its
lifetime in the endpoint's L{NatCache}.  Several endpoints of one program
may share one cache.
"""

from __future__ import annotations

from collections import OrderedDict

from p2pnet.natcheck import Behaviour, NatReport

__all__ = ["NatCache", "nat_facts"]


def nat_facts(
    mapping: Behaviour, filtering: Behaviour = Behaviour.UNKNOWN, port_dependent: bool | None = None
) -> tuple[str, str]:
    """
    The C{(mapping, filtering)} names a peer registers with.

    A server with one IP address cannot tell endpoint-independent from
    address-dependent mapping, only whether the mapping changes with the
    server's port (C{port_dependent}).  A mapping that does not is
    registered as endpoint-independent: for the hard-NAT strategies both
    behave alike (the easy side's probes all go to one IP address, where
    an address-dependent NAT keeps one mapping too).
    """
    if mapping is Behaviour.UNKNOWN and port_dependent is False:
        mapping = Behaviour.ENDPOINT_INDEPENDENT
    return (mapping.value, filtering.value)


class NatCache:
    """
    NAT reports by C{(local IP address, STUN servers)}, each kept for the
    lifetime given when it was stored; at most C{size} of them (the oldest
    go first).
    """

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._entries: OrderedDict[tuple, tuple[NatReport, float]] = OrderedDict()

    def get(self, key: tuple, now: float) -> NatReport | None:
        """
        The report stored under C{key}, if it has not expired by C{now}.
        """
        entry = self._entries.get(key)
        if entry is None:
            return None
        report, expires = entry
        if now >= expires:
            del self._entries[key]
            return None
        return report

    def put(self, key: tuple, report: NatReport, now: float, lifetime: float) -> None:
        """
        Keep C{report} under C{key} until C{now + lifetime}.
        """
        self._entries.pop(key, None)
        self._entries[key] = (report, now + lifetime)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """
        Forget every report (the next start checks again).
        """
        self._entries.clear()
