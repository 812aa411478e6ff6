"""
Tests for L{p2pnet.secure._noise} (the Noise framework) and
L{p2pnet.secure._handshake} (p2pnet's IKpsk2 handshake).

Correctness comes from outside this code: the published cacophony/snow
test vectors (tests/vectors/), the independent C{noiseprotocol} package
from PyPI, and pyca/cryptography's RFC 5869 HKDF.
"""

from __future__ import annotations

import hashlib
import json
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st
from noise.connection import Keypair as TheirKeypair
from noise.connection import NoiseConnection
from twisted.trial.unittest import SynchronousTestCase

from p2pnet.errors import HandshakeFailed, P2PError
from p2pnet.secure._handshake import (
    PROTOCOL_NAME,
    InitiatorHandshake,
    ResponderHandshake,
    SessionKeys,
    derive_psk,
)
from p2pnet.secure._noise import (
    CipherState,
    HandshakePattern,
    HandshakeState,
    KeyPair,
    dh,
    hkdf,
)
from p2pnet.secure.identity import Identity

_VECTOR_DIR = os.path.join(os.path.dirname(__file__), "vectors")
#: The published vectors, by cipher name.
VECTORS = {
    "ChaChaPoly": os.path.join(_VECTOR_DIR, "noise_25519_chachapoly_blake2s.json"),
    "AESGCM": os.path.join(_VECTOR_DIR, "noise_25519_aesgcm_blake2s.json"),
}


