"""
The NAT matrix: every pair of site kinds on the simulated network either
connects directly (and over which path), or fails with L{HandshakeTimeout}
where no direct path can exist without the hard-NAT or relay work.
"""

from __future__ import annotations

import itertools

from twisted.trial.unittest import SynchronousTestCase

from p2pnet.errors import HandshakeTimeout
from p2pnet.testing.scenarios import SITE_KINDS, run_pair

KINDS = list(SITE_KINDS)

# Pairs with no direct path for plain punching, and why.
IMPOSSIBLE = {
    frozenset({"symmetric", "port-restricted"}): (
        "the symmetric side's hellos come from a fresh port per destination, which "
        "the port-restricted filter never sent to; its own filter drops hellos to "
        "the port the introducer saw"
    ),
    frozenset({"symmetric", "poisoned"}): "as symmetric <-> port-restricted",
    frozenset({"symmetric", "firewall"}): (
        "a stateful firewall filters by address and port, like a port-restricted NAT"
    ),
    frozenset({"symmetric", "double-nat"}): (
        "the carrier-grade NAT in front filters by address and port"
    ),
    frozenset({"symmetric"}): (
        "both sides map a fresh port per destination, so neither learns the other's"
    ),
}


def expected(kind_a: str, kind_b: str) -> str | None:
    """
    The path a pair should end on, or None for a HandshakeTimeout.
    """
    if frozenset({kind_a, kind_b}) in IMPOSSIBLE:
        return None
    return "direct-public"


def ordered(kind_a: str, kind_b: str) -> tuple[str, str]:
    # The poisoned NAT goes on side B, whose introduction arrives later:
    # the race the warm-up exists for.
    if kind_a == "poisoned":
        return kind_b, kind_a
    return kind_a, kind_b


