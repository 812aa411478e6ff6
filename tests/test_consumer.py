"""
A connection's channel as a Twisted IConsumer (p2pnet._consumer), through
real PeerEndpoints on the simulated network: a streaming producer is
paused while the send buffer is over its 4 MiB high-water mark and resumed
once acknowledgements drain it; a pull producer (FileSender) is asked for
more while there is room; producers stop when the connection ends.
"""

from __future__ import annotations

import hashlib
import io

from twisted.internet.interfaces import IConsumer
from twisted.protocols.basic import FileSender
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.test_messages_endpoint import pair

CHUNK = 64 * 1024


class Streaming:
    """
    A push producer that records what it is told.
    """

    def __init__(self):
        self.calls = []
        self.paused = False

    def pauseProducing(self):
        self.calls.append("pause")
        self.paused = True

    def resumeProducing(self):
        self.calls.append("resume")
        self.paused = False

    def stopProducing(self):
        self.calls.append("stop")


def blob(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(4, "big")).digest() * (CHUNK // 32)


class ConsumerTests(SynchronousTestCase):
    def test_is_a_consumer(self):
        """
        C{connection.consumer(channel)} provides IConsumer, is the same
        object for the same channel, and refuses an undeclared channel.
        """
        world, host, player, connection, mine, theirs = pair(self)
        consumer = connection.consumer(0)
        verifyObject(IConsumer, consumer)
        self.assertIs(connection.consumer(0), consumer)
        self.assertRaises(ValueError, connection.consumer, 9)

    def test_streaming_producer_paused_and_resumed(self):
        """
        A streaming producer writing 64 KiB messages is paused by the write
        that brings the send buffer to 4 MiB (the 64th), not before; once
        the peer's acknowledgements drain it, it is resumed, and everything
        written arrives in order.
        """
        world, host, player, connection, mine, theirs = pair(self)
        consumer = connection.consumer(0)
        producer = Streaming()
        consumer.registerProducer(producer, True)
        self.assertEqual(producer.calls, [])
        for n in range(63):
            consumer.write(blob(n))
        self.assertEqual(producer.calls, [])
        consumer.write(blob(63))
        self.assertEqual(producer.calls, ["pause"])
        self.assertFalse(connection.writable)
        world.run(10.0, step=0.005)
        self.assertEqual(producer.calls, ["pause", "resume"])
        self.assertTrue(connection.writable)
        self.assertEqual(theirs.messages, [(0, blob(n)) for n in range(64)])
        # Resumed, it may fill the buffer again: paused again.
        for n in range(64):
            consumer.write(blob(n))
        self.assertEqual(producer.calls, ["pause", "resume", "pause"])
        consumer.unregisterProducer()
        world.run(10.0, step=0.005)
        self.assertEqual(producer.calls, ["pause", "resume", "pause"])

    def test_registered_while_full(self):
        """
        A streaming producer registered while the send buffer is over its
        high-water mark is paused at once, and resumed when it drains.
        """
        world, host, player, connection, mine, theirs = pair(self)
        for n in range(64):
            connection.send(blob(n), channel=0)
        producer = Streaming()
        connection.consumer(2).registerProducer(producer, True)
        self.assertEqual(producer.calls, ["pause"])
        world.run(10.0, step=0.005)
        self.assertEqual(producer.calls, ["pause", "resume"])

    def test_pull_producer_file_sender(self):
        """
        Twisted's FileSender (a pull producer) sends a 10 MiB file through
        the consumer: it is asked for more only while there is room (the
        bytes held never pass the high-water mark by more than one of its
        16 KiB chunks), and the file arrives whole.
        """
        world, host, player, connection, mine, theirs = pair(self)
        data = b"".join(blob(n) for n in range(160))  # 10 MiB
        consumer = connection.consumer(0)
        held = []
        original = consumer.write

        def write(chunk):
            original(chunk)
            stats = connection.stats()
            held.append(stats.queued_bytes + stats.bytes_in_flight)

        consumer.write = write
        done = FileSender().beginFileTransfer(io.BytesIO(data), consumer)
        world.run(30.0, step=0.005)
        self.successResultOf(done)
        self.assertEqual(b"".join(d for c, d in theirs.messages), data)
        self.assertGreater(max(held), 4 * 1024 * 1024 - 16 * 1024)
        self.assertLess(max(held), 4 * 1024 * 1024 + 16 * 1024 + 4096)
        self.assertIsNone(consumer.producer)

    def test_stopped_when_connection_ends(self):
        """
        Closing the connection unregisters the producer and stops it (on a
        later turn); a producer registered on an ended connection is
        stopped at once.
        """
        world, host, player, connection, mine, theirs = pair(self)
        consumer = connection.consumer(0)
        producer = Streaming()
        consumer.registerProducer(producer, True)
        connection.close()
        self.assertIsNone(consumer.producer)
        world.run(0.1)
        self.assertEqual(producer.calls, ["stop"])
        late = Streaming()
        consumer.registerProducer(late, True)
        self.assertEqual(late.calls, ["stop"])
        self.assertIsNone(consumer.producer)

    def test_one_producer_at_a_time(self):
        """
        Registering a second producer on a channel is a RuntimeError; after
        unregisterProducer another may register.
        """
        world, host, player, connection, mine, theirs = pair(self)
        consumer = connection.consumer(0)
        consumer.registerProducer(Streaming(), True)
        self.assertRaises(RuntimeError, consumer.registerProducer, Streaming(), True)
        consumer.unregisterProducer()
        consumer.registerProducer(Streaming(), True)
