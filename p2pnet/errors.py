"""
Errors raised (or delivered through Deferreds) by p2pnet.

Every error is a L{P2PError}; catch that to handle them all.  The docstrings
are written for the game developer who sees one in a traceback.
"""

from __future__ import annotations

import enum


class P2PError(Exception):
    """
    Base class of every error p2pnet raises.
    """


class MalformedMessage(P2PError):
    """
    A datagram could not be decoded.  The message says what was wrong.

    Raised only by the codecs; the protocols count and drop such datagrams.
    """


class AuthenticationFailed(P2PError):
    """
    A message's authentication tag did not verify, or the introducer refused
    our credentials.  Check that both sides use the same secret.
    """


class IntroducerUnreachable(P2PError):
    """
    The introducer did not answer our registration in time, or its port is
    closed.  Check its address, that it is running, and that UDP to its
    port is allowed.

    @ivar port_closed: True when the introducer's host answered that
        nothing listens on the port (ICMP port unreachable).
    """

    def __init__(self, *args: object, port_closed: bool = False) -> None:
        super().__init__(*args)
        self.port_closed = port_closed


class IntroducerError(P2PError):
    """
    The introducer refused a request.

    @ivar code: the numeric error code from the wire (see L{p2pnet.wire.ErrorCode}).
    @ivar reason: the introducer's short explanation.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"introducer refused the request ({code}): {reason}")
        self.code = code
        self.reason = reason


class UnknownPeer(IntroducerError):
    """
    The introducer does not know the peer or session we asked for: it never
    registered, or its registration expired.
    """


class SessionNotFound(P2PError):
    """
    No session in the lobby has the title we looked for (the introducer
    refused nothing: the list it sent has no such session).

    @ivar title: the title looked for.
    @ivar listed: how many sessions the list had.
    """

    def __init__(self, title: str, listed: int) -> None:
        super().__init__(f"no session titled {title!r} is listed ({listed} sessions listed)")
        self.title = title
        self.listed = listed

class HostGone(UnknownPeer):
    """
    The peer (or the session's host) is still registered but has stopped
    heartbeating to the introducer: it crashed or lost its network, and
    would not answer our hellos.
    """


class SessionFull(IntroducerError):
    """
    The session already has its maximum number of players.
    """


class NotAuthorised(IntroducerError, AuthenticationFailed):
    """
    The introducer refused the request because our credentials are missing
    or wrong.
    """


class RateLimited(IntroducerError):
    """
    The introducer is refusing requests from our address for a while because
    we sent too many.
    """


class HandshakeTimeout(P2PError):
    """
    No direct path to the peer could be validated in time.

    @ivar peer_id: the peer we tried to reach.
    @ivar tried: the candidate addresses hellos were sent to.
    @ivar heard: the addresses we heard anything authenticated from.
    """

    def __init__(self, peer_id: str, tried, heard, elapsed: float) -> None:
        tried_text = ", ".join(str(a) for a in tried) or "none"
        heard_text = ", ".join(str(a) for a in heard) or "nothing"
        super().__init__(
            f"no direct path to peer {peer_id!r} after {elapsed:.1f}s: "
            f"sent hellos to {tried_text}; heard from {heard_text}"
        )
        self.peer_id = peer_id
        self.tried = tuple(tried)
        self.heard = tuple(heard)
        self.elapsed = elapsed


class CloseCode(enum.IntEnum):
    """
    Why a connection was closed: the code a close carries to the peer (a
    sealed C{CLOSE} frame, or an insecure C{Close} message), and the
    C{code} of the L{PeerLost} or L{ConnectionClosed} it ends with.  Codes
    from L{APPLICATION} (128) to 255 are the game's own.
    """

    #: Closed, nothing more to say (C{close()} without a code).
    NORMAL = 0
    #: The host refused the connect request (the reason is its text).
    REFUSED = 1
    #: The connect request got no answer in time (or never came), or the
    #: peer answered nothing while we sent (the answer timeout, 5 s).
    TIMED_OUT = 2
    #: The endpoint was stopped.
    STOPPED = 3
    #: The first code free for the application.
    APPLICATION = 128


def describe_close(code: int | None, reason: str) -> str:
    """
    A close code and its text for people: C{"refused (1): full"}.
    """
    if code is None:
        return reason
    try:
        name = CloseCode(code).name.lower().replace("_", " ")
    except ValueError:
        name = "application code"
    text = f"{name} ({code})"
    return f"{text}: {reason}" if reason else text


class _Closing(P2PError):
    """
    An end that may carry a close code and text (see L{CloseCode}).

    @ivar code: the close code, or None (no close was sent: silence).
    @ivar reason: the close's text, or "".
    """

    def __init__(self, *args: object, code: int | None = None, reason: str = "") -> None:
        super().__init__(*args)
        self.code = code
        self.reason = reason


class PeerLost(_Closing):
    """
    An established connection stopped receiving anything from the peer for
    longer than the heartbeat allows (C{code} None), or the peer closed it
    (C{code} and C{reason}: what it gave to C{close()}).
    """


class ConnectionClosed(_Closing):
    """
    The connection (or the endpoint that owned it) was closed locally
    (C{code}: what we gave to C{close()}), or used when it was not open
    (the message says whether it never opened, and why).
    """


class ConnectionRefused(P2PError):
    """
    The host refused our connect request (its
    C{PeerFactory.accept_connection} gave a reason).

    @ivar peer_id: the host.
    @ivar code: the close code (L{CloseCode.REFUSED}, or the host's own).
    @ivar reason: the host's reason, as it gave it.
    """

    def __init__(self, peer_id: str, code: int, reason: str) -> None:
        super().__init__(f"{peer_id!r} refused the connection: {reason or describe_close(code, '')}")
        self.peer_id = peer_id
        self.code = code
        self.reason = reason


class ConnectTimeout(HandshakeTimeout):
    """
    A path to the host was validated, but the host did not answer our
    connect request in time (an older p2pnet, or a host whose
    C{accept_connection} never decided).
    """

    def __init__(self, peer_id: str, elapsed: float) -> None:
        P2PError.__init__(self, f"{peer_id!r} did not answer the connect request within {elapsed:.1f}s")
        self.peer_id = peer_id
        self.tried = ()
        self.heard = ()
        self.elapsed = elapsed


class HandshakeFailed(P2PError):
    """
    A secure-session (Noise) handshake message was refused: it was cut
    short, too long, did not authenticate (a forged or corrupted packet,
    or the two sides do not share the introduction's key), carried an
    invalid public key, or differed from the one already accepted for
    this introduction.  Connections drop such packets; the handshake
    goes on with the next genuine one.
    """


class PeerKeyMismatch(P2PError):
    """
    A peer presented a different identity key from the one pinned for it
    (in the known-peers file, or passed as C{expect_key}).  Either the peer
    really changed its key (it lost its identity file, or runs on a new
    machine), or someone (possibly the introducer or a relay) is
    impersonating it.  The message names the peer, the expected and the
    presented fingerprints, and how to forget the old key once you have
    checked with the peer's owner.

    @ivar peer_id: the peer whose key differs.
    @ivar expected: the pinned public key.
    @ivar got: the public key the peer presented.
    """

    def __init__(
        self,
        peer_id: str,
        expected: bytes,
        got: bytes,
        forget_hint: str = "update the key you pinned for it (expect_key).",
    ) -> None:
        from p2pnet.secure.identity import fingerprint

        super().__init__(
            f"peer {peer_id!r} presented key {fingerprint(got)} but "
            f"{fingerprint(expected)} is pinned for it; refusing to connect. "
            f"If the peer really changed its key, {forget_hint}"
        )
        self.peer_id = peer_id
        self.expected = expected
        self.got = got


class KeyFileError(P2PError):
    """
    An identity file (C{--identity}) or a known-peers file
    (C{--trust-file}) cannot be used: it is readable by other users, is
    not in the expected format, or is too large.  The message names the
    file and what to do about it.
    """


class MessageTooLarge(P2PError, ValueError):
    """
    A message given to C{send} is bigger than the connection's message cap
    (16 MiB unless configured otherwise).  Split it, or raise the cap on
    both sides.

    @ivar size: the message's size in bytes.
    @ivar cap: the largest message allowed.
    """

    def __init__(self, size: int, cap: int) -> None:
        super().__init__(f"a {size}-byte message is over the {cap}-byte message cap")
        self.size = size
        self.cap = cap


class PayloadTooLarge(P2PError, ValueError):
    """
    A connect payload (C{connect(..., payload=)}, C{join(..., payload=)})
    is over the cap: a join token or a player name fits, a save file does
    not (send that on a channel once connected).

    @ivar size: the payload's size in bytes.
    @ivar cap: the largest payload allowed.
    """

    def __init__(self, size: int, cap: int) -> None:
        super().__init__(f"a {size}-byte connect payload is over the {cap}-byte cap")
        self.size = size
        self.cap = cap


class SendBufferFull(P2PError):
    """
    The connection already holds as many unsent or unacknowledged bytes as
    its send buffer allows.  Stop sending until the connection says it is
    writable again (the peer is slower than the game's sending rate).
    """
