"""
Tests for L{p2pnet.channels.ChannelMachine}: its API, the bytes it sends,
and its defences against a peer that sends what it should not.
"""

from twisted.trial.unittest import SynchronousTestCase

from p2pnet.channels import (
    Channel,
    ChannelMachine,
    Delivery,
    MessageReceived,
    Writable,
)
from p2pnet.channels import _frames as F
from p2pnet.errors import MalformedMessage, MessageTooLarge, P2PError, SendBufferFull


def events(machine):
    result = []
    while True:
        event = machine.next_event()
        if event is None:
            return result
        result.append(event)


def messages(machine):
    return [(e.channel, e.data) for e in events(machine) if isinstance(e, MessageReceived)]


class SendTests(SynchronousTestCase):
    def test_too_large(self):
        """
        A message over the cap raises L{MessageTooLarge} (a L{P2PError}) at
        once; one at the cap is accepted.
        """
        machine = ChannelMachine([Channel(0)], max_message=1000)
        error = self.assertRaises(MessageTooLarge, machine.send, 0, bytes(1001))
        self.assertIsInstance(error, P2PError)
        self.assertEqual((error.size, error.cap), (1001, 1000))
        machine.send(0, bytes(1000))

    def test_default_cap(self):
        """
        The default cap is 16 MiB.
        """
        machine = ChannelMachine([Channel(0)])
        self.assertRaises(MessageTooLarge, machine.send, 0, bytes(16 * 1024 * 1024 + 1))

    def test_unknown_channel(self):
        machine = ChannelMachine([Channel(0)])
        self.assertRaises(ValueError, machine.send, 1, b"x")
        self.assertRaises(ValueError, machine.send, 300, b"x")

    def test_duplicate_channel(self):
        self.assertRaises(ValueError, ChannelMachine, [Channel(0), Channel(0)])

    def test_channel_ids(self):
        """
        Channel ids are 0 to 255.
        """
        Channel(255)
        self.assertRaises(ValueError, Channel, 256)
        self.assertRaises(ValueError, Channel, -1)

    def test_send_buffer_full(self):
        """
        Past the send buffer, C{send} raises L{SendBufferFull}; the first
        message is always accepted.
        """
        machine = ChannelMachine([Channel(0)], max_message=1000, send_buffer=2500)
        machine.send(0, bytes(1000))
        machine.send(0, bytes(1000))
        self.assertRaises(SendBufferFull, machine.send, 0, bytes(1000))

    def test_writable(self):
        """
        Above the high-water mark the machine is not writable; once acks
        bring it below the low-water mark it says so with a L{Writable}
        event and the C{when_writable} callbacks.
        """
        channels = [Channel(0)]
        a = ChannelMachine(channels, high_water=3000, low_water=1000)
        b = ChannelMachine(channels)
        self.assertTrue(a.writable)
        a.send(0, bytes(2000))
        a.send(0, bytes(2000))
        self.assertFalse(a.writable)
        called = []
        a.when_writable(lambda: called.append(True))
        now = 0.0
        for _ in range(20):
            for d in a.datagrams_to_send(now):
                b.receive(d, now)
            now += 0.03
            b.handle_timer(now)
            for d in b.datagrams_to_send(now):
                a.receive(d, now)
        self.assertTrue(a.writable)
        self.assertEqual(called, [True])
        self.assertIn(Writable(), events(a))

    def test_reliable_header_six_bytes(self):
        """
        A 64-byte reliable message costs 6 bytes of header: the packet
        holds the 5-byte packet number, 6 bytes of header and the data.
        """
        machine = ChannelMachine([Channel(3, Delivery.RELIABLE_ORDERED)])
        machine.send(3, b"m" * 64)
        [datagram] = machine.datagrams_to_send(0.0)
        self.assertEqual(len(datagram), 5 + 6 + 64)
        self.assertEqual(
            F.parse_packet(datagram), [F.PacketNumber(0), F.Message(3, 0, b"m" * 64)]
        )

    def test_coalescing(self):
        """
        Messages sent with C{flush=False} wait up to the coalescing delay
        and then share one datagram.
        """
        machine = ChannelMachine([Channel(0)], coalesce_delay=0.002)
        for n in range(10):
            machine.send(0, bytes([n]) * 50, flush=False, now=0.0)
        self.assertEqual(machine.datagrams_to_send(0.001), [])
        self.assertEqual(machine.get_timer(), 0.002)
        [datagram] = machine.datagrams_to_send(0.002)
        frames = F.parse_packet(datagram)
        self.assertEqual([f.seq for f in frames[1:]], list(range(10)))

    def test_flush_sends_everything_queued(self):
        """
        A flushed message takes earlier held ones with it.
        """
        machine = ChannelMachine([Channel(0)])
        machine.send(0, b"a", flush=False, now=0.0)
        machine.send(0, b"b", now=0.0)
        [datagram] = machine.datagrams_to_send(0.0)
        self.assertEqual(len(F.parse_packet(datagram)), 3)

    def test_datagrams_fit_payload(self):
        """
        Every datagram fits the base path MTU minus the 28 bytes of path
        framing and AEAD until a larger size is confirmed.
        """
        machine = ChannelMachine([Channel(0)])
        machine.send(0, bytes(100_000))
        datagrams = machine.datagrams_to_send(0.0)
        self.assertTrue(datagrams)
        for datagram in datagrams:
            self.assertLessEqual(len(datagram), 1200 - 28)

    def test_window_full_asks_for_ack(self):
        """
        The packet that fills the congestion window carries ACK_NOW; the
        ones before it do not.
        """
        machine = ChannelMachine([Channel(0)])
        machine.pacer.burst = 100
        machine.send(0, bytes(100_000))
        datagrams = machine.datagrams_to_send(0.0)
        self.assertEqual(len(datagrams), 10)
        flags = [F.AckNow() in F.parse_packet(d) for d in datagrams]
        self.assertEqual(flags[-1], True)
        self.assertEqual(flags[0], False)

    def test_sequenced_inherits_reservation(self):
        """
        On a reliable sequenced channel a newer message takes over the
        peer-budget reservation of the older one it abandons, so a full
        budget cannot stop the channel.
        """
        machine = ChannelMachine(
            [Channel(0, Delivery.RELIABLE_SEQUENCED)],
            max_message=10_000,
            receive_buffer=12_000,
        )
        machine.send(0, bytes(10_000))
        machine.datagrams_to_send(0.0)
        self.assertEqual(machine._buffer.used, 10_128)
        machine.send(0, bytes(3_000))
        machine.handle_timer(5.0)
        datagrams = machine.datagrams_to_send(5.0)
        seqs = {f.seq for d in datagrams for f in F.parse_packet(d) if hasattr(f, "seq")}
        self.assertIn(1, seqs)
        self.assertEqual(machine._buffer.used, 10_128)

    def test_queue_stats(self):
        """
        The stats count queued messages, their bytes and the oldest one's
        age, per channel and in total, until they are acknowledged.
        """
        machine = ChannelMachine([Channel(0), Channel(1, Delivery.UNRELIABLE)])
        machine.send(0, bytes(100), flush=False, now=1.0)
        machine.send(0, bytes(50), flush=False, now=1.2)
        machine.send(1, bytes(10), flush=False, now=1.3)
        stats = machine.stats(now=1.5)
        self.assertEqual((stats.queued_messages, stats.queued_bytes), (3, 160))
        self.assertAlmostEqual(stats.oldest_age, 0.5)
        first, second = stats.channels
        self.assertEqual((first.id, first.queued_messages, first.queued_bytes), (0, 2, 150))
        self.assertEqual((second.id, second.queued_messages, second.queued_bytes), (1, 1, 10))
        self.assertAlmostEqual(second.oldest_age, 0.2)
        [datagram] = machine.datagrams_to_send(1.5)
        # Sent: the unreliable one is gone, the reliable ones wait for acks.
        stats = machine.stats(now=1.6)
        self.assertEqual((stats.queued_messages, stats.queued_bytes), (2, 150))
        self.assertEqual(stats.packets_sent, 1)
        self.assertEqual(stats.bytes_sent, len(datagram) + 28)
        self.assertEqual(stats.channels[0].messages_sent, 2)
        peer = ChannelMachine([Channel(0), Channel(1, Delivery.UNRELIABLE)])
        peer.receive(datagram, 1.55)
        [ack] = peer.datagrams_to_send(1.58)
        machine.receive(ack, 1.6)
        stats = machine.stats(now=1.6)
        self.assertEqual((stats.queued_messages, stats.queued_bytes), (0, 0))
        self.assertAlmostEqual(stats.srtt, 0.1)
        self.assertAlmostEqual(stats.latest_rtt, 0.1)
        self.assertEqual(peer.stats().channels[0].messages_received, 2)

    def test_sequenced_drops_older_unsent(self):
        """
        On a sequenced channel only the newest unsent message is sent.
        """
        machine = ChannelMachine([Channel(0, Delivery.UNRELIABLE_SEQUENCED)])
        for n in range(5):
            machine.send(0, bytes([n]), flush=False, now=0.0)
        [datagram] = machine.datagrams_to_send(1.0)
        self.assertEqual(F.parse_packet(datagram)[1:], [F.Message(0, 0, b"\x04")])


