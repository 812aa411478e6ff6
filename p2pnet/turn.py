"""
A TURN client (RFC 5766 / RFC 8656) over UDP, for using an existing TURN
server such as coturn as the relay when no direct path exists.

L{TurnClient} does no I/O of its own: it writes through a C{write(data,
addr)} callable and is fed every datagram that arrives from the TURN server
through L{TurnClient.datagram_received}.  That lets it share the peer
endpoint's single UDP socket, so the allocation is made through the same NAT
mapping the endpoint already uses.  Time comes from an injected
C{IReactorTime}; nothing here touches the global reactor.

What it does:

  - Allocate with long-term credentials: the first request goes out without
    credentials, the server's 401 supplies REALM and NONCE, and the request
    is repeated with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY keyed with
    C{MD5(username:realm:password)}.  A 438 (Stale Nonce) answer to any
    request updates the nonce and repeats the request.
  - Requests are retransmitted as RFC 5389 section 7.2.1 says: the first
    retransmission after C{rto} (0.5 s), each later one after twice the
    previous interval, seven transmissions in all, then C{16 * rto} more
    before giving up (39.5 s with the defaults).
  - The allocation is refreshed before it expires, permissions every four
    minutes (they last five), channel bindings every five minutes (they last
    ten), for as long as the client is open.
  - L{TurnClient.send} uses ChannelData (a 4-byte header; not padded, as
    RFC 8656 section 12.5 allows over UDP) when a channel is bound to the
    peer and a Send indication otherwise.  Both Data indications and
    ChannelData (padded or not) are delivered to L{TurnClient.on_data}.
  - Answers from the server that are malformed, that match no outstanding
    request, or whose MESSAGE-INTEGRITY is missing or wrong when it must be
    there, are dropped silently, as if never received.

User-facing Deferreds fire on a later reactor turn (never inside
L{TurnClient.datagram_received}), so a callback cannot re-enter the client
in the middle of handling a datagram.
"""

from __future__ import annotations

import os
import struct
from typing import Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pnet._eventual import EventualQueue
from p2pnet.address import Address
from p2pnet.errors import AuthenticationFailed, ConnectionClosed, MalformedMessage, P2PError
from p2pnet.stun import (
    AttributeType,
    MessageClass,
    Method,
    Nonce,
    RawAttribute,
    Realm,
    Software,
    StunMessage,
    Username,
    XorMappedAddress,
    decode,
    decode_xor_address,
    encode,
    encode_xor_address,
    long_term_key,
    looks_like_stun,
    verify_integrity,
)

__all__ = [
    "TurnClient",
    "TurnError",
    "TurnAuthenticationFailed",
    "TurnTimeout",
    "TurnClosed",
    "NoAllocation",
    "AllocationLost",
    "CHANNEL_MIN",
    "CHANNEL_MAX",
    "PERMISSION_REFRESH",
    "CHANNEL_REFRESH",
    "encode_channel_data",
    "decode_channel_data",
]

#: The lowest and highest channel numbers RFC 5766 allows.
CHANNEL_MIN = 0x4000
CHANNEL_MAX = 0x7FFF
#: Seconds between CreatePermission refreshes (permissions last 300 s).
PERMISSION_REFRESH = 240.0
#: Seconds between ChannelBind refreshes (bindings last 600 s).
CHANNEL_REFRESH = 300.0
#: How long before the allocation's expiry it is refreshed, at most; a
#: short lifetime is refreshed at half of it instead.
REFRESH_MARGIN = 60.0
#: REQUESTED-TRANSPORT's protocol number for UDP.
_UDP = 17
_CHANNEL_HEADER = struct.Struct("!HH")
#: Error codes that can never carry MESSAGE-INTEGRITY (RFC 8489 9.2.5 and
#: RFC 5389 10.2.2): accepted without it.
_UNAUTHENTICATED_ERRORS = frozenset({400, 401, 420, 438})
#: How many 438 (Stale Nonce) answers in a row one request tolerates.
_STALE_NONCE_RETRIES = 3


# ---------------------------------------------------------------------------
# Errors.


