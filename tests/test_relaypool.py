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
        self.assertEqual((error.code, error.reason), (wire.ErrorCode.NO_RELAY, "no relay is answering"))


class SimulatedFailoverTests(SynchronousTestCase):
    """
    The whole move on the simulated network (p2pnet.testing), on a clock:
    two relays, a relay-only pair, one relay unplugged.
    """

    def test_pair_moves_to_the_other_relay(self):
        """
        A relay-only pair relayed by the first relay is, once that relay
        stops (its port closed: nothing answers, nothing is forwarded),
        relayed by the second within the fallback time on both sides: the
        connection objects stay up, each side saw one path change, and a
        datagram goes each way through the second relay.
        """
        from p2pnet._handshake import HandshakeConfig

        handshake = HandshakeConfig(relay_only=True, timeout=5.0, keepalive_interval=1.0, dead_after=6.0)
        self.assertLessEqual(self.move(handshake, handshake.fallback), handshake.fallback)

    def test_both_sides_move_at_once(self):
        """
        With the default 15 s keepalive interval, the second side does not
        wait for a keepalive: the first side to move tells it at once, and
        both have moved within 1.5 s of the relay being taken for dead
        (1 s after its last answer here).
        """
        from p2pnet._handshake import HandshakeConfig

        self.assertLessEqual(self.move(HandshakeConfig(relay_only=True), 3.0), 2.5)

    def move(self, handshake, within: float) -> float:
        import random as _random

        from p2pnet.address import RelayRoute
        from p2pnet.endpoint import PeerConfig, PeerEndpoint, PeerFactory, PeerProtocol
        from p2pnet.testing._heapclock import HeapClock
        from p2pnet.testing._simnet import Network

        clock = HeapClock()
        network = Network(clock, seed=18)
        rng = _random.Random(18)

        def random_bytes(n):
            return rng.randbytes(n)

        introducer_at = Address("192.0.2.10", 3478)
        relays = [RelaySettings(b"sim relay one", Address("192.0.2.51", 3479)),
                  RelaySettings(b"sim relay two", Address("192.0.2.52", 3479))]
        relay_ports = []
        for settings in relays:
            host = network.add_host(settings.address.host)
            relay_ports.append(host.listenUDP(3479, RelayProtocol(clock, settings.secret)))
        pool = RelayPool(relays, dead_after=1.0)
        introducer_host = network.add_host(introducer_at.host)
        introducer = IntroducerProtocol(clock, Registry(60.0, random_bytes), random_bytes, relay=pool)
        introducer_port = introducer_host.listenUDP(3478, introducer)
        monitor_port = introducer_host.listenUDP(
            40000, RelayMonitor(clock, pool, random_bytes, introducer.relay_died, interval=0.25)
        )

        class Recording(PeerProtocol):
            def __init__(self):
                self.received = []

            def datagram_received(self, data):
                self.received.append(data)

        class Factory(PeerFactory):
            def __init__(self):
                self.built = []

            def build_protocol(self, peer_id):
                self.built.append(Recording())
                return self.built[-1]

        config = PeerConfig(handshake=handshake)
        factory = Factory()
        host = PeerEndpoint(network.add_host("198.51.100.20"), introducer_at, "host", config=config,
                            random_bytes=random_bytes, factory=factory)
        player = PeerEndpoint(network.add_host("203.0.113.20"), introducer_at, "player", config=config,
                              random_bytes=random_bytes)
        changes = []
        host.add_observer(lambda e: e.kind == "path-changed" and changes.append(("host", clock.seconds())))
        player.add_observer(lambda e: e.kind == "path-changed" and changes.append(("player", clock.seconds())))
        host.start()
        player.start()
        for _ in range(200):
            clock.advance(0.01)
        protocol = Recording()
        connecting = player.connect("host", protocol)
        for _ in range(500):
            clock.advance(0.01)
        connection = self.successResultOf(connecting)
        [host_side] = host.connections
        self.assertIsInstance(connection.address, RelayRoute)
        self.assertEqual(connection.address.relay, relays[0].address)
        self.assertEqual(host_side.address.relay, relays[0].address)
        del changes[:]
        relay_ports[0].stopListening()
        killed = clock.seconds()
        for _ in range(int(within / 0.01)):
            clock.advance(0.01)
        self.assertEqual(connection.address.relay, relays[1].address)
        self.assertEqual(host_side.address.relay, relays[1].address)
        self.assertEqual(sorted(who for who, _ in changes), ["host", "player"])
        moved_after = max(when for _, when in changes) - killed
        self.assertFalse(connection.ended or host_side.ended)
        connection.send(b"after")
        host_side.send(b"back")
        for _ in range(50):
            clock.advance(0.01)
        self.assertEqual((protocol.received, factory.built[0].received), ([b"back"], [b"after"]))
        for port in (introducer_port, monitor_port, relay_ports[1]):
            port.stopListening()
        host.stop()
        player.stop()
        for _ in range(300):
            clock.advance(0.01)
        return moved_after
