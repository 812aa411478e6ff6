"""
The relay's binding exchange, the part both ends share: a relay binds a
member's address only after that address has shown it receives what the
relay sends there (return routability), with a proof the relay can tell
apart from a replay.

When a member's authenticated frame comes from an address its side is
not bound to, the relay does not forward it; it sends that address a
I{challenge}, and binds the side there only when the answer comes back
from the same address::

    relay -> member  0xD1 0x51  allocation id  0x80|side  nonce (16)  tag (8)
    member -> relay  0xD1 0x50  allocation id  0xC0|side  nonce (16)  tag (8)

Both are ordinary relay frames (L{wire.encode_relayed}) whose inner
datagram is the 16-byte nonce; the side byte says which of the two it
is.  The tag is the allocation key's, so the member knows the challenge
is its relay's and the relay knows the answer comes from a member; as
the tag covers the side byte, whoever receives a challenge without the
key cannot turn it into an answer.  The
nonce is an 8-byte stamp (strictly increasing at the relay, in
milliseconds) and an 8-byte MAC under a key only the relay holds over
the allocation, the side, the stamp and the challenged address: the
relay keeps nothing per challenge, an answer from any other address
fails the MAC, and an answer whose stamp is not newer than the side's
last binding is a replay.  L{answer_challenge} is all a member does.
"""

from __future__ import annotations

from p2pnet import wire

#: The side byte of a challenge (from the relay): this OR the side.
CHALLENGE = 0x80

#: The side byte of an answer (to the relay): this OR the side.
ANSWER = 0xC0

#: Bytes of the nonce: an 8-byte stamp and an 8-byte MAC.
NONCE_SIZE = 16

#: Bytes of a challenge and of its answer.
BIND_FRAME_SIZE = wire.RELAY_HEADER_SIZE + NONCE_SIZE + wire.DATA_TAG_SIZE

_FORWARD = bytes((wire.MAGIC, wire.MessageType.RELAY_FORWARD))
_RELAYED = bytes((wire.MAGIC, wire.MessageType.RELAYED))


def is_challenge(frame: bytes) -> bool:
    """
    Whether C{frame}, a C{RELAY_FORWARD} from a relay, is a challenge
    (its side byte has the L{CHALLENGE} bit).
    """
    return len(frame) > wire.RELAY_HEADER_SIZE and frame[10] & CHALLENGE != 0


def encode_challenge(allocation: bytes, side: int, nonce: bytes, key: bytes | wire.DatagramMac) -> bytes:
    """
    The relay's challenge to C{side} of C{allocation}.
    """
    return _FORWARD + wire.encode_relayed(allocation, CHALLENGE | side, nonce, key)[2:]


def answer_challenge(frame: bytes, allocation: bytes, side: int, key: bytes | wire.DatagramMac) -> bytes | None:
    """
    The answer a member sends back to its relay for C{frame}, a challenge
    for C{side} of C{allocation} whose tag verifies under C{key}; None for
    anything else (a forged or foreign challenge is not answered).

    Send the answer to the relay's address from the route, never to the
    challenge's source: a forged challenge then cannot aim it elsewhere.
    """
    if len(frame) != BIND_FRAME_SIZE or frame[2:10] != allocation or frame[10] != CHALLENGE | side:
        return None
    nonce = wire.verify_relayed(_RELAYED + frame[2:], key)
    if nonce is None:
        return None
    return wire.encode_relayed(allocation, ANSWER | side, nonce, key)