class TurnError(P2PError):
    """
    The TURN server refused a request.

    @ivar code: the STUN error code (for example 403 Forbidden, 437
        Allocation Mismatch, 486 Allocation Quota Reached, 508 Insufficient
        Capacity).
    @ivar reason: the server's reason phrase.
    """

    def __init__(self, code: int, reason: str, request: str = "request") -> None:
        super().__init__(f"the TURN server refused the {request} ({code}): {reason}")
        self.code = code
        self.reason = reason
        self.request = request


class TurnAuthenticationFailed(TurnError, AuthenticationFailed):
    """
    The TURN server rejected our user name or password (401 Unauthorized
    after we sent credentials).  Check the user name, the password and the
    realm configured on the server.
    """


class TurnTimeout(P2PError):
    """
    The TURN server did not answer a request in time.  Check its address,
    that it is running, and that UDP to it is allowed.

    @ivar server: the TURN server's address.
    @ivar request: the request that went unanswered (C{"Allocate"}, ...).
    """

    def __init__(self, server: Address, request: str, tries: int, elapsed: float) -> None:
        super().__init__(
            f"the TURN server {server} did not answer the {request} request "
            f"({tries} tries in {elapsed:.1f}s)"
        )
        self.server = server
        self.request = request
        self.tries = tries
        self.elapsed = elapsed


class TurnClosed(ConnectionClosed):
    """
    The TURN client was closed before the request finished.
    """


class NoAllocation(P2PError):
    """
    The TURN client has no allocation: call C{allocate()} and wait for it
    before creating permissions, binding channels or sending.
    """


class AllocationLost(P2PError):
    """
    The TURN allocation could not be refreshed and is gone; the relayed
    address no longer works.  The original cause is in C{reason}.
    """

    def __init__(self, server: Address, reason: BaseException) -> None:
        super().__init__(f"lost the TURN allocation on {server}: {reason}")
        self.server = server
        self.reason = reason


# ---------------------------------------------------------------------------
# ChannelData framing.


def encode_channel_data(channel: int, data: bytes, *, pad: bool = False) -> bytes:
    """
    A ChannelData message: channel number, length, application data, and,
    with C{pad}, zero bytes up to a multiple of 4 (needed over TCP only).
    """
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise ValueError(f"channel numbers are 0x4000-0x7FFF, not {channel:#x}")
    if len(data) > 0xFFFF:
        raise ValueError(f"ChannelData is limited to 65535 bytes, not {len(data)}")
    padding = bytes((4 - len(data) % 4) % 4) if pad else b""
    return _CHANNEL_HEADER.pack(channel, len(data)) + data + padding


def decode_channel_data(datagram: bytes) -> tuple[int, bytes]:
    """
    Parse a ChannelData message into C{(channel, data)}.  Up to three
    bytes of padding after the data are accepted and ignored.

    @raise MalformedMessage: if the datagram is not ChannelData.
    """
    if len(datagram) < 4:
        raise MalformedMessage(f"too short for ChannelData ({len(datagram)} bytes)")
    channel, length = _CHANNEL_HEADER.unpack_from(datagram)
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise MalformedMessage(f"{channel:#06x} is not a channel number")
    extra = len(datagram) - 4 - length
    if not 0 <= extra <= 3:
        raise MalformedMessage(
            f"ChannelData length field says {length} bytes, datagram has {len(datagram) - 4}"
        )
    return channel, bytes(datagram[4 : 4 + length])


def _looks_like_channel_data(datagram: bytes) -> bool:
    return len(datagram) >= 4 and 0x40 <= datagram[0] <= 0x7F


# ---------------------------------------------------------------------------
# TURN attributes (the codec keeps them as RawAttribute).


def _lifetime(seconds: int) -> RawAttribute:
    return RawAttribute(AttributeType.LIFETIME, struct.pack("!I", seconds))


def _xor_peer(peer: Address, tid: bytes) -> RawAttribute:
    return RawAttribute(AttributeType.XOR_PEER_ADDRESS, encode_xor_address(peer, tid))


def _channel_number(channel: int) -> RawAttribute:
    return RawAttribute(AttributeType.CHANNEL_NUMBER, struct.pack("!HH", channel, 0))


