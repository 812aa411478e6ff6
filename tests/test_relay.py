"""
Tests for the relay: the relay protocol itself (binding by challenge,
caps, expiry), relay fallback, upgrade to a direct path and downgrade back
to the relay, on the simulated network.
"""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from p2pnet import wire
from p2pnet._relayclient import answer_challenge
from p2pnet.relay import RelayProtocol
from p2pnet.testing.scenarios import run_pair

from .helpers import FakeDatagramTransport

SECRET = b"relay secret"
ALLOCATION = b"A" * 8
KEY = wire.relay_key(SECRET, ALLOCATION)
ONE = ("198.51.100.1", 1111)
TWO = ("203.0.113.2", 2222)
THREE = ("198.51.100.3", 3333)
VICTIM = ("192.0.2.99", 9999)
EVIL = ("192.0.2.66", 6666)
HELLO = b"h" * 24  # a hello-sized inner datagram: its frame (43 bytes) may be challenged


def frame(side, inner, key=KEY, allocation=ALLOCATION):
    return wire.encode_relayed(allocation, side, inner, key)


def unforward(data):
    """A forwarded frame as its sender wrapped it (type byte back to RELAYED)."""
    return bytes((wire.MAGIC, wire.MessageType.RELAYED)) + data[2:]


class RelayTestCase(SynchronousTestCase):
    """
    A relay on a fake transport and a Clock, with helpers that play
    members.
    """

    relay_options: dict = {}

    def setUp(self):
        self.clock = Clock()
        self.transport = FakeDatagramTransport("192.0.2.20", 3479)
        options = {"idle_timeout": 60.0, "max_packets": 5, **self.relay_options}
        self.relay = RelayProtocol(self.clock, SECRET, **options)
        self.relay.makeConnection(self.transport)

    def tearDown(self):
        self.relay.doStop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def send(self, side, inner, source, key=KEY, allocation=ALLOCATION):
        raw = frame(side, inner, key, allocation)
        self.relay.datagramReceived(raw, source)
        return raw

    def take(self, to=None):
        """
        Everything written (to C{to} only, if given), removed from the
        transport's record.
        """
        taken = [(d, a) for d, a in self.transport.written if to is None or a == to]
        self.transport.written[:] = [(d, a) for d, a in self.transport.written if (d, a) not in taken]
        return taken

    def bind(self, side, source, key=KEY, allocation=ALLOCATION):
        """
        Play a member at C{source}: a hello-sized frame, then the answer to
        the challenge it draws.  Returns the answer (to replay it).
        """
        self.send(side, HELLO, source, key, allocation)
        [(challenge, _)] = self.take(source)
        answer = answer_challenge(challenge, allocation, side, key)
        self.relay.datagramReceived(answer, source)
        return answer

    def forwarded_to(self, to):
        return [wire.verify_relayed(unforward(d), KEY) for d, a in self.take(to)]


