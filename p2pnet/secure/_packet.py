"""
Sealing and opening data packets: the AEAD, key epochs (rekey) and the
replay windows of one secure session.

A sealed data packet (docs/protocol.md)::

    0      0xD1 (wire.MAGIC)
    1      0x41 (SEALED)
    2-3    the receiver's connection id, u16 big-endian
    4-7    key epoch, u32 big-endian
    8-11   packet number within the epoch, u32 big-endian
    12..   AES-256-GCM ciphertext of the frames, 16-byte tag last

The AEAD is AES-256-GCM, the Noise AESGCM cipher of the handshake
(C{Noise_IKpsk2_25519_AESGCM_BLAKE2s}).  The key is the epoch's key of that
direction, the nonce 4 zero bytes followed by the big-endian u64 C{epoch <<
32 | packet number} (the Noise AESGCM nonce encoding of that number: bytes
4-11 of the nonce are bytes 4-11 of the header), and the associated data
bytes 0 to 11: nothing in the header can be changed without the tag
failing.  Overhead beyond the 4-byte path framing: 8 + 16 = 24
bytes.

Epoch 0 uses the keys the handshake produced.  A sender moves to the next
epoch, whose key is the Noise REKEY of the previous one, when its epoch is
C{rekey_interval} seconds old or before its packet number would reach
C{rekey_packets}.  A (key, nonce) pair is never used twice: packet numbers
only grow within an epoch, each epoch has its own key, and the sender stops
(L{KeysExhausted}) rather than wrap the epoch number.  REKEY itself uses the
nonce C{2**64 - 1}, which would be epoch C{2**32 - 1} with packet number
C{2**32 - 1}, a number no packet ever gets.

A receiver holds its current epoch and the previous one (each with its own
L{ReplayWindow}, so packets sent just before a rekey still arrive), and
accepts packets up to two epochs ahead, deriving those keys tentatively: it
moves to a new epoch only once a packet under it authenticated, so a forged
header cannot make it drop its keys.  The previous epoch's key is forgotten
C{previous_key_lifetime} seconds after the move (or at the next move).
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from p2pnet.errors import P2PError
from p2pnet.secure._replay import MINIMUM_WINDOW, ReplayWindow

#: The first two bytes of a sealed packet: wire.MAGIC and MessageType.SEALED.
SEALED_PREFIX = b"\xd1\x41"
#: Header bytes before the ciphertext (also the associated data).
HEADER_LENGTH = 12
#: AES-GCM's tag (the full 16 bytes).
TAG_LENGTH = 16
#: The bytes a sealed packet adds to its plaintext frames.
OVERHEAD = HEADER_LENGTH + TAG_LENGTH
#: Epochs and packet numbers are u32.
_U32_MAX = 0xFFFFFFFF

# magic, type, connection id, epoch, packet number
_HEADER = struct.Struct(">BBHII")
# The same twelve bytes read back: (magic << 8 | type), connection id, epoch, number.
_READ_HEADER = struct.Struct(">HHII")
_SEALED = 0xD141
# Four zero bytes, then the big-endian u64 (epoch << 32 | number): the high
# half (the epoch) comes first.
_NONCE = struct.Struct(">4xII")
_REKEY_NONCE = b"\x00\x00\x00\x00" + b"\xff" * 8
_ZEROS32 = bytes(32)

DROP_REASONS = ("malformed", "bad-tag", "replay", "stale-key")


class PacketDropped(Exception):
    """
    A datagram did not open; the endpoint drops it and counts the reason.
    Not a L{P2PError}: it never reaches the game.

    @ivar reason: C{"malformed"} (not a sealed packet, or too short),
        C{"bad-tag"} (the AEAD refused it: forged, corrupted, or sealed for
        another connection), C{"replay"} (its packet number was accepted
        before, or is too old for the window) or C{"stale-key"} (its key
        epoch is not one the receiver holds: retired, or more than two
        ahead).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeysExhausted(P2PError):
    """
    The connection has sent 2**32 key epochs' worth of packets and must be
    closed: sealing more would reuse a nonce.  Never happens in practice.
    """


def rekey(key: bytes) -> bytes:
    """
    The Noise REKEY of a 32-byte AES-256-GCM key: the first 32 bytes of the
    AESGCM ENCRYPT of 32 zero bytes under C{key} with nonce C{2**64 - 1}
    and empty associated data (the Noise spec, sections 4.2 and 11.3).
    """
    return AESGCM(key).encrypt(_REKEY_NONCE, _ZEROS32, b"")[:32]


class _Epoch:
    """
    One key epoch of the receiving direction.
    """

    __slots__ = ("number", "key", "aead", "window")

    def __init__(self, number: int, key: bytes, window: int) -> None:
        self.number = number
        self.key = key
        self.aead = AESGCM(key)
        self.window = ReplayWindow(window)