class MatrixTests(SynchronousTestCase):
    def test_every_pair(self):
        """
        Every pair of site kinds connects over the expected path, or fails
        with HandshakeTimeout exactly where no direct path exists.
        """
        mismatches = []
        for pair in itertools.combinations_with_replacement(KINDS, 2):
            kind_a, kind_b = ordered(*pair)
            result = run_pair(kind_a, kind_b)
            want = expected(kind_a, kind_b)
            if want is None:
                if not (hasattr(result.outcome_a, "check") and result.outcome_a.check(HandshakeTimeout)):
                    mismatches.append((kind_a, kind_b, "expected HandshakeTimeout", result.outcome_a))
            elif result.path != want or not result.connected:
                mismatches.append((kind_a, kind_b, want, result.outcome_a))
        self.assertEqual(mismatches, [])

    def test_no_leaked_timers(self):
        """
        After both endpoints and the introducer stop, the clock holds no
        delayed calls, whether the pair connected or failed.
        """
        for kind_a, kind_b in [("full-cone", "full-cone"), ("symmetric", "symmetric")]:
            self.assertEqual(run_pair(kind_a, kind_b).leftover_calls, 0)

    def test_matrix_covers_impossible_pairs(self):
        """
        The list of impossible pairs only names real kinds.
        """
        for pair in IMPOSSIBLE:
            self.assertTrue(pair <= set(KINDS), pair)

    def test_same_lan_without_hairpin(self):
        """
        Two hosts behind the same NAT without hairpinning connect over the
        local path, whatever the NAT's kind.
        """
        for kind in ["full-cone", "restricted", "port-restricted", "symmetric", "poisoned", "double-nat"]:
            result = run_pair(kind, kind, same_lan=True)
            self.assertEqual((kind, result.path), (kind, "direct-local"))
            self.assertTrue(result.connected)

    def test_same_lan_prefers_local_with_hairpin(self):
        """
        With hairpinning the public path works too, but the local one wins:
        its answer arrives a moment after the public one, and the connection
        moves once the local address answered a path challenge (one more
        round trip on the LAN).
        """

        def settle(context):
            for _ in range(50):
                context.clock.advance(context.step)

        result = run_pair("full-cone", "full-cone", same_lan=True, hairpin=True, then=settle)
        self.assertEqual(result.path, "direct-local")

    def test_warmup_makes_poisoned_pairs_work(self):
        """
        Every pair with a poisoned NAT that connects with the warm-up fails
        with HandshakeTimeout without it: the far side's first hello reaches
        the poisoned NAT before our own first packet leaves it.
        """
        for kind in KINDS:
            kind_a, kind_b = ordered(kind, "poisoned")
            if expected(kind_a, kind_b) is None:
                continue
            with_warmup = run_pair(kind_a, kind_b, warmup=True)
            without = run_pair(kind_a, kind_b, warmup=False)
            self.assertEqual((kind, with_warmup.path), (kind, "direct-public"))
            self.assertTrue(without.outcome_a.check(HandshakeTimeout), (kind, without.outcome_a))
            poisoned = without.network.stats.dropped["poisoned"]
            self.assertGreater(poisoned, 0)

    def test_adaptive_pause_follows_the_lag(self):
        """
        The early side pauses for the far side's extra round trip to the
        introducer (measured by the introducer, sent as the introduction's
        lag) plus the margin: a poisoned NAT whose last mile is 25 ms
        longer connects, where the fixed 20 ms pause loses the race (and,
        without the re-punch from fresh ports, never recovers).
        """
        from p2pnet import HandshakeConfig

        adaptive = run_pair("full-cone", "poisoned", latency_a=0.005, latency_b=0.030, step=0.0005)
        self.assertEqual(adaptive.path, "direct-public")
        # intro RTT 10 ms + pause (lag 50 ms + margin 1 ms) + peer RTT 70 ms
        self.assertAlmostEqual(adaptive.connect_time, 0.131, delta=0.0006)
        fixed = run_pair(
            "full-cone", "poisoned", latency_a=0.005, latency_b=0.030, step=0.0005,
            handshake=HandshakeConfig(adaptive_warmup=False, rescue_after=()),
        )
        self.assertFalse(fixed.connected)
        self.assertGreater(fixed.network.stats.dropped["poisoned"], 0)

    def test_adaptive_pause_on_a_lan(self):
        """
        Peers equally far from the introducer pause only for the margin:
        on 1 ms links the connection takes the two round trips plus 1 ms,
        not plus the fixed 20 ms.
        """
        result = run_pair("port-restricted", "port-restricted", latency_a=0.001, latency_b=0.001, step=0.0005)
        self.assertEqual(result.path, "direct-public")
        self.assertAlmostEqual(result.connect_time, 0.002 + 0.001 + 0.004, delta=0.0006)

    def test_warmup_probes_die_before_the_far_nat(self):
        """
        Warm-up probes leave our own NAT and die of TTL in the core, so the
        far NAT never sees them (and cannot be poisoned by them).
        """
        events = []
        run_pair("port-restricted", "poisoned", trace=events.append)
        ttl_drops = [e for e in events if e.kind == "drop" and e.reason == "ttl"]
        self.assertTrue(ttl_drops)
        self.assertTrue(all(e.where == "internet" for e in ttl_drops))


class LossTests(SynchronousTestCase):
    def test_thirty_percent_loss(self):
        """
        With 30% random loss each way on both peers' links, at least 99% of
        200 seeded trials connect (both sides).
        """
        connected = sum(
            run_pair("port-restricted", "port-restricted", seed=seed, loss=0.3).connected
            for seed in range(200)
        )
        self.assertGreaterEqual(connected, 198)

    def test_same_seed_same_result(self):
        """
        A trial is deterministic for its seed.
        """
        first = run_pair("full-cone", "symmetric", seed=7, loss=0.3)
        second = run_pair("full-cone", "symmetric", seed=7, loss=0.3)
        self.assertEqual([(t, s, e.kind) for t, s, e in first.events], [(t, s, e.kind) for t, s, e in second.events])
