"""
How an introducer learns that a relay is alive and how loaded it is: a
status probe it sends to the relay, answered with the relay's count of
allocations, both authenticated with the relay's secret.

Both are relay frames (L{wire.encode_relayed}) whose allocation id is a
random nonce of the introducer's and whose side byte says what they are::

    introducer -> relay  0xD1 0x50  nonce (8)  0x20  zeros (4)        tag (8)
    relay -> introducer  0xD1 0x51  nonce (8)  0x21  allocations (4)  tag (8)

The tag is keyed by L{status_key} (the secret and the nonce, apart from
every allocation key).  The answer is exactly as large as the probe, goes
only to the probe's source, and the relay sends nothing for a probe
whose tag does not verify; a replayed probe gets one answer of the same
size at most (the introducer takes only the answer to its latest probe
of each relay).  The relay keeps nothing per probe.
"""

from __future__ import annotations

import hmac
import struct

from p2pnet import wire

#: The side byte of a status probe (to the relay).
STATUS_PROBE = 0x20

#: The side byte of its answer (to the introducer).
STATUS_ANSWER = 0x21

#: Bytes of a probe and of its answer.
PROBE_SIZE = wire.RELAY_HEADER_SIZE + 4 + wire.DATA_TAG_SIZE

_U32 = struct.Struct("!I")
_FORWARD = bytes((wire.MAGIC, wire.MessageType.RELAY_FORWARD))
_RELAYED = bytes((wire.MAGIC, wire.MessageType.RELAYED))


def status_key(secret: bytes, nonce: bytes) -> bytes:
    """
    The key of one probe and its answer.
    """
    return hmac.digest(secret, b"p2pnet relay status " + nonce, "sha256")[: wire.KEY_SIZE]


def is_probe(frame: bytes) -> bool:
    """
    Whether C{frame} (a C{RELAYED} frame) claims to be a status probe.
    """
    return len(frame) > wire.RELAY_HEADER_SIZE and frame[10] == STATUS_PROBE


def encode_probe(secret: bytes, nonce: bytes) -> bytes:
    """
    A status probe under C{nonce} (8 random bytes).
    """
    return wire.encode_relayed(nonce, STATUS_PROBE, bytes(4), status_key(secret, nonce))


def answer_probe(frame: bytes, secret: bytes, allocations: int) -> bytes | None:
    """
    The relay's answer to C{frame}, saying it holds C{allocations}; None
    unless C{frame} is a probe whose tag verifies.
    """
    if len(frame) != PROBE_SIZE or frame[:2] != _RELAYED or frame[10] != STATUS_PROBE:
        return None
    nonce = frame[2:10]
    key = status_key(secret, nonce)
    if wire.verify_relayed(frame, key) is None:
        return None
    return _FORWARD + wire.encode_relayed(nonce, STATUS_ANSWER, _U32.pack(min(allocations, 0xFFFFFFFF)), key)[2:]


def read_answer(frame: bytes, secret: bytes, nonce: bytes) -> int | None:
    """
    The allocation count in C{frame} if it is the answer to our probe
    under C{nonce}, else None.
    """
    if (
        len(frame) != PROBE_SIZE
        or frame[:2] != _FORWARD
        or frame[2:10] != nonce
        or frame[10] != STATUS_ANSWER
    ):
        return None
    inner = wire.verify_relayed(_RELAYED + frame[2:], status_key(secret, nonce))
    if inner is None:
        return None
    return _U32.unpack(inner)[0]
