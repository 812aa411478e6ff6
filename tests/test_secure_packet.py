"""
Tests for L{p2pnet.secure._packet}: sealing and opening data packets, key
epochs and replay protection.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, strategies as st
from noise.backends.default.ciphers import AESGCMCipher
from twisted.trial.unittest import SynchronousTestCase

from p2pnet.errors import P2PError
from p2pnet.secure._packet import KeysExhausted, PacketDropped, PacketProtection, rekey

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))


def pair(**kwargs) -> tuple[PacketProtection, PacketProtection]:
    """
    Two ends of one connection: A sends with KEY_A and receives with KEY_B.
    """
    a = PacketProtection(KEY_A, KEY_B, 0.0, **kwargs)
    b = PacketProtection(KEY_B, KEY_A, 0.0, **kwargs)
    return a, b


def header(datagram: bytes) -> tuple[int, int]:
    """
    The (epoch, packet number) a datagram's header carries, read here
    without the code under test.
    """
    return int.from_bytes(datagram[4:8], "big"), int.from_bytes(datagram[8:12], "big")


class SealTests(SynchronousTestCase):
    def test_overhead(self) -> None:
        """
        A sealed packet is its plaintext plus 28 bytes: the 4 bytes of path
        framing (magic, type, connection id) and 24 more (epoch, packet
        number, tag).
        """
        a, _ = pair()
        for size in (0, 1, 64, 1200):
            self.assertEqual(len(a.seal(7, b"x" * size, 0.0)) - size, 4 + 24)

    def test_construction_matches_independent_computation(self) -> None:
        """
        The third packet of epoch 1 to connection 0x1234 is the header
        D1 41 1234 00000001 00000002 followed by AES-256-GCM under
        REKEY(key) with nonce 00000000 0000000100000002 (big-endian) and the
        header as associated data, computed here with the primitive
        directly.
        """
        a, _ = pair()
        a.seal(0x1234, b"zero", 0.0)
        a.rekey_now(0.0)
        a.seal(0x1234, b"one", 0.0)
        a.seal(0x1234, b"two", 0.0)
        datagram = a.seal(0x1234, b"hello, peer", 0.0)

        expected_header = bytes.fromhex("d141 1234 00000001 00000002")
        epoch1_key = AESGCM(KEY_A).encrypt(bytes.fromhex("00000000 ffffffffffffffff"), bytes(32), b"")[:32]
        nonce = bytes.fromhex("00000000 00000001 00000002")
        ciphertext = AESGCM(epoch1_key).encrypt(nonce, b"hello, peer", expected_header)
        self.assertEqual(datagram, expected_header + ciphertext)

    def test_nonce_high_half_is_epoch(self) -> None:
        """
        Packet number 0x01020304 of epoch 0 uses the nonce 00000000
        00000000 01020304 (the packet number is the low half of the
        big-endian u64), computed here with the primitive directly.
        """
        a, _ = pair()
        a._send_number = 0x01020304  # skip ahead without sealing 16 million packets
        datagram = a.seal(0x0001, b"late", 0.0)
        expected_header = bytes.fromhex("d141 0001 00000000 01020304")
        nonce = bytes.fromhex("00000000 00000000 01020304")
        self.assertEqual(datagram, expected_header + AESGCM(KEY_A).encrypt(nonce, b"late", expected_header))

    def test_matches_noise_cipher_state(self) -> None:
        """
        The key schedule and nonces agree with an independent Noise
        implementation (noiseprotocol's AESGCM cipher): epoch e's key is e
        REKEYs of the first, and packet n of epoch e uses Noise nonce
        C{e << 32 | n}.
        """
        a, _ = pair(rekey_packets=2)
        datagrams = [a.seal(9, b"payload %d" % i, 0.0) for i in range(7)]
        noise_cipher = AESGCMCipher()
        key = KEY_A
        for epoch in range(4):
            noise_cipher.initialize(key)
            for number in range(2):
                i = epoch * 2 + number
                if i >= len(datagrams):
                    break
                head = datagrams[i][:12]
                self.assertEqual(header(datagrams[i]), (epoch, number))
                expected = noise_cipher.encrypt(key, epoch << 32 | number, head, b"payload %d" % i)
                self.assertEqual(datagrams[i][12:], expected)
            key = noise_cipher.rekey(key)

    def test_rekey_function(self) -> None:
        """
        L{rekey} is Noise's AESGCM REKEY as noiseprotocol computes it.
        """
        cipher = AESGCMCipher()
        cipher.initialize(KEY_B)
        self.assertEqual(rekey(KEY_B), cipher.rekey(KEY_B))
        self.assertNotEqual(rekey(KEY_B), KEY_B)

    def test_packet_numbers_count_up(self) -> None:
        """
        Packets of one epoch are numbered 0, 1, 2...
        """
        a, _ = pair()
        self.assertEqual([header(a.seal(1, b"", 0.0)) for _ in range(3)], [(0, 0), (0, 1), (0, 2)])

    def test_rekey_by_packets(self) -> None:
        """
        With C{rekey_packets=3} an epoch has packets 0, 1 and 2; the fourth
        packet is number 0 of the next epoch.
        """
        a, _ = pair(rekey_packets=3)
        self.assertEqual(
            [header(a.seal(1, b"", 0.0)) for _ in range(7)],
            [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)],
        )

    def test_rekey_by_time(self) -> None:
        """
        The sender moves to the next epoch with the first packet 120 seconds
        after its epoch began, and the new epoch again lasts 120 seconds.
        """
        a = PacketProtection(KEY_A, KEY_B, 1000.0)
        self.assertEqual(header(a.seal(1, b"", 1000.0)), (0, 0))
        self.assertEqual(header(a.seal(1, b"", 1119.9)), (0, 1))
        self.assertEqual(header(a.seal(1, b"", 1120.0)), (1, 0))
        self.assertEqual(header(a.seal(1, b"", 1239.0)), (1, 1))
        self.assertEqual(header(a.seal(1, b"", 1241.0)), (2, 0))
        self.assertEqual(a.send_epoch, 2)

    def test_last_packet_number_never_used(self) -> None:
        """
        With the default limit the last packet of an epoch is number
        2**32 - 2: number 2**32 - 1 (whose nonce in the last epoch would be
        REKEY's) is never sent.
        """
        a, _ = pair()
        a._send_number = 0xFFFFFFFE
        self.assertEqual(header(a.seal(1, b"", 0.0)), (0, 0xFFFFFFFE))
        self.assertEqual(header(a.seal(1, b"", 0.0)), (1, 0))

    def test_epochs_exhausted(self) -> None:
        """
        The sender refuses to seal rather than wrap its epoch number, and
        says so with a P2PError.
        """
        a, _ = pair(rekey_packets=1)
        a._send_epoch = 0xFFFFFFFF
        a.seal(1, b"last", 0.0)
        error = self.assertRaises(KeysExhausted, a.seal, 1, b"one too many", 0.0)
        self.assertEqual(str(error), "no key epoch left: close the connection")
        self.assertRaises(KeysExhausted, a.seal, 1, b"one too many", 0.0)
        self.assertTrue(issubclass(KeysExhausted, P2PError))

    def test_arguments_validated(self) -> None:
        """
        Bad keys, limits and windows are refused when the object is made.
        """
        for kwargs, message in (
            (dict(rekey_packets=0), "rekey_packets must be between 1 and 2**32 - 1"),
            (dict(rekey_packets=2**32), "rekey_packets must be between 1 and 2**32 - 1"),
            (dict(window=2047), "the replay window must hold at least 2048 packets"),
            (dict(rekey_interval=0), "rekey_interval must be positive"),
            (dict(previous_key_lifetime=-0.1), "previous_key_lifetime must not be negative"),
        ):
            error = self.assertRaises(ValueError, PacketProtection, KEY_A, KEY_B, 0.0, **kwargs)
            self.assertEqual(str(error), message)
        error = self.assertRaises(ValueError, PacketProtection, KEY_A[:16], KEY_B, 0.0)
        self.assertEqual(str(error), "send_key must be 32 bytes")
        error = self.assertRaises(ValueError, PacketProtection, KEY_A, bytearray(KEY_B), 0.0)
        self.assertEqual(str(error), "receive_key must be 32 bytes")

    def test_small_arguments_accepted(self) -> None:
        """
        A rekey interval under a second and a previous-key lifetime of 0
        (the old epoch refused as soon as the receiver moves on) are valid.
        """
        a = PacketProtection(KEY_A, KEY_B, 0.0, rekey_interval=0.5, rekey_packets=1)
        b = PacketProtection(KEY_B, KEY_A, 0.0, rekey_interval=0.5, previous_key_lifetime=0)
        first, second = a.seal(1, b"0", 0.0), a.seal(1, b"1", 0.0)
        self.assertEqual(header(second), (1, 0))
        self.assertEqual(b.open(second, 0.0), b"1")
        self.assertEqual(self.assertRaises(PacketDropped, b.open, first, 0.0).reason, "stale-key")
        self.assertEqual(header(a.seal(1, b"2", 0.6)), (2, 0))

    @given(
        st.integers(1, 4),
        st.lists(
            st.one_of(
                st.just("seal"), st.just("rekey"), st.floats(0, 200).map(lambda d: ("wait", d))
            ),
            max_size=60,
        ),
    )
    def test_no_nonce_reuse(self, rekey_packets: int, steps: list) -> None:
        """
        Whatever mix of packets, forced rekeys and waiting: no (epoch,
        number) pair, hence no (key, nonce) pair, is sealed twice, every
        number stays below the limit, and each epoch's key is new.
        """
        a = PacketProtection(KEY_A, KEY_B, 0.0, rekey_packets=rekey_packets, rekey_interval=50.0)
        now = 0.0
        used = set()
        keys = {0: KEY_A}
        for step in steps:
            if step == "seal":
                datagram = a.seal(1, b"", now)
                epoch, number = header(datagram)
                self.assertNotIn((epoch, number), used)
                self.assertLess(number, rekey_packets)
                used.add((epoch, number))
            elif step == "rekey":
                a.rekey_now(now)
            else:
                now += step[1]
            keys.setdefault(a.send_epoch, a._send_key)
        self.assertEqual(len(set(keys.values())), len(keys))


class OpenTests(SynchronousTestCase):
    def assertDropped(self, protection: PacketProtection, datagram: bytes, reason: str, now=0.0) -> None:
        exc = self.assertRaises(PacketDropped, protection.open, datagram, now)
        self.assertEqual(exc.reason, reason)
        self.assertEqual(str(exc), reason)

    def test_round_trip(self) -> None:
        """
        What one end seals the other opens, in both directions.
        """
        a, b = pair()
        self.assertEqual(b.open(a.seal(3, b"ping", 0.0), 0.0), b"ping")
        self.assertEqual(a.open(b.seal(4, b"pong", 0.0), 0.0), b"pong")
        self.assertEqual(b.open(a.seal(3, b"", 0.0), 0.0), b"")

    def test_every_bit_flipped(self) -> None:
        """
        Each single-bit change anywhere in a sealed packet makes it drop: a
        change in the ciphertext or tag fails the tag, a change in the
        header fails the tag or the header check.  Nothing is delivered,
        and the untouched packet still opens afterwards.
        """
        a, b = pair()
        datagram = a.seal(0x0102, b"secret game state", 0.0)
        reasons = {}
        for bit in range(len(datagram) * 8):
            mutated = bytearray(datagram)
            mutated[bit // 8] ^= 1 << (bit % 8)
            exc = self.assertRaises(PacketDropped, b.open, bytes(mutated), 0.0)
            reasons.setdefault(exc.reason, []).append(bit)
            if bit >= 16:
                # Connection id, epoch, number, ciphertext, tag: all covered
                # by the AEAD.  (A changed epoch may name one the receiver
                # does not hold.)
                self.assertIn(exc.reason, ("bad-tag", "stale-key"), bit)
            else:
                self.assertEqual(exc.reason, "malformed", bit)
        self.assertEqual(len(reasons["malformed"]), 16)
        self.assertEqual(sum(map(len, reasons.values())), len(datagram) * 8)
        self.assertEqual(b.receive_epoch, 0)
        self.assertEqual(b.open(datagram, 0.0), b"secret game state")

    def test_connection_id_altered(self) -> None:
        """
        A packet sealed for connection 0x0102 does not open once its
        connection id bytes say anything else.
        """
        a, b = pair()
        datagram = a.seal(0x0102, b"for connection 0x0102", 0.0)
        for conn_id in (0x0000, 0x0103, 0x0201, 0x8102, 0xFFFF):
            altered = datagram[:2] + conn_id.to_bytes(2, "big") + datagram[4:]
            self.assertDropped(b, altered, "bad-tag")
        self.assertEqual(b.open(datagram, 0.0), b"for connection 0x0102")

    def test_wrong_direction(self) -> None:
        """
        A packet reflected back to its sender does not open: each direction
        has its own key.
        """
        a, _ = pair()
        self.assertDropped(a, a.seal(1, b"reflected", 0.0), "bad-tag")

    def test_every_packet_replayed(self) -> None:
        """
        Each packet opened once is refused as a replay when it comes again,
        in any order, however many times.
        """
        a, b = pair()
        datagrams = [a.seal(5, b"%d" % i, 0.0) for i in range(20)]
        for datagram in datagrams[::2] + datagrams[1::2]:
            b.open(datagram, 0.0)
        for datagram in datagrams + datagrams[::-1]:
            self.assertDropped(b, datagram, "replay")
        self.assertEqual(b.dropped["replay"], 40)

    def test_replay_refused_before_decryption(self) -> None:
        """
        A replayed packet number is refused before the AEAD runs: a copy
        with a broken tag is reported as a replay.
        """
        a, b = pair()
        datagram = a.seal(5, b"once", 0.0)
        b.open(datagram, 0.0)
        self.assertDropped(b, datagram[:-1] + bytes([datagram[-1] ^ 1]), "replay")

    def test_forgery_does_not_move_window(self) -> None:
        """
        A forged packet with a high packet number does not advance the
        window: packet 0, sent earlier and arriving later, still opens.
        """
        a, b = pair()
        first = a.seal(5, b"first", 0.0)
        forged = bytes.fromhex("d141 0005 00000000 00001388") + bytes(32)  # number 5000
        self.assertDropped(b, forged, "bad-tag")
        self.assertEqual(b.open(first, 0.0), b"first")

    def test_forgery_does_not_move_epoch(self) -> None:
        """
        Forged packets claiming the next epochs change nothing: the
        receiver stays in epoch 0 and keeps accepting it.
        """
        a, b = pair()
        for epoch in (1, 2):
            forged = bytes.fromhex("d141 0005") + epoch.to_bytes(4, "big") + bytes(4 + 32)
            self.assertDropped(b, forged, "bad-tag")
        self.assertEqual(b.receive_epoch, 0)
        self.assertEqual(b.open(a.seal(5, b"still epoch 0", 0.0), 0.0), b"still epoch 0")

    def test_malformed(self) -> None:
        """
        Datagrams too short to be sealed packets, or not starting D1 41, are
        malformed.
        """
        a, b = pair()
        good = a.seal(1, b"", 0.0)
        self.assertEqual(len(good), 28)
        for datagram in (b"", b"\xd1\x41", good[:12], good[:27], b"\xd1\x40" + good[2:], b"\xd0" + good[1:]):
            self.assertDropped(b, datagram, "malformed")
        self.assertEqual(b.dropped["malformed"], 6)
        self.assertEqual(b.open(good, 0.0), b"")

    def test_window_refuses_too_old(self) -> None:
        """
        Once 2048 later packets arrived, a packet that was lost until then
        is refused as too old.
        """
        a, b = pair()
        late = a.seal(1, b"late", 0.0)
        datagrams = [a.seal(1, b"", 0.0) for _ in range(2048)]
        for datagram in datagrams[:-1]:
            b.open(datagram, 0.0)
        # Packet 0 is 2047 below packet 2047: still inside.
        kept = PacketProtection(KEY_B, KEY_A, 0.0)
        for datagram in datagrams[:-1]:
            kept.open(datagram, 0.0)
        self.assertEqual(kept.open(late, 0.0), b"late")
        b.open(datagrams[-1], 0.0)
        self.assertDropped(b, late, "replay")

    def test_reordering_across_rekey(self) -> None:
        """
        Packets sealed just before a rekey still open after packets of the
        new epoch arrived, each exactly once.
        """
        a, b = pair(rekey_packets=3000)
        old = [a.seal(1, b"old %d" % i, 0.0) for i in range(3000)]
        new = [a.seal(1, b"new %d" % i, 0.0) for i in range(100)]
        self.assertEqual(header(new[0]), (1, 0))
        for i, datagram in enumerate(new):
            self.assertEqual(b.open(datagram, 0.0), b"new %d" % i)
        self.assertEqual(b.receive_epoch, 1)
        # The last 2048 of the old epoch are inside its own window.
        for i in range(952, 3000):
            self.assertEqual(b.open(old[i], 0.0), b"old %d" % i)
        self.assertDropped(b, old[951], "replay")
        self.assertDropped(b, old[2999], "replay")
        self.assertDropped(b, new[5], "replay")

    def test_epoch_acceptance(self) -> None:
        """
        The receiver accepts its current epoch, the previous one, and up to
        two ahead; older epochs and epochs three ahead are stale keys.
        """
        a, b = pair(rekey_packets=1)
        datagrams = [a.seal(1, b"%d" % i, 0.0) for i in range(8)]  # epochs 0..7, one packet each
        self.assertDropped(b, datagrams[3], "stale-key")
        self.assertEqual(b.receive_epoch, 0)
        self.assertEqual(b.open(datagrams[2], 0.0), b"2")
        self.assertEqual(b.receive_epoch, 2)
        # Epoch 1 is now the previous one; epoch 0 is gone.
        self.assertEqual(b.open(datagrams[1], 0.0), b"1")
        self.assertDropped(b, datagrams[0], "stale-key")
        self.assertEqual(b.open(datagrams[3], 0.0), b"3")
        self.assertEqual(b.receive_epoch, 3)
        self.assertDropped(b, datagrams[1], "stale-key")
        self.assertDropped(b, datagrams[7], "stale-key")
        self.assertEqual(b.open(datagrams[5], 0.0), b"5")
        self.assertEqual(b.open(datagrams[4], 0.0), b"4")
        self.assertDropped(b, datagrams[3], "stale-key")
        self.assertEqual(b.dropped["stale-key"], 5)

    def test_previous_key_lifetime(self) -> None:
        """
        The previous epoch's packets open for 30 seconds after the receiver
        moved on, and not later.
        """
        a, b = pair(rekey_packets=2)
        datagrams = [a.seal(1, b"%d" % i, 0.0) for i in range(4)]  # (0,0) (0,1) (1,0) (1,1)
        b.open(datagrams[2], 100.0)
        self.assertEqual(b.open(datagrams[0], 129.9), b"0")
        self.assertDropped(b, datagrams[1], "stale-key", now=130.0)
        self.assertEqual(b.open(datagrams[3], 130.0), b"3")
        # Once forgotten, the previous epoch stays refused (a second late
        # packet takes the same path as the first).
        self.assertDropped(b, datagrams[1], "stale-key", now=131.0)
        self.assertDropped(b, datagrams[0], "stale-key", now=131.0)

    @given(
        st.integers(1, 5),
        st.integers(1, 30),
        st.lists(st.integers(0, 29), max_size=80),
    )
    def test_rekey_with_loss_and_reordering(self, rekey_packets: int, count: int, order: list[int]) -> None:
        """
        Packets sealed across several epochs and delivered as any subset, in
        any order, with duplicates: each opens at most once, with its own
        plaintext, and exactly those open whose epoch is the receiver's
        current one, the previous one or at most two ahead when they arrive.
        """
        a, b = pair(rekey_packets=rekey_packets)
        sent = []
        for i in range(count):
            datagram = a.seal(1, b"packet %d" % i, 0.0)
            sent.append((header(datagram), datagram))
        current = 0
        delivered = set()
        for i in order:
            if i >= count:
                continue
            (epoch, number), datagram = sent[i]
            expect = (epoch, number) not in delivered and current - 1 <= epoch <= current + 2
            try:
                plaintext = b.open(datagram, 0.0)
            except PacketDropped as e:
                self.assertFalse(expect, (i, e.reason))
                self.assertIn(e.reason, ("replay", "stale-key"))
            else:
                self.assertTrue(expect, i)
                self.assertEqual(plaintext, b"packet %d" % i)
                delivered.add((epoch, number))
                current = max(current, epoch)
            self.assertEqual(b.receive_epoch, current)

    @given(
        st.lists(st.floats(0, 25), min_size=1, max_size=25),
        st.lists(st.integers(0, 24), max_size=60),
    )
    def test_time_rekey_with_loss_and_reordering(self, gaps: list[float], order: list[int]) -> None:
        """
        Epochs that change with time (every 10 s, packets sent at arbitrary
        intervals): any subset, order and duplication of the packets opens
        each at most once, and exactly when its epoch is within one behind
        and two ahead of the receiver's.
        """
        a = PacketProtection(KEY_A, KEY_B, 0.0, rekey_interval=10.0)
        b = PacketProtection(KEY_B, KEY_A, 0.0, rekey_interval=10.0)
        now = 0.0
        sent = []
        for i, gap in enumerate(gaps):
            now += gap
            datagram = a.seal(1, b"packet %d" % i, now)
            sent.append((header(datagram), datagram))
        current = 0
        delivered = set()
        for i in order:
            if i >= len(sent):
                continue
            (epoch, number), datagram = sent[i]
            expect = (epoch, number) not in delivered and current - 1 <= epoch <= current + 2
            try:
                plaintext = b.open(datagram, 0.0)
            except PacketDropped:
                self.assertFalse(expect, i)
            else:
                self.assertTrue(expect, i)
                self.assertEqual(plaintext, b"packet %d" % i)
                delivered.add((epoch, number))
                current = max(current, epoch)