class RelayProtocolTests(RelayTestCase):
    def test_forwards_between_members(self):
        """
        Once both members proved their addresses, each one's datagrams
        reach the other, with the type byte flipped and the tag intact (so
        the receiver can check it).
        """
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.assertEqual(self.transport.written, [])
        self.send(1, b"second", TWO)
        self.send(0, b"third", ONE)
        [(to_one, addr_one), (to_two, addr_two)] = self.transport.written
        self.assertEqual((addr_one, addr_two), (ONE, TWO))
        self.assertEqual(to_one[:2], b"\xd1\x51")
        self.assertEqual(wire.verify_relayed(unforward(to_one), KEY), b"second")
        self.assertEqual(wire.verify_relayed(unforward(to_two), KEY), b"third")
        self.assertEqual(
            {k: self.relay.stats[k] for k in ("forwarded", "bound", "allocations", "challenges")},
            {"forwarded": 2, "bound": 2, "allocations": 1, "challenges": 2},
        )

    def test_challenge(self):
        """
        A member's authenticated frame from an address its side is not
        bound to is not forwarded: that address gets one 35-byte challenge
        (RELAY_FORWARD, side byte 0x80 | side, a 16-byte nonce, tagged
        with the allocation key), which the member answers with the same
        nonce under side byte 0xC0 | side.
        """
        self.bind(1, TWO)
        sent = self.send(0, HELLO, ONE)
        self.assertEqual(self.take(TWO), [])
        [(challenge, to)] = self.take()
        self.assertEqual(to, ONE)
        self.assertEqual(len(challenge), 35)
        self.assertLessEqual(len(challenge), len(sent))
        self.assertEqual(challenge[:11], b"\xd1\x51" + ALLOCATION + b"\x80")
        nonce = wire.verify_relayed(unforward(challenge), KEY)
        self.assertEqual(len(nonce), 16)
        answer = answer_challenge(challenge, ALLOCATION, 0, KEY)
        self.assertEqual(answer, b"\xd1\x50" + ALLOCATION + b"\xc0" + nonce + answer[-8:])
        self.assertEqual(wire.verify_relayed(answer, KEY), nonce)
        # The member answers only its own side's challenge, under its key.
        self.assertIsNone(answer_challenge(challenge, ALLOCATION, 1, KEY))
        self.assertIsNone(answer_challenge(challenge, ALLOCATION, 0, b"k" * 16))
        self.assertIsNone(answer_challenge(challenge, b"B" * 8, 0, KEY))
        self.assertIsNone(answer_challenge(challenge[:-1], ALLOCATION, 0, KEY))

    def test_stamps_increase(self):
        """
        Two challenges in the same millisecond carry different, increasing
        stamps (the nonce's first 8 bytes).
        """
        self.send(0, HELLO, ONE)
        self.send(1, HELLO, TWO)
        stamps = [wire.verify_relayed(unforward(d), KEY)[:8] for d, _ in self.take()]
        self.assertEqual(stamps, [bytes(8), (1).to_bytes(8, "big")])

    def test_small_frame_not_challenged(self):
        """
        A frame smaller than a challenge (34 bytes) from an unproven
        address gets nothing back: no answer outgrows what a spoofer sent.
        """
        self.send(0, b"x" * 15, ONE)
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.relay.stats["dropped-unproven-small"], 1)
        self.send(0, b"x" * 14, ONE)
        self.assertEqual(self.relay.stats["dropped-unproven-small"], 2)
        self.send(0, b"x" * 16, ONE)
        self.assertEqual(len(self.take(ONE)), 1)

    def test_batch(self):
        """
        A batch (as L{p2pnet._udpread.FastReadPort} hands over) is relayed
        as its datagrams one by one would be: drops are counted, and a
        datagram that hits a bug is counted and logged without stopping
        the rest of the batch.
        """
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.relay.datagrams_received([
            (frame(1, b"a"), TWO),
            (b"junk", ONE),
            (None, ONE),
            (frame(0, b"b"), ONE),
            (frame(1, b"c"), TWO),
        ])
        self.assertEqual(
            [(wire.verify_relayed(unforward(data), KEY), addr) for data, addr in self.transport.written],
            [(b"a", ONE), (b"b", TWO), (b"c", ONE)],
        )
        self.assertEqual(
            {k: self.relay.stats[k] for k in ("forwarded", "dropped-malformed", "internal-error")},
            {"forwarded": 3, "dropped-malformed": 1, "internal-error": 1},
        )
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_unauthenticated_dropped(self):
        """
        A frame with a wrong tag from an unbound address draws no
        challenge, binds nothing and is not forwarded.
        """
        self.bind(0, ONE)
        self.send(1, HELLO, TWO, key=b"k" * 16)
        self.send(0, b"y", ONE)
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.relay.stats["dropped-unauthenticated"], 1)

    def test_new_allocation_needs_tag(self):
        """
        A frame for an allocation the relay has not seen, tagged with a key
        that is not the one derived from the relay's secret, draws no
        challenge; a good one does.
        """
        other = b"B" * 8
        self.send(0, HELLO, ONE, key=b"k" * 16, allocation=other)
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.relay.stats["dropped-unauthenticated"], 1)
        self.send(0, HELLO, ONE, key=wire.relay_key(SECRET, other), allocation=other)
        self.assertEqual(len(self.take(ONE)), 1)

    def test_member_rebinds(self):
        """
        A member's authenticated frame from a new address moves it once the
        new address answers the challenge; until then the old address keeps
        getting the datagrams and the new one's are not forwarded.
        """
        self.bind(0, ONE)
        self.bind(1, TWO)
        moved = ("203.0.113.2", 2223)
        self.send(1, HELLO, moved)
        [(challenge, _)] = self.take(moved)
        self.assertEqual(self.take(), [])
        self.send(0, b"d", ONE)
        self.assertEqual(self.forwarded_to(TWO), [b"d"])
        self.relay.datagramReceived(answer_challenge(challenge, ALLOCATION, 1, KEY), moved)
        self.send(0, b"e", ONE)
        self.assertEqual(self.forwarded_to(moved), [b"e"])
        self.assertEqual(self.relay.stats["rebound"], 1)

    def test_second_move_counted(self):
        """
        Each proven move counts one rebinding.
        """
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.bind(1, ("203.0.113.2", 2223))
        self.bind(1, ("203.0.113.2", 2224))
        self.assertEqual(self.relay.stats["rebound"], 2)

    def test_wrong_type_byte_dropped(self):
        """
        A frame from a bound member with the right magic but another
        message type is malformed: counted, never forwarded.
        """
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.take()
        raw = bytearray(frame(0, b"data"))
        raw[1] ^= 0x01
        self.relay.datagramReceived(bytes(raw), ONE)
        self.assertEqual(self.take(), [])
        self.assertEqual(self.relay.stats["dropped-malformed"], 1)

    def test_side_byte_above_one(self):
        """
        A frame naming side 2 (or 255) of a live allocation is handled as
        unproven, not as a member's: no error, nothing forwarded.
        """
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.take()
        for side in (2, 255):
            raw = bytearray(frame(0, b"data"))
            raw[10] = side
            self.relay.datagramReceived(bytes(raw), ONE)
        self.assertEqual(self.forwarded_to(TWO), [])
        self.assertEqual(self.relay.stats["internal-error"], 0)

    def test_port_zero_in_a_batch(self):
        """
        A frame from source port 0 is dropped and counted, and the rest of
        its batch is still relayed.
        """
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.take()
        self.relay.datagrams_received(
            [(frame(0, b"spoof"), ("198.51.100.1", 0)), (frame(0, b"spoof"), ("198.51.100.1", 0)),
             (frame(0, b"real"), ONE)]
        )
        self.assertEqual(self.relay.stats["dropped-source-port-0"], 2)
        self.assertEqual(self.forwarded_to(TWO), [b"real"])

    def test_member_cannot_forge_a_proof(self):
        """
        A member knows the allocation key, not the relay's secret: a proof
        it makes for a victim's address (here the unkeyed BLAKE2s of the
        challenge's fields, reusing the stamp of its own challenge) is
        refused, and the victim is not bound.
        """
        import hashlib

        self.send(0, HELLO, ONE)
        [(challenge, _)] = self.take(ONE)
        stamp = wire.verify_relayed(unforward(challenge), KEY)[:8]
        where = f"{VICTIM[0]}|{VICTIM[1]}".encode()
        forged = hashlib.blake2s(ALLOCATION + bytes((0,)) + stamp + where, digest_size=8).digest()
        self.relay.datagramReceived(wire.encode_relayed(ALLOCATION, 0xC0, stamp + forged, KEY), VICTIM)
        self.assertEqual(self.relay.stats["dropped-bad-proof"], 1)
        self.assertNotIn(ALLOCATION, self.relay.allocations)

    def test_drops_do_not_end_the_batch(self):
        """
        In one batch, a datagram for a half-bound allocation and one over
        its allocation's cap are dropped and the rest is still relayed;
        the forwarded bytes count every forwarded datagram's size.
        """
        other, other_key = allocation_key(1)
        half, half_key = allocation_key(2)
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.bind(0, ("198.51.100.4", 4444), other_key, other)
        self.bind(1, ("203.0.113.5", 5555), other_key, other)
        self.bind(0, ("198.51.100.6", 6666), half_key, half)
        self.take()
        before = self.relay.stats["forwarded-bytes"]
        batch = [(frame(0, b"lonely", half_key, half), ("198.51.100.6", 6666))]
        batch += [(frame(0, b"a" * n), ONE) for n in range(1, 7)]
        batch += [(frame(0, b"other", other_key, other), ("198.51.100.4", 4444))]
        self.relay.datagrams_received(batch)
        self.assertEqual(self.relay.stats["dropped-peer-not-bound"], 1)
        self.assertEqual(self.relay.stats["dropped-over-cap"], 1)
        self.assertEqual(len(self.take(TWO)), 5)
        self.assertEqual(len(self.take(("203.0.113.5", 5555))), 1)
        sizes = [len(d) for d, _ in batch[1:6]] + [len(batch[7][0])]
        self.assertEqual(self.relay.stats["forwarded-bytes"] - before, sum(sizes))

    def test_answer_at_the_challenge_lifetime(self):
        """
        An answer exactly challenge_lifetime (10 s) after its challenge
        still binds; a millisecond later it is stale.
        """
        self.clock.advance(100.0)
        self.send(0, HELLO, THREE)  # stamped 100.000 s
        [(on_time, _)] = self.take(THREE)
        self.send(0, HELLO, ONE)  # stamped 100.001 s (stamps only increase)
        [(late, _)] = self.take(ONE)
        self.clock.advance(10.0)
        self.relay.datagramReceived(answer_challenge(on_time, ALLOCATION, 0, KEY), THREE)
        self.assertEqual(self.relay.allocations[ALLOCATION].members[0], THREE)
        self.clock.advance(0.003)
        self.relay.datagramReceived(answer_challenge(late, ALLOCATION, 0, KEY), ONE)
        self.assertEqual(self.relay.stats["dropped-stale-proof"], 1)
        self.assertEqual(self.relay.allocations[ALLOCATION].members[0], THREE)

    def test_binding_log_lines(self):
        """
        A new allocation logs "allocation <id> in use"; a refused binding
        logs the allocation, the source and the reason.
        """
        lines = []
        self.relay.log = Logger(observer=lambda event: lines.append(formatEvent(event)))
        self.bind(0, ONE)
        self.assertEqual(lines, [f"allocation {ALLOCATION.hex()} in use"])
        lines.clear()
        self.relay.table.max_per_source = 1
        other, other_key = allocation_key(1)
        self.bind(0, ONE, other_key, other)
        self.assertEqual(
            lines, [f"refused binding {other.hex()} to ('198.51.100.1', 1111): dropped-source-full"]
        )

    def test_cap(self):
        """
        Beyond max_packets a second, an allocation's datagrams are dropped.
        """
        self.bind(1, TWO)
        self.bind(0, ONE)
        for _ in range(10):
            self.send(0, b"a", ONE)
        self.assertEqual(len(self.transport.written), 5)
        self.assertEqual(self.relay.stats["dropped-over-cap"], 5)
        self.clock.advance(1.0)
        self.send(0, b"a", ONE)
        self.assertEqual(len(self.transport.written), 6)

    def test_cap_later_windows(self):
        """
        The per-second cap holds in every window, not only the first: at
        100 s, and again at 101 s, 5 of 10 datagrams go through.
        """
        self.clock.advance(100.0)
        self.bind(1, TWO)
        self.bind(0, ONE)
        self.take()
        for second in range(2):
            for _ in range(10):
                self.send(0, b"a", ONE)
            self.assertEqual(len(self.take()), 5)
            self.clock.advance(1.0)
        self.assertEqual(self.relay.stats["dropped-over-cap"], 10)

    def test_byte_cap(self):
        """
        Beyond max_bytes a second, an allocation's datagrams are dropped,
        though the packet cap is far away.
        """
        self.relay.max_packets, self.relay.max_bytes = 1000, 300
        self.bind(1, TWO)
        self.bind(0, ONE)
        for _ in range(5):
            self.send(0, b"x" * 81, ONE)  # 100-byte frames: three fit in 300
        self.assertEqual(len(self.forwarded_to(TWO)), 3)
        self.assertEqual(self.relay.stats["dropped-over-cap"], 2)
        self.clock.advance(1.0)
        self.send(0, b"x" * 81, ONE)
        self.assertEqual(len(self.forwarded_to(TWO)), 1)

    def test_bound_address_not_reverified(self):
        """
        A datagram from the address its side is bound to is forwarded
        without its tag being checked again (as TURN trusts the 5-tuple):
        the receiving member checks it, and a bad one verifies to nothing
        there.
        """
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.send(0, b"forged", ONE, key=b"k" * 16)
        [(to_two, addr)] = self.transport.written
        self.assertEqual(addr, TWO)
        self.assertIsNone(wire.verify_relayed(unforward(to_two), KEY))
        self.assertEqual(self.relay.stats["dropped-unauthenticated"], 0)

    def test_verify_all(self):
        """
        With C{verify_all}, a bad tag is dropped even from a bound address.
        """
        self.relay.verify_all = True
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.send(1, b"b", TWO)
        self.send(0, b"forged", ONE, key=b"k" * 16)
        self.send(0, b"good", ONE)
        self.assertEqual(
            [wire.verify_relayed(unforward(data), KEY) for data, _ in self.transport.written], [b"b", b"good"]
        )
        self.assertEqual(self.relay.stats["dropped-unauthenticated"], 1)

    def test_forged_move_refused(self):
        """
        A datagram with a bad tag from a new address draws no challenge
        and does not move a bound side: the member keeps getting its
        datagrams.
        """
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.send(1, HELLO, EVIL, key=b"k" * 16)
        self.send(0, b"c", ONE)
        self.assertEqual(self.transport.written[-1][1], TWO)
        self.assertEqual(self.take(EVIL), [])
        self.assertEqual(self.relay.stats["dropped-unauthenticated"], 1)
        self.assertEqual(self.relay.stats["rebound"], 0)

    def test_garbage(self):
        """
        Short, foreign or malformed datagrams are counted and dropped:
        sides other than 0, 1, 0xC0 and 0xC1, a challenge sent to the
        relay, an answer of the wrong size.
        """
        junk = [
            b"",
            b"\xd1\x50",
            b"hello world, not p2pnet",
            frame(7, HELLO),
            frame(0x80, bytes(16)),
            frame(0xC2, bytes(16)),
            frame(0xC0, bytes(15)),
            frame(0xC0, bytes(17)),
        ]
        for datagram in junk:
            self.relay.datagramReceived(datagram, ONE)
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.relay.stats["dropped-malformed"], 8)


