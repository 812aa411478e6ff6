"""
Tests for L{p2pnet.secure._session.SecureSession}: one connection's
handshake, sealed packets and proven addresses, through its public methods.
"""

from __future__ import annotations

import hashlib
import random

from twisted.trial.unittest import SynchronousTestCase

from p2pnet.errors import HandshakeFailed
from p2pnet.secure._session import PacketDropped, SecureSession
from p2pnet.secure.identity import Identity

INTRO_ID = bytes.fromhex("0102030405060708")
INTRO_KEY = bytes(range(16))
HOME = ("192.0.2.1", 4000)
ELSEWHERE = ("198.51.100.7", 5000)


def _identity(label: str) -> Identity:
    return Identity.from_private_bytes(hashlib.sha256(label.encode()).digest())


def _random_bytes(seed: int):
    rng = random.Random(seed)
    return lambda n: bytes(rng.randrange(256) for _ in range(n))


def sessions(**kwargs) -> tuple[SecureSession, SecureSession]:
    """
    An initiator and a responder for the same introduction, before any
    handshake message moved.
    """
    alice, bob = _identity("alice"), _identity("bob")
    initiator = SecureSession(
        initiator=True, identity=alice, peer_key=bob.public, intro_id=INTRO_ID,
        intro_key=INTRO_KEY, random_bytes=_random_bytes(1), now=0.0, **kwargs,
    )
    responder = SecureSession(
        initiator=False, identity=bob, peer_key=alice.public, intro_id=INTRO_ID,
        intro_key=INTRO_KEY, random_bytes=_random_bytes(2), now=0.0, **kwargs,
    )
    return initiator, responder


def connected(**kwargs) -> tuple[SecureSession, SecureSession]:
    initiator, responder = sessions(**kwargs)
    responder.handshake_received(initiator.outgoing_handshake(), 0.0)
    initiator.handshake_received(responder.outgoing_handshake(), 0.0)
    return initiator, responder


class HandshakeTests(SynchronousTestCase):
    def test_fresh_session(self) -> None:
        """
        Before any message: the peer key is the introduced one, nothing is
        confirmed or refused, no keys, no handshake hash.
        """
        initiator, responder = sessions()
        self.assertEqual(initiator.peer_key, _identity("bob").public)
        self.assertEqual(responder.peer_key, _identity("alice").public)
        for session in (initiator, responder):
            self.assertIs(session.peer_confirmed, False)
            self.assertEqual(session.failed_handshakes, 0)
            self.assertFalse(session.ready)
            self.assertIsNone(session.handshake_hash)
        self.assertIsNone(responder.outgoing_handshake())

    def test_keys_once(self) -> None:
        """
        Each side reports getting the keys once: a retransmitted message 1
        (or 2) read again returns False, and both sides share one
        handshake hash.
        """
        initiator, responder = sessions()
        message1 = initiator.outgoing_handshake()
        self.assertIs(responder.handshake_received(message1, 0.0), True)
        self.assertIs(responder.handshake_received(message1, 0.0), False)
        message2 = responder.outgoing_handshake()
        self.assertIs(initiator.handshake_received(message2, 0.0), True)
        self.assertIs(initiator.handshake_received(message2, 0.0), False)
        self.assertEqual(len(initiator.handshake_hash), 32)
        self.assertEqual(initiator.handshake_hash, responder.handshake_hash)
        self.assertIsNone(initiator.outgoing_handshake())

    def test_repeated_message_keeps_replay_state(self) -> None:
        """
        A retransmitted message 1 read after packets flowed does not reset
        the keys: a packet already opened is still refused as a replay.
        """
        initiator, responder = sessions()
        message1 = initiator.outgoing_handshake()
        responder.handshake_received(message1, 0.0)
        initiator.handshake_received(responder.outgoing_handshake(), 0.0)
        datagram = initiator.seal(7, b"once", 1.0)
        self.assertEqual(responder.open(datagram, 1.0), b"once")
        responder.handshake_received(message1, 1.0)
        with self.assertRaises(PacketDropped) as caught:
            responder.open(datagram, 1.0)
        self.assertEqual(caught.exception.reason, "replay")

    def test_refused_messages_counted_then_cap(self) -> None:
        """
        Each refused handshake message counts one; after 16 the session
        stops reading them, even a valid one.
        """
        initiator, responder = sessions()
        garbage = bytes(96)
        for count in range(1, 17):
            with self.assertRaises(HandshakeFailed) as caught:
                responder.handshake_received(garbage, 0.0)
            self.assertNotIn("too many", str(caught.exception))
            self.assertEqual(responder.failed_handshakes, count)
        with self.assertRaises(HandshakeFailed) as caught:
            responder.handshake_received(initiator.outgoing_handshake(), 0.0)
        self.assertIn("too many refused handshake messages", str(caught.exception))
        self.assertFalse(responder.ready)
        self.assertEqual(responder.failed_handshakes, 16)

    def test_fifteen_refusals_still_read(self) -> None:
        """
        After 15 refused messages a valid one is still read.
        """
        initiator, responder = sessions()
        for _ in range(15):
            self.assertRaises(HandshakeFailed, responder.handshake_received, bytes(96), 0.0)
        self.assertTrue(responder.handshake_received(initiator.outgoing_handshake(), 0.0))

    def test_rekey_interval_passed_on(self) -> None:
        """
        The session's rekey interval reaches its packet protection: with
        10 s, a packet sealed at 10 s is under key epoch 1 (header bytes
        4-7), one sealed at 9 s under epoch 0.
        """
        initiator, _ = connected(rekey_interval=10.0)
        self.assertEqual(initiator.seal(1, b"a", 9.0)[4:8], bytes.fromhex("00000000"))
        self.assertEqual(initiator.seal(1, b"b", 10.0)[4:8], bytes.fromhex("00000001"))


