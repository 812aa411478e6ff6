"""
p2pnet: peer-to-peer game networking through NATs and firewalls, on Twisted.
"""

from p2pnet.address import Address
from p2pnet.errors import (
    AuthenticationFailed,
    CloseCode,
    ConnectionClosed,
    ConnectionRefused,
    ConnectTimeout,
    HandshakeFailed,
    HandshakeTimeout,
    IntroducerError,
    HostGone,
    IntroducerUnreachable,
    KeyFileError,
    MalformedMessage,
    MessageTooLarge,
    NotAuthorised,
    P2PError,
    PayloadTooLarge,
    PeerKeyMismatch,
    PeerLost,
    RateLimited,
    SendBufferFull,
    SessionFull,
    SessionNotFound,
    UnknownPeer,
)

from p2pnet.endpoint import (
    HostedSession,
    Path,
    PeerConfig,
    PeerConnection,
    PeerEndpoint,
    PeerFactory,
    PeerProtocol,
    Registration,
    StatusEvent,
    TurnSettings,
)
from p2pnet._handshake import HandshakeConfig
from p2pnet.channels import Channel, ConnectionStats, Delivery
from p2pnet.secure.identity import Identity
from p2pnet.secure.trust import TrustStore
from p2pnet.introducer import IntroducerProtocol, IntroducerService
from p2pnet.service import LobbyWatch, PeerService, SessionSpec
from p2pnet._registry import Registry
from p2pnet.wire import SessionInfo

__version__ = "0.1.0"

__all__ = [
    "Address",
    "Channel",
    "ConnectionStats",
    "Delivery",
    "HandshakeConfig",
    "HostedSession",
    "Identity",
    "TrustStore",
    "IntroducerProtocol",
    "IntroducerService",
    "LobbyWatch",
    "PeerService",
    "SessionSpec",
    "Path",
    "PeerConfig",
    "PeerConnection",
    "PeerEndpoint",
    "PeerFactory",
    "PeerProtocol",
    "Registration",
    "Registry",
    "SessionInfo",
    "StatusEvent",
    "TurnSettings",
    "AuthenticationFailed",
    "CloseCode",
    "ConnectionClosed",
    "ConnectionRefused",
    "ConnectTimeout",
    "PayloadTooLarge",
    "SessionNotFound",
    "HandshakeFailed",
    "KeyFileError",
    "MessageTooLarge",
    "SendBufferFull",
    "PeerKeyMismatch",
    "HandshakeTimeout",
    "HostGone",
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
