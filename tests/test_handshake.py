"""
Tests for the handshake machine: exact output sequences on a Clock.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from p2pnet._handshake import HandshakeConfig, HandshakeCore, make_handshake
from p2pnet.address import Address, RelayRoute
from p2pnet.errors import HandshakeTimeout

PUBLIC = Address("203.0.113.7", 4000)
LOCAL = Address("10.0.0.7", 5000)
MOVED = Address("203.0.113.7", 4001)
REFLEXIVE = Address("203.0.113.7", 4999)


class Recorder:
    """
    Records every output as a tuple.
    """

    def __init__(self):
        self.log = []

    def __getattr__(self, name):
        return lambda *args: self.log.append((name, *args))

    def take(self):
        log, self.log = self.log, []
        return log


def build(config, candidates=(PUBLIC,), local=(), **fields):
    """
    A handshake machine for peer "bob" on a fresh Clock, recording its
    outputs: C{(clock, recorder, core, machine)}.
    """
    clock = Clock()
    out = Recorder()
    core = HandshakeCore(
        clock=clock,
        outputs=out,
        config=config,
        peer_id="bob",
        candidates=list(candidates),
        local_candidates=frozenset(local),
        **fields,
    )
    return clock, out, core, make_handshake(core)


class HandshakeTests(SynchronousTestCase):
    config = HandshakeConfig(
        warmup_packets=1,
        warmup_delay=0.02,
        hello_intervals=(0.1, 0.2),
        reversal_after=1.0,
        timeout=3.0,
        keepalive_interval=15.0,
        dead_after=45.0,
    )

    def setUp(self):
        self.clock, self.out, self.core, self.machine = build(self.config, [PUBLIC, LOCAL], [LOCAL])

    def tearDown(self):
        self.machine.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def start_punching(self):
        self.machine.start()
        self.clock.advance(0.02)
        self.out.take()

    def test_warmup_then_hellos(self):
        """
        Starting sends short-TTL probes to every candidate and nothing else;
        hellos to both the public and the local candidate follow after the
        warm-up delay.
        """
        self.machine.start()
        self.assertEqual(
            self.out.take(),
            [("status", "warming"), ("send_probe", PUBLIC, 2), ("send_probe", LOCAL, 2)],
        )
        self.clock.advance(0.019)
        self.assertEqual(self.out.take(), [])
        self.clock.advance(0.001)
        self.assertEqual(
            self.out.take(),
            [("status", "punching"), ("send_hello", PUBLIC), ("send_hello", LOCAL)],
        )

    def test_adaptive_pause(self):
        """
        With the peer's lag known, the first hellos follow the probes after
        the lag plus C{warmup_margin} (at most C{warmup_max}); without it,
        or with C{adaptive_warmup} off, after C{warmup_delay}.
        """
        from attrs import evolve

        cases = [
            (0.030, self.config, 0.031),
            (0.0, self.config, 0.001),
            (5.0, evolve(self.config, warmup_max=0.5), 0.5),
            (None, self.config, 0.02),
            (0.030, evolve(self.config, adaptive_warmup=False), 0.02),
            (0.030, evolve(self.config, warmup_margin=0.005), 0.035),
        ]
        for lag, config, pause in cases:
            clock, out, _, machine = build(config, peer_lag=lag)
            machine.start()
            out.take()
            clock.advance(pause - 0.0005)
            self.assertEqual(out.take(), [], (lag, pause))
            clock.advance(0.0005)
            self.assertEqual(out.take(), [("status", "punching"), ("send_hello", PUBLIC)], (lag, pause))
            machine.close()

    def test_no_warmup(self):
        """
        With warm-up off no probe is sent; hellos go out on the next turn.
        """
        self.core.config = HandshakeConfig(warmup=False)
        self.machine.start()
        self.assertEqual(self.out.take(), [])
        self.clock.advance(0)
        self.assertEqual(
            self.out.take(),
            [("status", "punching"), ("send_hello", PUBLIC), ("send_hello", LOCAL)],
        )

    def test_retransmit_schedule(self):
        """
        Hellos are retransmitted after 0.1 s, then every 0.2 s (the last
        interval repeats); the peer's local candidate, which only the peer
        vouches for, gets four hellos and no more while it stays silent.
        """
        self.start_punching()
        for gap in [0.1, 0.2, 0.2]:
            self.clock.advance(gap - 0.001)
            self.assertEqual(self.out.take(), [])
            self.clock.advance(0.001)
            self.assertEqual(self.out.take(), [("send_hello", PUBLIC), ("send_hello", LOCAL)])
        for gap in [0.2, 0.2]:
            self.clock.advance(gap)
            self.assertEqual(self.out.take(), [("send_hello", PUBLIC)])

    def test_claimed_candidate_heard_is_unlimited(self):
        """
        Once something is heard from a local candidate it is vouched for
        and gets every retransmit.
        """
        self.start_punching()
        self.machine.hello_received(LOCAL, b"t" * 8)
        self.out.take()
        for gap in [0.1, 0.2, 0.2, 0.2, 0.2]:
            self.clock.advance(gap)
            self.assertEqual(self.out.take(), [("send_hello", PUBLIC), ("send_hello", LOCAL)])

    def test_answer_to_source(self):
        """
        A hello is answered to the address it came from, even one that is no
        candidate (peer-reflexive), which then also gets a hello.
        """
        self.start_punching()
        self.machine.hello_received(REFLEXIVE, b"t" * 8)
        self.assertEqual(
            self.out.take(), [("send_answer", REFLEXIVE, b"t" * 8), ("send_hello", REFLEXIVE)]
        )
        self.assertIn(REFLEXIVE, self.core.candidates)

    def test_first_answer_connects(self):
        """
        The first answer establishes the path, tells the peer with a
        keepalive, and offers the local path once more.
        """
        self.start_punching()
        self.machine.answer_received(PUBLIC)
        self.assertEqual(
            self.out.take(),
            [("connected", PUBLIC), ("send_keepalive", PUBLIC), ("send_hello", LOCAL)],
        )
        self.assertEqual(set(self.core.timers), {"keepalive", "dead", "silence"})

    def test_local_upgrade(self):
        """
        A later answer from a local candidate moves a public path to it; a
        later public answer does not move a local path back.
        """
        self.start_punching()
        self.machine.answer_received(PUBLIC)
        self.out.take()
        self.machine.answer_received(LOCAL)
        self.assertEqual(self.out.take(), [("path_changed", LOCAL)])
        self.machine.answer_received(PUBLIC)
        self.assertEqual(self.out.take(), [])
        self.assertEqual(self.core.path, LOCAL)

    def test_rebinding(self):
        """
        Authenticated traffic from a new source re-binds the path.
        """
        self.start_punching()
        self.machine.answer_received(PUBLIC)
        self.out.take()
        self.machine.traffic_received(MOVED)
        self.assertEqual(self.out.take(), [("path_changed", MOVED)])
        self.assertEqual(self.core.path, MOVED)

    def test_late_hello_does_not_move_path(self):
        """
        A late hello while connected is answered (plus a keepalive), and
        does not move the path.
        """
        self.start_punching()
        self.machine.answer_received(LOCAL)
        self.out.take()
        self.machine.hello_received(PUBLIC, b"u" * 8)
        self.assertEqual(self.out.take(), [("send_answer", PUBLIC, b"u" * 8), ("send_keepalive", LOCAL)])
        self.assertEqual(self.core.path, LOCAL)

    def test_reversal_timing(self):
        """
        Reversal is requested at reversal_after (1 s) from the start, not
        from the first hellos (0.02 s later).
        """
        self.start_punching()
        self.clock.advance(0.97)  # 0.99
        self.assertNotIn(("request_reversal",), self.out.take())
        self.clock.advance(0.02)  # 1.01
        self.assertIn(("request_reversal",), self.out.take())

    def test_first_retransmit_timer_replaced(self):
        """
        Told to send first right after the first hellos, the machine
        restarts the retransmission timer the first hellos set instead of
        adding a second one.
        """
        self.start_punching()
        before = len(self.clock.getDelayedCalls())
        self.machine.reverse_received()
        self.assertEqual(len(self.clock.getDelayedCalls()), before)

    def test_reversal_once(self):
        """
        With no answer by reversal_after, reversal is requested exactly once.
        """
        self.start_punching()
        self.clock.pump([0.1] * 25)
        statuses = [entry for entry in self.out.take() if entry[0] in ("request_reversal", "status")]
        self.assertEqual(statuses, [("status", "reversal"), ("request_reversal",)])

    def test_reverse_received_restarts(self):
        """
        When told to send first, we warm up again and restart the hellos.
        """
        self.start_punching()
        self.clock.advance(0.5)
        self.out.take()
        self.machine.reverse_received()
        self.assertEqual(
            self.out.take(),
            [("send_probe", PUBLIC, 2), ("send_probe", LOCAL, 2), ("send_hello", PUBLIC), ("send_hello", LOCAL)],
        )
        self.assertEqual(self.core.sent_hellos, 1)
        # The retransmissions start again from the first interval (0.1 s,
        # then 0.2 s), replacing the old timer (due at 0.72) rather than
        # running beside it.
        self.clock.advance(0.09)
        self.assertEqual(self.out.take(), [])
        self.clock.advance(0.02)  # 0.63: the one at 0.62
        self.assertEqual(self.out.take()[:1], [("send_hello", PUBLIC)])
        self.clock.advance(0.15)  # 0.78: none (the old timer would have sent at 0.72)
        self.assertEqual(self.out.take(), [])
        self.clock.advance(0.05)  # 0.83: the one at 0.82
        self.assertEqual(self.out.take()[:1], [("send_hello", PUBLIC)])

    def test_reverse_received_replaces_retransmit_timer(self):
        """
        Told to send first, the machine restarts its retransmission timer
        instead of adding a second one beside it: as many calls pending on
        the clock after as before.
        """
        self.start_punching()
        self.clock.advance(0.5)
        before = len(self.clock.getDelayedCalls())
        self.machine.reverse_received()
        self.assertEqual(len(self.clock.getDelayedCalls()), before)

    def test_hello_extends_deadline_by_a_third(self):
        """
        A hello at 2.9 s moves the 3 s deadline to 3.9 s (a third of the
        timeout from then); an early hello (0.5 s) does not bring the
        deadline forward.
        """
        self.start_punching()
        self.clock.advance(0.48)  # 0.5
        self.machine.hello_received(PUBLIC, b"v" * 8)
        self.clock.advance(2.39)  # 2.89
        self.assertFalse(any(e[0] == "failed" for e in self.out.take()))
        self.clock.advance(0.01)  # 2.9
        self.machine.hello_received(PUBLIC, b"v" * 8)
        self.clock.advance(0.99)  # 3.89
        self.assertFalse(any(e[0] == "failed" for e in self.out.take()))
        self.clock.advance(0.02)  # 3.91
        self.assertEqual([e[0] for e in self.out.take() if e[0] == "failed"], ["failed"])

    def test_answer_while_warming_is_heard(self):
        """
        An answer that arrives during the warm-up cannot validate, but the
        timeout error lists its source as heard.
        """
        self.machine.start()
        self.machine.answer_received(PUBLIC)
        self.clock.pump([0.1] * 31)
        [error] = [e[1] for e in self.out.take() if e[0] == "failed"]
        self.assertEqual(error.heard, (PUBLIC,))

    def test_relay_offer_extends_deadline(self):
        """
        A relay route offered while punching gives the handshake half a
        timeout more from then (3 s timeout, offer at 2.9 s: fails at 4.4 s).
        """
        self.start_punching()
        self.clock.advance(2.88)
        self.machine.relay_offered(ROUTE)
        self.clock.advance(1.49)
        self.assertFalse(any(e[0] == "failed" for e in self.out.take()))
        self.clock.advance(0.02)
        self.assertEqual([e[0] for e in self.out.take() if e[0] == "failed"], ["failed"])

    def test_inputs_ignored_after_the_end(self):
        """
        Once failed, lost or closed, every input is ignored: no output, no
        error, no timer.
        """
        def poke(machine):
            machine.start()
            machine.warmed()
            machine.hello_received(PUBLIC, b"v" * 8)
            machine.answer_received(PUBLIC)
            machine.traffic_received(PUBLIC)
            machine.reverse_received()
            machine.relay_offered(ROUTE)
            machine.keepalive_due()
            machine.peer_silent()
            machine.peer_closed()
            machine.upgrade_due()
            machine.path_silent()
            machine.give_up()
            machine.close()

        self.start_punching()
        self.clock.advance(3.0)
        self.assertIn("failed", [e[0] for e in self.out.take()])
        poke(self.machine)
        self.assertEqual(self.out.take(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        clock, out, _, machine = build(self.config)
        machine.start()
        clock.advance(0.02)
        machine.answer_received(PUBLIC)
        machine.peer_closed()
        out.take()
        poke(machine)
        self.assertEqual(out.take(), [])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_timeout(self):
        """
        With no answer, the handshake fails after the timeout with an error
        naming the candidates tried and what was heard.
        """
        self.start_punching()
        self.clock.pump([0.1] * 31)
        [failure] = [entry for entry in self.out.take() if entry[0] == "failed"]
        error = failure[1]
        self.assertIsInstance(error, HandshakeTimeout)
        self.assertEqual(error.peer_id, "bob")
        self.assertEqual(error.tried, (PUBLIC, LOCAL))
        self.assertIn("203.0.113.7:4000", str(error))
        self.assertIn("heard from nothing", str(error))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_hellos_extend_deadline(self):
        """
        Hellos from the peer near the deadline extend it, up to twice the
        timeout.
        """
        self.start_punching()
        self.clock.advance(2.9)
        self.machine.hello_received(PUBLIC, b"v" * 8)
        self.clock.advance(0.5)
        self.assertFalse(any(e[0] == "failed" for e in self.out.take()))
        failed_at = None
        for _ in range(40):
            self.machine.hello_received(PUBLIC, b"v" * 8)
            self.clock.advance(0.2)
            if any(e[0] == "failed" for e in self.out.take()):
                failed_at = self.clock.seconds()
                break
        self.assertIsNotNone(failed_at)
        self.assertGreater(failed_at, 0.02 + 3.0 + 0.5)
        self.assertLessEqual(failed_at, 0.02 + 6.0 + 0.2)

    def test_every_relay_route_gets_hellos(self):
        """
        With TURN a connection is offered two relay routes: through our
        own allocation and to the peer's relayed address.  Our allocation
        reaches the peer only after the peer has sent to it (its NAT
        filters by remote address), and the hellos to the peer's relayed
        address are what open our NAT to the peer's allocation, so the
        second route gets hellos (and retransmits) too instead of being
        ignored; the first stays the fallback route.
        """
        from p2pnet.address import RelayedAddress, TurnRoute

        own = TurnRoute(PUBLIC)
        theirs = RelayedAddress(Address("192.0.2.10", 49200))
        self.start_punching()
        self.machine.relay_offered(own)
        self.assertEqual(self.out.take(), [("send_hello", own)])
        self.machine.relay_offered(theirs)
        self.assertEqual(self.out.take(), [("send_hello", theirs)])
        self.machine.relay_offered(theirs)
        self.assertEqual(self.out.take(), [])
        self.assertEqual(self.core.relay_route, own)
        self.clock.advance(0.2)
        sent = [entry[1] for entry in self.out.take() if entry[0] == "send_hello"]
        self.assertIn(own, sent)
        self.assertIn(theirs, sent)
        self.machine.answer_received(theirs)
        self.assertEqual(self.out.take()[0], ("connected", theirs))


class HeartbeatTests(SynchronousTestCase):
    config = HandshakeConfig(keepalive_interval=15.0, dead_after=45.0)

    def setUp(self):
        self.clock, self.out, self.core, self.machine = build(self.config)
        self.machine.start()
        self.clock.advance(self.config.warmup_delay)
        self.machine.answer_received(PUBLIC)
        self.out.take()

    def test_idle_keepalives(self):
        """
        An idle path gets exactly one keepalive per interval.
        """
        self.machine.traffic_received(PUBLIC)
        sent = []
        for _ in range(60):
            self.clock.advance(1)
            self.machine.traffic_received(PUBLIC)
            sent.extend(e for e in self.out.take() if e[0] == "send_keepalive")
        self.assertEqual(len(sent), 4)
        self.machine.close()

    def test_traffic_replaces_keepalives(self):
        """
        Application traffic sent within the interval suppresses keepalives.
        """
        for _ in range(60):
            self.clock.advance(1)
            self.core.last_sent = self.clock.seconds()
            self.machine.traffic_received(PUBLIC)
        self.assertEqual([e for e in self.out.take() if e[0] == "send_keepalive"], [])
        self.machine.close()

    def test_lost_after_silence(self):
        """
        Hearing nothing for dead_after loses the connection; traffic before
        that keeps it alive.
        """
        self.clock.advance(44)
        self.machine.traffic_received(PUBLIC)
        self.clock.advance(44)
        self.assertFalse(any(e[0] == "lost" for e in self.out.take()))
        self.clock.advance(1)
        lost = [e for e in self.out.take() if e[0] == "lost"]
        self.assertEqual(len(lost), 1)
        self.assertIn("45s", lost[0][1])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_sends_close_and_cancels(self):
        """
        Closing tells the peer and leaves no timer behind; later inputs are
        ignored.
        """
        self.machine.close()
        self.assertEqual(self.out.take(), [("send_close", PUBLIC)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.machine.traffic_received(MOVED)
        self.machine.hello_received(MOVED, b"x" * 8)
        self.assertEqual(self.out.take(), [])

    def test_peer_closed(self):
        """
        The peer's close loses the connection at once.
        """
        self.machine.peer_closed()
        self.assertEqual(self.out.take(), [("lost", "the peer closed the connection")])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class ConfigTests(SynchronousTestCase):
    def test_validation(self):
        """
        Nonsensical timings are refused with a message naming the setting.
        """
        self.assertRaises(ValueError, HandshakeConfig, warmup_ttl=0)
        self.assertRaises(ValueError, HandshakeConfig, hello_intervals=())
        error = self.assertRaises(ValueError, HandshakeConfig, keepalive_interval=30, dead_after=20)
        self.assertIn("dead_after", str(error))


class RelayOnlyTests(SynchronousTestCase):
    def test_relay_only(self):
        """
        A relay-only handshake sends no probe and no direct hello, asks for
        a relay at once, ignores direct hellos and candidates, and connects
        over the relay it is offered.
        """
        from p2pnet.address import RelayRoute

        clock, out, core, machine = build(HandshakeConfig(relay_only=True), [PUBLIC, LOCAL], [LOCAL])
        machine.start()
        clock.advance(0)
        self.assertEqual(out.take(), [("status", "punching"), ("status", "relaying"), ("request_relay",)])
        machine.hello_received(PUBLIC, b"h" * 8)
        self.assertEqual(out.take(), [])
        self.assertFalse(core.add_candidate(REFLEXIVE))
        route = RelayRoute(Address("192.0.2.20", 3479), b"a" * 8, 0, b"k" * 16)
        machine.relay_offered(route)
        self.assertEqual(out.take(), [("send_hello", route)])
        machine.answer_received(route)
        self.assertEqual(out.take()[0], ("connected", route))
        machine.close()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_relay_only_no_upgrade_retries(self):
        """
        Connected relay-only (the peer's traffic arriving every second), the
        machine never tries a direct path: over two minutes it sends only
        keepalives on the relay route, one per keepalive interval (15 s),
        and no hello.
        """
        route = RelayRoute(Address("192.0.2.20", 3479), b"a" * 8, 0, b"k" * 16)
        clock, out, core, machine = build(HandshakeConfig(relay_only=True, keepalive_interval=15.0), [PUBLIC, LOCAL])
        machine.start()
        clock.advance(0)
        machine.relay_offered(route)
        machine.answer_received(route)
        out.take()
        sent = []
        for _ in range(120):
            clock.advance(1.0)
            machine.traffic_received(route)
            sent.extend(e for e in out.take() if e[0].startswith("send"))
        self.assertEqual(sent, [("send_keepalive", route)] * 8)
        machine.close()

    def test_relay_only_keeps_relayed_candidates(self):
        """
        A relay-only handshake drops the direct candidates but keeps a
        relayed one it was given: its first hellos go there.
        """
        route = RelayRoute(Address("192.0.2.20", 3479), b"a" * 8, 0, b"k" * 16)
        clock, out, core, machine = build(HandshakeConfig(relay_only=True), [PUBLIC, route])
        machine.start()
        clock.advance(0)
        self.assertIn(("send_hello", route), out.take())
        self.assertEqual(core.candidates, [route])
        machine.close()


class RePunchTests(SynchronousTestCase):
    """
    Re-punching from fresh ports (C{rescue_after}): when an early hello
    may have poisoned the peer's NAT, hellos from a port both sides
    derived from the introduction, which the peer warmed up towards at its
    start, make a fresh pair of ports.
    """

    KEY = bytes(range(16))
    config = HandshakeConfig(
        warmup_packets=1,
        warmup_delay=0.02,
        hello_intervals=(0.1, 0.2),
        reversal_after=5.0,
        timeout=8.0,
        relay_after=None,
        rescue_after=(0.5, 1.5),
    )

    def build(self, config=None, initiator=True, **fields):
        fields.setdefault("rescue_key", self.KEY)
        return build(config or self.config, [PUBLIC, LOCAL], [LOCAL], initiator=initiator, **fields)

    def test_ports(self):
        """
        Each side's re-punch port depends on the key, the side and the
        rung, is the same every time, and is an unprivileged port.
        """
        from p2pnet._handshake import rescue_port

        ports = {
            rescue_port(key, initiator, rung)
            for key in (self.KEY, bytes(16), b"\xff" * 16)
            for initiator in (True, False)
            for rung in range(3)
        }
        self.assertEqual(len(ports), 18)
        self.assertTrue(all(1024 <= port <= 65535 for port in ports), ports)
        self.assertEqual(rescue_port(self.KEY, True, 1), rescue_port(bytes(range(16)), True, 1))

    def test_three_rungs_on_time(self):
        """
        With rescue_after (0.5, 1.5, 3.0) a re-punch socket opens at each
        of those times from the start, one per rung.
        """
        from attrs import evolve

        clock, out, core, machine = self.build(evolve(self.config, rescue_after=(0.5, 1.5, 3.0)))
        machine.start()
        opened_at = []
        for _ in range(400):
            clock.advance(0.01)
            if any(e[0] == "open_rescue_socket" for e in out.take()):
                opened_at.append(round(clock.seconds(), 1))
        self.assertEqual(opened_at, [0.5, 1.5, 3.0])
        machine.close()

    def test_warmup_covers_the_peers_ports(self):
        """
        The warm-up also probes, on the peer's public IP only, every port
        the peer will re-punch from; the two sides agree on those ports.
        """
        from p2pnet._handshake import rescue_port

        for initiator in (True, False):
            clock, out, core, machine = self.build(initiator=initiator)
            machine.start()
            peer_ports = [rescue_port(self.KEY, not initiator, rung) for rung in (0, 1)]
            self.assertEqual(
                out.take(),
                [("status", "warming"), ("send_probe", PUBLIC, 2), ("send_probe", LOCAL, 2)]
                + [("send_probe", Address(PUBLIC.host, port), 2) for port in peer_ports],
            )
            machine.close()
        # What one side probes is what the other side opens.
        opened = {}
        probed = {}
        for initiator in (True, False):
            clock, out, core, machine = self.build(initiator=initiator)
            machine.start()
            probed[initiator] = [a.port for _, a, _ in
                                 [e for e in out.take() if e[0] == "send_probe"][2:]]
            clock.advance(1.5)
            opened[initiator] = [e[1] for e in out.take() if e[0] == "open_rescue_socket"]
            machine.close()
        self.assertEqual(probed[True], opened[False])
        self.assertEqual(probed[False], opened[True])
        self.assertNotEqual(opened[True], opened[False])

    def test_rescue_rungs(self):
        """
        With no path after 0.5 s, the handshake opens its first re-punch
        socket and sends a hello from it to the peer's public address
        (not to the addresses the peer only claims); the next rung opens a
        second one at 1.5 s; every retransmit round then also goes out
        from each re-punch socket.
        """
        from p2pnet._handshake import rescue_port

        clock, out, core, machine = self.build()
        first, second = rescue_port(self.KEY, True, 0), rescue_port(self.KEY, True, 1)

        def until(moment):
            # Run every timer due by then at its own time (one big
            # advance would run a re-armed timer late).
            log = []
            while True:
                due = [c.getTime() for c in clock.getDelayedCalls() if c.getTime() <= moment]
                clock.advance((min(due) if due else moment) - clock.seconds())
                log += [(round(clock.seconds(), 3), *e) for e in out.take()]
                if not due:
                    return log

        machine.start()
        out.take()
        plain = [("send_hello", PUBLIC), ("send_hello", LOCAL)]
        public = [("send_hello", PUBLIC)]
        at = lambda moment, entries: [(moment, *e) for e in entries]  # noqa: E731
        # Hellos at 0.02, then 0.12, 0.32, 0.52, 0.72 ...
        self.assertEqual(
            until(0.499),
            at(0.02, [("status", "punching")] + plain)
            + at(0.12, plain) + at(0.32, plain),
        )
        self.assertEqual(
            until(1.52),
            at(0.5, [("status", "re-punching"), ("open_rescue_socket", first), ("send_rescue_hello", first, PUBLIC)])
            + at(0.52, plain + [("send_rescue_hello", first, PUBLIC)])
            # The local candidate has had its four hellos (claimed_hellos).
            + at(0.72, public + [("send_rescue_hello", first, PUBLIC)])
            + at(0.92, public + [("send_rescue_hello", first, PUBLIC)])
            + at(1.12, public + [("send_rescue_hello", first, PUBLIC)])
            + at(1.32, public + [("send_rescue_hello", first, PUBLIC)])
            + at(1.5, [("status", "re-punching"), ("open_rescue_socket", second),
                       ("send_rescue_hello", second, PUBLIC)])
            + at(1.52, public + [("send_rescue_hello", first, PUBLIC), ("send_rescue_hello", second, PUBLIC)]),
        )
        # No third rung.
        self.assertNotIn("open_rescue_socket", [e[1] for e in until(6.0)])
        machine.close()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_answer_through_the_rescue_socket(self):
        """
        An answer that came back to a re-punch socket validates the path
        like any other; nothing more is re-punched afterwards.
        """
        clock, out, core, machine = self.build()
        machine.start()
        clock.advance(0.6)
        out.take()
        machine.answer_received(PUBLIC)
        self.assertEqual(out.take()[0], ("connected", PUBLIC))
        clock.advance(3.0)
        self.assertNotIn("open_rescue_socket", [e[0] for e in out.take()])
        machine.close()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_not_when_connected_early(self):
        """
        A path validated before the first rung never opens a socket.
        """
        clock, out, core, machine = self.build()
        machine.start()
        clock.advance(0.03)
        machine.answer_received(PUBLIC)
        clock.advance(5.0)
        self.assertEqual([e for e in out.take() if "rescue" in e[0]], [])
        machine.close()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_off(self):
        """
        No re-punch ports are probed or opened without the introduction
        key, with C{rescue_after=()}, without the warm-up (which is what
        opens our NAT to the peer's re-punch ports), or when relay-only.
        """
        from attrs import evolve

        cases = [
            dict(rescue_key=None),
            dict(config=evolve(self.config, rescue_after=())),
            dict(config=evolve(self.config, warmup=False)),
            dict(config=evolve(self.config, relay_only=True, relay_after=3.0)),
        ]
        for fields in cases:
            clock, out, core, machine = self.build(**fields)
            machine.start()
            clock.advance(4.0)
            log = out.take()
            self.assertEqual([e for e in log if "rescue" in e[0]], [], fields)
            self.assertEqual([e for e in log if e[0] == "send_probe" and e[1] not in (PUBLIC, LOCAL)], [], fields)
            machine.close()

    def test_validation(self):
        """
        C{rescue_after} must be increasing positive times.
        """
        self.assertRaises(ValueError, HandshakeConfig, rescue_after=(1.0, 0.5))
        self.assertRaises(ValueError, HandshakeConfig, rescue_after=(0.0,))
        self.assertEqual(HandshakeConfig(rescue_after=()).rescue_after, ())


ROUTE = RelayRoute(Address("192.0.2.20", 3479), b"a" * 8, 0, b"k" * 16)
CONE = ("endpoint-independent", "address-and-port-dependent")
SYMMETRIC = ("address-and-port-dependent", "address-and-port-dependent")


def hellos_to(log, address):
    return [entry for entry in log if entry == ("send_hello", address)]


class RelayFallbackTests(SynchronousTestCase):
    """
    Moving between a direct path and the relay, with the default timings
    (keepalive 15 s, dead after 45 s, fall back after 30 s of silence,
    upgrade retries after 2, 4, 8, 16 then every 30 s).
    """

    def connect_direct(self):
        clock, out, core, machine = build(HandshakeConfig(), [PUBLIC, LOCAL], [LOCAL])
        machine.start()
        clock.advance(0.02)
        machine.answer_received(PUBLIC)
        self.assertEqual(out.take()[-3:-1], [("connected", PUBLIC), ("send_keepalive", PUBLIC)])
        return clock, out, core, machine

    def test_upgrade_retries_back_off(self):
        """
        While relayed, the direct candidates are retried after 2, 4, 8, 16
        and then every 30 seconds, not at a fixed pace.
        """
        clock, out, core, machine = build(HandshakeConfig(), [PUBLIC, LOCAL], [LOCAL])
        machine.start()
        clock.advance(0.02)
        machine.relay_offered(ROUTE)
        machine.answer_received(ROUTE)
        connected_at = clock.seconds()
        out.take()
        retries = []
        to_relay = []
        for _ in range(2 * 130):
            clock.advance(0.5)
            machine.traffic_received(ROUTE)
            log = out.take()
            if hellos_to(log, PUBLIC):
                retries.append(round(clock.seconds() - connected_at, 3))
            to_relay += hellos_to(log, ROUTE)
        self.assertEqual(retries, [2.0, 6.0, 14.0, 30.0, 60.0, 90.0, 120.0])
        # The retries go to the direct candidates only.
        self.assertEqual(to_relay, [])
        machine.close()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_direct_answer_ends_retries(self):
        """
        A direct answer while relayed moves the path there and stops the
        upgrade retries.
        """
        clock, out, core, machine = build(HandshakeConfig(), [PUBLIC, LOCAL], [LOCAL])
        machine.start()
        clock.advance(0.02)
        machine.relay_offered(ROUTE)
        machine.answer_received(ROUTE)
        clock.advance(2.0)
        out.take()
        machine.answer_received(PUBLIC)
        self.assertEqual(out.take(), [("path_changed", PUBLIC)])
        # Keepalive, dead-path and silence timers; no upgrade timer.
        self.assertEqual(len(clock.getDelayedCalls()), 3)
        for _ in range(60):
            clock.advance(1.0)
            machine.traffic_received(PUBLIC)
        self.assertEqual(hellos_to(out.take(), PUBLIC), [])
        machine.close()

    def test_fall_back_after_silence(self):
        """
        A direct path silent for 30 s moves to the relay route offered
        earlier, with a keepalive on it; the relayed path then gets a full
        45 s of its own before it is declared lost (the silence on the
        direct path does not count against it).
        """
        clock, out, core, machine = self.connect_direct()
        connected_at = clock.seconds()
        machine.relay_offered(ROUTE)
        self.assertEqual(out.take(), [])
        moved_at = lost_at = None
        for _ in range(100):
            clock.advance(1.0)
            for entry in out.take():
                if entry == ("path_changed", ROUTE):
                    moved_at = round(clock.seconds() - connected_at, 3)
                elif entry[0] == "lost":
                    lost_at = round(clock.seconds() - connected_at, 3)
            if lost_at is not None:
                break
        self.assertEqual(moved_at, 30.0)
        self.assertEqual(lost_at, 75.0)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_fall_back_sends_keepalive(self):
        """
        Falling back tells the peer through the relay at once.
        """
        clock, out, core, machine = self.connect_direct()
        machine.relay_offered(ROUTE)
        clock.advance(29.0)
        out.take()
        clock.advance(1.0)
        log = out.take()
        self.assertEqual(log[:2], [("path_changed", ROUTE), ("send_keepalive", ROUTE)])
        machine.close()

    def test_after_fall_back(self):
        """
        After falling back, the first packet heard through the relay is
        answered with a keepalive (the relay forwards only once both
        members are bound, so ours may have died there), later ones are
        not; the direct candidates are retried from the start of the
        schedule (2 s, then 4 s later), even after earlier upgrade tries.
        """
        clock, out, core, machine = build(HandshakeConfig(), [PUBLIC, LOCAL], [LOCAL])
        machine.start()
        clock.advance(0.02)
        machine.relay_offered(ROUTE)
        machine.answer_received(ROUTE)
        for _ in range(8):
            clock.advance(1.0)
            machine.traffic_received(ROUTE)
        machine.answer_received(PUBLIC)
        self.assertIn(("path_changed", PUBLIC), out.take())
        for _ in range(30):
            clock.advance(1.0)
        self.assertIn(("path_changed", ROUTE), out.take())
        fell_back_at = clock.seconds()
        machine.traffic_received(ROUTE)
        self.assertEqual(out.take(), [("send_keepalive", ROUTE)])
        machine.traffic_received(ROUTE)
        self.assertEqual(out.take(), [])
        retries = []
        keepalives = []
        for _ in range(32):
            clock.advance(0.5)
            machine.traffic_received(ROUTE)
            log = out.take()
            if hellos_to(log, PUBLIC):
                retries.append(round(clock.seconds() - fell_back_at, 3))
            keepalives += [round(clock.seconds() - fell_back_at, 3) for e in log if e == ("send_keepalive", ROUTE)]
        self.assertEqual(retries, [2.0, 6.0, 14.0])
        # The direct retries count as traffic sent: no keepalive is due yet.
        self.assertEqual(keepalives, [])
        machine.close()

    def test_silence_counts_from_last_packet(self):
        """
        The 30 s of silence count from the last packet heard on the path:
        a packet 1 s after connecting moves the fall-back to 31 s.
        """
        clock, out, core, machine = self.connect_direct()
        connected_at = clock.seconds()
        machine.relay_offered(ROUTE)
        clock.advance(1.0)
        machine.traffic_received(PUBLIC)
        moved_at = None
        for _ in range(40):
            clock.advance(1.0)
            if ("path_changed", ROUTE) in out.take():
                moved_at = round(clock.seconds() - connected_at, 3)
                break
        self.assertEqual(moved_at, 31.0)
        machine.close()

    def test_silence_watched_after_relay_request(self):
        """
        After a silence that asked for a relay, the path stays watched: if
        traffic resumes, the relay is offered, and the path goes silent
        again, the connection falls back 30 s after the last packet
        instead of being lost.
        """
        clock, out, core, machine = self.connect_direct()
        connected_at = clock.seconds()
        for _ in range(35):
            clock.advance(1.0)
        self.assertIn(("request_relay",), out.take())
        machine.traffic_received(PUBLIC)
        clock.advance(1.0)
        machine.relay_offered(ROUTE)
        events = []
        for _ in range(60):
            clock.advance(1.0)
            events += [(round(clock.seconds() - connected_at, 3), e[0]) for e in out.take() if e[0] in ("path_changed", "lost")]
        self.assertEqual(events[0], (65.0, "path_changed"))
        machine.close()

    def test_rebinding_between_relay_routes(self):
        """
        While relayed, traffic arriving through another relay route moves
        the path there at once (the peer chose that route).
        """
        other = RelayRoute(Address("192.0.2.21", 3479), b"b" * 8, 1, b"k" * 16)
        clock, out, core, machine = build(HandshakeConfig(), [PUBLIC])
        machine.start()
        clock.advance(0.02)
        machine.relay_offered(ROUTE)
        machine.answer_received(ROUTE)
        out.take()
        clock.advance(1.0)
        machine.traffic_received(other)
        self.assertIn(("path_changed", other), out.take())
        machine.close()

    def test_direct_traffic_while_relayed(self):
        """
        Traffic from a direct address while relayed moves the path there
        and stops the upgrade retries (no upgrade timer is left).
        """
        clock, out, core, machine = build(HandshakeConfig(), [PUBLIC])
        machine.start()
        clock.advance(0.02)
        machine.relay_offered(ROUTE)
        machine.answer_received(ROUTE)
        clock.advance(1.0)
        out.take()
        machine.traffic_received(PUBLIC)
        self.assertEqual(out.take(), [("path_changed", PUBLIC)])
        # Keepalive, dead-path and silence timers; no upgrade timer.
        self.assertEqual(len(clock.getDelayedCalls()), 3)
        machine.close()

    def test_relayed_packet_while_direct(self):
        """
        A relayed packet while the direct path is fresh is a late one and
        changes nothing; once the direct path has been silent for a
        keepalive interval (15 s), the peer has moved to the relay: so do
        we, and retry direct from the start of the schedule.
        """
        clock, out, core, machine = RelayFallbackTests.connect_direct(self)
        # Well into the connection (the silence is measured from the last
        # packet, not from time 0).
        for _ in range(60):
            clock.advance(1.0)
            machine.traffic_received(PUBLIC)
        machine.relay_offered(ROUTE)
        connected_at = clock.seconds()
        clock.advance(14.5)
        machine.traffic_received(ROUTE)
        self.assertNotIn(("path_changed", ROUTE), out.take())
        clock.advance(0.5)
        machine.traffic_received(ROUTE)
        self.assertEqual(clock.seconds() - connected_at, 15.0)
        self.assertIn(("path_changed", ROUTE), out.take())
        retries = []
        for _ in range(16):
            clock.advance(0.5)
            machine.traffic_received(ROUTE)
            if hellos_to(out.take(), PUBLIC):
                retries.append(round(clock.seconds() - connected_at - 15.0, 3))
        self.assertEqual(retries, [2.0, 6.0])
        machine.close()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_late_relay_offer_falls_back_at_once(self):
        """
        A relay route offered when the direct path has been silent for a
        keepalive interval (15 s) is used at once; offered earlier, it is
        kept for later.
        """
        clock, out, core, machine = self.connect_direct()
        clock.advance(14.0)
        out.take()
        machine.relay_offered(ROUTE)
        self.assertEqual(hellos_to(out.take(), ROUTE) + [e for e in out.take() if e[0] == "path_changed"], [])
        machine.close()
        clock, out, core, machine = self.connect_direct()
        clock.advance(15.0)
        out.take()
        machine.relay_offered(ROUTE)
        self.assertEqual(out.take()[:2], [("path_changed", ROUTE), ("send_keepalive", ROUTE)])
        machine.close()

    def test_silence_without_route_asks_for_relay(self):
        """
        A direct path silent for 30 s with no relay route yet asks the
        introducer for one (once); a path that keeps hearing traffic never
        does.
        """
        clock, out, core, machine = self.connect_direct()
        asked = []
        for _ in range(40):
            clock.advance(1.0)
            asked += [round(clock.seconds(), 2) for e in out.take() if e == ("request_relay",)]
        self.assertEqual(len(asked), 1)
        self.assertAlmostEqual(asked[0], 30.02, places=6)
        machine.close()
        clock, out, core, machine = self.connect_direct()
        for _ in range(100):
            clock.advance(1.0)
            machine.traffic_received(PUBLIC)
        self.assertNotIn(("request_relay",), out.take())
        machine.close()

    def test_fallback_after_setting(self):
        """
        C{fallback_after} sets how long a direct path may be silent.
        """
        clock, out, core, machine = build(HandshakeConfig(fallback_after=20.0), [PUBLIC])
        machine.start()
        clock.advance(0.02)
        machine.answer_received(PUBLIC)
        machine.relay_offered(ROUTE)
        out.take()
        clock.advance(19.0)
        self.assertNotIn(("path_changed", ROUTE), out.take())
        clock.advance(1.0)
        self.assertIn(("path_changed", ROUTE), out.take())
        machine.close()


class BookkeepingTests(SynchronousTestCase):
    """
    What the machine remembers about who it heard and what it asked for.
    """

    def test_timeout_names_heard_sources_once(self):
        """
        The timeout error lists each source heard, once, in the order
        first heard, and every candidate tried.
        """
        config = HandshakeConfig(timeout=3.0, relay_after=None, hello_intervals=(0.5,))
        clock, out, core, machine = build(config, [PUBLIC, LOCAL], [LOCAL])
        machine.start()
        clock.advance(0.02)
        machine.hello_received(REFLEXIVE, b"h" * 8)
        machine.hello_received(PUBLIC, b"h" * 8)
        machine.hello_received(REFLEXIVE, b"h" * 8)
        failed = []
        for _ in range(200):
            clock.advance(0.1)
            failed += [e[1] for e in out.take() if e[0] == "failed"]
        self.assertEqual(len(failed), 1)
        self.assertIsInstance(failed[0], HandshakeTimeout)
        self.assertEqual(failed[0].heard, (REFLEXIVE, PUBLIC))
        self.assertEqual(failed[0].tried, (PUBLIC, LOCAL, REFLEXIVE))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_other_sources_do_not_keep_the_path(self):
        """
        Late hellos from another address prove the peer alive but not the
        path: the path still falls back to the relay after 30 s.
        """
        clock, out, core, machine = RelayFallbackTests.connect_direct(self)
        connected_at = clock.seconds()
        machine.relay_offered(ROUTE)
        moved_at = None
        for _ in range(40):
            clock.advance(1.0)
            machine.hello_received(REFLEXIVE, b"h" * 8)
            if ("path_changed", ROUTE) in out.take():
                moved_at = round(clock.seconds() - connected_at, 3)
                break
        self.assertEqual(moved_at, 30.0)
        machine.close()

    def test_relay_asked_once(self):
        """
        The relay is asked for once per connection, however often it
        falls due.
        """
        clock, out, core, machine = build(HandshakeConfig(relay_after=1.0), [PUBLIC])
        machine.start()
        clock.advance(1.0)
        self.assertEqual([e for e in out.take() if e == ("request_relay",)], [("request_relay",)])
        machine.relay_due()
        machine.relay_due()
        self.assertEqual([e for e in out.take() if e == ("request_relay",)], [])
        machine.close()


class PredictionWindowTests(SynchronousTestCase):
    """
    The easy side of an easy <-> hard pair also sends hellos to the ports
    after the hard side's public port.
    """

    def first_hellos(self, config, public=PUBLIC, own=CONE, peer=SYMMETRIC, rng=None):
        clock, out, core, machine = build(config, [public], own_nat=own, peer_nat=peer, rng=rng)
        machine.start()
        out.take()
        clock.advance(config.warmup_delay)
        log = out.take()
        machine.close()
        return log

    def test_window(self):
        """
        The next C{predict_ports} ports get hellos (8 by default), no more.
        """
        log = self.first_hellos(HandshakeConfig(birthday_probes=0))
        self.assertEqual(
            [e[1].port for e in log if e[0] == "send_hello"], [4000, 4001, 4002, 4003, 4004, 4005, 4006, 4007, 4008]
        )
        log = self.first_hellos(HandshakeConfig(predict_ports=2, birthday_probes=0))
        self.assertEqual([e[1].port for e in log if e[0] == "send_hello"], [4000, 4001, 4002])
        log = self.first_hellos(HandshakeConfig(predict_ports=0, birthday_probes=0))
        self.assertEqual([e[1].port for e in log if e[0] == "send_hello"], [4000])

    def test_window_stops_at_65535(self):
        """
        No hello goes to a port past 65535.
        """
        log = self.first_hellos(HandshakeConfig(birthday_probes=0), public=Address("203.0.113.7", 65533))
        self.assertEqual([e[1].port for e in log if e[0] == "send_hello"], [65533, 65534, 65535])

    def test_only_the_easy_side(self):
        """
        The hard side, either side with the strategies off, and pairs
        without a clear role predict nothing.
        """
        for config, own, peer in [
            (HandshakeConfig(birthday_sockets=0), SYMMETRIC, CONE),
            (HandshakeConfig(hard_nat=False), CONE, SYMMETRIC),
            (HandshakeConfig(), CONE, CONE),
            (HandshakeConfig(), ("unknown", "unknown"), SYMMETRIC),
        ]:
            log = self.first_hellos(config, own=own, peer=peer)
            self.assertEqual([e for e in log if e[0] == "send_hello"], [("send_hello", PUBLIC)], (own, peer))
            self.assertNotIn(("status", "birthday"), log)

    def test_hard_side_opens_sockets(self):
        """
        The hard side opens C{birthday_sockets} sockets towards the easy
        side's public address; none when that is 0.
        """
        log = self.first_hellos(HandshakeConfig(birthday_sockets=16), own=SYMMETRIC, peer=CONE)
        self.assertIn(("open_birthday_sockets", 16, PUBLIC), log)
        self.assertIn(("status", "birthday"), log)
        log = self.first_hellos(HandshakeConfig(birthday_sockets=0), own=SYMMETRIC, peer=CONE)
        self.assertFalse([e for e in log if e[0] == "open_birthday_sockets"])

    def test_birthday_probes_bounded(self):
        """
        The easy side sends random probes in batches of C{birthday_rate}
        x 20 ms to the hard side's host, at most C{birthday_probes}.
        """
        import random

        config = HandshakeConfig(birthday_probes=12, birthday_rate=250.0, relay_after=None)
        clock, out, core, machine = build(config, [PUBLIC], own_nat=CONE, peer_nat=SYMMETRIC, rng=random.Random(3))
        machine.start()
        clock.advance(config.warmup_delay)
        batches = []
        for _ in range(10):
            hellos = [e[1] for e in out.take() if e[0] == "send_hello"]
            batches.append([a for a in hellos if a.port not in range(4000, 4009)])
            clock.advance(0.02)
        self.assertEqual([len(b) for b in batches[:4]], [5, 5, 2, 0])
        probes = [a for batch in batches for a in batch]
        self.assertEqual(len(probes), 12)
        self.assertTrue(all(a.host == PUBLIC.host and 1024 <= a.port <= 65535 for a in probes))
        machine.close()
        self.assertEqual(clock.getDelayedCalls(), [])


    def test_birthday_status(self):
        """
        The easy side reports "birthday" when it starts random probes, and
        not when it sends none (no probes configured, even with a random
        source).
        """
        import random

        log = self.first_hellos(HandshakeConfig(birthday_probes=5, relay_after=None), rng=random.Random(1))
        self.assertIn(("status", "birthday"), log)
        clock, out, _, machine = build(
            HandshakeConfig(birthday_probes=0, relay_after=None), [PUBLIC], own_nat=CONE, peer_nat=SYMMETRIC,
            rng=random.Random(1),
        )
        machine.start()
        clock.advance(1.0)
        self.assertNotIn(("status", "birthday"), out.take())
        machine.close()

    def test_birthday_low_rate_one_per_tick(self):
        """
        Below 50 probes a second (fewer than one per 20 ms tick) the easy
        side still sends one probe per tick, not more; over 2,000 probes
        (seeded) none goes to a port under 1024.
        """
        import random

        config = HandshakeConfig(birthday_probes=3, birthday_rate=10.0, relay_after=None)
        clock, out, _, machine = build(config, [PUBLIC], own_nat=CONE, peer_nat=SYMMETRIC, rng=random.Random(5))
        machine.start()
        clock.advance(config.warmup_delay)
        counts = []
        for _ in range(4):
            hellos = [e[1] for e in out.take() if e[0] == "send_hello"]
            counts.append(len([a for a in hellos if a.port not in range(4000, 4009)]))
            clock.advance(0.02)
        self.assertEqual(counts, [1, 1, 1, 0])
        # Done probing: no probe timer left ticking (the retransmission is
        # next due at 0.32 s).
        clock.advance(0.2 - clock.seconds())
        now = clock.seconds()
        self.assertEqual([c for c in clock.getDelayedCalls() if c.getTime() <= now + 0.05], [])
        machine.close()
        config = HandshakeConfig(birthday_probes=2000, birthday_rate=100000.0, relay_after=None, timeout=30.0)
        clock, out, _, machine = build(config, [PUBLIC], own_nat=CONE, peer_nat=SYMMETRIC, rng=random.Random(6))
        machine.start()
        clock.advance(config.warmup_delay)
        ports = [e[1].port for e in out.take() if e[0] == "send_hello"]
        self.assertGreaterEqual(len(ports), 2000)
        self.assertGreaterEqual(min(ports), 1024)
        machine.close()


class ConfigLimitTests(SynchronousTestCase):
    def test_fallback_after(self):
        """
        C{fallback_after} must lie strictly between 0 and C{dead_after};
        unset, it is two thirds of C{dead_after}.
        """
        for value in (0.0, -1.0, 45.0, 50.0):
            error = self.assertRaises(ValueError, HandshakeConfig, fallback_after=value)
            self.assertIn("fallback_after", str(error))
        self.assertEqual(HandshakeConfig(fallback_after=44.5).fallback, 44.5)
        self.assertEqual(HandshakeConfig(fallback_after=0.5).fallback, 0.5)
        self.assertEqual(HandshakeConfig().fallback, 30.0)
        self.assertEqual(HandshakeConfig(dead_after=60.0).fallback, 40.0)

    def test_limits(self):
        """
        Each setting's limit: what is refused and what is just allowed.
        """
        refused = [
            dict(relay_after=0.0),
            dict(relay_after=-1.0),
            dict(upgrade_intervals=()),
            dict(upgrade_intervals=(1.0, 0.0)),
            dict(hello_intervals=(0.1, 0.0)),
            dict(hello_intervals=(-0.1,)),
            dict(keepalive_interval=45.0),
            dict(warmup_ttl=0),
            dict(warmup_packets=0),
            dict(warmup_delay=-0.001),
            dict(timeout=0.0),
            dict(reversal_after=0.0),
            dict(birthday_rate=0.0),
            dict(predict_ports=-1),
        ]
        for settings in refused:
            error = self.assertRaises(ValueError, HandshakeConfig, **settings)
            self.assertIn(next(iter(settings)).split("_")[0], str(error), settings)
        allowed = [
            dict(relay_after=None),
            dict(relay_after=0.001),
            dict(upgrade_intervals=(0.001,)),
            dict(hello_intervals=(0.001,)),
            dict(keepalive_interval=44.9),
            dict(warmup_delay=0.0, warmup_margin=0.0, warmup_max=0.0),
            dict(predict_ports=0, birthday_sockets=0, birthday_probes=0),
        ]
        for settings in allowed:
            HandshakeConfig(**settings)


class NoCommonFamilyTests(SynchronousTestCase):
    def test_no_candidate_asks_for_relay_at_once(self):
        """
        A peer none of whose candidates we can send to (an IPv6-only peer
        seen from an IPv4-only endpoint: all dropped) gets the relay asked
        for at once, not after C{relay_after}.
        """
        clock, out, core, machine = build(HandshakeConfig(), [])
        machine.start()
        clock.advance(0)
        self.assertIn(("request_relay",), out.take())
        machine.close()

    def test_with_candidates_relay_waits(self):
        """
        With a candidate to punch, the relay waits for C{relay_after}
        (3 s by default).
        """
        clock, out, core, machine = build(HandshakeConfig(), [PUBLIC])
        machine.start()
        clock.advance(2.9)
        self.assertNotIn(("request_relay",), out.take())
        clock.advance(0.1)
        self.assertIn(("request_relay",), out.take())
        machine.close()


V6 = Address("2001:db8:7::7", 4000)


class DualStackPathTests(SynchronousTestCase):
    """
    Both sides take the path that validated first; with two families the
    two choices may differ, and the initiator's wins.
    """

    def connected(self, initiator):
        clock, out, core, machine = build(HandshakeConfig(), [PUBLIC, V6], initiator=initiator)
        machine.start()
        clock.advance(0.02)
        machine.answer_received(PUBLIC)
        out.take()
        return clock, out, core, machine

    def test_initiator_keeps_its_family(self):
        """
        The initiator, on IPv4, stays there when the peer's traffic comes
        over IPv6, while its own path is alive; once its path has been
        quiet for a keepalive interval, the IPv6 traffic moves it.
        """
        clock, out, core, machine = self.connected(initiator=True)
        machine.traffic_received(V6)
        self.assertEqual(core.path, PUBLIC)
        self.assertNotIn(("path_changed", V6), out.take())
        clock.advance(14.9)
        machine.traffic_received(V6)
        self.assertEqual(core.path, PUBLIC)
        clock.advance(0.1)
        machine.traffic_received(V6)
        self.assertEqual(core.path, V6)
        self.assertIn(("path_changed", V6), out.take())
        machine.close()

    def test_other_side_follows(self):
        """
        The side that was introduced (not the initiator) moves to the
        family the initiator's traffic comes over at once.
        """
        clock, out, core, machine = self.connected(initiator=False)
        machine.traffic_received(V6)
        self.assertEqual(core.path, V6)
        self.assertIn(("path_changed", V6), out.take())
        machine.close()

    def test_initiator_still_follows_rebinding(self):
        """
        A new source of the same family (the peer's NAT re-bound) moves
        the initiator's path at once, as before.
        """
        clock, out, core, machine = self.connected(initiator=True)
        machine.traffic_received(MOVED)
        self.assertEqual(core.path, MOVED)
        machine.close()