def _key(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _identity(label: str) -> Identity:
    return Identity.from_private_bytes(_key(label))


def _flips(message: bytes):
    for index in range(len(message) * 8):
        mutated = bytearray(message)
        mutated[index // 8] ^= 1 << (index % 8)
        yield bytes(mutated)


# -- published vectors ------------------------------------------------------


def _run_vector(test: SynchronousTestCase, vector: dict) -> None:
    def key_pair(name):
        return KeyPair.from_private_bytes(bytes.fromhex(vector[name])) if name in vector else None

    def raw(name):
        return bytes.fromhex(vector[name]) if name in vector else None

    _, pattern, dh_name, cipher, hash_name = vector["protocol_name"].split("_")
    test.assertEqual((dh_name, hash_name), ("25519", "BLAKE2s"))
    initiator = HandshakeState.initialize(
        pattern,
        True,
        raw("init_prologue"),
        s=key_pair("init_static"),
        e=key_pair("init_ephemeral"),
        rs=raw("init_remote_static"),
        psks=[bytes.fromhex(p) for p in vector.get("init_psks", [])],
        cipher=cipher,
    )
    responder = HandshakeState.initialize(
        pattern,
        False,
        raw("resp_prologue"),
        s=key_pair("resp_static"),
        e=key_pair("resp_ephemeral"),
        rs=raw("resp_remote_static"),
        psks=[bytes.fromhex(p) for p in vector.get("resp_psks", [])],
        cipher=cipher,
    )
    assert initiator.pattern is not None
    handshake_length = len(initiator.pattern.messages)
    ciphers = {}
    for index, message in enumerate(vector["messages"]):
        payload = bytes.fromhex(message["payload"])
        expected = bytes.fromhex(message["ciphertext"])
        if index < handshake_length:
            writer, reader = (initiator, responder) if index % 2 == 0 else (responder, initiator)
            buffer = bytearray()
            written = writer.write_message(payload, buffer)
            test.assertEqual(bytes(buffer).hex(), expected.hex(), f"handshake message {index}")
            received = bytearray()
            read = reader.read_message(bytes(buffer), received)
            test.assertEqual(bytes(received), payload)
            test.assertEqual(written is None, index < handshake_length - 1)
            test.assertEqual(read is None, index < handshake_length - 1)
            if written is not None:
                ciphers[writer] = written
                ciphers[reader] = read
        else:
            if initiator.pattern.one_way or index % 2 == 0:
                sender, receiver = ciphers[initiator][0], ciphers[responder][0]
            else:
                sender, receiver = ciphers[responder][1], ciphers[initiator][1]
            ciphertext = sender.encrypt_with_ad(b"", payload)
            test.assertEqual(ciphertext.hex(), expected.hex(), f"transport message {index}")
            test.assertEqual(receiver.decrypt_with_ad(b"", ciphertext), payload)
    test.assertEqual(initiator.get_handshake_hash(), responder.get_handshake_hash())
    if "handshake_hash" in vector:
        test.assertEqual(initiator.get_handshake_hash().hex(), vector["handshake_hash"])


class VectorTests(SynchronousTestCase):
    """
    Every handshake message, transport message and handshake hash of the
    published vectors is reproduced byte for byte.
    """

    def test_vector_files(self) -> None:
        """
        Each cipher's vector file holds the patterns p2pnet relies on, all
        for that cipher.
        """
        for cipher, path in VECTORS.items():
            with open(path) as f:
                names = {v["protocol_name"] for v in json.load(f)["vectors"]}
            for name in ("IKpsk2", "XX", "IK", "NN", "IKpsk0+psk2"):
                self.assertIn(f"Noise_{name}_25519_{cipher}_BLAKE2s", names)
            self.assertEqual({n.split("_")[3] for n in names}, {cipher})


for _cipher, _path in VECTORS.items():
    with open(_path) as _f:
        for _n, _vector in enumerate(json.load(_f)["vectors"]):
            _label = _vector["protocol_name"].split("_")[1].replace("+", "_")

            def _test(self, vector=_vector) -> None:
                _run_vector(self, vector)

            _test.__doc__ = f"{_vector['protocol_name']} ({_vector['source']}) matches byte for byte."
            setattr(VectorTests, f"test_{_cipher.lower()}_{_n:02d}_{_vector['source']}_{_label}", _test)
del _cipher, _path, _f, _n, _vector, _label, _test


# -- primitives --------------------------------------------------------------


class PrimitiveTests(SynchronousTestCase):
    """
    The hash, KDF, cipher and DH functions of section 4.
    """

    def test_hkdf_is_rfc5869(self) -> None:
        """
        The spec's HKDF is RFC 5869 HKDF with the chaining key as salt and
        empty info; compared with pyca/cryptography's implementation.
        """
        chaining_key, material = _key("ck"), b"input key material"
        theirs = HKDF(algorithm=hashes.BLAKE2s(32), length=96, salt=chaining_key, info=b"").derive(material)
        self.assertEqual(b"".join(hkdf(chaining_key, material, 3)), theirs)
        self.assertEqual(b"".join(hkdf(chaining_key, material, 2)), theirs[:64])

    def test_low_order_public_key(self) -> None:
        """
        A public key that makes the X25519 shared secret all zeros is
        refused with L{HandshakeFailed}, as is one of the wrong length.
        """
        ours = KeyPair.from_private_bytes(_key("a"))
        for bad in (bytes(32), (1).to_bytes(32, "little"), bytes(31)):
            self.assertRaises(HandshakeFailed, dh, ours, bad)
        self.assertEqual(len(dh(ours, KeyPair.from_private_bytes(_key("b")).public)), 32)

    def test_low_order_remote_static(self) -> None:
        """
        An IK initiator given an all-zero responder key cannot write
        message 1: the es token's shared secret would be all zeros.
        """
        state = HandshakeState.initialize("IK", True, b"", s=KeyPair.from_private_bytes(_key("a")), rs=bytes(32))
        self.assertRaises(HandshakeFailed, state.write_message, b"", bytearray())

    def test_handshake_failed_is_p2p_error(self) -> None:
        self.assertTrue(issubclass(HandshakeFailed, P2PError))

    def test_nonce_exhausted(self) -> None:
        """
        The nonce 2^64-1 is reserved: encrypting or decrypting with it
        fails, the one before it works (both ciphers).
        """
        for name in ("ChaChaPoly", "AESGCM"):
            cipher = CipherState(name)
            cipher.initialize_key(_key("k"))
            cipher.set_nonce(2**64 - 2)
            cipher.encrypt_with_ad(b"", b"last")
            self.assertEqual(cipher.n, 2**64 - 1)
            self.assertRaises(HandshakeFailed, cipher.encrypt_with_ad, b"", b"x")
            self.assertRaises(HandshakeFailed, cipher.decrypt_with_ad, b"", bytes(20))

    def test_nonce_format(self) -> None:
        """
        The ChaChaPoly nonce is 4 zero bytes then the little-endian n.
        """
        key = _key("k")
        cipher = CipherState("ChaChaPoly")
        cipher.initialize_key(key)
        cipher.set_nonce(0x0102030405060708)
        nonce = bytes(4) + bytes([8, 7, 6, 5, 4, 3, 2, 1])
        self.assertEqual(cipher.encrypt_with_ad(b"ad", b"hi"), ChaCha20Poly1305(key).encrypt(nonce, b"hi", b"ad"))

    def test_aesgcm_nonce_format(self) -> None:
        """
        The AESGCM cipher is AES-256-GCM with the nonce 4 zero bytes then
        the big-endian n, and a 16-byte tag.
        """
        key = _key("k")
        cipher = CipherState("AESGCM")
        cipher.initialize_key(key)
        cipher.set_nonce(0x0102030405060708)
        nonce = bytes(4) + bytes([1, 2, 3, 4, 5, 6, 7, 8])
        ciphertext = cipher.encrypt_with_ad(b"ad", b"hi")
        self.assertEqual(len(ciphertext), 2 + 16)
        self.assertEqual(ciphertext, AESGCM(key).encrypt(nonce, b"hi", b"ad"))
        receiver = CipherState("AESGCM")
        receiver.initialize_key(key)
        receiver.set_nonce(0x0102030405060708)
        self.assertEqual(receiver.decrypt_with_ad(b"ad", ciphertext), b"hi")

    def test_rekey_literal(self) -> None:
        """
        REKEY(k) is the first 32 bytes of ENCRYPT(k, 2^64-1, empty ad, 32
        zero bytes), with each cipher's nonce encoding (literal nonces).
        """
        key = _key("k")
        for name, aead, nonce5 in (
            ("AESGCM", AESGCM, bytes(11) + b"\x05"),
            ("ChaChaPoly", ChaCha20Poly1305, bytes(4) + b"\x05" + bytes(7)),
        ):
            cipher = CipherState(name)
            cipher.initialize_key(key)
            cipher.set_nonce(5)
            cipher.rekey()
            new_key = aead(key).encrypt(bytes(4) + b"\xff" * 8, bytes(32), b"")[:32]
            self.assertEqual(cipher.k, new_key)
            self.assertEqual(cipher.n, 5)
            self.assertEqual(cipher.encrypt_with_ad(b"", b"x"), aead(new_key).encrypt(nonce5, b"x", b""))
        # The two ciphers' rekeyed keys differ (a swapped AEAD would show).
        aes, chacha = CipherState("AESGCM"), CipherState("ChaChaPoly")
        for state in (aes, chacha):
            state.initialize_key(key)
            state.rekey()
        self.assertNotEqual(aes.k, chacha.k)

    def test_unknown_cipher(self) -> None:
        """
        Only AESGCM and ChaChaPoly are cipher names; the protocol name
        carries the one chosen.
        """
        self.assertRaises(ValueError, CipherState, "AES256")
        self.assertRaises(ValueError, HandshakeState.initialize, "NN", True, cipher="chachapoly")
        self.assertEqual(HandshakePattern("IKpsk2").protocol_name("AESGCM"), b"Noise_IKpsk2_25519_AESGCM_BLAKE2s")
        self.assertEqual(HandshakePattern("XX").protocol_name("ChaChaPoly"), b"Noise_XX_25519_ChaChaPoly_BLAKE2s")

    def test_failed_decrypt_keeps_nonce(self) -> None:
        """
        A ciphertext that does not authenticate leaves n alone, so the
        genuine one still opens afterwards.
        """
        sender, receiver = CipherState(), CipherState()
        sender.initialize_key(_key("k"))
        receiver.initialize_key(_key("k"))
        ciphertext = sender.encrypt_with_ad(b"ad", b"payload")
        for bad in (ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]), ciphertext[:15], b""):
            self.assertRaises(HandshakeFailed, receiver.decrypt_with_ad, b"ad", bad)
        self.assertRaises(HandshakeFailed, receiver.decrypt_with_ad, b"other", ciphertext)
        self.assertEqual(receiver.n, 0)
        self.assertEqual(receiver.decrypt_with_ad(b"ad", ciphertext), b"payload")
        self.assertEqual(receiver.n, 1)

    def test_no_key_passes_through(self) -> None:
        """
        Without a key, EncryptWithAd and DecryptWithAd return their input.
        """
        cipher = CipherState()
        self.assertFalse(cipher.has_key())
        self.assertEqual(cipher.encrypt_with_ad(b"ad", b"clear"), b"clear")
        self.assertEqual(cipher.decrypt_with_ad(b"ad", b"clear"), b"clear")

    def test_pattern_names(self) -> None:
        """
        psk modifiers put the psk token where section 9.2 says; unknown
        names and impossible modifiers are refused.
        """
        self.assertEqual(
            HandshakePattern("IKpsk2").messages,
            (("e", "es", "s", "ss"), ("e", "ee", "se", "psk")),
        )
        self.assertEqual(
            HandshakePattern("XXpsk0+psk3").messages,
            (("psk", "e"), ("e", "ee", "s", "es"), ("s", "se", "psk")),
        )
        for bad in ("IKpsk3", "ZZ", "IK+psk1", "IKpsk1+psk1", "Ikpsk2", "NNpsk"):
            self.assertRaises(ValueError, HandshakePattern, bad)

    def test_wrong_turn(self) -> None:
        """
        Writing or reading out of turn is a programming error.
        """
        state = HandshakeState.initialize("NN", False)
        self.assertRaises(RuntimeError, state.write_message, b"", bytearray())
        state = HandshakeState.initialize("NN", True)
        self.assertRaises(RuntimeError, state.read_message, bytes(48), bytearray())

    def test_too_long(self) -> None:
        """
        A handshake message longer than 65535 bytes is refused on reading
        and cannot be written.
        """
        state = HandshakeState.initialize("NN", False)
        self.assertRaises(HandshakeFailed, state.read_message, bytes(65536), bytearray())
        state = HandshakeState.initialize("NN", True)
        self.assertRaises(ValueError, state.write_message, bytes(65535 - 31), bytearray())

    def test_psk_count(self) -> None:
        """
        A psk pattern needs exactly as many 32-byte psks as tokens.
        """
        self.assertRaises(ValueError, HandshakeState.initialize, "NNpsk0", True)
        self.assertRaises(ValueError, HandshakeState.initialize, "NNpsk0", True, psks=[bytes(16)])
        self.assertRaises(ValueError, HandshakeState.initialize, "NN", True, psks=[bytes(32)])