class FuzzTests(SynchronousTestCase):
    @given(
        st.lists(
            st.tuples(
                st.one_of(
                    st.builds(
                        bytes.__add__,
                        st.sampled_from([b"", b"\xd1\x50", b"\xd1\x50" + ALLOCATION]),
                        st.binary(max_size=60),
                    ),
                    # well tagged, any side byte, any inner datagram
                    st.builds(frame, st.integers(0, 255), st.binary(max_size=40)),
                ),
                st.sampled_from([ONE, TWO, EVIL]),
            ),
            max_size=8,
        )
    )
    def test_no_error_no_amplification(self, datagrams):
        """
        Whatever arrives, from members' or other addresses, after both
        members bound: no internal error, and nothing is sent to an
        address that is not a bound member that is larger than the
        datagram that drew it.
        """
        clock = Clock()
        transport = FakeDatagramTransport("192.0.2.20", 3479)
        relay = RelayProtocol(clock, SECRET)
        relay.makeConnection(transport)
        for side, source in ((0, ONE), (1, TWO)):
            relay.datagramReceived(frame(side, HELLO), source)
            [(challenge, _)] = transport.written
            del transport.written[:]
            relay.datagramReceived(answer_challenge(challenge, ALLOCATION, side, KEY), source)
        for data, source in datagrams:
            relay.datagramReceived(data, source)
            for sent, to in transport.written:
                if to not in (ONE, TWO):
                    self.assertLessEqual(len(sent), len(data))
            del transport.written[:]
        self.assertEqual(relay.stats["internal-error"], 0)
        relay.doStop()