def _read_lifetime(message: StunMessage) -> int | None:
    raw = message.get_raw(AttributeType.LIFETIME)
    if raw is None or len(raw.value) != 4:
        return None
    return struct.unpack("!I", raw.value)[0]


def _read_xor(message: StunMessage, attribute_type: int) -> Address | None:
    raw = message.get_raw(attribute_type)
    if raw is None:
        return None
    try:
        return decode_xor_address(raw.value, message.transaction_id)
    except (MalformedMessage, ValueError):
        return None


_METHOD_NAMES = {
    Method.ALLOCATE: "Allocate",
    Method.REFRESH: "Refresh",
    Method.CREATE_PERMISSION: "CreatePermission",
    Method.CHANNEL_BIND: "ChannelBind",
}


# ---------------------------------------------------------------------------
# Bookkeeping.


class _Transaction:
    """
    One outstanding request: how to rebuild it (a 438 needs a fresh
    transaction id), its retransmission timer, and where its answer goes.
    """

    def __init__(self, method, build, authenticated, on_answer, on_failure, deadline) -> None:
        self.method = method
        self.build = build
        self.authenticated = authenticated
        self.on_answer = on_answer
        self.on_failure = on_failure
        self.deadline = deadline
        self.tid = b""
        self.data = b""
        self.key: bytes | None = None
        self.tries = 0
        self.started = 0.0
        self.timer = None
        self.stale_retries = 0

    @property
    def name(self) -> str:
        return _METHOD_NAMES.get(self.method, f"method {self.method:#x}")


class _Permission:
    def __init__(self, host: str) -> None:
        self.host = host
        self.installed = False
        self.waiters: list[Deferred] = []
        self.timer = None


class _Channel:
    def __init__(self, number: int, peer: Address) -> None:
        self.number = number
        self.peer = peer
        self.bound = False
        self.waiters: list[Deferred] = []
        self.timer = None


# States of the allocation.
_IDLE = "idle"
_ALLOCATING = "allocating"
_ALLOCATED = "allocated"
_CLOSING = "closing"
_CLOSED = "closed"