# -- interoperability with the noiseprotocol package -----------------------


def _theirs(
    name: str,
    initiator: bool,
    prologue: bytes,
    static: bytes,
    remote: bytes | None,
    psk: bytes | None,
    cipher: str = "AESGCM",
):
    connection = NoiseConnection.from_name(f"Noise_{name}_25519_{cipher}_BLAKE2s".encode())
    if initiator:
        connection.set_as_initiator()
    else:
        connection.set_as_responder()
    connection.set_prologue(prologue)
    connection.set_keypair_from_private_bytes(TheirKeypair.STATIC, static)
    if remote is not None:
        connection.set_keypair_from_public_bytes(TheirKeypair.REMOTE_STATIC, remote)
    if psk is not None:
        connection.set_psks(psk=psk)
    connection.start_handshake()
    return connection


class AESGCMInteropTests(SynchronousTestCase):
    """
    Our HandshakeState against the independent C{noiseprotocol} package,
    in both roles, then transport messages both ways and a rekey, with
    the AESGCM cipher (p2pnet's).
    """

    cipher = "AESGCM"
    prologue = b"p2pnet/1" + bytes(range(8))
    psk = _key("psk")

    def _exchange(self, name: str, ours_initiates: bool) -> None:
        alice, bob = _key("alice"), _key("bob")
        alice_public = KeyPair.from_private_bytes(alice).public
        bob_public = KeyPair.from_private_bytes(bob).public
        needs_remote = name.startswith("IK")
        psks = [self.psk] if "psk" in name else []
        ours_static, their_static = (alice, bob) if ours_initiates else (bob, alice)
        ours = HandshakeState.initialize(
            name,
            ours_initiates,
            self.prologue,
            s=KeyPair.from_private_bytes(ours_static),
            rs=bob_public if needs_remote and ours_initiates else None,
            psks=psks,
            cipher=self.cipher,
        )
        theirs = _theirs(
            name,
            not ours_initiates,
            self.prologue,
            their_static,
            bob_public if needs_remote and not ours_initiates else None,
            self.psk if psks else None,
            self.cipher,
        )
        ciphers = None
        index = 0
        while ciphers is None:
            payload = f"handshake {index}".encode()
            if ours.is_my_turn():
                buffer = bytearray()
                ciphers = ours.write_message(payload, buffer)
                self.assertEqual(bytes(theirs.read_message(bytes(buffer))), payload)
            else:
                ciphers = ours.read_message(bytes(theirs.write_message(payload)), received := bytearray())
                self.assertEqual(bytes(received), payload)
            index += 1
        self.assertTrue(theirs.handshake_finished)
        self.assertEqual(ours.get_handshake_hash(), theirs.get_handshake_hash())
        send, receive = ciphers if ours_initiates else (ciphers[1], ciphers[0])
        for n in range(3):
            message = f"ours {n}".encode() * (n + 1)
            self.assertEqual(theirs.decrypt(send.encrypt_with_ad(b"", message)), message)
            message = f"theirs {n}".encode()
            self.assertEqual(receive.decrypt_with_ad(b"", theirs.encrypt(message)), message)
        # Rekey (section 11.3) both ways: our REKEY against theirs.
        send.rekey()
        theirs.rekey_inbound_cipher()
        self.assertEqual(theirs.decrypt(send.encrypt_with_ad(b"", b"after rekey")), b"after rekey")
        theirs.rekey_outbound_cipher()
        receive.rekey()
        self.assertEqual(receive.decrypt_with_ad(b"", theirs.encrypt(b"back")), b"back")
        if ours_initiates:
            self.assertEqual(ours.rs, bob_public)
        else:
            self.assertEqual(ours.rs, alice_public)

    def test_ikpsk2_ours_initiates(self) -> None:
        self._exchange("IKpsk2", True)

    def test_ikpsk2_theirs_initiates(self) -> None:
        self._exchange("IKpsk2", False)

    def test_xx_ours_initiates(self) -> None:
        self._exchange("XX", True)

    def test_xx_theirs_initiates(self) -> None:
        self._exchange("XX", False)

    def test_xxpsk3_ours_initiates(self) -> None:
        self._exchange("XXpsk3", True)

    def test_rekey_keeps_nonce(self) -> None:
        """
        Rekey() changes k but not n (section 5.1): after two messages and
        a rekey, the next message uses nonce 2 under the new key, as the
        noiseprotocol package computes it.
        """
        ours = CipherState(self.cipher)
        ours.initialize_key(_key("k"))
        ours.encrypt_with_ad(b"", b"1")
        ours.encrypt_with_ad(b"", b"2")
        ours.rekey()
        self.assertEqual(ours.n, 2)
        # The same with noiseprotocol's CipherState machinery.
        theirs = _theirs("NN", True, b"", _key("x"), None, None, self.cipher)
        cipher = theirs.noise_protocol.cipher_class()
        cipher.initialize(_key("k"))
        new_key = cipher.rekey(_key("k"))
        cipher.initialize(new_key)
        self.assertEqual(ours.k, new_key)
        self.assertEqual(ours.encrypt_with_ad(b"ad", b"3"), cipher.encrypt(new_key, 2, b"ad", b"3"))