class FloodCannonTests(RelayTestCase):
    """
    Issue 14, item 9: a member plus one spoofed frame made the relay send
    the other member's traffic to any address.
    """

    relay_options = {"max_packets": 1000}

    def test_spoofed_member_gets_victim_one_challenge(self):
        """
        A member (who knows the key) sends one frame for its side with a
        victim's source address: the victim gets one challenge, no larger
        than the spoofed frame, and none of the 50 datagrams the other
        member sends next, which keep reaching the member.
        """
        self.bind(0, ONE)
        self.bind(1, TWO)
        spoofed = self.send(1, HELLO, VICTIM)
        for n in range(50):
            self.send(0, b"%d" % n, ONE)
        to_victim = self.take(VICTIM)
        self.assertEqual(len(to_victim), 1)
        self.assertLessEqual(len(to_victim[0][0]), len(spoofed))
        self.assertEqual(self.forwarded_to(TWO), [b"%d" % n for n in range(50)])

    def test_spoofed_frames_draw_limited_challenges(self):
        """
        A stream of spoofed frames draws challenges at the challenge rate
        (here 2 a second, bursts of 4), never more bytes than it sent.
        """
        self.relay._challenges.rate, self.relay._challenges.burst = 2.0, 4.0
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.clock.advance(2.0)  # the binding's own challenge is paid back
        spent = sum(len(self.send(1, HELLO, VICTIM)) for _ in range(100))
        got = self.take(VICTIM)
        self.assertEqual(len(got), 4)
        self.assertLess(sum(len(d) for d, _ in got), spent)
        self.assertEqual(self.relay.stats["dropped-challenge-limited"], 96)
        self.clock.advance(1.0)
        for _ in range(10):
            self.send(1, HELLO, VICTIM)
        self.assertEqual(len(self.take(VICTIM)), 2)

    def test_challenge_limit_per_ip_not_per_port(self):
        """
        The challenge budget (4 a second, bursts of 8, by default) is per
        allocation side and source IP: frames from 100 ports of one IP,
        with different contents, draw 8 challenges in all.
        """
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.clock.advance(2.0)
        self.take()
        for port in range(100):
            self.send(1, bytes((port,)) + HELLO[1:-1] + bytes((port,)), ("192.0.2.99", 10000 + port))
        self.assertEqual(len(self.take()), 8)

    def test_replays_do_not_starve_the_member(self):
        """
        Spoofed replays of a member's frame from other addresses, however
        many, do not use up the challenges its own address gets: after a
        NAT rebinding amid such a flood the member still moves.
        """
        self.bind(0, ONE)
        self.bind(1, TWO)
        captured = frame(1, HELLO)
        for n in range(200):
            self.relay.datagramReceived(captured, (f"192.0.2.{n}", 7000))
        self.take()
        self.bind(1, THREE)
        self.send(0, b"moved", ONE)
        self.assertEqual(self.forwarded_to(THREE), [b"moved"])

    def test_unanswered_challenge_binds_nothing(self):
        """
        A side whose first frame came from a spoofed address stays
        unbound: the other member's datagrams go nowhere.
        """
        self.bind(0, ONE)
        self.send(1, HELLO, VICTIM)
        self.take(VICTIM)
        for _ in range(5):
            self.send(0, b"x", ONE)
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.relay.stats["dropped-peer-not-bound"], 5)


