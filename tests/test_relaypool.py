"""
Several relays behind one introducer: status probes, allocations by load,
and pairs moved to another relay when theirs dies (p2pnet/_relaypool.py,
p2pnet/_relayprobe.py).
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from p2pnet import wire
from p2pnet._relaypool import RelayMonitor, RelayPool, RelaySettings
from p2pnet._relayprobe import PROBE_SIZE, answer_probe, encode_probe, read_answer
from p2pnet._ratelimit import RateLimiter
from p2pnet._registry import Registry
from p2pnet.address import Address
from p2pnet.introducer import IntroducerProtocol
from p2pnet.relay import RelayProtocol

from .helpers import FakeDatagramTransport, seeded_bytes, txid
from .test_introducer import IDENTITY, A, B

ONE = RelaySettings(b"first relay secret", Address("192.0.2.31", 3479))
TWO = RelaySettings(b"second relay secret", Address("192.0.2.32", 3479))
MONITOR = ("192.0.2.1", 40000)
C = ("198.51.100.8", 42000)
D = ("198.51.100.9", 43000)


class RawTransport:
    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple]] = []

    def write(self, data, addr):
        self.written.append((data, addr))


class ProbeTests(SynchronousTestCase):
    def test_relay_answers_its_load(self):
        """
        A relay answers a probe under its secret with its allocation count,
        in a datagram exactly as large as the probe, to the probe's source.
        """
        relay = RelayProtocol(Clock(), b"first relay secret")
        transport = RawTransport()
        relay.makeConnection(transport)
        self.addCleanup(relay.doStop)
        probe = encode_probe(b"first relay secret", b"n" * 8)
        self.assertEqual(len(probe), PROBE_SIZE)
        relay.datagramReceived(probe, MONITOR)
        [(answer, to)] = transport.written
        self.assertEqual((to, len(answer)), (MONITOR, len(probe)))
        self.assertEqual(read_answer(answer, b"first relay secret", b"n" * 8), 0)
        self.assertEqual(relay.stats["status-probes"], 1)

    def test_forged_probe_not_answered(self):
        """
        A probe under another secret, or mangled, gets nothing back.
        """
        relay = RelayProtocol(Clock(), b"first relay secret")
        transport = RawTransport()
        relay.makeConnection(transport)
        self.addCleanup(relay.doStop)
        probe = encode_probe(b"wrong secret", b"n" * 8)
        relay.datagramReceived(probe, MONITOR)
        good = encode_probe(b"first relay secret", b"n" * 8)
        relay.datagramReceived(good[:-1] + bytes([good[-1] ^ 1]), MONITOR)
        relay.datagramReceived(good + b"x", MONITOR)
        self.assertEqual(transport.written, [])
        self.assertEqual(relay.stats["dropped-unauthenticated"], 3)

    def test_only_our_answer_counts(self):
        """
        An answer is taken only for our latest nonce, under the relay's
        secret; a probe sent back as if it were an answer is not one.
        """
        probe = encode_probe(ONE.secret, b"n" * 8)
        answer = answer_probe(probe, ONE.secret, 7)
        self.assertEqual(read_answer(answer, ONE.secret, b"n" * 8), 7)
        self.assertIsNone(read_answer(answer, ONE.secret, b"m" * 8))
        self.assertIsNone(read_answer(answer, TWO.secret, b"n" * 8))
        reflected = bytes((wire.MAGIC, wire.MessageType.RELAY_FORWARD)) + probe[2:]
        self.assertIsNone(read_answer(reflected, ONE.secret, b"n" * 8))
        self.assertIsNone(answer_probe(answer, ONE.secret, 7))


class PoolTests(SynchronousTestCase):
    def test_least_loaded(self):
        """
        Allocations go to the least loaded relay that is alive: the first
        on equal load, then by the load each reported plus what was handed
        out since.
        """
        pool = RelayPool([ONE, TWO])
        order = [pool.assign(bytes([n]) * 8, b"i" * 8, ("a", "b")).settings for n in range(4)]
        self.assertEqual(order, [ONE, TWO, ONE, TWO])
        pool.start(0.0)
        probes, died = pool.tick(0.5, seeded_bytes(3))
        self.assertEqual(died, [])
        nonce = probes[0][0][2:10]
        pool.heard(answer_probe(probes[0][0], ONE.secret, 10), Address("192.0.2.31", 3479), 0.6)
        self.assertIs(pool.choose().settings, TWO)
        self.assertEqual(pool.relays[0].load, 10)
        self.assertNotEqual(nonce, bytes(8))

    def test_dead_relay_not_chosen(self):
        """
        A relay silent for dead_after is taken for dead once, not chosen,
        and its allocations are handed back for moving; it is chosen again
        once it answers.
        """
        pool = RelayPool([ONE, TWO], dead_after=3.0)
        pool.start(0.0)
        pool.assign(b"1" * 8, b"i" * 8, ("a", "b"))
        deaths = []
        for step in range(1, 8):
            probes, died = pool.tick(step * 0.5, seeded_bytes(step))
            for raw, to in probes:
                if to == ("192.0.2.32", 3479):
                    pool.heard(answer_probe(raw, TWO.secret, 0), TWO.address, step * 0.5)
            deaths.extend((step * 0.5, relay.settings) for relay in died)
        self.assertEqual(deaths, [(3.0, ONE)])
        self.assertIs(pool.choose().settings, TWO)
        [record] = pool.take_records(pool.relays[0])
        self.assertEqual((record.allocation, record.peers), (b"1" * 8, ("a", "b")))
        probes, _ = pool.tick(4.0, seeded_bytes(9))
        pool.heard(answer_probe(probes[0][0], ONE.secret, 0), ONE.address, 4.0)
        self.assertIs(pool.choose().settings, ONE)

    def test_nobody_alive(self):
        pool = RelayPool([ONE], dead_after=1.0)
        pool.start(0.0)
        pool.tick(1.0, seeded_bytes(1))
        self.assertIsNone(pool.choose())
        self.assertIsNone(pool.assign(b"1" * 8, b"i" * 8, ("a", "b")))


class MonitorTests(SynchronousTestCase):
    def test_probes_and_deaths(self):
        """
        The monitor probes each relay every interval; a relay that stops
        answering is reported dead after dead_after, once; a stray
        datagram changes nothing.
        """
        clock = Clock()
        pool = RelayPool([ONE, TWO], dead_after=2.0)
        died = []
        monitor = RelayMonitor(clock, pool, seeded_bytes(4), died.append, interval=0.5)
        transport = RawTransport()
        monitor.makeConnection(transport)
        answering = {ONE.address.as_tuple(): ONE.secret, TWO.address.as_tuple(): TWO.secret}
        for step in range(12):
            sent, transport.written = transport.written, []
            self.assertEqual(sorted(to for _, to in sent), sorted([ONE.address.as_tuple(), TWO.address.as_tuple()]))
            for raw, to in sent:
                if to in answering:
                    monitor.datagramReceived(answer_probe(raw, answering[to], 1), to)
            if step == 3:
                del answering[ONE.address.as_tuple()]
            clock.advance(0.5)
        monitor.datagramReceived(b"\xd1\x51" + bytes(21), ONE.address.as_tuple())
        self.assertEqual([relay.settings for relay in died], [ONE])
        self.assertEqual(monitor.dropped, 1)
        monitor.doStop()
        self.assertEqual(clock.getDelayedCalls(), [])


class MoveTests(SynchronousTestCase):
    """
    The introducer moves the pairs of a dead relay.
    """

    def setUp(self):
        self.clock = Clock()
        self.transport = FakeDatagramTransport()
        self.pool = RelayPool([ONE, TWO])
        self.protocol = IntroducerProtocol(
            self.clock, Registry(30.0, seeded_bytes(1)), seeded_bytes(2),
            rate_limiter=RateLimiter(100.0, 200.0), identity=IDENTITY, relay=self.pool,
        )
        self.protocol.makeConnection(self.transport)
        self.cookies = {}
        self.n = 0

    def tearDown(self):
        self.protocol.doStop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def send(self, message, source):
        self.protocol.datagramReceived(wire.encode(wire.padded(message)), source)

    def next_txid(self):
        self.n += 1
        return txid(self.n)

    def register(self, name, source):
        self.send(wire.Register(self.next_txid(), name, ()), source)
        [(answer, _)] = self.transport.clear()
        self.cookies[name] = answer.cookie
        self.send(wire.Heartbeat(self.next_txid(), name, answer.cookie), source)
        self.transport.clear()

    def relayed_pair(self, one, one_at, other, other_at):
        self.send(wire.Introduce(self.next_txid(), one, self.cookies[one], other), one_at)
        intro = [m for m, to in self.transport.clear() if to == one_at][0]
        self.send(wire.RelayRequest(self.next_txid(), one, self.cookies[one], other, intro.intro_id), one_at)
        offers = {to: m for m, to in self.transport.clear() if isinstance(m, wire.RelayOffer)}
        for to, offer in offers.items():
            self.send(wire.IntroAck(self.next_txid(), offer.allocation), to)
        self.transport.clear()
        return intro.intro_id, offers

    def test_pairs_spread_and_moved(self):
        """
        Two pairs go to two relays (by load); when the first relay dies,
        its pair gets a new allocation on the second, pushed to both
        members with the sides they had and the second relay's key, until
        each acknowledges; the other pair is left alone.
        """
        for name, source in (("a", A), ("b", B), ("c", C), ("d", D)):
            self.register(name, source)
        intro_ab, first = self.relayed_pair("a", A, "b", B)
        _, second = self.relayed_pair("c", C, "d", D)
        self.assertEqual({o.relay for o in first.values()}, {ONE.address})
        self.assertEqual({o.relay for o in second.values()}, {TWO.address})
        self.protocol.relay_died(self.pool.relays[0])
        moved = {to: m for m, to in self.transport.clear()}
        self.assertEqual(set(moved), {A, B})
        allocation = moved[A].allocation
        self.assertNotEqual(allocation, first[A].allocation)
        for to, offer in moved.items():
            self.assertEqual((offer.intro_id, offer.relay, offer.allocation), (intro_ab, TWO.address, allocation))
            self.assertEqual(offer.key, wire.relay_key(TWO.secret, allocation))
            self.assertEqual(offer.side, first[to].side)
        self.assertEqual(self.protocol.stats["relay-allocations-moved"], 1)
        self.clock.advance(0.25)
        again = [(m.allocation, to) for m, to in self.transport.clear() if isinstance(m, wire.RelayOffer)]
        self.assertEqual(sorted(again), sorted([(allocation, A), (allocation, B)]))
        self.send(wire.IntroAck(self.next_txid(), allocation), A)
        self.send(wire.IntroAck(self.next_txid(), allocation), B)
        self.transport.clear()
        for _ in range(30):
            self.clock.advance(0.25)
        self.assertEqual([m for m, _ in self.transport.clear() if isinstance(m, wire.RelayOffer)], [])

    def test_gone_pairs_not_moved(self):
        """
        A pair one of whose members unregistered is not moved.
        """
        for name, source in (("a", A), ("b", B)):
            self.register(name, source)
        self.relayed_pair("a", A, "b", B)
        self.send(wire.Unregister(self.next_txid(), "b", self.cookies["b"]), B)
        self.transport.clear()
        self.protocol.relay_died(self.pool.relays[0])
        self.assertEqual(self.transport.clear(), [])
        self.assertEqual(self.protocol.stats["relay-allocations-moved"], 0)

    def test_no_relay_answering(self):
        """
        With every relay dead, a relay request is refused with a reason.
        """
        for name, source in (("a", A), ("b", B)):
            self.register(name, source)
        for relay in self.pool.relays:
            relay.alive = False
        self.send(wire.Introduce(self.next_txid(), "a", self.cookies["a"], "b"), A)
        intro = [m for m, to in self.transport.clear() if to == A][0]
        self.send(wire.RelayRequest(self.next_txid(), "a", self.cookies["a"], "b", intro.intro_id), A)
        [error] = [m for m, to in self.transport.clear() if to == A]
        self.assertEqual((error.code, error.reason), (wire.ErrorCode.BAD_REQUEST, "no relay is answering"))
