"""
One connection's secure session: the Noise handshake carried by the hellos
and answers, then the sealed packets, and which peer addresses are proven.

Pure: no sockets and no clock; the connection passes C{now} in and sends
what it is given.

The initiator (the side whose introduction has L{wire.FLAG_INITIATOR})
puts handshake message 1 in every hello and answer until it has the keys;
the responder reads it, and from then on puts message 2 in every hello and
answer it sends.  Each side has its keys once it has read (initiator) or
written (responder) message 2: a secure session costs no round trip beyond
the hello and its answer.

Path validation (RFC 9000 section 8.2 in spirit): an authentic packet from
an address the connection has not proven does not move the connection;
the owner sends a PATH_CHALLENGE there, and only a PATH_RESPONSE with the
same bytes, from that same address, proves it.
"""

from __future__ import annotations

import struct
from typing import Callable

from p2pnet.errors import HandshakeFailed
from p2pnet.secure._handshake import InitiatorHandshake, ResponderHandshake, SessionKeys
from p2pnet.secure._packet import PacketDropped, PacketProtection
from p2pnet.secure._pathcheck import PathValidator
from p2pnet.secure.identity import Identity

__all__ = ["SecureSession", "PacketDropped", "HandshakeFailed", "REKEY_INTERVAL"]

#: Seconds between key epochs (each direction moves on its own).
REKEY_INTERVAL = 120.0

_ORDER = struct.Struct(">II")


class SecureSession:
    """
    @ivar initiator: whether we send handshake message 1.
    @ivar peer_key: the peer's static public key, from the introduction.
    @ivar peer_confirmed: a sealed packet from the peer opened: it has the
        keys too.
    @ivar failed_handshakes: handshake messages refused so far.
    """

    #: Handshake messages refused before we stop reading more (each costs
    #: an X25519 operation or two; only intro-key holders can send them).
    MAX_FAILED_HANDSHAKES = 16

    def __init__(
        self,
        *,
        initiator: bool,
        identity: Identity,
        peer_key: bytes,
        intro_id: bytes,
        intro_key: bytes,
        random_bytes: Callable[[int], bytes],
        now: float,
        rekey_interval: float = REKEY_INTERVAL,
        payload: bytes = b"",
    ) -> None:
        self.initiator = initiator
        self.peer_key = peer_key
        self.peer_confirmed = False
        self.failed_handshakes = 0
        self._rekey_interval = rekey_interval
        self._protection: PacketProtection | None = None
        self._keys: SessionKeys | None = None
        self._outgoing: bytes | None = None
        if initiator:
            self._handshake = InitiatorHandshake(identity, peer_key, intro_id, intro_key, payload=payload)
            self._outgoing = self._handshake.message1()
        else:
            self._handshake = ResponderHandshake(identity, peer_key, intro_id, intro_key)
        self._validator = PathValidator(random_bytes)
        self._newest = (-1, -1)
        #: Whether the packet L{open} returned last is the newest so far.
        self.newest = False
        self._validated: set = set()

    @property
    def ready(self) -> bool:
        """
        Whether we have the keys (we can seal and open).
        """
        return self._protection is not None

    @property
    def handshake_hash(self) -> bytes | None:
        """
        Noise's handshake hash, the same on both sides: it names the
        session.
        """
        return None if self._keys is None else self._keys.handshake_hash

    @property
    def peer_payload(self) -> bytes | None:
        """
        The responder's view of the payload the initiator's message 1
        carried (encrypted: the connect request), once read.
        """
        return None if self.initiator else self._handshake.peer_payload

    def outgoing_handshake(self) -> bytes | None:
        """
        The handshake message our next hello or answer carries, if any.
        """
        if self.initiator and self.ready:
            return None
        return self._outgoing

    def handshake_received(self, message: bytes, now: float) -> bool:
        """
        A handshake message from a hello or an answer (already checked
        against the introduction key).

        @return: whether this message gave us the keys.
        @raise HandshakeFailed: if the message is refused (nothing changes).
        """
        if self.failed_handshakes >= self.MAX_FAILED_HANDSHAKES:
            raise HandshakeFailed("too many refused handshake messages; no longer reading them")
        was_ready = self.ready
        try:
            if self.initiator:
                keys = self._handshake.read_message2(message)
            else:
                self._handshake.read_message1(message)
                self._outgoing, keys = self._handshake.write_message2()
        except HandshakeFailed:
            self.failed_handshakes += 1
            raise
        if not was_ready:
            self._keys = keys
            self._protection = PacketProtection(
                keys.send_key, keys.receive_key, now, rekey_interval=self._rekey_interval
            )
        return not was_ready

    def seal(self, conn_id: int, plaintext: bytes, now: float) -> bytes:
        """
        The sealed datagram carrying C{plaintext} to the peer's C{conn_id}.
        """
        return self._protection.seal(conn_id, plaintext, now)

    def open(self, datagram: bytes, now: float) -> bytes:
        """
        The plaintext of a sealed datagram from the peer.

        @raise PacketDropped: with the reason, if it is not authentic, a
            replay, or under a key we no longer hold.
        """
        if self._protection is None:
            raise PacketDropped("no-keys")
        plaintext = self._protection.open(datagram, now)
        self.peer_confirmed = True
        # Epoch and packet number: only the newest packet may move the
        # connection (a late one from the old path must not move it back).
        order = _ORDER.unpack_from(datagram, 4)
        self.newest = order > self._newest
        if self.newest:
            self._newest = order
        return plaintext

    # -- path validation ------------------------------------------------------

    def proven(self, address: object) -> bool:
        """
        Whether the peer answered a challenge from C{address}.
        """
        return address in self._validated

    def prove(self, address: object) -> None:
        """
        Take C{address} as the peer's without a challenge (the handshake
        itself validated it).
        """
        self._validated.add(address)

    def challenge(self, address: object, now: float) -> bytes | None:
        """
        The bytes of a PATH_CHALLENGE to send to C{address}, or None if
        one is already on its way there (or too many are).
        """
        return self._validator.challenge(address, now)

    def next_challenge_deadline(self) -> float | None:
        """
        When a challenge is next due again (or given up), if any is pending.
        """
        return self._validator.next_deadline()

    def challenges_due(self, now: float) -> list:
        """
        C{(address, data)} for each challenge to send again now (each time
        with new data).
        """
        return self._validator.retransmit_due(now)

    def response_received(self, address: object, data: bytes, now: float) -> bool:
        """
        A PATH_RESPONSE from C{address}: whether it proves the address.
        """
        if self._validator.response(address, data, now):
            self._validated.add(address)
            return True
        return False