class BindingReplayTests(RelayTestCase):
    """
    Issue 13, item 7: binding proofs are replay-proof.
    """

    def setUp(self):
        super().setUp()
        self.answer_one = self.bind(0, ONE)
        self.bind(1, TWO)

    def assertSideZeroAt(self, where):
        self.send(1, b"probe", TWO)
        self.assertEqual(self.forwarded_to(where), [b"probe"])
        self.assertEqual(self.transport.written, [])

    def test_replayed_answer_after_move(self):
        """
        After a member moved (NAT rebinding) from ONE to THREE, its old
        answer replayed from ONE does not move it back.
        """
        self.bind(0, THREE)
        self.relay.datagramReceived(self.answer_one, ONE)
        self.assertSideZeroAt(THREE)
        self.assertEqual(self.relay.stats["dropped-replay"], 1)

    def test_replayed_answer_same_address(self):
        """
        An answer replayed from the address it proved changes nothing and
        is counted as a replay.
        """
        self.relay.datagramReceived(self.answer_one, ONE)
        self.assertEqual(self.relay.stats["dropped-replay"], 1)
        self.relay.datagramReceived(self.answer_one, ONE)
        self.assertEqual(self.relay.stats["dropped-replay"], 2)
        self.assertSideZeroAt(ONE)

    def test_replayed_answer_other_address(self):
        """
        An answer replayed from another address does not bind there: the
        nonce names the address it was sent to.
        """
        self.relay.datagramReceived(self.answer_one, EVIL)
        self.assertEqual(self.relay.stats["dropped-bad-proof"], 1)
        self.assertEqual(self.relay.stats["rebound"], 0)
        self.assertSideZeroAt(ONE)

    def test_replayed_answer_same_port_other_ip(self):
        """
        The nonce names the whole address: the answer replayed from another
        IP with the same port does not bind there either.
        """
        self.relay.datagramReceived(self.answer_one, ("192.0.2.66", ONE[1]))
        self.assertEqual(self.relay.stats["dropped-bad-proof"], 1)
        self.relay.datagramReceived(self.answer_one, ("192.0.2.67", ONE[1]))
        self.assertEqual(self.relay.stats["dropped-bad-proof"], 2)
        self.assertSideZeroAt(ONE)

    def test_replayed_frame_other_address(self):
        """
        A member's captured frame replayed from another address gets that
        address a challenge and moves nothing; without the key, neither
        the challenge turned into an answer (its type byte, or its side
        byte too, changed) nor an answer under another key binds.
        """
        captured = frame(0, HELLO)
        self.relay.datagramReceived(captured, EVIL)
        [(challenge, _)] = self.take(EVIL)
        nonce = challenge[11:27]
        attempts = [
            b"\xd1\x50" + challenge[2:],
            b"\xd1\x50" + challenge[2:10] + b"\xc0" + challenge[11:],
            frame(0xC0, nonce, key=b"k" * 16),
        ]
        for attempt in attempts:
            self.relay.datagramReceived(attempt, EVIL)
        self.assertEqual(
            {k: self.relay.stats[k] for k in ("dropped-malformed", "dropped-unauthenticated", "rebound")},
            {"dropped-malformed": 1, "dropped-unauthenticated": 2, "rebound": 0},
        )
        self.assertSideZeroAt(ONE)

    def test_stale_answer(self):
        """
        An answer that comes more than challenge_lifetime (10 s) after its
        challenge is refused; one within it binds.  A stamp the relay has
        not issued yet is refused too.
        """
        self.send(0, HELLO, THREE)
        [(challenge, _)] = self.take(THREE)
        self.clock.advance(10.5)
        self.relay.datagramReceived(answer_challenge(challenge, ALLOCATION, 0, KEY), THREE)
        self.assertEqual(self.relay.stats["dropped-stale-proof"], 1)
        future = frame(0xC0, (10**9).to_bytes(8, "big") + bytes(8))
        self.relay.datagramReceived(future, THREE)
        self.assertEqual(self.relay.stats["dropped-stale-proof"], 2)
        self.assertSideZeroAt(ONE)
        self.send(0, HELLO, THREE)
        [(challenge, _)] = self.take(THREE)
        self.clock.advance(9.5)
        self.relay.datagramReceived(answer_challenge(challenge, ALLOCATION, 0, KEY), THREE)
        self.assertSideZeroAt(THREE)