class ChaChaPolyInteropTests(AESGCMInteropTests):
    """
    The same with the ChaChaPoly cipher.
    """

    cipher = "ChaChaPoly"


# -- p2pnet's IKpsk2 handshake ------------------------------------------------

INTRO_ID = bytes.fromhex("0102030405060708")
INTRO_KEY = bytes(range(16))


class PskTests(SynchronousTestCase):
    def test_derive_psk(self) -> None:
        """
        The psk is BLAKE2s-256 keyed with the introduction key over
        b"p2pnet noise psk" (literal values).
        """
        self.assertEqual(
            derive_psk(bytes(range(16))).hex(),
            "b8a080e8b63ca9ce15caa3eeed79ab132231464ba12305dc0f612fd9ed7e0fe8",
        )
        self.assertEqual(
            derive_psk(b"\xff" * 16).hex(),
            "d9782002842d9371d9240aeaae678d643597fb69514eee6ae5a8745879651591",
        )
        error = self.assertRaises(ValueError, derive_psk, bytes(32))
        self.assertEqual(str(error), "an introduction key is 16 bytes, not 32")


class ProtocolNameTests(SynchronousTestCase):
    def test_protocol_name(self) -> None:
        """
        p2pnet runs Noise_IKpsk2_25519_AESGCM_BLAKE2s.
        """
        self.assertEqual(PROTOCOL_NAME, b"Noise_IKpsk2_25519_AESGCM_BLAKE2s")


