"""
An endpoint given several introducer addresses (nodes of one cluster)
moves to the next when its own stops answering: on the simulated network,
Clock-driven.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from p2pnet._registering import introducer_addresses
from p2pnet._registry import Registry
from p2pnet.address import Address
from p2pnet.endpoint import PeerConfig, PeerEndpoint
from p2pnet.introducer import IntroducerProtocol
from p2pnet.testing.scenarios import INTRODUCER
from tests.test_endpoint import World

SECOND = Address("198.51.100.77", 3478)


class TwoIntroducers(World):
    def __init__(self, test):
        super().__init__(test)
        self.second_host = self.network.add_host(SECOND.host)
        self.second = IntroducerProtocol(self.clock, Registry(60.0, self.random_bytes), self.random_bytes)
        self.second_port = self.second_host.listenUDP(SECOND.port, self.second)
        test.addCleanup(self.second_port.stopListening)

    def peer_of_both(self, name, config):
        nat = self.network.add_nat(f"nat-{name}", "203.0.113.50")
        host = self.network.add_host(behind=nat)
        endpoint = PeerEndpoint(host, [INTRODUCER, SECOND], name, random_bytes=self.random_bytes, config=config)
        self.endpoints.append(endpoint)
        return endpoint


class FailoverTests(SynchronousTestCase):
    def test_moves_within_one_heartbeat_interval(self):
        """
        When the first introducer dies, the endpoint is registered with the
        second, and hosts its session there, within one heartbeat interval
        plus the failed heartbeat's tries (0.5 + 1 + 2 s); it stays there,
        and nothing reaches the second with the first one's cookie.
        """
        world = TwoIntroducers(self)
        # Shorter than the 3.5 s a heartbeat is tried for: several are
        # outstanding when the first introducer dies.
        config = PeerConfig(heartbeat_interval=2.0)
        alice = world.peer_of_both("alice", config)
        world.result(alice.start())
        world.result(alice.host_session("Keith's Server", "g", 4))
        self.assertEqual(alice.introducer, INTRODUCER)
        self.assertEqual(len(world.second.registry), 0)
        world.stop_introducer()
        died = world.clock.seconds()
        while world.second.registry.lookup("alice", world.clock.seconds()) is None:
            world.run(0.05, step=0.05)
            self.assertLessEqual(world.clock.seconds() - died, 2.0 + 3.5 + 0.5)
        world.run(1.0, step=0.05)
        self.assertEqual([s.name for s in world.second.registry.sessions()], ["Keith's Server"])
        world.run(60.0, step=0.5)
        self.assertEqual(alice.introducer, SECOND)
        self.assertIsNotNone(world.second.registry.lookup("alice", world.clock.seconds()))
        self.assertEqual(world.second.stats["refused"], 0)

    def test_one_address_does_not_move(self):
        """
        With one introducer address the endpoint keeps retrying it (and
        registers again when it is back), as before.
        """
        world = World(self)
        alice = world.peer("alice", config=PeerConfig(heartbeat_interval=10.0))
        world.result(alice.start())
        world.stop_introducer()
        world.run(30.0, step=0.05)
        self.assertEqual(alice.introducers, (INTRODUCER,))
        self.assertEqual(alice.introducer, INTRODUCER)


class AddressTests(SynchronousTestCase):
    def test_addresses(self):
        """
        One address or several (strings or L{Address}es), repeats dropped;
        none, too many or a bad one is a ValueError.
        """
        self.assertEqual(introducer_addresses("192.0.2.1:5"), (Address("192.0.2.1", 5),))
        self.assertEqual(
            introducer_addresses(["192.0.2.1:5", Address("192.0.2.2", 6), "192.0.2.1:5"]),
            (Address("192.0.2.1", 5), Address("192.0.2.2", 6)),
        )
        self.assertRaises(ValueError, introducer_addresses, [])
        self.assertRaises(ValueError, introducer_addresses, [f"192.0.2.{i}:5" for i in range(1, 18)])
        self.assertRaises(ValueError, introducer_addresses, ["not an address"])
        self.assertRaises(ValueError, introducer_addresses, [42])
