"""
p2pnet: peer-to-peer game networking through NATs and firewalls, on Twisted.
"""

from p2pnet.address import Address
from p2pnet.errors import (
    AuthenticationFailed,
    ConnectionClosed,
    HandshakeTimeout,
    IntroducerError,
    IntroducerUnreachable,
    MalformedMessage,
    NotAuthorised,
    P2PError,
    PeerLost,
    RateLimited,
    SessionFull,
    UnknownPeer,
)

__version__ = "0.1.0"

__all__ = [
    "Address",
    "AuthenticationFailed",
    "ConnectionClosed",
    "HandshakeTimeout",
    "IntroducerError",
    "IntroducerUnreachable",
    "MalformedMessage",
    "NotAuthorised",
    "P2PError",
    "PeerLost",
    "RateLimited",
    "SessionFull",
    "UnknownPeer",
]