def packet(number, *frames):
    return F.PacketNumber(number).encode() + b"".join(f.encode() for f in frames)


class ReceiveTests(SynchronousTestCase):
    def setUp(self):
        self.machine = ChannelMachine(
            [
                Channel(0, Delivery.RELIABLE_ORDERED),
                Channel(1, Delivery.UNRELIABLE),
                Channel(2, Delivery.UNRELIABLE_SEQUENCED),
            ],
            max_message=10_000,
            receive_buffer=30_000,
        )

    def test_malformed(self):
        """
        Bytes that are not channel frames, or a packet without its packet
        number first, raise L{MalformedMessage} and change nothing.
        """
        self.assertRaises(MalformedMessage, self.machine.receive, b"\x99", 0.0)
        self.assertRaises(
            MalformedMessage, self.machine.receive, F.Message(0, 0, b"x").encode(), 0.0
        )
        self.assertRaises(
            MalformedMessage,
            self.machine.receive,
            packet(0, F.Message(0, 0, b"x")) + b"\x17",
            0.0,
        )
        self.assertEqual(messages(self.machine), [])
        self.assertEqual(self.machine.received.ranges, [])

    def test_frames_list(self):
        """
        The secure layer may hand over frames it already parsed.
        """
        self.machine.receive([F.PacketNumber(0), F.Unreliable(1, b"hi")], 0.0)
        self.assertEqual(messages(self.machine), [(1, b"hi")])

    def test_duplicate_packet(self):
        """
        A replayed packet number delivers nothing again, not even an
        unreliable message.
        """
        raw = packet(4, F.Unreliable(1, b"once"))
        self.machine.receive(raw, 0.0)
        self.machine.receive(raw, 0.1)
        self.assertEqual(messages(self.machine), [(1, b"once")])

    def test_ordered(self):
        """
        An ordered channel holds a message until the ones before it came.
        """
        self.machine.receive(packet(0, F.Message(0, 1, b"second")), 0.0)
        self.assertEqual(messages(self.machine), [])
        self.machine.receive(packet(1, F.Message(0, 0, b"first")), 0.0)
        self.assertEqual(messages(self.machine), [(0, b"first"), (0, b"second")])
        self.machine.receive(packet(2, F.Message(0, 0, b"first")), 0.0)
        self.assertEqual(messages(self.machine), [])

    def test_unsequenced_late(self):
        """
        An unreliable-sequenced channel drops a message older than one it
        delivered.
        """
        self.machine.receive(packet(0, F.Message(2, 5, b"new")), 0.0)
        self.machine.receive(packet(1, F.Message(2, 4, b"old")), 0.0)
        self.assertEqual(messages(self.machine), [(2, b"new")])

    def test_wrong_channel_kind(self):
        """
        Frames for undeclared channels, or of the wrong kind for the
        channel, are dropped and counted.
        """
        self.machine.receive(
            packet(0, F.Message(9, 0, b"x"), F.Unreliable(0, b"y"), F.Message(1, 0, b"z")),
            0.0,
        )
        self.assertEqual(messages(self.machine), [])
        self.assertEqual(self.machine.stats().dropped_frames, 3)

    def test_fragment_over_cap(self):
        """
        A fragment claiming a message over the cap is dropped: nothing is
        allocated for it.
        """
        self.machine.receive(packet(0, F.Fragment(0, 0, 10_001, 0, b"x")), 0.0)
        self.assertEqual(self.machine._budget.used, 0)
        self.assertEqual(self.machine.stats().dropped_frames, 1)

    def test_fragment_total_changes(self):
        """
        A fragment whose total disagrees with the message being reassembled
        is dropped.
        """
        self.machine.receive(packet(0, F.Fragment(0, 0, 100, 0, b"a" * 10)), 0.0)
        self.machine.receive(packet(1, F.Fragment(0, 0, 50, 10, b"b" * 40)), 0.0)
        self.assertEqual(self.machine.stats().dropped_frames, 1)
        self.assertEqual(messages(self.machine), [])

    def test_reassembly(self):
        """
        Fragments in any order, overlapping, make the message.
        """
        data = bytes(range(200))
        for number, (offset, end) in enumerate([(150, 200), (0, 60), (40, 160)]):
            self.machine.receive(
                packet(number, F.Fragment(0, 0, 200, offset, data[offset:end])), 0.0
            )
        self.assertEqual(messages(self.machine), [(0, data)])
        self.assertEqual(self.machine._budget.used, 0)

    def test_budget(self):
        """
        A peer that starts more messages than the receive budget holds gets
        its packets refused (not acknowledged): memory stays within the
        budget.
        """
        for seq in range(1, 10):
            self.machine.receive(
                packet(seq, F.Fragment(0, seq, 10_000, 0, b"x")), float(seq)
            )
            self.assertLessEqual(self.machine._budget.used, 30_000)
        self.assertEqual(self.machine._budget.used, 2 * (10_000 + 128))
        self.assertEqual(self.machine.refused_packets, 7)
        # The refused packets were not recorded as received.
        self.assertEqual(self.machine.received.ranges, [[1, 2]])

    def test_unreliable_over_budget(self):
        """
        An unreliable fragment that does not fit the budget is dropped on
        its own; the reliable message beside it is delivered and the packet
        acknowledged.
        """
        self.machine.receive(packet(0, F.Fragment(0, 1, 10_000, 0, b"x")), 0.0)
        self.machine.receive(packet(1, F.Fragment(0, 2, 10_000, 0, b"x")), 0.0)
        self.machine.receive(
            packet(2, F.Fragment(1, 0, 10_000, 0, b"u"), F.Message(0, 0, b"r")), 0.0
        )
        self.assertEqual(messages(self.machine), [(0, b"r")])
        self.assertEqual(self.machine.refused_packets, 0)
        self.assertTrue(self.machine.received.contains(2))

    def test_sequenced_gives_up_older(self):
        """
        On a sequenced channel the first frame of a newer message frees the
        reassembly of older ones, and their late frames are ignored.
        """
        self.machine.receive(packet(0, F.Fragment(2, 1, 10_000, 0, b"o")), 0.0)
        self.assertEqual(self.machine._budget.used, 10_128)
        self.machine.receive(packet(1, F.Fragment(2, 2, 5_000, 0, b"n")), 0.0)
        self.assertEqual(self.machine._budget.used, 5_128)
        self.machine.receive(packet(2, F.Fragment(2, 1, 10_000, 1, b"o")), 0.0)
        self.assertEqual(self.machine._budget.used, 5_128)

    def test_window(self):
        """
        A reliable message far beyond the sequence window is ignored.
        """
        self.machine.receive(packet(0, F.Message(0, 5000, b"far")), 0.0)
        self.assertEqual(self.machine._receivers[0].pending, {})

    def test_ack_for_unsent_packet(self):
        """
        An ACK for a packet never sent is ignored.
        """
        self.machine.receive(packet(0, F.Ack(5, 0, 0)), 0.0)
        self.assertEqual(self.machine.stats().dropped_frames, 1)
        self.assertEqual(self.machine.sent.largest_acked, -1)

    def test_ack_elicits_ack(self):
        """
        A packet with a message is acknowledged within the max ack delay;
        a second one makes the ack due at once.
        """
        self.machine.receive(packet(0, F.Unreliable(1, b"a")), 1.0)
        self.assertEqual(self.machine.get_timer(), 1.025)
        self.assertEqual(self.machine.datagrams_to_send(1.0), [])
        self.machine.receive(packet(1, F.Unreliable(1, b"b")), 1.01)
        [ack] = self.machine.datagrams_to_send(1.01)
        frames = F.parse_packet(ack)
        self.assertEqual(frames[1].absolute(1), [(0, 1)])
        # 10 ms since the largest arrived: 0 units of 16 us.
        self.assertEqual(frames[1].delay, 0)

    def test_ack_now(self):
        """
        A packet with ACK_NOW is acknowledged at once.
        """
        self.machine.receive(packet(0, F.Unreliable(1, b"a"), F.AckNow()), 1.0)
        self.assertEqual(self.machine.get_timer(), 1.0)
        self.assertEqual(len(self.machine.datagrams_to_send(1.0)), 1)

    def test_decimation(self):
        """
        After 100 ack-eliciting packets in order, the ack waits for the
        10th (or the max ack delay).
        """
        for number in range(100):
            self.machine.receive(packet(number, F.Unreliable(1, b"a")), 1.0)
            self.machine.datagrams_to_send(1.0)
        self.machine.datagrams_to_send(1.5)
        for number in range(100, 109):
            self.machine.receive(packet(number, F.Unreliable(1, b"a")), 2.0)
        self.assertEqual(self.machine.get_timer(), 2.025)
        self.machine.receive(packet(109, F.Unreliable(1, b"a")), 2.0)
        self.assertEqual(self.machine.get_timer(), 2.0)

    def test_ack_only_not_acked(self):
        """
        A packet holding only an ACK does not ask for an ACK.
        """
        self.machine.receive(packet(0, F.Ack(0, 0, 0)), 1.0)
        self.assertIsNone(self.machine.received.ack_deadline)
