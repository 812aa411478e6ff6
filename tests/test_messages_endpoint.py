"""
Channels through real PeerEndpoints on the simulated network: messages of
any size, reliable and ordered over loss, sealed like everything else,
across a path change, refused when too big.
"""

from __future__ import annotations

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from p2pnet import Channel, Delivery, PeerConfig
from p2pnet.errors import MessageTooLarge, P2PError
from p2pnet.testing import Allocation, Filtering

from tests.test_endpoint import Recorder, RecordingFactory, World


class Messages(Recorder):
    def __init__(self):
        super().__init__()
        self.messages = []

    def message_received(self, channel, data):
        self.messages.append((channel, data))


class MessageFactory(RecordingFactory):
    def build_protocol(self, peer_id):
        protocol = Messages()
        self.built[peer_id] = protocol
        return protocol


def pair(test, config=PeerConfig(), loss=0.0, **world_options):
    world = World(test, **world_options)
    factory = MessageFactory()
    host = world.peer("host", factory=factory, config=config, filtering=Filtering.ENDPOINT_INDEPENDENT)
    player = world.peer("player", config=config, filtering=Filtering.ENDPOINT_INDEPENDENT)
    world.result(host.start())
    world.result(player.start())
    mine = Messages()
    connection = world.result(player.connect("host", mine))
    world.run(0.1)
    if loss:
        world.network.set_link(host.reactor, latency=0.025, loss=loss)
        world.network.set_link(player.reactor, latency=0.025, loss=loss)
    return world, host, player, connection, mine, factory.built["player"]


class MessageTests(SynchronousTestCase):
    def test_ordered_messages_through_loss(self):
        """
        500 messages on the reliable-ordered channel at 20% loss each way
        (100 ms RTT) all arrive, once each, in order; the raw datagram API
        still works beside them.
        """
        world, host, player, connection, mine, theirs = pair(self, loss=0.2)
        sent = [f"move {n}".encode() for n in range(500)]
        for data in sent:
            connection.send(data, channel=0, flush=False)
        world.run(30.0, step=0.005)
        self.assertEqual(theirs.messages, [(0, data) for data in sent])
        stats = connection.stats()
        self.assertGreater(stats.loss, 0.05)
        self.assertGreater(stats.srtt, 0.09)

    def test_big_message_sealed_on_the_wire(self):
        """
        A 1 MiB message crosses as sealed fragments (its bytes never appear
        in clear) and arrives whole, the same bytes.
        """
        world, host, player, connection, mine, theirs = pair(self)
        sent = []
        original = world.network._send

        def tap(port, data, dst, ttl):
            sent.append(data)
            return original(port, data, dst, ttl)

        world.network._send = tap
        blob = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB
        connection.send(blob, channel=2)
        world.run(10.0, step=0.005)
        [(channel, data)] = theirs.messages
        self.assertEqual((channel, hashlib.sha256(data).hexdigest()), (2, hashlib.sha256(blob).hexdigest()))
        self.assertGreater(len(sent), 700)
        self.assertEqual([d for d in sent if blob[:64] in d], [])

    def test_both_ways_and_sequenced(self):
        """
        Messages go both ways; on the unreliable-sequenced channel an older
        message never arrives after a newer one.
        """
        world, host, player, connection, mine, theirs = pair(self, loss=0.1)
        for n in range(200):
            connection.send(n.to_bytes(2, "big"), channel=1)
            theirs.connection.send(b"ack %d" % n, channel=0)
            world.run(0.02, step=0.005)
        world.run(5.0, step=0.005)
        numbers = [int.from_bytes(d, "big") for c, d in theirs.messages]
        self.assertEqual(numbers, sorted(set(numbers)))
        self.assertLess(len(numbers), 200)  # some were lost, none came late
        self.assertEqual([d for c, d in mine.messages], [b"ack %d" % n for n in range(200)])

    def test_messages_survive_a_path_change(self):
        """
        When the host's NAT forgets its mapping mid-transfer, the connection
        moves (after a path challenge) and every reliable message still
        arrives exactly once, in order.
        """
        world, host, player, connection, mine, theirs = pair(self, allocation=Allocation.SEQUENTIAL)
        for n in range(100):
            theirs.connection.send(b"%d" % n, channel=0)
            if n == 50:
                host.nat.flush()
            world.run(0.01, step=0.005)
        world.run(10.0, step=0.005)
        self.assertEqual([d for c, d in mine.messages], [b"%d" % n for n in range(100)])
        self.assertEqual(player.stats.get("path-challenges"), 1)

    def test_too_big_and_undeclared(self):
        """
        A message over the cap raises MessageTooLarge at once; an undeclared
        channel is a ValueError; nothing is sent for either.
        """
        config = PeerConfig(channels=(Channel(5, Delivery.RELIABLE_ORDERED),), max_message=1000)
        world, host, player, connection, mine, theirs = pair(self, config=config)
        self.assertRaises(MessageTooLarge, connection.send, bytes(1001), channel=5)
        self.assertRaises(ValueError, connection.send, b"x", channel=0)
        connection.send(bytes(1000), channel=5)
        world.run(1.0)
        self.assertEqual(theirs.messages, [(5, bytes(1000))])

    def test_insecure_has_no_channels(self):
        """
        With insecure=True, sending a message says channels need a secure
        session; raw datagrams still work.
        """
        world, host, player, connection, mine, theirs = pair(self, config=PeerConfig(insecure=True))
        self.assertRaises(P2PError, connection.send, b"x", channel=0)
        connection.send(b"raw")
        world.run(0.1)
        self.assertEqual(theirs.received, [b"raw"])
