"""
Path validation: a connection moves its sending address only after the new
address echoed a fresh challenge (the return-routability check of RFC 9000
section 8.2).

When an authenticated packet arrives from an address other than the
connection's current one, the owner asks L{PathValidator.challenge} for 8
unpredictable bytes and sends them in a PATH_CHALLENGE frame to that
address.  The peer echoes them in a PATH_RESPONSE; the owner passes what
arrives to L{PathValidator.response}, which says whether the address is now
validated.  Only then may the connection send there.

Rules, all enforced here:

  - the response must come from the address the challenge was sent to
    (stricter than QUIC, which accepts it on any path: our peers have one
    socket, so a genuine answer always comes back from the address
    challenged, and an attacker who sees the challenge on another path
    cannot use it to move the connection);
  - a challenge is answered at most once: the entry is gone after it
    validated, so a replayed response validates nothing;
  - every retransmission carries new data (RFC 9000 section 13.3), and any
    of the values sent to that address is a valid answer until the entry
    expires;
  - at most C{max_pending} addresses are being challenged at once and each
    gets at most C{attempts} challenges, so a flood of packets from new
    addresses costs at most C{max_pending * attempts} challenges in flight;
  - an entry lives C{attempts * timeout} seconds from its first challenge
    (challenges at 0, C{timeout}, C{2 * timeout}... then C{timeout} more
    for the last answer), whatever the owner's timer does.

The validator is clock-free: every call takes C{now}; the owner arms one
timer for L{PathValidator.next_deadline} and calls
L{PathValidator.retransmit_due} when it fires.
"""

from __future__ import annotations

import hmac
from typing import Callable, Hashable

#: Bytes in a PATH_CHALLENGE / PATH_RESPONSE.
CHALLENGE_LENGTH = 8


class _Pending:
    """
    The challenges sent to one address.

    @ivar sent: every value sent so far, oldest first.
    @ivar next_send: when to send the next challenge, or None when all
        attempts are used.
    @ivar expires: when the entry lapses.
    """

    __slots__ = ("sent", "next_send", "expires")

    def __init__(self, sent: list[bytes], next_send: float | None, expires: float) -> None:
        self.sent = sent
        self.next_send = next_send
        self.expires = expires


class PathValidator:
    """
    The pending path challenges of one connection.

    @ivar expired: how many addresses stopped being challenged without an
        answer.
    """

    def __init__(
        self,
        random_bytes: Callable[[int], bytes],
        *,
        attempts: int = 3,
        timeout: float = 1.0,
        max_pending: int = 4,
    ) -> None:
        """
        @param random_bytes: C{os.urandom} or a seeded stand-in for tests.
        @param attempts: challenges sent to one address before giving up.
        @param timeout: seconds between challenges to one address, and
            from the last one to giving up.
        @param max_pending: addresses challenged at once.
        """
        if attempts < 1 or max_pending < 1 or not timeout > 0:
            raise ValueError("attempts, max_pending and timeout must be positive")
        self._random_bytes = random_bytes
        self._attempts = attempts
        self._timeout = timeout
        self._max_pending = max_pending
        self._pending: dict[Hashable, _Pending] = {}
        self.expired = 0

    def _new_data(self) -> bytes:
        data = self._random_bytes(CHALLENGE_LENGTH)
        if not isinstance(data, bytes) or len(data) != CHALLENGE_LENGTH:
            raise ValueError("random_bytes(8) must return 8 bytes")
        return data

    def _expire(self, now: float) -> None:
        for address in [a for a, p in self._pending.items() if now >= p.expires]:
            del self._pending[address]
            self.expired += 1

    def is_pending(self, address: Hashable, now: float) -> bool:
        """
        Is a challenge to C{address} awaiting its answer?
        """
        self._expire(now)
        return address in self._pending

    def challenge(self, address: Hashable, now: float) -> bytes | None:
        """
        Start validating C{address}: the data to send it in a
        PATH_CHALLENGE now, or None when it is already being challenged
        (its retransmissions come from L{retransmit_due}) or the table of
        pending challenges is full.
        """
        self._expire(now)
        if address in self._pending or len(self._pending) >= self._max_pending:
            return None
        data = self._new_data()
        next_send = now + self._timeout if self._attempts > 1 else None
        self._pending[address] = _Pending([data], next_send, now + self._attempts * self._timeout)
        return data

    def retransmit_due(self, now: float) -> list[tuple[Hashable, bytes]]:
        """
        The challenges to send now, as (address, data) pairs, each with new
        data; entries past their lifetime are dropped.
        """
        self._expire(now)
        due = []
        for address, entry in self._pending.items():
            if entry.next_send is not None and now >= entry.next_send:
                data = self._new_data()
                entry.sent.append(data)
                if len(entry.sent) < self._attempts:
                    entry.next_send += self._timeout
                else:
                    entry.next_send = None
                due.append((address, data))
        return due

    def next_deadline(self) -> float | None:
        """
        When L{retransmit_due} next has something to do (a challenge to
        send or an entry to drop), or None when nothing is pending.
        """
        times = [p.expires if p.next_send is None else p.next_send for p in self._pending.values()]
        return min(times) if times else None

    def response(self, address: Hashable, data: bytes, now: float) -> bool:
        """
        A PATH_RESPONSE with C{data} arrived (authenticated) from
        C{address}.  True when it answers a pending challenge sent to that
        same address: the address is validated, and the entry is gone so
        the same answer never validates again.  False for anything else,
        which changes nothing.
        """
        self._expire(now)
        entry = self._pending.get(address)
        if entry is None:
            return False
        matched = False
        for sent in entry.sent:
            # Compare against every value, without stopping early.
            matched |= hmac.compare_digest(sent, data)
        if matched:
            del self._pending[address]
        return matched

    def cancel(self, address: Hashable) -> None:
        """
        Stop challenging C{address} (for example, the connection closed or
        moved there by other means).
        """
        self._pending.pop(address, None)
