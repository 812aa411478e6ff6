"""
Tests for the relay: the relay protocol itself, relay fallback, upgrade to
a direct path and downgrade back to the relay, on the simulated network.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from p2pnet import wire
from p2pnet.relay import RelayProtocol
from p2pnet.testing.scenarios import run_pair

from .helpers import FakeDatagramTransport

SECRET = b"relay secret"
ALLOCATION = b"A" * 8
KEY = wire.relay_key(SECRET, ALLOCATION)
ONE = ("198.51.100.1", 1111)
TWO = ("203.0.113.2", 2222)


class RelayProtocolTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.transport = FakeDatagramTransport("192.0.2.20", 3479)
        self.relay = RelayProtocol(self.clock, SECRET, idle_timeout=60.0, max_packets=5)
        self.relay.makeConnection(self.transport)

    def tearDown(self):
        self.relay.doStop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def send(self, side, inner, source, key=KEY, allocation=ALLOCATION):
        self.relay.datagramReceived(wire.encode_relayed(allocation, side, inner, key), source)

    def test_forwards_between_members(self):
        """
        Once both members sent an authenticated datagram, each one's
        datagrams reach the other, with the type byte flipped and the tag
        intact (so the receiver can check it).
        """
        self.send(0, b"first", ONE)
        self.assertEqual(self.transport.written, [])
        self.send(1, b"second", TWO)
        self.send(0, b"third", ONE)
        [(to_one, addr_one), (to_two, addr_two)] = self.transport.written
        self.assertEqual((addr_one, addr_two), (ONE, TWO))
        self.assertEqual(to_one[1], wire.MessageType.RELAY_FORWARD)
        self.assertEqual(wire.verify_relayed(to_one, KEY), b"second")
        self.assertEqual(wire.verify_relayed(to_two, KEY), b"third")
        self.assertEqual(self.relay.stats["forwarded"], 2)

    def test_batch(self):
        """
        A batch (as L{p2pnet._udpread.FastReadPort} hands over) is relayed
        as its datagrams one by one would be: drops are counted, and a
        datagram that hits a bug is counted and logged without stopping
        the rest of the batch.
        """
        frame = lambda side, inner: wire.encode_relayed(ALLOCATION, side, inner, KEY)  # noqa: E731
        self.relay.datagrams_received([
            (frame(0, b"bind"), ONE),
            (frame(1, b"a"), TWO),
            (b"junk", ONE),
            (None, ONE),
            (frame(0, b"b"), ONE),
            (frame(1, b"c"), TWO),
        ])
        self.assertEqual(
            [(wire.verify_relayed(data, KEY), addr) for data, addr in self.transport.written],
            [(b"a", ONE), (b"b", TWO), (b"c", ONE)],
        )
        self.assertEqual(
            {k: self.relay.stats[k] for k in ("forwarded", "dropped-malformed", "internal-error")},
            {"forwarded": 3, "dropped-malformed": 1, "internal-error": 1},
        )
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_unauthenticated_dropped(self):
        """
        A datagram with a wrong tag neither binds nor gets forwarded.
        """
        self.send(0, b"x", ONE)
        self.send(1, b"evil", TWO, key=b"k" * 16)
        self.send(0, b"y", ONE)
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.relay.stats["dropped-unauthenticated"], 1)

    def test_member_rebinds(self):
        """
        A member's authenticated datagram from a new address moves it.
        """
        self.send(0, b"a", ONE)
        self.send(1, b"b", TWO)
        moved = ("203.0.113.2", 2223)
        self.send(1, b"c", moved)
        self.send(0, b"d", ONE)
        self.assertEqual(self.transport.written[-1][1], moved)

    def test_cap(self):
        """
        Beyond max_packets a second, an allocation's datagrams are dropped.
        """
        self.send(1, b"b", TWO)
        for _ in range(10):
            self.send(0, b"a", ONE)
        self.assertEqual(len(self.transport.written), 4)
        self.assertEqual(self.relay.stats["dropped-over-cap"], 6)
        self.clock.advance(1.0)
        self.send(0, b"a", ONE)
        self.assertEqual(len(self.transport.written), 5)

    def test_idle_expiry(self):
        """
        An allocation unused for the idle timeout is forgotten.
        """
        self.send(0, b"a", ONE)
        self.clock.advance(61)
        self.assertEqual(self.relay.allocations, {})

    def test_bound_address_not_reverified(self):
        """
        A datagram from the address its side is bound to is forwarded
        without its tag being checked again (as TURN trusts the 5-tuple):
        the receiving member checks it, and a bad one verifies to nothing
        there.
        """
        self.send(0, b"a", ONE)
        self.send(1, b"b", TWO)
        self.send(0, b"forged", ONE, key=b"k" * 16)
        [_, (to_two, addr)] = self.transport.written
        self.assertEqual(addr, TWO)
        self.assertIsNone(wire.verify_relayed(to_two, KEY))
        self.assertEqual(self.relay.stats["dropped-unauthenticated"], 0)

    def test_verify_all(self):
        """
        With C{verify_all}, a bad tag is dropped even from a bound address.
        """
        self.relay.verify_all = True
        self.send(0, b"a", ONE)
        self.send(1, b"b", TWO)
        self.send(0, b"forged", ONE, key=b"k" * 16)
        self.send(0, b"good", ONE)
        self.assertEqual(
            [wire.verify_relayed(data, KEY) for data, _ in self.transport.written], [b"b", b"good"]
        )
        self.assertEqual(self.relay.stats["dropped-unauthenticated"], 1)

    def test_forged_move_refused(self):
        """
        A datagram with a bad tag from a new address does not move a
        bound side: the member keeps getting its datagrams.
        """
        self.send(0, b"a", ONE)
        self.send(1, b"b", TWO)
        self.send(1, b"hijack", ("192.0.2.66", 6666), key=b"k" * 16)
        self.send(0, b"c", ONE)
        self.assertEqual(self.transport.written[-1][1], TWO)
        self.assertEqual(self.relay.stats["dropped-unauthenticated"], 1)
        self.assertEqual(self.relay.stats["rebound"], 0)

    def test_garbage(self):
        """
        Short, foreign or malformed datagrams are counted and dropped.
        """
        for junk in [b"", b"\xd1\x50", b"hello world, not p2pnet", wire.encode_relayed(ALLOCATION, 7, b"x", KEY)]:
            self.relay.datagramReceived(junk, ONE)
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.relay.stats["dropped-malformed"], 4)


class FallbackTests(SynchronousTestCase):
    def test_symmetric_pair_relayed(self):
        """
        Two symmetric NATs cannot punch; the pair ends relayed, not stuck.
        """
        result = run_pair("symmetric", "symmetric", relay=True)
        self.assertEqual(result.path, "relayed")
        self.assertTrue(result.connected)
        self.assertEqual(result.leftover_calls, 0)

    def test_blocked_sites_relayed(self):
        """
        With UDP between the two sites blocked, even cone NATs end relayed,
        after about relay_after seconds.
        """
        result = run_pair("full-cone", "full-cone", relay=True, block=True)
        self.assertEqual(result.path, "relayed")
        self.assertLess(result.connect_time, 4.0)

    def test_relay_only_ignores_direct(self):
        """
        Relay-only connections answer nothing that arrives directly: a
        direct hello with the right key (through a full-cone NAT) neither
        gets an answer nor moves either side off the relay.
        """
        from p2pnet._handshake import HandshakeConfig

        seen = {}

        def then(ctx):
            [mine] = ctx.peer_a.connections
            [theirs] = ctx.peer_b.connections
            mine.send_hello(ctx.peer_b.public_address)
            ctx.run(1.0)
            seen["paths"] = (mine.path.value, theirs.path.value)
            seen["dropped"] = ctx.peer_b.stats.get("dropped-direct-relay-only", 0)

        result = run_pair(
            "full-cone", "full-cone", relay=True, handshake=HandshakeConfig(relay_only=True), then=then
        )
        self.assertEqual(result.path, "relayed")
        self.assertEqual(seen, {"paths": ("relayed", "relayed"), "dropped": 1})

    def test_direct_preferred(self):
        """
        Where punching works, the relay is never asked for.
        """
        events = []
        result = run_pair("full-cone", "port-restricted", relay=True, trace=events.append)
        self.assertEqual(result.path, "direct-public")
        self.assertFalse(any(e.dst[0] == "192.0.2.20" for e in events if e.kind == "send"))

    def test_datagrams_over_relay(self):
        """
        Application datagrams flow both ways over the relay, unchanged.
        """
        seen = {}

        def then(context):
            connection = context.peer_a.connections[0]
            connection.send(b"to B via relay")
            context.run(0.2)
            [theirs] = context.received_b
            theirs.connection.send(b"to A via relay")
            context.run(0.2)
            seen["b"] = list(theirs.received)

        result = run_pair("symmetric", "symmetric", relay=True, then=then)
        self.assertEqual(seen["b"], [b"to B via relay"])

    def test_forged_forward_dropped_by_member(self):
        """
        The relay forwards a bound member's datagrams without checking
        their tags again, so the receiving endpoint checks them: a
        forwarded datagram whose tag does not verify is dropped, and the
        relayed connection carries on.
        """
        record = {}

        def then(context):
            a = context.peer_a.connections[0]
            [theirs] = context.received_b
            route = theirs.connection.address
            inner = wire.encode_data(theirs.connection.conn_id, b"evil", b"k" * 16)
            forged = wire.encode_relayed(route.allocation_id, 1 - route.side, inner, b"k" * 16)
            forged = bytes((wire.MAGIC, wire.MessageType.RELAY_FORWARD)) + forged[2:]
            context.peer_b.datagramReceived(forged, route.relay.as_tuple())
            a.send(b"real")
            context.run(0.2)
            record["received"] = list(theirs.received)
            record["dropped"] = context.peer_b.stats.get("dropped-unauthenticated", 0)
            record["path"] = theirs.connection.path.value

        run_pair("symmetric", "symmetric", relay=True, then=then)
        self.assertEqual(record, {"received": [b"real"], "dropped": 1, "path": "relayed"})

    def test_upgrade_to_direct(self):
        """
        While relayed, direct attempts continue with backoff; when the block
        lifts, both sides move to the direct path and datagrams keep
        flowing, none lost or duplicated.
        """
        record = {}

        def then(context):
            a = context.peer_a.connections[0]
            [theirs] = context.received_b
            context.network.unblock(context.peer_a.public_address.host, context.peer_b.public_address.host)
            for i in range(60):
                a.send(b"%d" % i)
                context.run(0.5)
            record["path_a"] = a.path.value
            record["path_b"] = theirs.connection.path.value
            record["received"] = list(theirs.received)

        run_pair("full-cone", "full-cone", relay=True, block=True, then=then)
        self.assertEqual((record["path_a"], record["path_b"]), ("direct-public", "direct-public"))
        self.assertEqual(record["received"], [b"%d" % i for i in range(60)])

    def test_downgrade_to_relay(self):
        """
        When a direct path dies, the connection falls back to the relay
        without the application reconnecting, and datagrams flow again.
        """
        record = {}

        def then(context):
            a = context.peer_a.connections[0]
            [theirs] = context.received_b
            record["before"] = a.path.value
            context.network.block(context.peer_a.public_address.host, context.peer_b.public_address.host)
            context.run(45)
            record["after_a"] = a.path.value
            record["after_b"] = theirs.connection.path.value
            a.send(b"still there?")
            context.run(0.5)
            record["received"] = list(theirs.received)
            record["lost"] = a.ended

        run_pair("full-cone", "full-cone", relay=True, then=then)
        self.assertEqual(record["before"], "direct-public")
        self.assertEqual((record["after_a"], record["after_b"]), ("relayed", "relayed"))
        self.assertEqual(record["received"], [b"still there?"])
        self.assertFalse(record["lost"])


class NatFactsTests(SynchronousTestCase):
    def test_symmetric_pair_relays_at_once(self):
        """
        When both peers' NAT checks show per-destination mappings, they ask
        for the relay at once instead of after relay_after.
        """
        checked = run_pair("symmetric", "symmetric", relay=True, nat_check=True)
        unchecked = run_pair("symmetric", "symmetric", relay=True)
        self.assertEqual((checked.path, unchecked.path), ("relayed", "relayed"))
        self.assertLess(checked.connect_time, 0.5)
        self.assertGreater(unchecked.connect_time, 3.0)

    def test_hopeless_rules(self):
        """
        Direct punching is ruled out only by known facts: a per-destination
        mapping against address-and-port filtering or another such mapping.
        """
        from p2pnet._handshake import direct_hopeless

        cone = ("endpoint-independent", "address-and-port-dependent")
        full = ("endpoint-independent", "endpoint-independent")
        symmetric = ("address-and-port-dependent", "address-and-port-dependent")
        unknown = ("unknown", "unknown")
        self.assertTrue(direct_hopeless(symmetric, symmetric))
        self.assertTrue(direct_hopeless(cone, symmetric))
        self.assertFalse(direct_hopeless(full, symmetric))
        self.assertFalse(direct_hopeless(cone, cone))
        self.assertFalse(direct_hopeless(unknown, symmetric))


class SourceCapTests(SynchronousTestCase):
    def test_per_source_caps(self):
        """
        Per-source packet and byte budgets drop a source's datagrams
        beyond either (counted by which), leave other sources alone, and
        refill with time.
        """
        from p2pnet._ratelimit import SourceLimiter

        clock = Clock()
        transport = FakeDatagramTransport("192.0.2.20", 3479)
        relay = RelayProtocol(clock, SECRET, source_limiter=SourceLimiter(4.0, 200.0, burst_seconds=1.0))
        relay.makeConnection(transport)
        frame = lambda side, inner: wire.encode_relayed(ALLOCATION, side, inner, KEY)  # noqa: E731
        relay.datagramReceived(frame(1, b"b"), TWO)
        for _ in range(10):
            relay.datagramReceived(frame(0, b"x" * 40), ONE)  # 59 bytes: three fit in 200
        relay.datagramReceived(frame(1, b"y"), TWO)
        for _ in range(5):
            relay.datagramReceived(frame(1, b""), TWO)  # two packets left of four
        self.assertEqual(
            {k: relay.stats[k] for k in ("forwarded", "dropped-byte-limited", "dropped-rate-limited")},
            {"forwarded": 6, "dropped-byte-limited": 7, "dropped-rate-limited": 3},
        )
        clock.advance(1.0)
        relay.datagramReceived(frame(1, b""), TWO)
        relay.datagramReceived(frame(0, b"x" * 40), ONE)
        self.assertEqual(relay.stats["forwarded"], 8)
        relay.doStop()
