"""
C{relay_only} keeps our addresses from the peer: an attack-style check
that a relay-only joiner's public and local addresses never reach the
host, neither in the introduction nor in anything the joiner sends, and
that the host never sends to them.
"""

from __future__ import annotations

import random
import socket

from twisted.trial.unittest import SynchronousTestCase

from p2pnet import HandshakeConfig, P2PError, Path, PeerConfig, PeerConnection, PeerEndpoint, PeerFactory, PeerProtocol
from p2pnet import wire
from p2pnet._registry import Registry
from p2pnet.address import is_relayed
from p2pnet.introducer import IntroducerProtocol, RelaySettings
from p2pnet.relay import RelayProtocol
from p2pnet.testing import scenarios
from p2pnet.testing._heapclock import HeapClock
from p2pnet.testing._simnet import Network

INTRODUCER = scenarios.INTRODUCER
RELAY = scenarios.RELAY


class Recorder(PeerProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes) -> None:
        self.received.append(data)


class Factory(PeerFactory):
    protocol = Recorder


class RelayOnlyTests(SynchronousTestCase):
    def run_scenario(
        self,
        joiner_config: PeerConfig,
        kind: str = "full-cone",
        join: bool = False,
        relay: bool = True,
        host_config: PeerConfig = PeerConfig(),
        spy_on: str = "host",
    ):
        """
        A joiner with C{joiner_config} connects to (or joins a session
        of) a host with default options, both behind C{kind} NATs, with a
        relay at the introducer.  Returns the outcome, what the host's
        socket received, and what the network saw.
        """
        clock = HeapClock()
        events: list = []
        network = Network(clock, seed=3, trace=events.append)
        random_bytes = scenarios.seeded_bytes(random.Random(3))
        introducer_host = network.add_host(INTRODUCER.host, name="introducer")
        relay_host = network.add_host(RELAY.host, name="relay")
        secret = random_bytes(32)
        relay_port = relay_host.listenUDP(RELAY.port, RelayProtocol(clock, secret))
        introducer_port = introducer_host.listenUDP(
            INTRODUCER.port,
            IntroducerProtocol(
                clock, Registry(60.0, random_bytes), random_bytes, relay=RelaySettings(secret, RELAY) if relay else None
            ),
        )
        joiner_host = scenarios.add_site(network, kind, 1)
        host_host = scenarios.add_site(network, kind, 2)
        joiner = PeerEndpoint(joiner_host, INTRODUCER, "joiner", config=joiner_config, random_bytes=random_bytes)
        host = PeerEndpoint(
            host_host, INTRODUCER, "host", factory=Factory(), random_bytes=random_bytes, config=host_config
        )
        received_by_host: list[tuple[bytes, tuple]] = []
        started = []
        joiner.start().addBoth(started.append)
        host.start().addBoth(started.append)

        def run(seconds: float) -> None:
            end = clock.seconds() + seconds
            while clock.seconds() < end:
                clock.advance(0.005)

        run(1.0)
        self.assertEqual(len(started), 2)
        spied = host if spy_on == "host" else joiner
        original = spied.datagramReceived

        def spy(data: bytes, addr: tuple) -> None:
            received_by_host.append((data, addr))
            original(data, addr)

        spied.datagramReceived = spy
        sessions: list = []
        if join:
            host.host_session("room", "game").addBoth(sessions.append)
            run(0.5)
            joiner.list_sessions("game").addBoth(sessions.append)
            run(0.5)
            [session] = sessions[-1]
        outcome: list = []
        if join:
            joiner.join(session, Recorder()).addBoth(outcome.append)
        else:
            joiner.connect("host", Recorder()).addBoth(outcome.append)
        run(12.0)
        if spy_on == "host":
            joiner_addresses = {joiner.public_address, *joiner.local_addresses}
        else:
            joiner_addresses = {host.public_address, *host.local_addresses}
        host_connections = list(host.connections)
        joiner.stop()
        host.stop()
        run(1.0)
        introducer_port.stopListening()
        relay_port.stopListening()
        run(0.1)
        return outcome, received_by_host, events, joiner_addresses, host_connections

    def assertHidden(self, received_by_host, events, joiner_addresses, sender: str = "host2") -> None:
        hosts = {a.host for a in joiner_addresses}
        self.assertEqual(len(hosts), 2)  # a public and a LAN address
        packed = {socket.inet_aton(h) for h in hosts}
        for data, addr in received_by_host:
            # Nothing the host's socket got names the joiner's addresses
            # (the introduction, hellos, offers, reversals; sealed packets
            # are ciphertext), and nothing came straight from them.
            self.assertFalse([p for p in packed if p in data], (wire.peek_type(data), addr))
            self.assertNotIn(addr[0], hosts)
        sent_by_host_to_joiner = [
            e for e in events if e.kind == "send" and e.where == sender and e.dst[0] in hosts
        ]
        self.assertEqual(sent_by_host_to_joiner, [])

    def test_connect_relay_only(self) -> None:
        """
        A relay-only joiner connects over the relay, and the host never
        learns (nor sends to) its public or local address: the
        introduction to the host names neither, the joiner's hellos carry
        no candidates, and it never asks for a reversal.
        """
        config = PeerConfig(handshake=HandshakeConfig(relay_only=True))
        outcome, received, events, addresses, host_connections = self.run_scenario(config)
        [connection] = outcome
        self.assertIsInstance(connection, PeerConnection)
        self.assertEqual(connection.path, Path.RELAYED)
        [host_side] = host_connections
        self.assertEqual(host_side.path, Path.RELAYED)
        self.assertEqual([c for c in host_side.candidates if not is_relayed(c)], [])
        self.assertHidden(received, events, addresses)

    def test_join_relay_only(self) -> None:
        """
        The same for a relay-only player joining a hosted session.
        """
        config = PeerConfig(handshake=HandshakeConfig(relay_only=True))
        outcome, received, events, addresses, host_connections = self.run_scenario(config, join=True)
        [connection] = outcome
        self.assertEqual(connection.path, Path.RELAYED)
        self.assertHidden(received, events, addresses)

    def test_default_joiner_is_not_hidden(self) -> None:
        """
        The check can fail: a joiner with default options is introduced
        with its addresses, and the host reaches it directly.
        """
        outcome, received, events, addresses, host_connections = self.run_scenario(PeerConfig())
        self.assertEqual(outcome[0].path, Path.DIRECT_PUBLIC)
        self.assertRaises(self.failureException, self.assertHidden, received, events, addresses)

    def test_no_relay_still_hidden(self) -> None:
        """
        Without a relay the relay-only joiner cannot connect, but even
        while it waits (past the time a reversal would be asked for) the
        host learns none of its addresses.
        """
        config = PeerConfig(handshake=HandshakeConfig(relay_only=True))
        outcome, received, events, addresses, host_connections = self.run_scenario(config, relay=False)
        self.assertIsInstance(outcome[0].value, P2PError)
        self.assertHidden(received, events, addresses)


    def test_relay_only_host_hidden_from_joiners(self) -> None:
        """
        A relay-only host's session is joined over the relay, and the
        joiner (with default options) never learns nor sends to the
        host's public or local address.
        """
        config = PeerConfig(handshake=HandshakeConfig(relay_only=True))
        outcome, received, events, addresses, host_connections = self.run_scenario(
            PeerConfig(), join=True, host_config=config, spy_on="joiner"
        )
        [connection] = outcome
        self.assertEqual(connection.path, Path.RELAYED)
        self.assertTrue(connection.relay_only)
        self.assertHidden(received, events, addresses, sender="host1")

    def test_default_host_is_not_hidden(self) -> None:
        """
        The check can fail: a default host's addresses reach the joiner.
        """
        outcome, received, events, addresses, host_connections = self.run_scenario(
            PeerConfig(), join=True, spy_on="joiner"
        )
        self.assertRaises(self.failureException, self.assertHidden, received, events, addresses, "host1")