class SessionHandshakeTests(SynchronousTestCase):
    """
    L{InitiatorHandshake} and L{ResponderHandshake}.
    """

    def setUp(self) -> None:
        self.alice, self.bob = _identity("alice"), _identity("bob")

    def initiator(self, **kwargs) -> InitiatorHandshake:
        args = dict(identity=self.alice, responder_key=self.bob.public, intro_id=INTRO_ID, intro_key=INTRO_KEY)
        args.update(kwargs)
        return InitiatorHandshake(**args)

    def responder(self, **kwargs) -> ResponderHandshake:
        args = dict(identity=self.bob, initiator_key=self.alice.public, intro_id=INTRO_ID, intro_key=INTRO_KEY)
        args.update(kwargs)
        return ResponderHandshake(**args)

    def test_handshake(self) -> None:
        """
        Both sides end with mirrored keys and the same handshake hash;
        message 1 is 96 bytes and message 2 48 without payloads.
        """
        initiator, responder = self.initiator(), self.responder()
        message1 = initiator.message1()
        self.assertEqual(len(message1), 96)
        self.assertEqual(responder.read_message1(message1), self.alice.public)
        message2, responder_keys = responder.write_message2()
        self.assertEqual(len(message2), 48)
        initiator_keys = initiator.read_message2(message2)
        self.assertIsInstance(initiator_keys, SessionKeys)
        send, receive, hash_ = initiator_keys
        self.assertEqual((send, receive, hash_), (responder_keys[1], responder_keys[0], responder_keys[2]))
        self.assertNotEqual(send, receive)
        self.assertEqual(initiator.keys, initiator_keys)
        self.assertEqual(responder.keys, responder_keys)
        self.assertEqual(responder.initiator_key, self.alice.public)

    def test_against_noiseprotocol(self) -> None:
        """
        Our initiator against noiseprotocol's Noise_IKpsk2_25519_AESGCM_BLAKE2s
        responder set up with the decided prologue (b"p2pnet/1" + intro id)
        and psk (literal): same handshake hash, and our send key is the
        initiator-to-responder key, our receive key the other (AES-256-GCM).
        """
        theirs = _theirs(
            "IKpsk2",
            False,
            b"p2pnet/1" + bytes.fromhex("0102030405060708"),
            _key("bob"),
            None,
            bytes.fromhex("b8a080e8b63ca9ce15caa3eeed79ab132231464ba12305dc0f612fd9ed7e0fe8"),
        )
        initiator = self.initiator(payload=b"from alice")
        self.assertEqual(bytes(theirs.read_message(initiator.message1())), b"from alice")
        keys = initiator.read_message2(bytes(theirs.write_message(b"from bob")))
        self.assertEqual(initiator.peer_payload, b"from bob")
        self.assertEqual(keys.handshake_hash, theirs.get_handshake_hash())
        nonce = bytes(12)
        self.assertEqual(theirs.decrypt(AESGCM(keys.send_key).encrypt(nonce, b"up", b"")), b"up")
        self.assertEqual(AESGCM(keys.receive_key).decrypt(nonce, theirs.encrypt(b"down"), b""), b"down")

    def test_responder_against_noiseprotocol(self) -> None:
        """
        noiseprotocol's Noise_IKpsk2_25519_AESGCM_BLAKE2s initiator against
        our responder.
        """
        theirs = _theirs(
            "IKpsk2",
            True,
            b"p2pnet/1" + bytes.fromhex("0102030405060708"),
            _key("alice"),
            self.bob.public,
            bytes.fromhex("b8a080e8b63ca9ce15caa3eeed79ab132231464ba12305dc0f612fd9ed7e0fe8"),
        )
        responder = self.responder(payload=b"from bob")
        self.assertEqual(responder.read_message1(bytes(theirs.write_message(b"hi"))), self.alice.public)
        self.assertEqual(responder.peer_payload, b"hi")
        message2, keys = responder.write_message2()
        self.assertEqual(bytes(theirs.read_message(message2)), b"from bob")
        self.assertEqual(keys.handshake_hash, theirs.get_handshake_hash())
        nonce = bytes(12)
        self.assertEqual(theirs.decrypt(AESGCM(keys.send_key).encrypt(nonce, b"down", b"")), b"down")
        self.assertEqual(AESGCM(keys.receive_key).decrypt(nonce, theirs.encrypt(b"up"), b""), b"up")

    def test_message1_cached(self) -> None:
        """
        Every call gives the same message 1 (retransmitted hellos carry
        identical bytes), and a second initiator makes a different one.
        """
        initiator = self.initiator()
        self.assertEqual(initiator.message1(), initiator.message1())
        self.assertNotEqual(initiator.message1(), self.initiator().message1())

    def test_repeated_message1(self) -> None:
        """
        An identical message 1 again gets the identical message 2 and keys;
        a different message 1 (a second initiator with the same identity)
        after the first is refused, and the session is unchanged.
        """
        initiator, responder = self.initiator(), self.responder()
        responder.read_message1(initiator.message1())
        first = responder.write_message2()
        self.assertEqual(responder.read_message1(initiator.message1()), self.alice.public)
        self.assertEqual(responder.write_message2(), first)
        other = self.initiator()
        error = self.assertRaises(HandshakeFailed, responder.read_message1, other.message1())
        self.assertEqual(str(error), "a different handshake message 1 after the first was accepted")
        self.assertEqual(responder.write_message2(), first)
        self.assertEqual(initiator.read_message2(first[0]).send_key, first[1].receive_key)

    def test_repeated_message2(self) -> None:
        """
        An identical message 2 again gives the same keys; a different one
        after the first is refused.
        """
        initiator = self.initiator()
        responder = self.responder()
        responder.read_message1(initiator.message1())
        message2, _ = responder.write_message2()
        keys = initiator.read_message2(message2)
        self.assertEqual(initiator.read_message2(message2), keys)
        # A second responder answering the same message 1 (another ephemeral).
        other = self.responder()
        other.read_message1(initiator.message1())
        other_message2, _ = other.write_message2()
        self.assertNotEqual(other_message2, message2)
        error = self.assertRaises(HandshakeFailed, initiator.read_message2, other_message2)
        self.assertEqual(str(error), "a different handshake message 2 after the first was accepted")
        self.assertEqual(initiator.keys, keys)

    def test_message1_bit_flips(self) -> None:
        """
        Every bit of message 1 flipped in turn is refused, and none of the
        refusals stops the genuine message 1 from being accepted after.
        """
        initiator, responder = self.initiator(), self.responder()
        message1 = initiator.message1()
        for mutated in _flips(message1):
            self.assertRaises(HandshakeFailed, responder.read_message1, mutated)
        for mutated in (message1[:-1], message1 + b"\x00", b"", message1[:32]):
            self.assertRaises(HandshakeFailed, responder.read_message1, mutated)
        self.assertEqual(responder.read_message1(message1), self.alice.public)
        message2, keys = responder.write_message2()
        self.assertEqual(initiator.read_message2(message2).receive_key, keys.send_key)

    def test_message2_bit_flips(self) -> None:
        """
        Every bit of message 2 flipped in turn is refused, and none of the
        refusals stops the genuine message 2 from completing the handshake.
        """
        initiator, responder = self.initiator(), self.responder()
        responder.read_message1(initiator.message1())
        message2, keys = responder.write_message2()
        for mutated in _flips(message2):
            self.assertRaises(HandshakeFailed, initiator.read_message2, mutated)
        for mutated in (message2[:-1], message2 + b"\x00", b"", message2[:32]):
            self.assertRaises(HandshakeFailed, initiator.read_message2, mutated)
        self.assertIsNone(initiator.keys)
        self.assertEqual(initiator.read_message2(message2).send_key, keys.receive_key)

    def test_wrong_psk(self) -> None:
        """
        A responder holding a different introduction key answers, but its
        message 2 is refused by the initiator.
        """
        initiator = self.initiator()
        responder = self.responder(intro_key=bytes(16))
        responder.read_message1(initiator.message1())
        message2, _ = responder.write_message2()
        self.assertRaises(HandshakeFailed, initiator.read_message2, message2)

    def test_wrong_responder_key(self) -> None:
        """
        A message 1 made for another responder key is refused.
        """
        initiator = self.initiator(responder_key=_identity("carol").public)
        self.assertRaises(HandshakeFailed, self.responder().read_message1, initiator.message1())

    def test_wrong_responder_answers(self) -> None:
        """
        Someone else (carol) who holds the introduction key but not bob's
        private key cannot read message 1 nor answer it.
        """
        initiator = self.initiator()
        carol = self.responder(identity=_identity("carol"))
        self.assertRaises(HandshakeFailed, carol.read_message1, initiator.message1())

    def test_wrong_prologue(self) -> None:
        """
        A message 1 from another introduction (other intro id, same keys)
        is refused: the prologue binds it.
        """
        initiator = self.initiator(intro_id=bytes(8))
        self.assertRaises(HandshakeFailed, self.responder().read_message1, initiator.message1())

    def test_unexpected_initiator(self) -> None:
        """
        A valid message 1 from a static key other than the introduced one
        (anyone who knows bob's public key can make one: message 1 does not
        depend on the psk) is refused and commits nothing; the introduced
        initiator's message 1 is accepted after it.
        """
        mallory = self.initiator(identity=_identity("mallory"))
        responder = self.responder()
        error = self.assertRaises(HandshakeFailed, responder.read_message1, mallory.message1())
        self.assertEqual(str(error), "the initiator's static key is not the introduced one")
        self.assertIsNone(responder.initiator_key)
        initiator = self.initiator()
        self.assertEqual(responder.read_message1(initiator.message1()), self.alice.public)

    def test_fixed_ephemerals(self) -> None:
        """
        A fixed ephemeral key pair is the one used: message 1 and message 2
        each start with the sender's ephemeral public key (the "e" token),
        and no payload was read before a message.
        """
        e_init = KeyPair.from_private_bytes(_key("e-init"))
        e_resp = KeyPair.from_private_bytes(_key("e-resp"))
        initiator = self.initiator(ephemeral=e_init)
        responder = self.responder(ephemeral=e_resp)
        self.assertIsNone(initiator.peer_payload)
        self.assertIsNone(responder.peer_payload)
        message1 = initiator.message1()
        self.assertEqual(message1[:32], e_init.public)
        responder.read_message1(message1)
        message2, _ = responder.write_message2()
        self.assertEqual(message2[:32], e_resp.public)

    def test_key_lengths(self) -> None:
        """
        The peer's static key must be 32 bytes.
        """
        error = self.assertRaises(ValueError, self.initiator, responder_key=bytes(31))
        self.assertEqual(str(error), "the responder's key is 32 bytes")
        error = self.assertRaises(ValueError, self.responder, initiator_key=bytes(33))
        self.assertEqual(str(error), "the initiator's key is 32 bytes")

    def test_write_message2_first(self) -> None:
        """
        Writing message 2 before a message 1 was accepted is a programming
        error.
        """
        error = self.assertRaises(RuntimeError, self.responder().write_message2)
        self.assertEqual(str(error), "write_message2 before a message 1 was accepted")

    def test_payload_cap(self) -> None:
        error = self.assertRaises(ValueError, self.initiator, payload=bytes(1025))
        self.assertEqual(str(error), "handshake payload longer than 1024 bytes")
        self.assertRaises(ValueError, self.responder, payload=bytes(1025))
        self.initiator(payload=bytes(1024))
        self.responder(payload=bytes(1024))

    def test_key_pair_as_identity(self) -> None:
        """
        A bare key pair serves as the identity too; no keys before the
        handshake.
        """
        initiator = self.initiator(identity=self.alice.key_pair)
        responder = self.responder()
        self.assertIsNone(responder.keys)
        self.assertEqual(responder.read_message1(initiator.message1()), self.alice.public)

    # Equivalent: derive_psk without digest_size=32 (BLAKE2s's default).

    def test_bad_keys(self) -> None:
        self.assertRaises(ValueError, self.initiator, responder_key=bytes(31))
        self.assertRaises(ValueError, self.responder, initiator_key=bytes(33))
        self.assertRaises(ValueError, self.initiator, intro_key=bytes(15))


