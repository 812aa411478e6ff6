"""
p2pnet's secure-session handshake: C{Noise_IKpsk2_25519_AESGCM_BLAKE2s}
folded into the dual hello.

    initiator (FLAG_INITIATOR)            responder
    Hello.noise    = message 1  ------->  read_message1: the initiator's
                     (e, es, s, ss)       static key, checked against the
                                          introduced one
                   <-------  HelloAck.noise = message 2 (e, ee, se, psk)
    read_message2

Why IKpsk2:
  - one round trip, carried by the hello and its answer, so a secure
    session costs no extra round trip over the plain handshake (XX needs
    a third message);
  - the responder's static key is already known from the introduction
    (C{Introduction.peer_key}), which is what C{IK} needs, and the
    initiator's static key travels encrypted to it: passive observers do
    not learn who the initiator is;
  - the psk, derived from the introduction key (L{derive_psk}), enters at
    the end of message 2 (C{psk2}), so the session keys depend on it and on
    the introduction id (the prologue): a handshake cannot be completed,
    nor an old one replayed into a new introduction, by anyone who was
    not introduced;
  - both static keys take part (es, ss, se), so with keys pinned
    (C{expect_key}, the known-peers file) even the introducer cannot
    impersonate either side: it knows the psk but no private key.

What it does not give:
  - message 1 does not depend on the psk: anyone who knows the responder's
    public key can make a valid message 1 under a key of their own.  The
    responder therefore refuses any static key but the introduced one
    before it commits to a message 1;
  - message 1 can be replayed within its introduction; the responder
    answers an identical copy with identical bytes and refuses a different
    one after the first, so a replay gains nothing;
  - the initiator's identity is hidden from passive observers only: it is
    encrypted to the responder's static key, so whoever steals that key
    later can read it, and an active introducer that hands out a key of its
    own for the responder reads it at once;
  - the responder's identity is not hidden at all (it is in the
    introduction);
  - without pinning, the introducer is trusted: it chooses the keys the
    two sides expect;
  - the responder learns that the initiator holds the psk only when the
    first sealed packet from it opens.

Why AESGCM (AES-256-GCM) rather than ChaChaPoly: the data packets use the
same cipher as the handshake (L{p2pnet.secure._packet}), and on processors
with AES instructions, which the machines p2pnet targets have,
pyca/cryptography's AES-GCM seals a 1200-byte packet in about a third of
the time ChaCha20-Poly1305 takes (docs/performance.md, "Packet sealing").
L{p2pnet.secure._noise} keeps ChaChaPoly, the usual choice where AES is
done in software.

Both sides end with L{SessionKeys}: the initiator sends with Split()'s
first key and receives with the second; the responder the reverse.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import NamedTuple

from p2pnet.errors import HandshakeFailed
from p2pnet.secure._noise import DHLEN, HandshakePattern, HandshakeState, KeyPair
from p2pnet.secure.identity import Identity

PROLOGUE_PREFIX = b"p2pnet/1"
PATTERN = HandshakePattern("IKpsk2")
CIPHER = "AESGCM"
PROTOCOL_NAME = PATTERN.protocol_name(CIPHER)
PSK_LABEL = b"p2pnet noise psk"
MAX_PAYLOAD = 1024


class SessionKeys(NamedTuple):
    """
    What a finished handshake gives one side.

    @ivar send_key: the 32-byte AES-256-GCM key this side seals with.
    @ivar receive_key: the key this side opens the peer's packets with.
    @ivar handshake_hash: Noise's handshake hash C{h}, the same on both
        sides; it names the session (for channel binding).
    """

    send_key: bytes
    receive_key: bytes
    handshake_hash: bytes


def derive_psk(intro_key: bytes) -> bytes:
    """
    The Noise psk for an introduction: BLAKE2s with a 32-byte digest, keyed
    with the introduction key (16 bytes), over C{b"p2pnet noise psk"}.
    """
    if len(intro_key) != 16:
        raise ValueError(f"an introduction key is 16 bytes, not {len(intro_key)}")
    return hashlib.blake2s(PSK_LABEL, digest_size=32, key=intro_key).digest()


def prologue(intro_id: bytes) -> bytes:
    """
    The Noise prologue: C{b"p2pnet/1"} followed by the introduction id.
    """
    return PROLOGUE_PREFIX + intro_id


def _key_pair(identity: Identity | KeyPair) -> KeyPair:
    return identity.key_pair if isinstance(identity, Identity) else identity


def _check_payload(payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"handshake payload longer than {MAX_PAYLOAD} bytes")
    return bytes(payload)


class InitiatorHandshake:
    """
    The initiator's side: L{message1} (the same bytes every time, for every
    retransmitted hello), then L{read_message2}.

    @ivar peer_payload: the responder's payload, once message 2 is read.
    """

    def __init__(
        self,
        identity: Identity | KeyPair,
        responder_key: bytes,
        intro_id: bytes,
        intro_key: bytes,
        *,
        payload: bytes = b"",
        ephemeral: KeyPair | None = None,
    ) -> None:
        """
        @param identity: our static key pair.
        @param responder_key: the responder's static public key (from the
            introduction, or pinned).
        @param intro_id: the introduction id (goes into the prologue).
        @param intro_key: the introduction key (the psk comes from it).
        @param payload: carried (encrypted) in message 1.
        @param ephemeral: a fixed ephemeral key pair, for tests only.
        """
        if len(responder_key) != DHLEN:
            raise ValueError(f"the responder's key is {DHLEN} bytes")
        state = HandshakeState.initialize(
            PATTERN,
            True,
            prologue(intro_id),
            s=_key_pair(identity),
            e=ephemeral,
            rs=bytes(responder_key),
            psks=[derive_psk(intro_key)],
            cipher=CIPHER,
        )
        buffer = bytearray()
        state.write_message(_check_payload(payload), buffer)
        self._message1 = bytes(buffer)
        self._after_message1 = state
        self._message2: bytes | None = None
        self._keys: SessionKeys | None = None
        self.peer_payload: bytes | None = None

    def message1(self) -> bytes:
        """
        Handshake message 1, for C{Hello.noise}; identical on every call.
        """
        return self._message1

    def read_message2(self, message: bytes) -> SessionKeys:
        """
        Read the responder's message 2 (C{HelloAck.noise}).

        A refused message changes nothing, so a forged answer cannot stop
        the genuine one from completing the handshake.  Once a message 2
        is accepted, an identical copy gives the same keys again and any
        other is refused.

        @raise HandshakeFailed: if the message is refused.
        """
        message = bytes(message)
        if self._message2 is not None:
            assert self._keys is not None
            if hmac.compare_digest(message, self._message2):
                return self._keys
            raise HandshakeFailed("a different handshake message 2 after the first was accepted")
        state = self._after_message1.copy()
        payload = bytearray()
        ciphers = state.read_message(message, payload)
        assert ciphers is not None
        initiator_to_responder, responder_to_initiator = ciphers
        keys = SessionKeys(initiator_to_responder.k, responder_to_initiator.k, state.get_handshake_hash())
        self._message2, self._keys = message, keys
        self.peer_payload = bytes(payload)
        return keys

    @property
    def keys(self) -> SessionKeys | None:
        """
        The session keys once message 2 was accepted, else C{None}.
        """
        return self._keys


class ResponderHandshake:
    """
    The responder's side: L{read_message1} (checks the initiator's static
    key against the introduced one), then L{write_message2}.

    @ivar peer_payload: the initiator's payload, once message 1 is read.
    """

    def __init__(
        self,
        identity: Identity | KeyPair,
        initiator_key: bytes,
        intro_id: bytes,
        intro_key: bytes,
        *,
        payload: bytes = b"",
        ephemeral: KeyPair | None = None,
    ) -> None:
        """
        @param identity: our static key pair.
        @param initiator_key: the initiator's static public key from the
            introduction: a message 1 from any other static key is refused
            (and changes nothing).  Checking it here, before anything is
            committed, matters: message 1 of IKpsk2 does not depend on the
            psk, so anyone who knows our public key can make a valid one
            with a key of their own.
        @param intro_id: the introduction id (goes into the prologue).
        @param intro_key: the introduction key (the psk comes from it).
        @param payload: carried (encrypted) in message 2.
        @param ephemeral: a fixed ephemeral key pair, for tests only.
        """
        if len(initiator_key) != DHLEN:
            raise ValueError(f"the initiator's key is {DHLEN} bytes")
        self._initial = HandshakeState.initialize(
            PATTERN,
            False,
            prologue(intro_id),
            s=_key_pair(identity),
            e=ephemeral,
            psks=[derive_psk(intro_key)],
            cipher=CIPHER,
        )
        self._expected = bytes(initiator_key)
        self._payload = _check_payload(payload)
        self._message1: bytes | None = None
        self._after_message1: HandshakeState | None = None
        self._message2: bytes | None = None
        self._keys: SessionKeys | None = None
        self.peer_payload: bytes | None = None

    def read_message1(self, message: bytes) -> bytes:
        """
        Read the initiator's message 1 (C{Hello.noise}).

        A refused message changes nothing.  Once one is accepted, an
        identical copy (a retransmitted hello) is accepted again and any
        other message 1 is refused.

        @return: the initiator's static public key.
        @raise HandshakeFailed: if the message is refused.
        """
        message = bytes(message)
        if self._message1 is not None:
            assert self._after_message1 is not None and self._after_message1.rs is not None
            if hmac.compare_digest(message, self._message1):
                return self._after_message1.rs
            raise HandshakeFailed("a different handshake message 1 after the first was accepted")
        state = self._initial.copy()
        payload = bytearray()
        state.read_message(message, payload)
        initiator_key = state.rs
        assert initiator_key is not None
        if not hmac.compare_digest(initiator_key, self._expected):
            raise HandshakeFailed("the initiator's static key is not the introduced one")
        self._message1, self._after_message1 = message, state
        self.peer_payload = bytes(payload)
        return initiator_key

    def write_message2(self) -> tuple[bytes, SessionKeys]:
        """
        Handshake message 2 (for C{HelloAck.noise}) and our session keys;
        the same bytes on every call.

        @raise RuntimeError: before a message 1 was accepted.
        """
        if self._message2 is None:
            if self._after_message1 is None:
                raise RuntimeError("write_message2 before a message 1 was accepted")
            state = self._after_message1.copy()
            buffer = bytearray()
            ciphers = state.write_message(self._payload, buffer)
            assert ciphers is not None
            initiator_to_responder, responder_to_initiator = ciphers
            self._keys = SessionKeys(
                responder_to_initiator.k, initiator_to_responder.k, state.get_handshake_hash()
            )
            self._message2 = bytes(buffer)
        assert self._keys is not None
        return self._message2, self._keys

    @property
    def initiator_key(self) -> bytes | None:
        """
        The initiator's static key once message 1 was accepted, else C{None}.
        """
        return None if self._after_message1 is None else self._after_message1.rs

    @property
    def keys(self) -> SessionKeys | None:
        """
        The session keys once message 2 was written, else C{None}.
        """
        return self._keys