class OpenTests(SynchronousTestCase):
    def test_no_keys(self) -> None:
        """
        Before the handshake a sealed packet is dropped as "no-keys".
        """
        _, responder = sessions()
        with self.assertRaises(PacketDropped) as caught:
            responder.open(bytes(40), 0.0)
        self.assertEqual(caught.exception.reason, "no-keys")

    def test_open_confirms_peer(self) -> None:
        """
        Opening a sealed packet confirms that the peer has the keys; a
        forged one does not.
        """
        initiator, responder = connected()
        datagram = initiator.seal(3, b"hi", 0.0)
        forged = datagram[:-1] + bytes([datagram[-1] ^ 1])
        self.assertRaises(PacketDropped, responder.open, forged, 0.0)
        self.assertIs(responder.peer_confirmed, False)
        self.assertEqual(responder.open(datagram, 0.0), b"hi")
        self.assertIs(responder.peer_confirmed, True)

    def test_newest(self) -> None:
        """
        Only a packet newer than every packet opened before is the newest
        (a late one must not move the connection back).
        """
        initiator, responder = connected()
        first, second, third = (initiator.seal(3, b"%d" % i, 0.0) for i in range(3))
        responder.open(second, 0.0)
        self.assertIs(responder.newest, True)
        responder.open(first, 0.0)
        self.assertIs(responder.newest, False)
        responder.open(third, 0.0)
        self.assertIs(responder.newest, True)
    # Equivalent mutants: the starting order (-1, -1) changed to (-2, -1),
    # (-1, 1) or (-1, -2) (every real order, from (0, 0), is above all of
    # them); 'newest' before the first packet None or True (it is read only
    # after open() returned).  Of open(): reading the order at offset 5 instead
    # of 4 compares (epoch, number) the same way below epoch 2**24 (63
    # years of 120 s epochs); ">=" for ">" differs only for the same
    # (epoch, number) twice, which the replay window refuses first.


class PathTests(SynchronousTestCase):
    def test_prove(self) -> None:
        """
        An address taken without a challenge is proven; another is not.
        """
        session, _ = connected()
        self.assertFalse(session.proven(HOME))
        session.prove(HOME)
        self.assertTrue(session.proven(HOME))
        self.assertFalse(session.proven(ELSEWHERE))

    def test_response_proves_only_its_address(self) -> None:
        """
        Only the challenge's own bytes, from the challenged address, prove
        it: a wrong answer, or the right one from elsewhere, proves nothing.
        """
        session, _ = connected()
        data = session.challenge(ELSEWHERE, 0.0)
        self.assertEqual(len(data), 8)
        self.assertIs(session.response_received(ELSEWHERE, bytes(8), 0.1), False)
        self.assertIs(session.response_received(HOME, data, 0.1), False)
        self.assertFalse(session.proven(ELSEWHERE))
        self.assertFalse(session.proven(HOME))
        self.assertIs(session.response_received(ELSEWHERE, data, 0.2), True)
        self.assertTrue(session.proven(ELSEWHERE))
        self.assertFalse(session.proven(HOME))