class ArbitraryInputTests(SynchronousTestCase):
    """
    Arbitrary bytes where a handshake message belongs raise nothing but
    L{HandshakeFailed} and leave the handshake able to finish.
    """

    @given(st.binary(max_size=200) | st.binary(min_size=96, max_size=96))
    def test_message1(self, data: bytes) -> None:
        alice, bob = _identity("alice"), _identity("bob")
        initiator = InitiatorHandshake(alice, bob.public, INTRO_ID, INTRO_KEY)
        responder = ResponderHandshake(bob, alice.public, INTRO_ID, INTRO_KEY)
        if data != initiator.message1():
            self.assertRaises(HandshakeFailed, responder.read_message1, data)
        self.assertEqual(responder.read_message1(initiator.message1()), alice.public)

    @given(st.binary(max_size=100) | st.binary(min_size=48, max_size=48))
    def test_message2(self, data: bytes) -> None:
        alice, bob = _identity("alice"), _identity("bob")
        initiator = InitiatorHandshake(alice, bob.public, INTRO_ID, INTRO_KEY)
        responder = ResponderHandshake(bob, alice.public, INTRO_ID, INTRO_KEY)
        responder.read_message1(initiator.message1())
        message2, keys = responder.write_message2()
        if data != message2:
            self.assertRaises(HandshakeFailed, initiator.read_message2, data)
        self.assertEqual(initiator.read_message2(message2).receive_key, keys.send_key)
