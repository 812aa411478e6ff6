"""
Noticing a router that rebooted: NAT-PMP and PCP answers carry the
server's epoch (seconds since its mapping table was last reset).  An
epoch that goes backwards, or advances much less than the time that
passed, means the router lost every mapping (RFC 6886 section 3.6, RFC
6887 section 8.5), and the client must ask for its mappings again at once
rather than at the next renewal.
"""

from __future__ import annotations


class EpochWatch:
    """
    Compares each answer's epoch with the previous one.

    @param rule: C{"nat-pmp"} (RFC 6886: the new epoch must be at least
        the previous one plus 7/8 of the client's elapsed time, less 2
        seconds, with 1 second of slack) or C{"pcp"} (RFC 6887: the
        epoch must not go back by more than a second, and the server's and
        the client's elapsed times must agree within 1/16 plus 2 seconds).
    """

    def __init__(self, rule: str) -> None:
        if rule not in ("nat-pmp", "pcp"):
            raise ValueError(f"unknown epoch rule {rule!r}")
        self.rule = rule
        self._last: tuple[float, int] | None = None

    def saw(self, epoch: int, now: float) -> bool:
        """
        Record an answer's C{epoch} received at C{now} (the client's
        clock); True if it shows the router lost its mappings since the
        previous answer.
        """
        last, self._last = self._last, (now, epoch)
        if last is None:
            return False
        then, previous = last
        client_delta = now - then
        if self.rule == "nat-pmp":
            return epoch < previous + client_delta * 7 / 8 - 2 - 1
        if epoch < previous - 1:
            return True
        server_delta = epoch - previous
        return (
            client_delta + 2 < server_delta - server_delta / 16
            or server_delta + 2 < client_delta - client_delta / 16
        )