def allocation_key(n):
    allocation = b"H%07d" % n
    return allocation, wire.relay_key(SECRET, allocation)


class TableTests(RelayTestCase):
    """
    Issue 14, item 3: one peer filled the allocation table.  Here a table
    of 6 with at most 3 bindings per source IP.
    """

    relay_options = {"max_allocations": 6, "max_per_source": 3}

    def hostile(self, ip, count, first=0, port=40000):
        """
        Half-bind C{count} allocations from C{ip} (a new port for each, as
        a scanner would), returning how many got a binding.
        """
        before = self.relay.stats["bound"]
        for n in range(first, first + count):
            allocation, key = allocation_key(n)
            self.bind(0, (ip, port + n), key, allocation)
        return self.relay.stats["bound"] - before

    def test_per_source_cap_by_ip(self):
        """
        A source IP binds at most max_per_source sides, whatever ports it
        uses; another IP still can.
        """
        self.assertEqual(self.hostile("192.0.2.101", 5), 3)
        self.assertEqual(self.relay.stats["dropped-source-full"], 2)
        self.assertEqual(self.relay.table.bindings_from("192.0.2.101"), 3)
        self.assertEqual(self.hostile("192.0.2.102", 1, first=10), 1)

    def test_fill_then_legitimate_pair(self):
        """
        Hostile sources fill the table with half-bound allocations; a
        legitimate pair still gets its allocation (the oldest half-bound
        one is evicted) and forwards, and later hostile bindings evict
        only half-bound allocations, never the established pair.
        """
        self.assertEqual(self.hostile("192.0.2.101", 3), 3)
        self.assertEqual(self.hostile("192.0.2.102", 3, first=3), 3)
        self.assertEqual(len(self.relay.allocations), 6)
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.assertEqual(self.relay.stats["evicted"], 1)
        self.assertNotIn(allocation_key(0)[0], self.relay.allocations)
        self.assertEqual(self.hostile("192.0.2.103", 3, first=6), 3)
        self.assertEqual(self.hostile("192.0.2.104", 3, first=9), 3)
        self.assertEqual(self.relay.stats["evicted"], 7)
        self.assertEqual(len(self.relay.allocations), 6)
        self.send(0, b"still here", ONE)
        self.assertEqual(self.forwarded_to(TWO), [b"still here"])

    def test_established_not_evicted(self):
        """
        When every allocation is established, a new one is refused
        (dropped-full) rather than evicting one.
        """
        for n in range(6):
            allocation, key = allocation_key(n)
            self.bind(0, (f"192.0.2.{n}", 1000), key, allocation)
            self.bind(1, (f"198.18.0.{n}", 1000), key, allocation)
        self.bind(0, ONE)
        self.assertEqual(self.relay.stats["dropped-full"], 1)
        self.assertNotIn(ALLOCATION, self.relay.allocations)
        self.assertEqual(self.relay.stats["evicted"], 0)

    def test_eviction_frees_source(self):
        """
        An evicted allocation's bindings no longer count against their
        source IP.
        """
        self.hostile("192.0.2.101", 3)
        self.hostile("192.0.2.102", 3, first=3)
        self.bind(0, ONE)  # evicts 192.0.2.101's oldest
        self.assertEqual(self.relay.table.bindings_from("192.0.2.101"), 2)
        self.assertEqual(self.hostile("192.0.2.101", 1, first=20), 1)

    def test_move_frees_source(self):
        """
        A side that moves to another IP no longer counts against its old
        one; one that moves port within its IP still counts once.
        """
        self.bind(0, ONE)
        self.bind(0, ("198.51.100.1", 1112))
        self.assertEqual(self.relay.table.bindings_from("198.51.100.1"), 1)
        self.bind(0, THREE)
        self.assertEqual(self.relay.table.bindings_from("198.51.100.1"), 0)
        self.assertEqual(self.relay.table.bindings_from("198.51.100.3"), 1)