class PacketProtection:
    """
    Seals and opens the data packets of one connection: both directions'
    keys, the key epochs, and the receive side's replay windows.

    Pure: time comes in as C{now} arguments (seconds, any monotonic origin).

    @ivar dropped: how many datagrams L{open} refused, by reason.
    """

    def __init__(
        self,
        send_key: bytes,
        receive_key: bytes,
        now: float,
        *,
        rekey_interval: float = 120.0,
        rekey_packets: int = _U32_MAX,
        window: int = MINIMUM_WINDOW,
        previous_key_lifetime: float = 30.0,
    ) -> None:
        """
        @param send_key: the 32-byte key of epoch 0 for what we send.
        @param receive_key: the 32-byte key of epoch 0 for what we receive.
        @param now: the current time; the first send epoch starts now.
        @param rekey_interval: seconds after which the sender moves to the
            next epoch (at its next packet).
        @param rekey_packets: packets per send epoch, at most C{2**32 - 1}
            (numbers 0 to C{rekey_packets - 1}).
        @param window: the replay window of each receive epoch, at least
            2048 packets.
        @param previous_key_lifetime: seconds the receiver keeps the previous
            epoch's key after moving to a new one.
        """
        for name, key in (("send_key", send_key), ("receive_key", receive_key)):
            if not isinstance(key, bytes) or len(key) != 32:
                raise ValueError(f"{name} must be 32 bytes")
        if not rekey_interval > 0:
            raise ValueError("rekey_interval must be positive")
        if not isinstance(rekey_packets, int) or not 1 <= rekey_packets <= _U32_MAX:
            raise ValueError("rekey_packets must be between 1 and 2**32 - 1")
        if not isinstance(window, int) or window < MINIMUM_WINDOW:
            raise ValueError(f"the replay window must hold at least {MINIMUM_WINDOW} packets")
        if not previous_key_lifetime >= 0:
            raise ValueError("previous_key_lifetime must not be negative")
        self._rekey_interval = rekey_interval
        self._rekey_packets = rekey_packets
        self._window = window
        self._previous_key_lifetime = previous_key_lifetime

        self._send_key = send_key
        self._send_aead = AESGCM(send_key)
        self._send_epoch = 0
        self._send_number = 0
        self._send_deadline = now + rekey_interval

        self._current = _Epoch(0, receive_key, window)
        self._previous: _Epoch | None = None
        self._previous_expires = 0.0
        # Tentative epochs current + 1 and current + 2, derived when a
        # packet claims them.
        self._ahead: list[_Epoch] = []
        self.dropped = dict.fromkeys(DROP_REASONS, 0)

    @property
    def send_epoch(self) -> int:
        """The epoch of the next packet L{seal} makes (unless it rekeys first)."""
        return self._send_epoch

    @property
    def receive_epoch(self) -> int:
        """The receiver's current epoch: the newest one a packet authenticated under."""
        return self._current.number

    def seal(self, conn_id: int, plaintext: bytes, now: float) -> bytes:
        """
        Seal C{plaintext} (encoded frames) into a whole datagram for the
        peer's connection C{conn_id}, moving to the next key epoch first if
        this one is due.

        @raise KeysExhausted: the last epoch is used up.
        """
        number = self._send_number
        if number >= self._rekey_packets or now >= self._send_deadline:
            self._next_send_epoch(now)
            number = 0
        self._send_number = number + 1
        epoch = self._send_epoch
        header = _HEADER.pack(0xD1, 0x41, conn_id, epoch, number)
        return header + self._send_aead.encrypt(_NONCE.pack(epoch, number), plaintext, header)

    def rekey_now(self, now: float) -> None:
        """
        Move the sender to the next key epoch now (the next packet is number
        0 of it).

        @raise KeysExhausted: there is no next epoch.
        """
        self._next_send_epoch(now)

    def _next_send_epoch(self, now: float) -> None:
        if self._send_epoch >= _U32_MAX:
            raise KeysExhausted("no key epoch left: close the connection")
        self._send_key = rekey(self._send_key)
        self._send_aead = AESGCM(self._send_key)
        self._send_epoch += 1
        self._send_number = 0
        self._send_deadline = now + self._rekey_interval

    def open(self, datagram: bytes, now: float) -> bytes:
        """
        Authenticate and decrypt a sealed datagram (the whole datagram,
        header included); return its plaintext frames.

        @raise PacketDropped: it did not open; the reason is counted in
            L{dropped} too.
        """
        try:
            sealed, _, epoch, number = _READ_HEADER.unpack_from(datagram)
        except struct.error:
            return self._drop("malformed")
        if sealed != _SEALED or len(datagram) < OVERHEAD:
            return self._drop("malformed")
        current = self._current
        if epoch == current.number:
            keys = current
        else:
            keys = self._other_epoch(epoch, now)
            if keys is None:
                return self._drop("stale-key")
        window = keys.window
        # The common case, a number above all seen, is handled inline (a
        # method call costs as much as the rest of the check).
        fresh = number > window.highest
        if not fresh and not window.check(number):
            return self._drop("replay")
        try:
            plaintext = keys.aead.decrypt(
                _NONCE.pack(epoch, number), datagram[HEADER_LENGTH:], datagram[:HEADER_LENGTH]
            )
        except InvalidTag:
            return self._drop("bad-tag")
        if fresh:
            window.highest = number
            window._slots[number % window.size] = number
        else:
            window.mark(number)
        if epoch > current.number:
            self._move_to(keys, now)
        return plaintext

    def _drop(self, reason: str):
        self.dropped[reason] += 1
        raise PacketDropped(reason)

    def _other_epoch(self, epoch: int, now: float) -> _Epoch | None:
        """
        The keys of a receive epoch other than the current one, if we hold
        or may derive them.
        """
        current = self._current.number
        previous = self._previous
        if previous is not None and epoch == previous.number:
            if now >= self._previous_expires:
                self._previous = None
                return None
            return previous
        ahead = epoch - current
        if not 1 <= ahead <= 2:
            return None
        while len(self._ahead) < ahead:
            last = self._ahead[-1] if self._ahead else self._current
            self._ahead.append(_Epoch(last.number + 1, rekey(last.key), self._window))
        return self._ahead[ahead - 1]

    def _move_to(self, keys: _Epoch, now: float) -> None:
        """
        A packet authenticated under the tentative epoch C{keys}: it becomes
        the current one, and the one just before it the previous one.
        """
        index = self._ahead.index(keys)
        self._previous = self._ahead[index - 1] if index else self._current
        self._previous_expires = now + self._previous_key_lifetime
        self._current = keys
        del self._ahead[: index + 1]