class TurnClient:
    """
    A TURN client for one allocation on one server, sharing a UDP socket.

    @param clock: an C{IReactorTime} (C{twisted.internet.task.Clock} in
        tests).
    @param write: C{write(data, (host, port))} sends a datagram from the
        shared socket.
    @param server: the TURN server's address.
    @param username: the long-term credential user name.
    @param password: its password.
    @param software: the SOFTWARE attribute sent in Allocate and Refresh.
    @param random_bytes: C{random_bytes(n)}, the source of transaction ids.
    @param lifetime: the allocation lifetime (seconds) to ask for.
    @param rto: the initial retransmission timeout (RFC 5389 RTO).
    @param max_transmissions: how many times a request is sent (Rc).
    @param close_timeout: the longest C{close()} waits for the server to
        answer the final Refresh.

    @ivar on_data: C{on_data(peer, data)}, called for each Data indication
        and ChannelData message from the server.
    @ivar on_lost: C{on_lost(error)}, called (with an L{AllocationLost}) if
        a refresh fails and the allocation is gone.
    @ivar mapped_address: our server-reflexive address (XOR-MAPPED-ADDRESS
        of the Allocate answer), or C{None} before the allocation.
    @ivar relayed_address: our relayed transport address, or C{None}.
    """

    log = Logger()

    def __init__(
        self,
        clock,
        write: Callable[[bytes, tuple], object],
        server: Address,
        username: str,
        password: str,
        *,
        software: str = "p2pnet",
        random_bytes: Callable[[int], bytes] = os.urandom,
        lifetime: int = 600,
        rto: float = 0.5,
        max_transmissions: int = 7,
        close_timeout: float = 2.0,
    ) -> None:
        if not isinstance(server, Address):
            raise TypeError(f"server must be an Address, not {server!r}")
        if lifetime < 1:
            raise ValueError(f"lifetime must be positive, not {lifetime!r}")
        self.clock = clock
        self._write = write
        self.server = server
        self.username = username
        self._password = password
        self.software = software
        self._random_bytes = random_bytes
        self.lifetime = int(lifetime)
        self.rto = rto
        self.max_transmissions = max_transmissions
        self.close_timeout = close_timeout

        self.on_data: Callable[[Address, bytes], object] | None = None
        self.on_lost: Callable[[P2PError], object] | None = None
        self.mapped_address: Address | None = None
        self.relayed_address: Address | None = None

        self._state = _IDLE
        self._realm: str | None = None
        self._nonce: str | None = None
        self._key: bytes | None = None
        self._transactions: dict[bytes, _Transaction] = {}
        self._allocate_waiters: list[Deferred] = []
        self._close_waiters: list[Deferred] = []
        self._refresh_timer = None
        self._permissions: dict[str, _Permission] = {}
        self._channels_by_peer: dict[Address, _Channel] = {}
        self._channels_by_number: dict[int, _Channel] = {}
        self._next_channel = CHANNEL_MIN
        self._eventually = EventualQueue(clock, self.log, "TURN client callback")

    # -- public API ---------------------------------------------------------

    @property
    def state(self) -> str:
        """
        C{"idle"}, C{"allocating"}, C{"allocated"}, C{"closing"} or
        C{"closed"}.
        """
        return self._state

    def allocate(self) -> Deferred:
        """
        Allocate a relayed transport address on the server.

        @return: a Deferred firing with the relayed L{Address}, or failing
            with L{TurnAuthenticationFailed}, L{TurnError}, L{TurnTimeout}
            or L{TurnClosed}.  Calling it again while allocated fires with
            the same address.
        """
        d = Deferred()
        if self._state in (_CLOSING, _CLOSED):
            self._eventually(d.errback, Failure(TurnClosed("the TURN client is closed")))
        elif self._state == _ALLOCATED:
            self._eventually(d.callback, self.relayed_address)
        else:
            self._allocate_waiters.append(d)
            if self._state == _IDLE:
                self._state = _ALLOCATING
                self._start_allocate(authenticated=False)
        return d

    def create_permission(self, peer: Address) -> Deferred:
        """
        Let the server relay datagrams from C{peer}'s IP address (any port)
        to us, and keep that permission refreshed until C{close()}.

        @return: a Deferred firing with C{None} once installed.
        """
        d = Deferred()
        if not self._check_allocated(d):
            return d
        permission = self._permissions.get(peer.host)
        if permission is not None and permission.installed:
            self._eventually(d.callback, None)
            return d
        if permission is None:
            permission = self._permissions[peer.host] = _Permission(peer.host)
            permission.waiters.append(d)
            self._send_permission(permission)
        else:
            permission.waiters.append(d)
        return d

    def bind_channel(self, peer: Address) -> Deferred:
        """
        Bind a channel to C{peer} (which also installs a permission for its
        IP address), and keep it refreshed until C{close()}.  Afterwards
        L{send} to C{peer} uses 4-byte ChannelData headers.

        @return: a Deferred firing with the channel number (0x4000-0x7FFF).
        """
        d = Deferred()
        if not self._check_allocated(d):
            return d
        channel = self._channels_by_peer.get(peer)
        if channel is not None and channel.bound:
            self._eventually(d.callback, channel.number)
            return d
        if channel is None:
            if self._next_channel > CHANNEL_MAX:
                self._eventually(d.errback, Failure(TurnError(0, "no channel numbers left", "ChannelBind")))
                return d
            channel = _Channel(self._next_channel, peer)
            self._next_channel += 1
            self._channels_by_peer[peer] = channel
            self._channels_by_number[channel.number] = channel
            channel.waiters.append(d)
            self._send_channel_bind(channel)
        else:
            channel.waiters.append(d)
        return d

    def send(self, peer: Address, data: bytes) -> None:
        """
        Send C{data} to C{peer} through the relay: as ChannelData if a
        channel is bound to C{peer}, otherwise as a Send indication.  The
        server drops it unless a permission for C{peer}'s IP is installed.

        @raise NoAllocation: before C{allocate()} has succeeded, or after
            C{close()}.
        """
        if self._state != _ALLOCATED:
            raise NoAllocation(f"no TURN allocation on {self.server} (state {self._state})")
        channel = self._channels_by_peer.get(peer)
        if channel is not None and channel.bound:
            self._write(encode_channel_data(channel.number, bytes(data)), self.server.as_tuple())
            return
        tid = self._random_bytes(12)
        message = StunMessage(
            Method.SEND,
            MessageClass.INDICATION,
            tid,
            (_xor_peer(peer, tid), RawAttribute(AttributeType.DATA, bytes(data))),
        )
        self._write(encode(message, fingerprint=False), self.server.as_tuple())

    def channel_for(self, peer: Address) -> int | None:
        """
        The channel number bound to C{peer}, or C{None}.
        """
        channel = self._channels_by_peer.get(peer)
        return channel.number if channel is not None and channel.bound else None

    def datagram_received(self, data: bytes, source) -> bool:
        """
        Handle a datagram that arrived on the shared socket.

        @param source: the sender, an L{Address} or a C{(host, port)} tuple.
        @return: C{True} if the datagram came from the TURN server and is
            framed as STUN or ChannelData (whether it was then used or
            dropped as malformed, unauthenticated or unexpected); C{False}
            if it is someone else's to handle.
        """
        if not isinstance(source, Address):
            try:
                source = Address.from_tuple(source)
            except (ValueError, TypeError, IndexError):
                return False
        if source != self.server:
            return False
        if _looks_like_channel_data(data):
            if self._state not in (_CLOSING, _CLOSED):
                self._channel_data_received(data)
            return True
        if not looks_like_stun(data):
            return False
        try:
            message = decode(data)
        except MalformedMessage as e:
            self.log.debug("dropped a malformed datagram from the TURN server: {e}", e=e)
            return True
        if message.message_class is MessageClass.INDICATION:
            if message.method == Method.DATA and self._state not in (_CLOSING, _CLOSED):
                self._data_indication_received(message)
        elif message.message_class in (MessageClass.SUCCESS, MessageClass.ERROR):
            self._response_received(message, data)
        return True

    def close(self) -> Deferred:
        """
        Release the allocation (Refresh with LIFETIME 0), stop every timer
        and fail every pending request with L{TurnClosed}.

        @return: a Deferred firing with C{None} when the server has answered
            the final Refresh or after at most C{close_timeout} seconds.
            Afterwards the client has no delayed calls left.
        """
        d = Deferred()
        if self._state == _CLOSED:
            self._eventually(d.callback, None)
            return d
        self._close_waiters.append(d)
        if self._state == _CLOSING:
            return d
        was_allocated = self._state == _ALLOCATED
        self._state = _CLOSING
        self._stop_everything(TurnClosed("the TURN client was closed"))
        if was_allocated:
            self._request(
                Method.REFRESH,
                lambda tid: [_lifetime(0)],
                self._closed_answer,
                lambda failure: self._finish_close(),
                deadline=self.close_timeout,
            )
        else:
            self._finish_close()
        return d

    # -- allocation ---------------------------------------------------------

    def _start_allocate(self, authenticated: bool) -> None:
        # Each allocate() starts without credentials, so a server that has
        # changed its realm or forgotten its nonces is asked afresh.
        def build(tid: bytes) -> list:
            return [
                RawAttribute(AttributeType.REQUESTED_TRANSPORT, bytes((_UDP, 0, 0, 0))),
                _lifetime(self.lifetime),
                Software(self.software),
            ]

        self._request(
            Method.ALLOCATE,
            build,
            self._allocate_answer,
            self._allocate_failed,
            authenticated=authenticated,
        )

    def _allocate_answer(self, transaction: _Transaction, message: StunMessage) -> None:
        if message.message_class is MessageClass.ERROR:
            error = message.error_code
            if error.code == 401 and not transaction.authenticated:
                realm, nonce = message.get(Realm), message.get(Nonce)
                if realm is None or nonce is None:
                    self._allocate_failed(Failure(TurnError(401, error.reason + " (no REALM/NONCE)", "Allocate")))
                    return
                self._realm, self._nonce = realm.text, nonce.text
                self._key = long_term_key(self.username, self._realm, self._password)
                self._start_allocate(authenticated=True)
                return
            self._allocate_failed(Failure(self._error_for(error, "Allocate")))
            return
        relayed = _read_xor(message, AttributeType.XOR_RELAYED_ADDRESS)
        if relayed is None:
            self._allocate_failed(Failure(TurnError(0, "no XOR-RELAYED-ADDRESS in the answer", "Allocate")))
            return
        mapped = message.get(XorMappedAddress)
        self.mapped_address = mapped.address if mapped is not None else None
        self.relayed_address = relayed
        self._state = _ALLOCATED
        self._schedule_refresh(_read_lifetime(message) or self.lifetime)
        self.log.info(
            "TURN allocation on {server}: relayed {relayed}, mapped {mapped}",
            server=str(self.server),
            relayed=str(relayed),
            mapped=str(self.mapped_address),
        )
        waiters, self._allocate_waiters = self._allocate_waiters, []
        for d in waiters:
            self._eventually(d.callback, relayed)

    def _allocate_failed(self, failure: Failure) -> None:
        if self._state == _ALLOCATING:
            self._state = _IDLE
        waiters, self._allocate_waiters = self._allocate_waiters, []
        for d in waiters:
            self._eventually(d.errback, failure)

    def _error_for(self, error, request: str) -> TurnError:
        reason = error.reason.rstrip("\x00").strip()  # coturn NUL-terminates its reasons
        if error.code == 401:
            return TurnAuthenticationFailed(401, reason, request)
        return TurnError(error.code, reason, request)

    def _schedule_refresh(self, granted: int) -> None:
        delay = max(granted - REFRESH_MARGIN, granted / 2)
        self._refresh_timer = self.clock.callLater(delay, self._refresh)

    def _refresh(self) -> None:
        self._refresh_timer = None
        self._request(
            Method.REFRESH,
            lambda tid: [_lifetime(self.lifetime), Software(self.software)],
            self._refresh_answer,
            self._refresh_failed,
        )

    def _refresh_answer(self, transaction: _Transaction, message: StunMessage) -> None:
        if message.message_class is MessageClass.ERROR:
            self._refresh_failed(Failure(self._error_for(message.error_code, "Refresh")))
            return
        self._schedule_refresh(_read_lifetime(message) or self.lifetime)

    def _refresh_failed(self, failure: Failure) -> None:
        if self._state != _ALLOCATED:
            return
        lost = AllocationLost(self.server, failure.value)
        self.log.warn("{lost}", lost=str(lost))
        self._state = _IDLE
        self.relayed_address = None
        self._stop_everything(lost)
        if self.on_lost is not None:
            self._eventually(self.on_lost, lost)

    # -- permissions and channels -------------------------------------------

    def _check_allocated(self, d: Deferred) -> bool:
        if self._state == _ALLOCATED:
            return True
        if self._state in (_CLOSING, _CLOSED):
            error = TurnClosed("the TURN client is closed")
        else:
            error = NoAllocation(f"no TURN allocation on {self.server} yet: call allocate() first")
        self._eventually(d.errback, Failure(error))
        return False

    def _send_permission(self, permission: _Permission) -> None:
        permission.timer = None
        peer = Address(permission.host, 0)
        self._request(
            Method.CREATE_PERMISSION,
            lambda tid: [_xor_peer(peer, tid)],
            lambda transaction, message: self._permission_answer(permission, message),
            lambda failure: self._permission_failed(permission, failure),
        )

    def _permission_answer(self, permission: _Permission, message: StunMessage) -> None:
        if message.message_class is MessageClass.ERROR:
            self._permission_failed(permission, Failure(self._error_for(message.error_code, "CreatePermission")))
            return
        self._permission_installed(permission)

    def _permission_installed(self, permission: _Permission) -> None:
        permission.installed = True
        if permission.timer is None:
            permission.timer = self.clock.callLater(PERMISSION_REFRESH, self._send_permission, permission)
        waiters, permission.waiters = permission.waiters, []
        for d in waiters:
            self._eventually(d.callback, None)

    def _permission_failed(self, permission: _Permission, failure: Failure) -> None:
        if self._permissions.get(permission.host) is permission:
            del self._permissions[permission.host]
        if permission.installed:
            self.log.warn(
                "could not refresh the TURN permission for {host}: {error}",
                host=permission.host,
                error=str(failure.value),
            )
        waiters, permission.waiters = permission.waiters, []
        for d in waiters:
            self._eventually(d.errback, failure)

    def _send_channel_bind(self, channel: _Channel) -> None:
        channel.timer = None
        self._request(
            Method.CHANNEL_BIND,
            lambda tid: [_channel_number(channel.number), _xor_peer(channel.peer, tid)],
            lambda transaction, message: self._channel_answer(channel, message),
            lambda failure: self._channel_failed(channel, failure),
        )

    def _channel_answer(self, channel: _Channel, message: StunMessage) -> None:
        if message.message_class is MessageClass.ERROR:
            self._channel_failed(channel, Failure(self._error_for(message.error_code, "ChannelBind")))
            return
        channel.bound = True
        channel.timer = self.clock.callLater(CHANNEL_REFRESH, self._send_channel_bind, channel)
        # A ChannelBind installs a permission for the peer's IP too; keep it
        # refreshed on its own (shorter) schedule.
        permission = self._permissions.get(channel.peer.host)
        if permission is None:
            permission = self._permissions[channel.peer.host] = _Permission(channel.peer.host)
            self._permission_installed(permission)
        waiters, channel.waiters = channel.waiters, []
        for d in waiters:
            self._eventually(d.callback, channel.number)

    def _channel_failed(self, channel: _Channel, failure: Failure) -> None:
        # The number stays reserved for this peer (RFC 8656 forbids binding
        # it to another peer for a while); sends fall back to indications.
        if channel.bound:
            self.log.warn(
                "could not refresh TURN channel {number:#06x} to {peer}: {error}",
                number=channel.number,
                peer=str(channel.peer),
                error=str(failure.value),
            )
        channel.bound = False
        if self._channels_by_peer.get(channel.peer) is channel:
            del self._channels_by_peer[channel.peer]
        waiters, channel.waiters = channel.waiters, []
        for d in waiters:
            self._eventually(d.errback, failure)

    # -- incoming data ------------------------------------------------------

    def _channel_data_received(self, data: bytes) -> None:
        try:
            number, payload = decode_channel_data(data)
        except MalformedMessage as e:
            self.log.debug("dropped malformed ChannelData from the TURN server: {e}", e=e)
            return
        channel = self._channels_by_number.get(number)
        if channel is None:
            self.log.debug("dropped ChannelData on unknown channel {number:#06x}", number=number)
            return
        self._deliver(channel.peer, payload)

    def _data_indication_received(self, message: StunMessage) -> None:
        peer = _read_xor(message, AttributeType.XOR_PEER_ADDRESS)
        payload = message.get_raw(AttributeType.DATA)
        if peer is None or payload is None:
            self.log.debug("dropped a Data indication without XOR-PEER-ADDRESS or DATA")
            return
        self._deliver(peer, payload.value)

    def _deliver(self, peer: Address, payload: bytes) -> None:
        if self.on_data is None:
            return
        try:
            self.on_data(peer, payload)
        except Exception:
            self.log.failure("error in the TURN on_data callback")

    # -- transactions -------------------------------------------------------

    def _request(
        self,
        method: int,
        build: Callable[[bytes], list],
        on_answer: Callable[[_Transaction, StunMessage], None],
        on_failure: Callable[[Failure], None],
        *,
        authenticated: bool = True,
        deadline: float | None = None,
    ) -> _Transaction:
        transaction = _Transaction(method, build, authenticated, on_answer, on_failure, deadline)
        transaction.started = self.clock.seconds()
        self._transmit_new(transaction)
        return transaction

    def _transmit_new(self, transaction: _Transaction) -> None:
        """
        (Re)build the request with a fresh transaction id and the current
        credentials, then start its retransmission schedule.
        """
        tid = self._random_bytes(12)
        attributes = list(transaction.build(tid))
        key = None
        if transaction.authenticated:
            attributes += [Username(self.username), Realm(self._realm), Nonce(self._nonce)]
            key = self._key
        message = StunMessage(transaction.method, MessageClass.REQUEST, tid, tuple(attributes))
        transaction.tid = tid
        transaction.key = key
        transaction.data = encode(message, integrity_key=key)
        transaction.tries = 0
        self._transactions[tid] = transaction
        self._transmit(transaction)

    def _transmit(self, transaction: _Transaction) -> None:
        self._write(transaction.data, self.server.as_tuple())
        transaction.tries += 1
        if transaction.tries < self.max_transmissions:
            wait = self.rto * 2 ** (transaction.tries - 1)
            then = self._transmit
        else:
            wait = self.rto * 16
            then = self._give_up
        if transaction.deadline is not None:
            left = transaction.started + transaction.deadline - self.clock.seconds()
            if left <= wait:
                wait, then = max(left, 0), self._give_up
        transaction.timer = self.clock.callLater(wait, then, transaction)

    def _give_up(self, transaction: _Transaction) -> None:
        transaction.timer = None
        self._transactions.pop(transaction.tid, None)
        elapsed = self.clock.seconds() - transaction.started
        transaction.on_failure(Failure(TurnTimeout(self.server, transaction.name, transaction.tries, elapsed)))

    def _cancel(self, transaction: _Transaction) -> None:
        self._transactions.pop(transaction.tid, None)
        if transaction.timer is not None and transaction.timer.active():
            transaction.timer.cancel()
        transaction.timer = None

    def _response_received(self, message: StunMessage, data: bytes) -> None:
        transaction = self._transactions.get(message.transaction_id)
        if transaction is None or message.method != transaction.method:
            self.log.debug("dropped a TURN answer that matches no request")
            return
        error = message.error_code
        if message.message_class is MessageClass.ERROR and error is None:
            self.log.debug("dropped a TURN error answer without ERROR-CODE")
            return
        exempt = message.message_class is MessageClass.ERROR and error.code in _UNAUTHENTICATED_ERRORS
        if transaction.key is not None and not exempt and not verify_integrity(data, transaction.key):
            self.log.debug("dropped a TURN answer with missing or wrong MESSAGE-INTEGRITY")
            return
        self._cancel(transaction)
        if error is not None and error.code == 438 and transaction.authenticated:
            nonce, realm = message.get(Nonce), message.get(Realm)
            if nonce is not None and transaction.stale_retries < _STALE_NONCE_RETRIES:
                transaction.stale_retries += 1
                self._nonce = nonce.text
                if realm is not None and realm.text != self._realm:
                    self._realm = realm.text
                    self._key = long_term_key(self.username, self._realm, self._password)
                self._transmit_new(transaction)
                return
        transaction.on_answer(transaction, message)

    # -- shutdown -----------------------------------------------------------

    def _stop_everything(self, reason: P2PError) -> None:
        """
        Cancel every timer and outstanding request and fail every waiter
        with C{reason}.
        """
        for transaction in list(self._transactions.values()):
            self._cancel(transaction)
        if self._refresh_timer is not None and self._refresh_timer.active():
            self._refresh_timer.cancel()
        self._refresh_timer = None
        waiters = self._allocate_waiters
        self._allocate_waiters = []
        for permission in self._permissions.values():
            if permission.timer is not None and permission.timer.active():
                permission.timer.cancel()
            waiters += permission.waiters
        for channel in self._channels_by_number.values():
            if channel.timer is not None and channel.timer.active():
                channel.timer.cancel()
            waiters += channel.waiters
        self._permissions.clear()
        self._channels_by_peer.clear()
        self._channels_by_number.clear()
        for d in waiters:
            self._eventually(d.errback, Failure(reason))

    def _closed_answer(self, transaction: _Transaction, message: StunMessage) -> None:
        self._finish_close()

    def _finish_close(self) -> None:
        self._state = _CLOSED
        self.relayed_address = None
        waiters, self._close_waiters = self._close_waiters, []
        for d in waiters:
            self._eventually(d.callback, None)