class LifetimeTests(RelayTestCase):
    """
    Expiry, driven one sweep period at a time (the sweep runs every
    7.5 s here: half the 15 s given to half-bound allocations).
    """

    relay_options = {"unbound_timeout": 15.0, "max_packets": 1000}

    def step(self, seconds, then=None):
        for _ in range(int(seconds / 2.5)):
            self.clock.advance(2.5)
            if then is not None:
                then()

    def test_idle_expiry(self):
        """
        An established allocation unused for the idle timeout (60 s) is
        forgotten by the next sweep, not before; one bound later, after
        several sweeps have run, is forgotten 60 s after its own last use.
        """
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.step(57.5)
        self.assertIn(ALLOCATION, self.relay.allocations)
        self.step(10)
        self.assertNotIn(ALLOCATION, self.relay.allocations)
        self.assertEqual(self.relay.stats["expired"], 1)
        other, key = allocation_key(1)
        self.bind(0, ONE, key, other)
        self.bind(1, TWO, key, other)
        self.step(57.5)
        self.assertIn(other, self.relay.allocations)
        lines = []
        self.relay.log = Logger(observer=lambda event: lines.append(formatEvent(event)))
        self.step(10)
        self.assertEqual(self.relay.allocations, {})
        self.assertEqual(self.relay.stats["expired"], 2)
        self.assertEqual(lines, [f"allocation {other.hex()} expired (idle)"])

    def test_busy_allocation_kept(self):
        """
        An allocation that forwards a datagram every 2.5 s outlives the
        idle timeout many times over.
        """
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.step(300, lambda: self.send(0, b"tick", ONE))
        self.assertEqual(len(self.forwarded_to(TWO)), 120)
        self.assertEqual(self.relay.stats["expired"], 0)

    def test_half_bound_short_lived(self):
        """
        An allocation whose second member never binds is forgotten within
        15 s plus a sweep period, though it was used; an established one
        bound at the same time is kept.
        """
        other, key = allocation_key(1)
        self.bind(0, THREE, key, other)
        self.bind(0, ONE)
        self.bind(1, TWO)
        self.step(12.5, lambda: self.send(0, b"x", THREE, key, other))
        self.assertIn(other, self.relay.allocations)
        self.step(10, lambda: self.send(0, b"x", THREE, key, other))
        self.assertNotIn(other, self.relay.allocations)
        self.assertIn(ALLOCATION, self.relay.allocations)
        self.assertEqual(self.relay.table.bindings_from(THREE[0]), 0)


class LogBudgetTests(RelayTestCase):
    relay_options = {"log_rate": 1.0, "unbound_timeout": 15.0}

    def test_allocation_lines_budgeted(self):
        """
        Fifty allocations in one instant, with a budget of one line a
        second (bursts of five), log five "in use" lines; the next sweep
        says that 45 were held back; the counter counts all fifty.
        """
        lines = []
        self.relay.log = Logger(observer=lambda event: lines.append(formatEvent(event)))
        for n in range(50):
            allocation, key = allocation_key(n)
            self.bind(0, (f"198.18.{n}.1", 5000), key, allocation)
        self.assertEqual(len([line for line in lines if line.endswith(" in use")]), 5)
        self.assertEqual(self.relay.stats["allocations"], 50)
        lines.clear()
        self.clock.advance(7.5)
        self.assertEqual(
            lines,
            ["held back 45 log lines (allocation: 45) to stay under 1 per second; "
             "the statistics counters still count every event"],
        )


