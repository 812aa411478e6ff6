"""
Re-punching from fresh ports (C{HandshakeConfig.rescue_after}) on the
simulated network: a NAT that a too-early hello poisoned (the peer's
introduction was lost or late) no longer stops the pair from connecting
directly.  Seeded, so every run is the same.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from p2pnet import HandshakeConfig
from p2pnet.testing.scenarios import run_pair

NO_REPUNCH = HandshakeConfig(rescue_after=())


class LateIntroductionTests(SynchronousTestCase):
    def test_poisoned_by_an_early_hello(self):
        """
        With a fixed 20 ms pause and the poisoned side's last mile 25 ms
        longer, the early side's first hello poisons the far NAT.  Without
        re-punching the pair never connects; with it, the first re-punch
        socket (0.5 s) connects it directly, and the extra sockets and
        timers are all gone at the end.
        """
        late = dict(latency_a=0.005, latency_b=0.030, step=0.0005)
        stuck = run_pair("full-cone", "poisoned",
                         handshake=HandshakeConfig(adaptive_warmup=False, rescue_after=()), **late)
        self.assertFalse(stuck.connected)
        self.assertGreater(stuck.network.stats.dropped["poisoned"], 0)
        result = run_pair("full-cone", "poisoned", handshake=HandshakeConfig(adaptive_warmup=False), **late)
        self.assertEqual(result.path, "direct-public")
        self.assertGreater(result.network.stats.dropped["poisoned"], 0)
        self.assertTrue(0.5 < result.connect_time < 1.0, result.connect_time)
        self.assertEqual(result.leftover_calls, 0)
        self.assertEqual(result.bound_ports_after, 0)


class LossTests(SynchronousTestCase):
    def rate(self, kind_a, kind_b, handshake=None, seeds=100):
        return sum(
            run_pair(kind_a, kind_b, seed=seed, loss=0.25, handshake=handshake, until=20.0).path
            == "direct-public"
            for seed in range(seeds)
        )

    def test_poisoned_pairs_under_loss(self):
        """
        With 25% loss on both hosts' links, a lost introduction makes the
        early side's hellos poison the late side's NAT in about a quarter
        of the runs.  Without re-punching those runs fail; with it, at
        least 98 of 100 seeded runs connect directly, for a port-restricted
        NAT, a firewall or another poisoned NAT on the other side.
        """
        for kind in ("port-restricted", "firewall", "poisoned"):
            self.assertLessEqual(self.rate(kind, "poisoned", NO_REPUNCH), 80, kind)
            self.assertGreaterEqual(self.rate(kind, "poisoned"), 98, kind)
