"""
The Noise Protocol Framework (revision 34), for the DH function 25519
(X25519), the hash function BLAKE2s and either cipher function of the
specification: AESGCM (AES-256-GCM) or ChaChaPoly (ChaCha20-Poly1305),
chosen by name (L{CIPHERS}).  p2pnet runs C{25519_AESGCM_BLAKE2s} (see
L{p2pnet.secure._handshake}); ChaChaPoly stays available and tested, as
it is the usual choice on processors without AES instructions.

The objects and methods follow the specification's names (section 5),
in snake_case: L{CipherState}, L{SymmetricState}, L{HandshakeState}.
The primitives come from pyca/cryptography (X25519, AES-GCM,
ChaCha20-Poly1305) and the standard library (BLAKE2s, RFC 2104 HMAC);
this module only composes them the way the specification says.

Supported handshake patterns: the one-way patterns N, K, X and the
fundamental interactive patterns NN, NK, NX, KN, KK, KX, XN, XK, XX, IN,
IK, IX, each with any combination of C{pskN} modifiers (C{IKpsk2},
C{XXpsk0+psk3}, ...).  p2pnet itself runs C{Noise_IKpsk2} (see
L{p2pnet.secure._handshake}).

Everything a peer sends that is not a valid handshake message raises
L{HandshakeFailed}, and the L{HandshakeState} must then be thrown away
(the specification's rule; L{HandshakeState.copy} lets a caller keep a
state to retry from).  Misuse by the caller (writing out of turn, a
missing key) raises C{RuntimeError} or C{ValueError}.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from p2pnet.errors import HandshakeFailed

DHLEN = 32
HASHLEN = 32
BLOCKLEN = 64
TAGLEN = 16
KEYLEN = 32
MAX_MESSAGE = 65535
MAX_NONCE = 2**64 - 1
DH_NAME = "25519"
HASH_NAME = "BLAKE2s"

_ZERO_NONCE_PREFIX = bytes(4)


# -- DH functions (section 4.1): 25519 ----------------------------------------


class KeyPair:
    """
    An X25519 key pair.

    @ivar private: the private key object.
    @ivar public: the 32-byte public key.
    """

    __slots__ = ("private", "public")

    def __init__(self, private: X25519PrivateKey) -> None:
        self.private = private
        self.public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls) -> KeyPair:
        """
        GENERATE_KEYPAIR(): a fresh key pair from the operating system's
        random source.
        """
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> KeyPair:
        """
        The key pair whose private key is the 32 bytes C{raw}.
        """
        if len(raw) != DHLEN:
            raise ValueError(f"an X25519 private key is {DHLEN} bytes, not {len(raw)}")
        return cls(X25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """
        The raw 32-byte private key (for storing it).
        """
        return self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def __repr__(self) -> str:
        return f"<KeyPair public={self.public.hex()}>"


def dh(key_pair: KeyPair, public_key: bytes) -> bytes:
    """
    DH(key_pair, public_key): the X25519 shared secret.

    @raise HandshakeFailed: if C{public_key} is not 32 bytes or is a
        low-order point (the shared secret would be all zeros, section 12.1
        lets implementations reject it; we do, so a peer cannot force a
        known key).
    """
    if len(public_key) != DHLEN:
        raise HandshakeFailed(f"public key is {len(public_key)} bytes, not {DHLEN}")
    try:
        secret = key_pair.private.exchange(X25519PublicKey.from_public_bytes(public_key))
    except ValueError:
        # OpenSSL refuses an all-zero result (a low-order point).
        raise HandshakeFailed("invalid public key: the shared secret is all zeros") from None
    if not any(secret):  # pragma: no cover - backends that do not refuse
        raise HandshakeFailed("invalid public key: the shared secret is all zeros")
    return secret


# -- hash functions (section 4.3): BLAKE2s -------------------------------------


def hash_(data: bytes) -> bytes:
    """
    HASH(data): BLAKE2s with a 32-byte output and no key.
    """
    return hashlib.blake2s(data).digest()


def hmac_hash(key: bytes, data: bytes) -> bytes:
    """
    HMAC-HASH(key, data): RFC 2104 HMAC over BLAKE2s (block length 64).
    """
    return hmac.digest(key, data, hashlib.blake2s)


def hkdf(chaining_key: bytes, input_key_material: bytes, num_outputs: int) -> tuple[bytes, ...]:
    """
    HKDF(chaining_key, input_key_material, num_outputs), section 4.3: two or
    three HASHLEN-byte outputs.
    """
    if num_outputs not in (2, 3):
        raise ValueError("HKDF gives two or three outputs")
    temp_key = hmac_hash(chaining_key, input_key_material)
    output1 = hmac_hash(temp_key, b"\x01")
    output2 = hmac_hash(temp_key, output1 + b"\x02")
    if num_outputs == 2:
        return output1, output2
    output3 = hmac_hash(temp_key, output2 + b"\x03")
    return output1, output2, output3


# -- cipher functions (section 4.2): AESGCM and ChaChaPoly ---------------------


class CipherFunctions:
    """
    One of the specification's cipher functions: ENCRYPT, DECRYPT and
    REKEY over a 32-byte key, a 64-bit nonce C{n} and a 16-byte tag.

    Both ciphers form their 96-bit nonce from 32 zero bits and the 64-bit
    C{n}; they differ in the AEAD and in the byte order of C{n}.

    @ivar name: the name in protocol names (C{"AESGCM"}, C{"ChaChaPoly"}).
    @ivar aead: the pyca/cryptography AEAD class, called with the key.
    @ivar byteorder: how C{n} is encoded: C{"big"} for AESGCM,
        C{"little"} for ChaChaPoly.
    """

    __slots__ = ("name", "aead", "byteorder")

    def __init__(self, name: str, aead: type, byteorder: str) -> None:
        self.name = name
        self.aead = aead
        self.byteorder = byteorder

    def nonce(self, n: int) -> bytes:
        """
        The 12-byte AEAD nonce for C{n}: 4 zero bytes, then C{n} as a
        64-bit integer in this cipher's byte order.
        """
        return _ZERO_NONCE_PREFIX + n.to_bytes(8, self.byteorder)  # type: ignore[arg-type]

    def encrypt(self, key: bytes, n: int, ad: bytes, plaintext: bytes) -> bytes:
        """
        ENCRYPT(k, n, ad, plaintext).
        """
        return self.aead(key).encrypt(self.nonce(n), plaintext, ad)

    def rekey(self, key: bytes) -> bytes:
        """
        REKEY(k): the first 32 bytes of ENCRYPT(k, maxnonce, zerolen,
        zeros), maxnonce = 2^64-1, zeros 32 zero bytes.
        """
        return self.encrypt(key, MAX_NONCE, b"", bytes(KEYLEN))[:KEYLEN]

    def __repr__(self) -> str:
        return f"<CipherFunctions {self.name}>"


#: AES-256 in GCM mode; n big-endian.
AESGCM_CIPHER = CipherFunctions("AESGCM", AESGCM, "big")
#: ChaCha20-Poly1305 (RFC 8439); n little-endian.
CHACHAPOLY_CIPHER = CipherFunctions("ChaChaPoly", ChaCha20Poly1305, "little")
#: The cipher functions by their names in protocol names.
CIPHERS = {c.name: c for c in (AESGCM_CIPHER, CHACHAPOLY_CIPHER)}


def cipher_functions(cipher: str | CipherFunctions) -> CipherFunctions:
    """
    The L{CipherFunctions} called C{cipher} (or C{cipher} itself).

    @raise ValueError: not a cipher this module has.
    """
    if isinstance(cipher, CipherFunctions):
        return cipher
    try:
        return CIPHERS[cipher]
    except KeyError:
        raise ValueError(f"unsupported cipher {cipher!r}") from None


# -- section 5.1 -----------------------------------------------------------------


class CipherState:
    """
    A key C{k} (or none) and a 64-bit nonce C{n}, for one cipher.

    @ivar cipher: the L{CipherFunctions} in use.
    """

    __slots__ = ("k", "n", "cipher", "_aead")

    def __init__(self, cipher: str | CipherFunctions = CHACHAPOLY_CIPHER) -> None:
        self.k: bytes | None = None
        self.n = 0
        self.cipher = cipher_functions(cipher)
        self._aead: AESGCM | ChaCha20Poly1305 | None = None

    def initialize_key(self, key: bytes | None) -> None:
        """
        InitializeKey(key): set C{k = key} and C{n = 0}.
        """
        if key is not None and len(key) != KEYLEN:
            raise ValueError(f"a cipher key is {KEYLEN} bytes")
        self.k = key
        self.n = 0
        self._aead = None if key is None else self.cipher.aead(key)

    def has_key(self) -> bool:
        """
        HasKey(): whether C{k} is set.
        """
        return self.k is not None

    def set_nonce(self, nonce: int) -> None:
        """
        SetNonce(nonce).
        """
        if not 0 <= nonce <= MAX_NONCE:
            raise ValueError("nonce out of range")
        self.n = nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """
        EncryptWithAd(ad, plaintext): the ciphertext (and C{n} moves on) if
        a key is set, otherwise the plaintext unchanged.

        @raise HandshakeFailed: if the nonce is exhausted (n = 2^64-1).
        """
        if self._aead is None:
            return plaintext
        if self.n >= MAX_NONCE:
            raise HandshakeFailed("nonce exhausted")
        ciphertext = self._aead.encrypt(self.cipher.nonce(self.n), plaintext, ad)
        self.n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """
        DecryptWithAd(ad, ciphertext): the plaintext if a key is set (and
        C{n} moves on only if it authenticated), otherwise the ciphertext
        unchanged.

        @raise HandshakeFailed: if the tag does not verify (a ciphertext
            shorter than a tag never does), or the nonce is exhausted.
        """
        if self._aead is None:
            return ciphertext
        if self.n >= MAX_NONCE:
            raise HandshakeFailed("nonce exhausted")
        try:
            plaintext = self._aead.decrypt(self.cipher.nonce(self.n), ciphertext, ad)
        except InvalidTag:
            raise HandshakeFailed("authentication tag did not verify") from None
        self.n += 1
        return plaintext

    def rekey(self) -> None:
        """
        Rekey(): C{k = REKEY(k)}; C{n} is left alone.
        """
        if self.k is None:
            raise RuntimeError("Rekey() without a key")
        key = self.cipher.rekey(self.k)
        self.k = key
        self._aead = self.cipher.aead(key)

    def copy(self) -> CipherState:
        other = CipherState(self.cipher)
        other.k, other.n, other._aead = self.k, self.n, self._aead
        return other


# -- section 5.2 -----------------------------------------------------------------


class SymmetricState:
    """
    A L{CipherState} plus the chaining key C{ck} and the handshake hash C{h}.
    """

    __slots__ = ("cipher_state", "ck", "h")

    def __init__(self, cipher: str | CipherFunctions = CHACHAPOLY_CIPHER) -> None:
        self.cipher_state = CipherState(cipher)
        self.ck = b""
        self.h = b""

    def initialize_symmetric(self, protocol_name: bytes) -> None:
        """
        InitializeSymmetric(protocol_name).
        """
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self.h = hash_(protocol_name)
        self.ck = self.h
        self.cipher_state.initialize_key(None)

    def mix_key(self, input_key_material: bytes) -> None:
        """
        MixKey(input_key_material).
        """
        self.ck, temp_k = hkdf(self.ck, input_key_material, 2)
        self.cipher_state.initialize_key(temp_k[:KEYLEN])

    def mix_hash(self, data: bytes) -> None:
        """
        MixHash(data): C{h = HASH(h || data)}.
        """
        self.h = hash_(self.h + data)

    def mix_key_and_hash(self, input_key_material: bytes) -> None:
        """
        MixKeyAndHash(input_key_material), used for the C{psk} token.
        """
        self.ck, temp_h, temp_k = hkdf(self.ck, input_key_material, 3)
        self.mix_hash(temp_h)
        self.cipher_state.initialize_key(temp_k[:KEYLEN])

    def get_handshake_hash(self) -> bytes:
        """
        GetHandshakeHash(): C{h}.
        """
        return self.h

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """
        EncryptAndHash(plaintext).
        """
        ciphertext = self.cipher_state.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """
        DecryptAndHash(ciphertext).

        @raise HandshakeFailed: if it does not authenticate.
        """
        plaintext = self.cipher_state.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """
        Split(): the two transport L{CipherState}s, initiator-to-responder
        first.
        """
        temp_k1, temp_k2 = hkdf(self.ck, b"", 2)
        cipher = self.cipher_state.cipher
        c1, c2 = CipherState(cipher), CipherState(cipher)
        c1.initialize_key(temp_k1[:KEYLEN])
        c2.initialize_key(temp_k2[:KEYLEN])
        return c1, c2

    def copy(self) -> SymmetricState:
        other = SymmetricState(self.cipher_state.cipher)
        other.cipher_state = self.cipher_state.copy()
        other.ck, other.h = self.ck, self.h
        return other


# -- handshake patterns (sections 7 and 9) -------------------------------------

# name: (initiator pre-message, responder pre-message, message patterns)
_PATTERNS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, ...], ...]]] = {
    "N": ((), ("s",), (("e", "es"),)),
    "K": (("s",), ("s",), (("e", "es", "ss"),)),
    "X": ((), ("s",), (("e", "es", "s", "ss"),)),
    "NN": ((), (), (("e",), ("e", "ee"))),
    "NK": ((), ("s",), (("e", "es"), ("e", "ee"))),
    "NX": ((), (), (("e",), ("e", "ee", "s", "es"))),
    "KN": (("s",), (), (("e",), ("e", "ee", "se"))),
    "KK": (("s",), ("s",), (("e", "es", "ss"), ("e", "ee", "se"))),
    "KX": (("s",), (), (("e",), ("e", "ee", "se", "s", "es"))),
    "XN": ((), (), (("e",), ("e", "ee"), ("s", "se"))),
    "XK": ((), ("s",), (("e", "es"), ("e", "ee"), ("s", "se"))),
    "XX": ((), (), (("e",), ("e", "ee", "s", "es"), ("s", "se"))),
    "IN": ((), (), (("e", "s"), ("e", "ee", "se"))),
    "IK": ((), ("s",), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
    "IX": ((), (), (("e", "s"), ("e", "ee", "se", "s", "es"))),
}
ONE_WAY = frozenset({"N", "K", "X"})

_NAME = re.compile(r"^([NKXI]{1,2})((?:psk\d+)(?:\+psk\d+)*)?$")


class HandshakePattern:
    """
    A parsed handshake pattern name such as C{"IKpsk2"}.

    @ivar name: the name as given.
    @ivar initiator_pre: tokens of the initiator's pre-message.
    @ivar responder_pre: tokens of the responder's pre-message.
    @ivar messages: the message patterns, with C{psk} tokens placed.
    @ivar one_way: whether only the initiator sends.
    @ivar psk_count: how many C{psk} tokens there are.
    """

    def __init__(self, name: str) -> None:
        match = _NAME.match(name)
        if match is None or match.group(1) not in _PATTERNS:
            raise ValueError(f"unsupported handshake pattern {name!r}")
        base, modifiers = match.group(1), match.group(2)
        initiator_pre, responder_pre, messages = _PATTERNS[base]
        message_list = [list(m) for m in messages]
        psks: list[int] = []
        if modifiers:
            for modifier in modifiers.split("+"):
                psks.append(int(modifier[3:]))
        if len(set(psks)) != len(psks):
            raise ValueError(f"repeated psk modifier in {name!r}")
        for position in psks:
            if position > len(message_list):
                raise ValueError(f"{name!r}: psk{position} but only {len(message_list)} messages")
            if position == 0:
                message_list[0].insert(0, "psk")
            else:
                message_list[position - 1].append("psk")
        self.name = name
        self.initiator_pre = initiator_pre
        self.responder_pre = responder_pre
        self.messages = tuple(tuple(m) for m in message_list)
        self.one_way = base in ONE_WAY
        self.psk_count = len(psks)

    def protocol_name(self, cipher: str | CipherFunctions = CHACHAPOLY_CIPHER) -> bytes:
        """
        C{Noise_<pattern>_25519_<cipher>_BLAKE2s}.
        """
        cipher_name = cipher_functions(cipher).name
        return f"Noise_{self.name}_{DH_NAME}_{cipher_name}_{HASH_NAME}".encode("ascii")


# -- section 5.3 -----------------------------------------------------------------


class HandshakeState:
    """
    One party's side of a Noise handshake.

    Build one with L{initialize}; alternate L{write_message} and
    L{read_message} as the pattern says; after the last message both return
    the two transport L{CipherState}s (initiator-to-responder first) instead
    of C{None}.

    @ivar s: the local static key pair, or C{None}.
    @ivar e: the local ephemeral key pair, or C{None}.
    @ivar rs: the remote static public key, or C{None}.
    @ivar re: the remote ephemeral public key, or C{None}.
    """

    def __init__(self) -> None:
        self.symmetric_state = SymmetricState()
        self.s: KeyPair | None = None
        self.e: KeyPair | None = None
        self.rs: bytes | None = None
        self.re: bytes | None = None
        self.initiator = False
        self.pattern: HandshakePattern | None = None
        self.message_index = 0
        self.psks: list[bytes] = []
        self._psk_index = 0

    @classmethod
    def initialize(
        cls,
        handshake_pattern: str | HandshakePattern,
        initiator: bool,
        prologue: bytes = b"",
        s: KeyPair | None = None,
        e: KeyPair | None = None,
        rs: bytes | None = None,
        re: bytes | None = None,
        psks: list[bytes] | tuple[bytes, ...] = (),
        cipher: str | CipherFunctions = CHACHAPOLY_CIPHER,
    ) -> HandshakeState:
        """
        Initialize(handshake_pattern, initiator, prologue, s, e, rs, re),
        plus the pre-shared keys the C{psk} tokens use, in order, and the
        cipher functions (the protocol name is
        C{Noise_<pattern>_25519_<cipher>_BLAKE2s}).

        C{e} is for test vectors only: a fresh ephemeral key pair is made
        when the pattern needs one.

        @param cipher: C{"AESGCM"} or C{"ChaChaPoly"} (or a
            L{CipherFunctions}).
        """
        pattern = handshake_pattern
        if not isinstance(pattern, HandshakePattern):
            pattern = HandshakePattern(pattern)
        functions = cipher_functions(cipher)
        if len(psks) != pattern.psk_count:
            raise ValueError(f"{pattern.name} needs {pattern.psk_count} psk(s), got {len(psks)}")
        for psk in psks:
            if len(psk) != 32:
                raise ValueError("a psk is 32 bytes")
        for key in (rs, re):
            if key is not None and len(key) != DHLEN:
                raise ValueError(f"a public key is {DHLEN} bytes")
        state = cls()
        state.symmetric_state = SymmetricState(functions)
        state.pattern = pattern
        state.initiator = initiator
        state.s, state.e, state.rs, state.re = s, e, rs, re
        state.psks = list(psks)
        symmetric = state.symmetric_state
        symmetric.initialize_symmetric(pattern.protocol_name(functions))
        symmetric.mix_hash(prologue)
        for tokens, ours in ((pattern.initiator_pre, initiator), (pattern.responder_pre, not initiator)):
            for token in tokens:
                if token != "s":  # pragma: no cover - only "s" pre-messages are supported
                    raise ValueError(token)
                key = state.s.public if ours and state.s else (None if ours else state.rs)
                if key is None:
                    raise ValueError(f"{pattern.name} needs the {'local' if ours else 'remote'} static key")
                symmetric.mix_hash(key)
        return state

    def copy(self) -> HandshakeState:
        """
        An independent copy (the key pairs are shared; they never change),
        so a caller can try a message on the copy and keep the original if
        it is refused.
        """
        other = HandshakeState()
        other.symmetric_state = self.symmetric_state.copy()
        other.s, other.e, other.rs, other.re = self.s, self.e, self.rs, self.re
        other.initiator, other.pattern = self.initiator, self.pattern
        other.message_index = self.message_index
        other.psks, other._psk_index = self.psks, self._psk_index
        return other

    def is_my_turn(self) -> bool:
        """
        Whether the next handshake message is ours to write.
        """
        return (self.message_index % 2 == 0) == self.initiator

    def is_finished(self) -> bool:
        assert self.pattern is not None
        return self.message_index >= len(self.pattern.messages)

    def _next_tokens(self, writing: bool) -> tuple[str, ...]:
        if self.pattern is None:
            raise RuntimeError("HandshakeState not initialised")
        if self.is_finished():
            raise RuntimeError("the handshake is already finished")
        if self.is_my_turn() != writing:
            raise RuntimeError("not this party's turn to " + ("write" if writing else "read"))
        return self.pattern.messages[self.message_index]

    def _dh_token(self, token: str) -> None:
        # es: initiator's e with responder's s; se: initiator's s with
        # responder's e (section 7.1), seen from our side.
        local, remote = {
            "ee": ("e", "re"),
            "ss": ("s", "rs"),
            "es": ("e", "rs") if self.initiator else ("s", "re"),
            "se": ("s", "re") if self.initiator else ("e", "rs"),
        }[token]
        key_pair = getattr(self, local)
        public = getattr(self, remote)
        if key_pair is None or public is None:
            raise RuntimeError(f"{token} needs both keys")
        self.symmetric_state.mix_key(dh(key_pair, public))

    def _psk(self) -> None:
        psk = self.psks[self._psk_index]
        self._psk_index += 1
        self.symmetric_state.mix_key_and_hash(psk)

    def _done(self) -> tuple[CipherState, CipherState] | None:
        self.message_index += 1
        if self.is_finished():
            return self.symmetric_state.split()
        return None

    def write_message(
        self, payload: bytes, message_buffer: bytearray
    ) -> tuple[CipherState, CipherState] | None:
        """
        WriteMessage(payload, message_buffer): append the next handshake
        message to C{message_buffer}.

        @return: the two transport L{CipherState}s after the last message,
            otherwise C{None}.
        """
        tokens = self._next_tokens(writing=True)
        assert self.pattern is not None
        symmetric = self.symmetric_state
        out = bytearray()
        for token in tokens:
            if token == "e":
                if self.e is None:
                    self.e = KeyPair.generate()
                out += self.e.public
                symmetric.mix_hash(self.e.public)
                if self.pattern.psk_count:
                    symmetric.mix_key(self.e.public)
            elif token == "s":
                if self.s is None:
                    raise RuntimeError("the pattern sends a static key but none was given")
                out += symmetric.encrypt_and_hash(self.s.public)
            elif token == "psk":
                self._psk()
            else:
                self._dh_token(token)
        out += symmetric.encrypt_and_hash(payload)
        if len(out) > MAX_MESSAGE:
            raise ValueError(f"handshake message would be {len(out)} bytes, more than {MAX_MESSAGE}")
        message_buffer += out
        return self._done()

    def read_message(
        self, message: bytes, payload_buffer: bytearray
    ) -> tuple[CipherState, CipherState] | None:
        """
        ReadMessage(message, payload_buffer): process the peer's next
        handshake message and append its payload to C{payload_buffer}.

        @return: the two transport L{CipherState}s after the last message,
            otherwise C{None}.
        @raise HandshakeFailed: if the message is too short or too long,
            does not authenticate, or carries an invalid public key.  This
            state is then unusable (use a L{copy} to retry).
        """
        tokens = self._next_tokens(writing=False)
        assert self.pattern is not None
        if len(message) > MAX_MESSAGE:
            raise HandshakeFailed(f"handshake message longer than {MAX_MESSAGE} bytes")
        symmetric = self.symmetric_state
        message = bytes(message)
        offset = 0
        for token in tokens:
            if token == "e":
                if len(message) - offset < DHLEN:
                    raise HandshakeFailed("handshake message too short")
                self.re = message[offset : offset + DHLEN]
                offset += DHLEN
                symmetric.mix_hash(self.re)
                if self.pattern.psk_count:
                    symmetric.mix_key(self.re)
            elif token == "s":
                size = DHLEN + (TAGLEN if symmetric.cipher_state.has_key() else 0)
                if len(message) - offset < size:
                    raise HandshakeFailed("handshake message too short")
                self.rs = symmetric.decrypt_and_hash(message[offset : offset + size])
                offset += size
            elif token == "psk":
                self._psk()
            else:
                self._dh_token(token)
        if symmetric.cipher_state.has_key() and len(message) - offset < TAGLEN:
            raise HandshakeFailed("handshake message too short")
        payload_buffer += symmetric.decrypt_and_hash(message[offset:])
        return self._done()

    def get_handshake_hash(self) -> bytes:
        return self.symmetric_state.get_handshake_hash()
