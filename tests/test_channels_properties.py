"""
Property tests of the channel machine over a link that loses, duplicates,
reorders and delays datagrams (L{p2pnet.testing.channellink}): every
delivery mode keeps its promise, and memory stays bounded.
"""

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pnet.channels import Channel, ChannelMachine, Delivery, MessageReceived
from p2pnet.testing.channellink import Direction, Link

ORDERED, UNORDERED, SEQUENCED, U_SEQUENCED, UNRELIABLE = range(5)
CHANNELS = [
    Channel(ORDERED, Delivery.RELIABLE_ORDERED),
    Channel(UNORDERED, Delivery.RELIABLE_UNORDERED),
    Channel(SEQUENCED, Delivery.RELIABLE_SEQUENCED),
    Channel(U_SEQUENCED, Delivery.UNRELIABLE_SEQUENCED),
    Channel(UNRELIABLE, Delivery.UNRELIABLE),
]
MAX_MESSAGE = 20_000
RECEIVE_BUFFER = 48_000


def payload(index: int, size: int) -> bytes:
    """
    A message that names itself: its index, then bytes derived from it.
    """
    head = index.to_bytes(4, "big")
    body = bytes((index * 7 + i) & 0xFF for i in range(max(size - 4, 0)))
    return head + body


def index_of(data: bytes) -> int:
    return int.from_bytes(data[:4], "big")


directions = st.builds(
    Direction,
    delay=st.floats(0.001, 0.1),
    jitter=st.floats(0.0, 0.05),
    loss=st.floats(0.0, 0.3),
    duplicate=st.floats(0.0, 0.2),
)

messages = st.lists(
    st.tuples(
        st.integers(0, 1),  # sending side
        st.integers(0, 4),  # channel
        st.one_of(st.integers(4, 200), st.integers(4, 6000), st.integers(4, MAX_MESSAGE)),
        st.floats(0.0, 2.0),  # when
        st.booleans(),  # flush
    ),
    min_size=1,
    max_size=30,
)


def machines():
    return [
        ChannelMachine(
            CHANNELS,
            max_message=MAX_MESSAGE,
            receive_buffer=RECEIVE_BUFFER,
            send_buffer=10_000_000,
        )
        for _ in range(2)
    ]


class DeliveryProperties(SynchronousTestCase):
    @settings(max_examples=60)
    @given(directions, directions, messages, st.integers(0, 2**32))
    def test_promises(self, ab, ba, plan, seed):
        """
        Reliable messages arrive exactly once and intact (in order where
        ordered); sequenced channels never go backwards and a reliable
        sequenced channel delivers its newest message; unreliable ones
        arrive at most once; the receive budget is never exceeded and is
        all given back at the end.
        """
        a, b = machines()
        link = Link(a, b, ab, ba, seed=seed)
        sent = {}
        for index, (side, channel, size, when, flush) in enumerate(plan):
            data = payload(index, size)
            sent[index] = (when, side, channel, data)

            def send(side=side, channel=channel, data=data, flush=flush):
                link.machine(side).send(channel, data, flush=flush, now=link.now)

            link.at(when, send)
        peak = [0, 0]

        def check():
            for side, machine in enumerate((a, b)):
                used = machine._budget.used
                self.assertLessEqual(used, RECEIVE_BUFFER)
                peak[side] = max(peak[side], used)
            return link.now > 2.0 and link.idle()

        link.run(until=600.0, stop=check)
        self.assertTrue(link.idle(), "still busy after 600 s")
        for receiver in (0, 1):
            got = {}
            for _, event in link.received[receiver]:
                if isinstance(event, MessageReceived):
                    got.setdefault(event.channel, []).append(event.data)
            expected = {}
            # In the order they were sent: by time, then by index.
            for index, (_, side, channel, data) in sorted(
                sent.items(), key=lambda item: (item[1][0], item[0])
            ):
                if side != receiver:
                    expected.setdefault(channel, []).append((index, data))
            self._check(got, expected)
            machine = link.machine(receiver)
            # Only a never-completed unreliable message may stay, until a
            # newer one on its channel (or a shortage) evicts it.
            leftover = sum(
                machine._receivers[c].buffered() for c in (U_SEQUENCED, UNRELIABLE)
            )
            self.assertEqual(machine._budget.used, leftover)
            self.assertEqual(machine._buffer.used, 0)
            self.assertEqual(machine._buffer.held, 0)

    def _check(self, got, expected):
        for channel in range(5):
            want = expected.get(channel, [])
            have = got.get(channel, [])
            by_index = dict(want)
            indices = [index_of(d) for d in have]
            for data in have:
                self.assertEqual(by_index[index_of(data)], data)
            if channel == ORDERED:
                self.assertEqual(indices, [i for i, _ in want])
            elif channel == UNORDERED:
                self.assertEqual(sorted(indices), sorted(i for i, _ in want))
            else:
                self.assertEqual(len(indices), len(set(indices)))
                rank = {index: n for n, (index, _) in enumerate(want)}
                ranks = [rank[i] for i in indices]
                if channel != UNRELIABLE:
                    self.assertEqual(ranks, sorted(ranks))
                if channel == SEQUENCED and want:
                    self.assertEqual(indices[-1], want[-1][0])


class HeavyProperties(SynchronousTestCase):
    @settings(max_examples=20)
    @given(
        st.integers(0, 2**32),
        st.sampled_from([0.05, 0.2, 0.3]),
        st.sampled_from([0.0, 0.1]),
        st.sampled_from([0.0, 0.03]),
    )
    def test_many_messages(self, seed, loss, duplicate, jitter):
        """
        Sixty messages of every size on every channel, both ways, through
        heavy loss, duplication and reordering: the same promises hold.
        """
        rng = random.Random(seed)
        a, b = machines()
        ab = Direction(delay=0.02, jitter=jitter, loss=loss, duplicate=duplicate)
        ba = Direction(delay=0.03, jitter=jitter, loss=loss, duplicate=duplicate)
        link = Link(a, b, ab, ba, seed=seed)
        sent = {}
        for index in range(60):
            side = rng.randrange(2)
            channel = rng.randrange(5)
            size = rng.choice([4, 60, 1000, 3000, MAX_MESSAGE])
            when = rng.random()
            data = payload(index, size)
            sent[index] = (when, side, channel, data)

            def send(side=side, channel=channel, data=data):
                link.machine(side).send(channel, data, flush=rng.random() < 0.5, now=link.now)

            link.at(when, send)

        def check():
            for machine in (a, b):
                self.assertLessEqual(machine._budget.used, RECEIVE_BUFFER)
            return link.now > 1.0 and link.idle()

        link.run(until=600.0, stop=check)
        self.assertTrue(link.idle(), "still busy after 600 s")
        for receiver in (0, 1):
            got = {}
            for _, event in link.received[receiver]:
                if isinstance(event, MessageReceived):
                    got.setdefault(event.channel, []).append(event.data)
            expected = {}
            for index, (_, side, channel, data) in sorted(
                sent.items(), key=lambda item: (item[1][0], item[0])
            ):
                if side != receiver:
                    expected.setdefault(channel, []).append((index, data))
            DeliveryProperties._check(self, got, expected)
