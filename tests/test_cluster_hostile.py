"""
What a cluster node reads from Redis and from other nodes, forged or
broken: records that do not parse are read as absent, node messages that
do not parse are dropped and counted, and nothing raises or sends where
it should not.  No Redis needed (the node is never started).
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from p2pnet import wire
from p2pnet._registry import Registration
from p2pnet.address import Address
from p2pnet.cluster import cluster_protocol
from p2pnet.cluster._records import BadRecord, peer_record, read_peer, read_session
from tests.helpers import FakeDatagramTransport, seeded_bytes, txid

ALICE = ("198.51.100.5", 40000)


class RecordTests(SynchronousTestCase):
    def test_peer_record_round_trip_without_cookie(self):
        """
        A peer record carries what introductions need and never the
        cookie; read back, it is a stand-in with an empty cookie.
        """
        registration = Registration(
            "alice", Address("198.51.100.5", 1), (Address("10.0.0.5", 2),), b"secret!!", 0.0,
            verified=True, nat=3, rtt=0.012, peer_key=bytes(range(32)),
        )
        raw = peer_record(registration)
        self.assertNotIn("secret", raw)
        self.assertNotIn(b"secret!!".hex(), raw)
        back = read_peer("alice", raw, 5.0)
        self.assertEqual(
            (back.public, back.local, back.verified, back.nat, back.rtt, back.peer_key, back.cookie),
            (registration.public, registration.local, True, 3, 0.012, bytes(range(32)), b""),
        )

    def test_bad_peer_records(self):
        """
        Records that are not JSON objects, too large, or break a field's
        type or cap raise BadRecord (the node reads them as absent).
        """
        good = {"p": ["198.51.100.5", 1], "v": 1}
        bad = [
            b"\xff\xfe", "[]", "{", "x" * 9000,
            {**good, "p": ["not an ip", 1]},
            {**good, "p": ["198.51.100.5", 70000]},
            {**good, "l": [["10.0.0.1", 1]] * 9},
            {**good, "k": "00" * 31},
            {**good, "k": "zz" * 32},
            {**good, "t": 256},
            {**good, "r": -1},
            {"v": 1},
        ]
        for record in bad:
            raw = json.dumps(record) if isinstance(record, dict) else record
            self.assertRaises(BadRecord, read_peer, "alice", raw, 0.0)
        self.assertRaises(BadRecord, read_peer, "x" * 65, json.dumps(good), 0.0)

    def test_bad_session_records(self):
        """
        Session records with impossible counts, too many properties or
        missing names raise BadRecord.
        """
        good = {"n": "room", "g": "chess", "h": "alice", "m": 4, "x": 0, "c": 1, "q": 0, "p": [["map", "x"]]}
        session, key = read_session(bytes(8), json.dumps(good))
        self.assertEqual((session.name, session.players, session.properties, key), ("room", 1, (("map", "x"),), None))
        for change in ({"m": 1}, {"m": 2000}, {"c": 0}, {"c": 5}, {"q": 9}, {"p": [["a", "b"]] * 17},
                       {"p": [["a"]]}, {"n": 5}, {"h": "x" * 65}, {"k": "00"}):
            self.assertRaises(BadRecord, read_session, bytes(8), json.dumps({**good, **change}))


class NodeMessageTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.transport = FakeDatagramTransport()
        self.protocol = cluster_protocol(
            self.clock, "redis://127.0.0.1:1", 30.0, {}, node_id="me", random_bytes=seeded_bytes(1)
        )
        self.protocol.makeConnection(self.transport)
        self.node = self.protocol.node

    def tearDown(self):
        self.protocol.doStop()
        for call in self.clock.getDelayedCalls():
            call.cancel()

    def register(self, name, source, confirm=True):
        self.protocol.datagramReceived(wire.encode(wire.padded(wire.Register(txid(1), name, ()))), source)
        [(answer, _)] = self.transport.clear()
        if confirm:
            self.protocol.datagramReceived(
                wire.encode(wire.padded(wire.Heartbeat(txid(2), name, answer.cookie))), source)
            self.transport.clear()

    def introduction(self):
        return wire.Introduction(txid(9), bytes(8), "bob", Address("203.0.113.9", 9), (), bytes(wire.KEY_SIZE))

    def deliver(self, message):
        self.node._received(json.dumps(message))

    def test_forwarded_introduction_sent_to_the_peer(self):
        """
        A push from another node for a verified local peer goes to the
        peer's registered address, re-encoded here, and is retransmitted
        until acknowledged.
        """
        self.register("alice", ALICE)
        self.deliver({"o": "push", "to": "alice", "m": wire.encode(self.introduction()).hex(), "b": None,
                      "j": None, "x": "bob"})
        [(message, to)] = self.transport.clear()
        self.assertEqual((message.peer_id, to), ("bob", ALICE))
        self.clock.advance(0.25)
        self.assertEqual(len(self.transport.clear()), 1)

    def test_garbage_from_other_nodes_dropped(self):
        """
        Messages that are not JSON, name no or an unknown operation, carry
        bad hex, a message that is not forwardable, a budget that is not a
        number, or a peer that is not held here, are dropped and counted;
        nothing is sent and nothing raises.
        """
        self.register("alice", ALICE)
        registered = wire.Registered(txid(3), Address(*ALICE), 30, bytes(8))
        intro = wire.encode(self.introduction()).hex()
        for raw in ["not json", "[1]", json.dumps({"o": "nope"}), json.dumps({"x": 1}),
                    json.dumps({"o": "push", "to": "alice", "m": "zz"}),
                    json.dumps({"o": "push", "to": "alice", "m": "d1"}),
                    json.dumps({"o": "push", "to": "alice", "m": wire.encode(registered).hex()}),
                    json.dumps({"o": "push", "to": "alice", "m": intro, "b": "many"}),
                    json.dumps({"o": "push", "to": "alice", "m": intro, "j": "bad"}),
                    json.dumps({"o": "push", "to": "nobody", "m": intro}),
                    json.dumps({"o": "join", "id": "carol", "r": "{}", "from": "x", "t": "00" * 8, "s": "00" * 8}),
                    json.dumps({"o": "confirm", "s": "zz", "id": "alice"})]:
            self.node._received(raw)
        self.assertEqual(self.transport.written, [])
        stats = self.protocol.stats
        self.assertEqual(stats["dropped-node-message"], 9)
        self.assertEqual(stats["dropped-forward-unknown-peer"], 1)
        self.assertEqual(self.node.stats["bad-records"], 2)
        self.assertEqual(stats["internal-error"], 0)

    def test_unasked_push_only_to_verified(self):
        """
        A forwarded introduction for a peer that never confirmed its
        address (perhaps a spoofed registration) is not sent; an answer to
        that peer's own request (a budget given) is, within the budget.
        """
        self.register("alice", ALICE, confirm=False)
        intro = wire.encode(self.introduction()).hex()
        self.deliver({"o": "push", "to": "alice", "m": intro, "b": None, "x": "bob"})
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.protocol.stats["introductions-skipped"], 1)
        self.deliver({"o": "push", "to": "alice", "m": intro, "b": 20, "x": "bob"})
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.protocol.stats["dropped-amplification"], 1)
        self.deliver({"o": "push", "to": "alice", "m": intro, "b": 1200, "x": "bob"})
        [(message, to)] = self.transport.clear()
        self.assertEqual(to, ALICE)
