"""
Secure sessions end to end on the simulated network: encryption, tamper
and replay resistance, path validation, pinning and rekeying, through real
PeerEndpoints and a real introducer.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from p2pnet import wire
from p2pnet.address import Address
from p2pnet.endpoint import Path, PeerProtocol
from p2pnet.errors import PeerKeyMismatch
from p2pnet.secure.identity import Identity
from p2pnet.secure.trust import TrustStore
from p2pnet.testing import Filtering

from tests.test_endpoint import Recorder, RecordingFactory, World
from tests.test_endpoint import _Silent

GAME_BYTES = b"move knight to f3"


class Tap:
    """
    Records every datagram the simulated network carries.
    """

    def __init__(self, world: World) -> None:
        self.sent: list[tuple[tuple, tuple, bytes]] = []
        network = world.network
        original = network._send

        def recording(port, data, dst, ttl):
            self.sent.append(((port._host.ip, port.port), dst, data))
            return original(port, data, dst, ttl)

        network._send = recording

    def sealed(self) -> list[tuple[tuple, tuple, bytes]]:
        return [entry for entry in self.sent if entry[2][:2] == b"\xd1\x41"]


def dropped(endpoint) -> int:
    """
    Datagrams the endpoint dropped, whatever the reason.
    """
    return sum(n for k, n in endpoint.stats.items() if k.startswith("dropped-"))


class SecureWorld:
    def build(self, test, **bob_nat):
        self.world = world = World(test)
        self.tap = Tap(world)
        self.factory = RecordingFactory()
        self.alice = world.peer("alice", factory=self.factory, filtering=Filtering.ENDPOINT_INDEPENDENT)
        self.bob = world.peer("bob", filtering=Filtering.ENDPOINT_INDEPENDENT, **bob_nat)
        world.result(self.alice.start())
        world.result(self.bob.start())
        self.mine = Recorder()
        self.connection = world.result(self.bob.connect("alice", self.mine))
        world.run(0.1)
        self.theirs = self.factory.built["bob"]
        self.attacker = world.network.add_host("198.51.100.66").listenUDP(666, PeerProtocol.__new__(_Silent))
        return world


class SecureConnectionTests(SynchronousTestCase, SecureWorld):
    def setUp(self):
        self.build(self)

    def test_encrypted_on_the_wire(self):
        """
        The game's bytes never cross the network in clear; both sides see a
        secure session bound to the other's key.
        """
        self.connection.send(GAME_BYTES)
        self.theirs.connection.send(GAME_BYTES)
        self.world.run(0.1)
        self.assertEqual(self.theirs.received, [GAME_BYTES])
        self.assertEqual(self.mine.received, [GAME_BYTES])
        self.assertEqual([d for _, _, d in self.tap.sent if GAME_BYTES in d], [])
        self.assertTrue(self.connection.secure)
        self.assertEqual(self.connection.peer_key, self.alice.identity.public)
        self.assertEqual(self.theirs.connection.peer_key, self.bob.identity.public)

    def test_every_bit_flipped_is_dropped(self):
        """
        A sealed datagram with any one of its bits flipped, sent from the
        peer's own address, delivers nothing and leaves the connection up.
        """
        self.tap.sent.clear()
        self.connection.send(GAME_BYTES)
        self.world.run(0.1)
        [(source, destination, datagram)] = self.tap.sealed()
        self.assertEqual(self.theirs.received, [GAME_BYTES])
        before = dropped(self.alice)
        flipped = 0
        for bit in range(len(datagram) * 8):
            mutated = bytearray(datagram)
            mutated[bit // 8] ^= 1 << (bit % 8)
            self.alice.datagramReceived(bytes(mutated), source)
            flipped += 1
        self.world.run(0.1)
        self.assertEqual(self.theirs.received, [GAME_BYTES])
        self.assertEqual(dropped(self.alice) - before, flipped)
        self.connection.send(b"still up")
        self.world.run(0.1)
        self.assertEqual(self.theirs.received, [GAME_BYTES, b"still up"])

    def test_replays_deliver_nothing_and_move_nothing(self):
        """
        Every datagram the peers exchanged, sent again from the same source
        and from an attacker's address, delivers nothing again, moves no
        connection and gets the attacker nothing back; replays are counted.
        """
        self.connection.send(GAME_BYTES)
        self.theirs.connection.send(GAME_BYTES)
        self.world.run(0.5)
        captured = [(s, d, data) for s, d, data in self.tap.sent if d[1] != 3478 and s[1] != 3478]
        self.assertTrue(captured)
        paths = (self.connection.address, self.theirs.connection.address)
        to_attacker_before = sum(1 for _, d, _ in self.tap.sent if d == ("198.51.100.66", 666))
        for source, destination, datagram in captured:
            endpoint = self.alice if Address(*destination) == self.alice.public_address else self.bob
            endpoint.datagramReceived(datagram, source)
            self.attacker.write(datagram, destination)
        self.world.run(1.0)
        self.assertEqual(self.theirs.received, [GAME_BYTES])
        self.assertEqual(self.mine.received, [GAME_BYTES])
        self.assertEqual((self.connection.address, self.theirs.connection.address), paths)
        self.assertGreater(self.alice.stats.get("dropped-replay", 0), 0)
        self.assertGreater(self.bob.stats.get("dropped-replay", 0), 0)
        to_attacker = sum(1 for _, d, _ in self.tap.sent if d == ("198.51.100.66", 666))
        self.assertEqual(to_attacker, to_attacker_before)

    def test_forwarded_packet_moves_nothing_without_proof(self):
        """
        An on-path attacker that takes a fresh sealed datagram off the wire
        and sends it from its own address gets it delivered (it is
        authentic) but does not get the connection: the receiver challenges
        the new address, and the attacker cannot answer.
        """
        self.tap.sent.clear()
        blackhole = []
        network = self.world.network
        original = network._send

        def intercept(port, data, dst, ttl):
            if data[:2] == b"\xd1\x41" and not blackhole:
                blackhole.append(data)
                return None
            return original(port, data, dst, ttl)

        network._send = intercept
        self.connection.send(GAME_BYTES)
        network._send = original
        [datagram] = blackhole
        self.attacker.write(datagram, self.alice.public_address.as_tuple())
        self.world.run(1.0)
        self.assertEqual(self.theirs.received, [GAME_BYTES])
        self.assertEqual(self.theirs.connection.address, Address(*self.bob.public_address.as_tuple()))
        self.assertEqual(self.alice.stats.get("path-challenges"), 1)
        self.theirs.connection.send(b"reply")
        self.world.run(0.1)
        self.assertEqual(self.mine.received, [b"reply"])

    def test_plain_control_messages_are_ignored(self):
        """
        A plain Close signed with the introduction key (which anyone who saw
        the introduction knows) does not close a secure connection.
        """
        close = wire.encode(wire.Close(b"c" * 8, self.connection.intro_id), self.connection.key)
        self.alice.datagramReceived(close, self.bob.public_address.as_tuple())
        self.world.run(0.1)
        self.assertFalse(self.theirs.connection.ended)
        self.assertEqual(self.alice.stats.get("dropped-plain-control"), 1)

    def test_sealed_close(self):
        """
        Closing sends a sealed CLOSE: the peer's connection ends as lost.
        """
        self.connection.close()
        self.world.run(0.1)
        self.assertTrue(self.theirs.connection.ended)
        self.assertEqual(len(self.theirs.lost), 1)


class RebindingTests(SynchronousTestCase, SecureWorld):
    def test_nat_rebinding_after_a_challenge(self):
        """
        When the peer's NAT mapping changes, its next sealed packet comes
        from a new port: the connection moves there once that port answered
        a path challenge, and traffic flows both ways again.
        """
        from p2pnet.testing import Allocation

        world = World(self, allocation=Allocation.SEQUENTIAL)
        factory = RecordingFactory()
        alice = world.peer("alice", factory=factory, filtering=Filtering.ENDPOINT_INDEPENDENT)
        bob = world.peer("bob", filtering=Filtering.ENDPOINT_INDEPENDENT)
        world.result(alice.start())
        world.result(bob.start())
        mine = Recorder()
        connection = world.result(bob.connect("alice", mine))
        world.run(0.1)
        theirs = factory.built["bob"]
        before = connection.address
        alice.nat.flush()
        theirs.connection.send(b"after flush")
        world.run(0.5)
        self.assertEqual(mine.received, [b"after flush"])
        self.assertNotEqual(connection.address, before)
        self.assertEqual(bob.stats.get("path-challenges"), 1)
        connection.send(b"reply")
        world.run(0.1)
        self.assertEqual(theirs.received, [b"reply"])


class PinningTests(SynchronousTestCase):
    def setUp(self):
        self.world = World(self)
        self.factory = RecordingFactory()
        self.alice = self.world.peer("alice", factory=self.factory)
        self.bob = self.world.peer("bob")
        self.world.result(self.alice.start())
        self.world.result(self.bob.start())

    def test_expect_key_mismatch(self):
        """
        connect(expect_key=) with another key than the introducer's fails
        loudly with PeerKeyMismatch, and no connection is made.
        """
        failure = self.world.result(self.bob.connect("alice", expect_key=Identity.generate().public))
        self.assertTrue(failure.check(PeerKeyMismatch))
        self.assertIn("alice", str(failure.value))
        self.assertEqual(self.bob.connections, [])

    def test_expect_key_match(self):
        """
        The right key connects.
        """
        connection = self.world.result(self.bob.connect("alice", expect_key=self.alice.identity.public))
        self.assertEqual(connection.path, Path.DIRECT_PUBLIC)

    def test_trust_on_first_use(self):
        """
        With a trust store the first key is pinned; a peer that comes back
        with another key under the same name is refused.
        """
        store = TrustStore()
        self.bob.trust = store
        self.world.result(self.bob.connect("alice"))
        self.assertEqual(store.get("alice"), self.alice.identity.public)
        # alice's name now belongs to someone else's key.
        self.alice.stop()
        self.world.run(1.0)
        impostor = self.world.peer("alice")
        self.world.result(impostor.start())
        failure = self.world.result(self.bob.connect("alice"))
        self.assertTrue(failure.check(PeerKeyMismatch))


class RekeyTests(SynchronousTestCase):
    def test_rekey_under_load_with_loss(self):
        """
        Ten minutes of traffic both ways at 10% loss on each side crosses
        five key epochs in each direction; every datagram that arrives is
        delivered exactly once and the connection never drops.
        """
        world = World(self)
        factory = RecordingFactory()
        alice = world.peer("alice", factory=factory)
        bob = world.peer("bob")
        world.result(alice.start())
        world.result(bob.start())
        connection = world.result(bob.connect("alice", Recorder()))
        world.run(0.1)
        theirs = factory.built["bob"]
        world.network.set_link(bob.reactor, loss=0.1)
        world.network.set_link(alice.reactor, loss=0.1)
        sent = []
        for second in range(600):
            for k in range(5):
                payload = f"{second}.{k}".encode()
                sent.append(payload)
                connection.send(payload)
            theirs.connection.send(b"ack")
            world.run(1.0, step=0.1)
        self.assertFalse(connection.ended)
        received = theirs.received
        self.assertEqual(len(received), len(set(received)))
        self.assertTrue(set(received) <= set(sent))
        self.assertGreater(len(received), len(sent) * 0.8)
        # 600 s at one epoch per 120 s: epochs 0 to 4 (or 5) each way.
        self.assertGreaterEqual(connection._path.session._protection.send_epoch, 4)
        self.assertGreaterEqual(theirs.connection._path.session._protection.send_epoch, 4)
        self.assertLess(len(received), len(sent))  # the loss was real