class StatsLineTests(RelayTestCase):
    relay_options = {"stats_interval": 30.0, "unbound_timeout": 15.0}

    def test_stats_every_interval(self):
        """
        With stats_interval 30 s (sweeps every 7.5 s) the relay logs its
        allocations and counters at the first sweep 30 s or more after the
        last line: at 30 s and 60 s, not in between.
        """
        lines = []
        self.relay.log = Logger(observer=lambda event: lines.append(formatEvent(event)))
        self.bind(0, ONE)
        self.bind(1, TWO)
        lines.clear()
        times = []
        for step in range(1, 10):
            self.clock.advance(7.5)
            if any("allocations; counters:" in line for line in lines):
                times.append(step * 7.5)
                [line] = [line for line in lines if "allocations; counters:" in line]
                self.assertTrue(line.startswith(f"{len(self.relay.allocations)} allocations; counters: {{"), line)
                self.assertIn("'bound': 2", line)
                self.assertIn("'challenges': 2", line)
            lines.clear()
        self.assertEqual(times, [30.0, 60.0])


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
            mine._send_hello(ctx.peer_b.public_address)
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

        run_pair("symmetric", "symmetric", relay=True, then=then)
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

    def test_challenge_costs_one_round_trip(self):
        """
        A member that answers the relay's challenge sends its hello again
        at once: a symmetric pair that relays at once connects in 90 ms
        here (70 ms before binding by challenge, 170 ms when the hello
        waits for the retransmit timer).
        """
        result = run_pair("symmetric", "symmetric", relay=True, nat_check=True)
        self.assertEqual(result.path, "relayed")
        self.assertLess(result.connect_time, 0.12)

    def test_member_answers_challenges_to_its_relay(self):
        """
        A member answers a challenge that verifies under its allocation key
        with one datagram of the challenge's size to its relay, wherever
        the challenge seemed to come from; a forged one (another key) gets
        nothing and is counted.
        """
        from p2pnet._relayclient import encode_challenge

        record = {}
        events = []

        def then(context):
            [theirs] = context.received_b
            route = theirs.connection.address
            peer = context.peer_b
            for key in (b"k" * 16, route.key):
                challenge = encode_challenge(route.allocation_id, route.side, bytes(16), key)
                before = len(events)
                peer.datagramReceived(challenge, EVIL)
                record[key == route.key] = [
                    (e.dst, e.size) for e in events[before:] if e.kind == "send"
                ]
            record["relay"] = route.relay.as_tuple()
            record["dropped"] = peer.stats.get("dropped-unauthenticated", 0)

        run_pair("symmetric", "symmetric", relay=True, then=then, trace=events.append)
        self.assertEqual(record[False], [])
        self.assertEqual(record[True], [(record["relay"], 35)])
        self.assertEqual(record["dropped"], 1)

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
        beyond either (counted by which), whatever port of the source IP
        they come from, leave other sources alone, and refill with time.
        """
        from p2pnet._ratelimit import SourceLimiter

        clock = Clock()
        transport = FakeDatagramTransport("192.0.2.20", 3479)
        relay = RelayProtocol(clock, SECRET, source_limiter=SourceLimiter(4.0, 200.0, burst_seconds=1.0))
        relay.makeConnection(transport)
        for side, source in ((1, TWO), (0, ONE)):
            relay.datagramReceived(frame(side, HELLO), source)
            [(challenge, _)] = transport.written
            del transport.written[:]
            relay.datagramReceived(answer_challenge(challenge, ALLOCATION, side, KEY), source)
        clock.advance(1.0)  # the budgets refill
        for _ in range(10):
            relay.datagramReceived(frame(0, b"x" * 40), ONE)  # 59 bytes: three fit in 200
        relay.datagramReceived(frame(1, b"y"), TWO)
        for _ in range(4):
            relay.datagramReceived(frame(1, b""), TWO)  # three packets left of four
        relay.datagramReceived(frame(1, b""), ("203.0.113.2", 2223))  # same IP, other port
        self.assertEqual(
            {k: relay.stats[k] for k in ("forwarded", "dropped-byte-limited", "dropped-rate-limited")},
            {"forwarded": 7, "dropped-byte-limited": 7, "dropped-rate-limited": 2},
        )
        clock.advance(1.0)
        relay.datagramReceived(frame(1, b""), TWO)
        relay.datagramReceived(frame(0, b"x" * 40), ONE)
        self.assertEqual(relay.stats["forwarded"], 9)
        relay.doStop()


class IntroducerRelayRequestTests(SynchronousTestCase):
    """
    The introducer's side of issue 14, item 3: one peer asking for relay
    allocations for made-up introductions.
    """

    def setUp(self):
        from p2pnet._registry import Registry
        from p2pnet.address import Address
        from p2pnet.introducer import IntroducerProtocol, RelaySettings

        from .helpers import seeded_bytes

        self.clock = Clock()
        self.transport = FakeDatagramTransport()
        self.introducer = IntroducerProtocol(
            self.clock,
            Registry(600.0, seeded_bytes(1)),
            seeded_bytes(2),
            relay=RelaySettings(SECRET, Address("192.0.2.20", 3479)),
        )
        self.introducer.makeConnection(self.transport)
        self.cookies = {}
        self.txid = 0
        for name, source in (("a", ("203.0.113.5", 40000)), ("b", ONE), ("c", TWO)):
            self.request(wire.Register(self.next_txid(), name, ()), source)
            [(answer, _)] = self.transport.clear()
            self.cookies[name] = answer.cookie, source
            self.request(wire.Heartbeat(self.next_txid(), name, answer.cookie), source)
            self.transport.clear()

    def tearDown(self):
        self.clock.advance(10)  # the pushes end
        self.introducer.doStop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def next_txid(self):
        self.txid += 1
        return self.txid.to_bytes(wire.TXID_SIZE, "big")

    def request(self, message, source):
        self.introducer.datagramReceived(wire.encode(wire.padded(message)), source)

    def introduce(self, name, target):
        """
        Have the introducer introduce C{name} to C{target}: the intro id.
        """
        cookie, source = self.cookies[name]
        self.request(wire.Introduce(self.next_txid(), name, cookie, target=target), source)
        intros = [m for m, _ in self.transport.clear() if isinstance(m, wire.Introduction)]
        return intros[0].intro_id

    def ask(self, name, target, intro_id):
        """
        C{name}'s RelayRequest for C{intro_id}: the answer it gets.
        """
        cookie, source = self.cookies[name]
        self.request(wire.RelayRequest(self.next_txid(), name, cookie, target, intro_id), source)
        txid = self.txid.to_bytes(wire.TXID_SIZE, "big")
        [answer] = [m for m, to in self.transport.clear() if to == source and m.txid == txid]
        return answer

    def test_one_peer_cannot_push_out_a_pair(self):
        """
        A peer asking for allocations for 5,000 made-up introductions gets
        none (each refused before anything is allocated); a real pair that
        asked before and after it still shares one allocation.
        """
        intro_id = self.introduce("b", "c")
        first = self.ask("b", "c", intro_id)
        answers = [self.ask("a", "b", n.to_bytes(8, "big")) for n in range(5000)]
        self.assertEqual(
            {(m.code, m.reason) for m in answers},
            {(wire.ErrorCode.UNKNOWN_PEER, "no such introduction of yours")},
        )
        second = self.ask("c", "b", intro_id)
        self.assertEqual((first.allocation, second.allocation), (first.allocation, first.allocation))
        self.assertEqual({first.side, second.side}, {0, 1})
