"""
Hard NATs on the simulated network: port prediction for sequential
allocators, the birthday search for random ones, and the off switch.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from p2pnet._handshake import HandshakeConfig, direct_hopeless, hard_nat_role
from p2pnet.errors import HandshakeTimeout
from p2pnet.testing.scenarios import run_pair

NO_BIRTHDAY = HandshakeConfig(birthday_probes=0, birthday_sockets=0)
OFF = HandshakeConfig(hard_nat=False)


class RoleTests(SynchronousTestCase):
    def test_roles(self):
        """
        Only a known easy side facing a known hard side gets a role.
        """
        cone = ("endpoint-independent", "address-and-port-dependent")
        symmetric = ("address-and-port-dependent", "address-and-port-dependent")
        unknown = ("unknown", "unknown")
        self.assertEqual(hard_nat_role(cone, symmetric), "easy")
        self.assertEqual(hard_nat_role(symmetric, cone), "hard")
        self.assertIsNone(hard_nat_role(symmetric, symmetric))
        self.assertIsNone(hard_nat_role(cone, cone))
        self.assertIsNone(hard_nat_role(unknown, symmetric))
        self.assertIsNone(hard_nat_role(symmetric, unknown))
        # The mapping behaviour decides; a known filtering does not make an
        # unknown mapping known.
        self.assertIsNone(hard_nat_role(("unknown", "address-dependent"), symmetric))
        self.assertIsNone(hard_nat_role(symmetric, ("unknown", "endpoint-independent")))

    def test_hopeless(self):
        """
        Plain punching is hopeless when one side maps per destination and
        the other filters by address and port or also maps per destination
        (whatever its filtering); unknown behaviour rules nothing out.
        """
        symmetric = ("address-and-port-dependent", "address-and-port-dependent")
        self.assertTrue(direct_hopeless(symmetric, ("address-dependent", "endpoint-independent")))
        self.assertTrue(direct_hopeless(("endpoint-independent", "address-and-port-dependent"), symmetric))
        self.assertFalse(direct_hopeless(symmetric, ("endpoint-independent", "address-dependent")))
        self.assertFalse(direct_hopeless(symmetric, ("endpoint-independent", "endpoint-independent")))
        self.assertFalse(direct_hopeless(symmetric, ("unknown", "unknown")))
        cone = ("endpoint-independent", "address-and-port-dependent")
        self.assertFalse(direct_hopeless(cone, cone))


class PredictionTests(SynchronousTestCase):
    def test_sequential_by_prediction(self):
        """
        Against a NAT that maps per destination with sequential ports,
        hellos to the next ports find the mapping: direct, with the
        birthday search switched off, whichever side starts.
        """
        for kind_a, kind_b in [("port-restricted", "sequential"), ("sequential", "port-restricted")]:
            result = run_pair(kind_a, kind_b, nat_check=True, handshake=NO_BIRTHDAY)
            self.assertEqual((kind_a, result.path), (kind_a, "direct-public"))
            self.assertLess(result.connect_time, 1.0)

    def test_off_switch(self):
        """
        With hard_nat=False the same pairs fail: prediction is what works.
        """
        result = run_pair("port-restricted", "sequential", nat_check=True, handshake=OFF)
        assert_switched_off(self, result)


class BirthdayTests(SynchronousTestCase):
    def test_random_ports_success_rate(self):
        """
        Port-restricted cone <-> symmetric NAT with random ports connects
        directly in at least 95% of 200 seeded trials.
        """
        direct = 0
        for seed in range(200):
            result = run_pair("port-restricted", "symmetric", seed=seed, nat_check=True)
            direct += result.connected and result.path == "direct-public"
        self.assertGreaterEqual(direct, 190)

    def test_bounded_and_cleaned_up(self):
        """
        The easy side sends at most birthday_probes probes; the hard side
        opens birthday_sockets sockets and closes them all when it gives up;
        no timer is left.
        """
        # (No re-punch: its warm-up probes to the peer's derived ports would
        # count as random probes here.)
        config = HandshakeConfig(birthday_probes=50, birthday_sockets=16, timeout=3.0, relay_after=None,
                                 rescue_after=())
        events = []
        result = run_pair("port-restricted", "symmetric", seed=1, nat_check=True, handshake=config,
                          trace=events.append)
        self.assertIsNone(result.path)
        public = result.events and next(
            e.address for t, side, e in result.events if side == "A" and e.kind == "introduced"
        )
        candidates = {public.port + k for k in range(0, 9)}
        probes = [e for e in events if e.kind == "send" and e.src[0].startswith("10.1.")
                  and e.dst[0] == public.host and e.dst[1] not in candidates]
        self.assertGreater(len(probes), 0)
        self.assertLessEqual(len(probes), 50)
        self.assertEqual(result.leftover_calls, 0)
        self.assertEqual(result.bound_ports_after, 0)

    def test_off_switch(self):
        """
        With hard_nat=False the birthday pair fails (no relay here).
        """
        result = run_pair("port-restricted", "symmetric", nat_check=True, handshake=OFF)
        assert_switched_off(self, result)


def assert_switched_off(case: SynchronousTestCase, result) -> None:
    """
    What an easy <-> hard pair does with the hard-NAT strategies off: both
    sides ask for the relay at once (plain punching is hopeless), send
    hellos only to the two candidates of the introduction (no predicted
    ports, no birthday probes or sockets), and fail with
    L{HandshakeTimeout} after the configured 10 s, cleaning up every timer
    and socket.
    """
    case.assertIsNone(result.path)
    case.assertEqual(result.incoming_b, [])
    error = result.outcome_a.trap(HandshakeTimeout) and result.outcome_a.value
    case.assertEqual(len(error.tried), 2)
    case.assertEqual(error.heard, ())
    case.assertAlmostEqual(error.elapsed, 10.0, places=6)
    kinds = {side: [e.kind for t, s, e in result.events if s == side] for side in "AB"}
    for side in "AB":
        case.assertNotIn("birthday", kinds[side])
        case.assertEqual(kinds[side][-1], "failed")
        # The relay is asked for on the introduction's turn, not after
        # relay_after (3 s).
        introduced = next(t for t, s, e in result.events if s == side and e.kind == "introduced")
        relaying = next(t for t, s, e in result.events if s == side and e.kind == "relaying")
        case.assertLess(relaying - introduced, 0.05)
    case.assertEqual(result.leftover_calls, 0)
    case.assertEqual(result.bound_ports_after, 0)
