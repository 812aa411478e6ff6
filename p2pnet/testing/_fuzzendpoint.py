"""
The peer endpoint as a fuzz target (see L{p2pnet.testing._fuzz}).

On the simulated network: an introducer, the target endpoint (bob)
behind a NAT, an honest peer (alice) connected to bob, and a hostile
peer (mallory) also connected to bob, who holds its own connection's
keys: the introduction key (it signs mutated hellos, answers, keepalives
and closes) and, on a secure connection, its session's keys (it seals
mutated frames, so they reach the frame decoder behind the AEAD).
Fuzzed datagrams go straight to bob's C{datagramReceived}, claiming to
come from the introducer (an off-path attacker can spoof it when there
is no secret), from alice, from mallory, or from anywhere.  Bob's socket
refuses what Linux's refuses (port 0, the limited broadcast address).

Connections are secure (Noise handshake in the hellos, then C{SEALED}
datagrams) unless the target is built with C{insecure=True}
(L{PeerConfig.insecure}: tagged C{DATA}, plain keepalives and closes).
"""

from __future__ import annotations

import random

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from twisted.internet.task import Clock

from p2pnet import wire
from p2pnet._peertypes import PeerConfig
from p2pnet._relayclient import CHALLENGE, encode_challenge
from p2pnet._registry import Registry
from p2pnet.address import Address
from p2pnet.endpoint import PeerEndpoint, PeerFactory, PeerProtocol
from p2pnet.introducer import IntroducerProtocol, RelaySettings
from p2pnet.secure import _frames as frames
from p2pnet.secure.identity import Identity
from p2pnet.testing._fuzz import Target
from p2pnet.testing._fuzzgen import Seed, control_seed, data_seed, relay_seed
from p2pnet.testing._fuzztargets import kernel_check, spoofed_sources, stun_seeds
from p2pnet.testing._simnet import Filtering, Network
from p2pnet.testing.scenarios import INTRODUCER, seeded_bytes


class _Recorder(PeerProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes) -> None:
        self.received.append(data)


class _Factory(PeerFactory):
    def __init__(self) -> None:
        self.built: dict[str, _Recorder] = {}

    def build_protocol(self, peer_id: str) -> PeerProtocol:
        protocol = self.built[peer_id] = _Recorder()
        return protocol


class _KernelPort:
    """
    Wraps a simulated port: writes the kernel would refuse raise as they
    would from a real socket.
    """

    def __init__(self, port) -> None:
        self._port = port

    def write(self, data: bytes, addr: tuple) -> None:
        kernel_check(addr)
        self._port.write(data, addr)

    def __getattr__(self, name: str):
        return getattr(self._port, name)


class _Capturing:
    """
    Wraps a simulated port and keeps, one of each message type (the first
    hello carrying a handshake message apart), the datagrams written to
    peers.
    """

    def __init__(self, port) -> None:
        self.port = port
        self.captured: dict[str, bytes] = {}

    def write(self, data: bytes, addr: tuple) -> None:
        if data[:1] == b"\xd1" and data[1] >= wire.MessageType.PROBE:
            name = wire.MessageType(data[1]).name.lower().replace("_", "-") if data[1] in _KINDS else f"{data[1]:#x}"
            if data[1] in (wire.MessageType.HELLO, wire.MessageType.HELLO_ACK) and wire.decode(data).noise is not None:
                name += "-noise"
            self.captured.setdefault(name, data)
        self.port.write(data, addr)

    def __getattr__(self, name: str):
        return getattr(self.port, name)


_KINDS = frozenset(int(t) for t in wire.MessageType)


class EndpointTarget(Target):
    """
    Bob's L{PeerEndpoint}, connected to alice (honest) and mallory
    (hostile), registered with the introducer.

    @param insecure: connect without secure sessions (every endpoint
        with L{PeerConfig.insecure}).
    """

    #: The allocation (and key) a spoofed relay offer names.
    ALLOCATION = b"\x0a" * 8
    ALLOCATION_KEY = b"\x0b" * 16

    def __init__(self, seed: int = 0, insecure: bool = False) -> None:
        self.name = "endpoint-insecure" if insecure else "endpoint"
        self.insecure = insecure
        rng = random.Random(seed)
        self._rng = rng
        self.clock = Clock()
        self.network = Network(self.clock, seed=seed)
        random_bytes = seeded_bytes(random.Random(seed + 1))
        self.introducer = IntroducerProtocol(
            self.clock, Registry(60.0, random_bytes), random_bytes,
            relay=RelaySettings(b"relay secret", Address("192.0.2.20", 3479)),
            identity=X25519PrivateKey.from_private_bytes(rng.randbytes(32)),
        )
        self.network.add_host(INTRODUCER.host).listenUDP(INTRODUCER.port, self.introducer)
        self.factories = {}
        self.endpoints = {}
        for n, name in enumerate(("alice", "bob", "mallory", "carol")):
            nat = self.network.add_nat(f"nat{n}", f"198.51.100.{10 + n}", filtering=Filtering.ENDPOINT_INDEPENDENT)
            host = self.network.add_host(behind=nat)
            self.factories[name] = _Factory()
            self.endpoints[name] = PeerEndpoint(
                host, INTRODUCER, name, factory=self.factories[name], random_bytes=random_bytes,
                config=PeerConfig(insecure=insecure), identity=Identity.from_private_bytes(rng.randbytes(32)),
            )
        self.alice, self.bob, self.mallory = (self.endpoints[n] for n in ("alice", "bob", "mallory"))
        for name in ("alice", "bob", "mallory"):
            self._result(self.endpoints[name].start())
        # What alice and mallory send to bob, as an on-path attacker
        # captures it.
        self.alice.transport = _Capturing(self.alice.transport)
        self.mallory.transport = _Capturing(self.mallory.transport)
        self.to_alice = self._result(self.bob.connect("alice", _Recorder()))
        self.from_mallory = self._result(self.mallory.connect("bob", _Recorder()))
        self.clock.advance(0.1)
        self.factories["alice"].built["bob"].connection.send(b"captured game datagram")
        self.clock.advance(0.1)
        self.captured = self.alice.transport.captured
        self.captured_mallory = self.mallory.transport.captured
        self.alice.transport = self.alice.transport.port
        self.mallory.transport = self.mallory.transport.port
        self.alice_to_bob = self.factories["alice"].built["bob"].connection
        self.at_bob_mallory = self.factories["bob"].built["mallory"].connection
        self.bob.transport = _KernelPort(self.bob.transport)
        self.receive = self.bob.datagramReceived
        self.sources = spoofed_sources(rng, 64)
        self.alice_addr = self.to_alice.address.as_tuple()
        self.mallory_addr = self.at_bob_mallory.address.as_tuple()
        self.seeds = self._seeds(rng)
        self.failures: list[str] = []
        self.mallory_reconnects = 0
        self._reconnected = self.clock.seconds()
        self._n = 0
        self._last = self.clock.seconds()

    def _result(self, d, seconds: float = 30.0):
        box = []
        d.addBoth(box.append)
        for _ in range(int(seconds / 0.01)):
            if box:
                break
            self.clock.advance(0.01)
        if not box:
            raise RuntimeError("no result")
        if hasattr(box[0], "raiseException"):
            box[0].raiseException()
        return box[0]

    # -- legitimate traffic --------------------------------------------------

    def _exchange(self) -> list[str]:
        self._n += 1
        problems = []
        theirs = self.factories["alice"].built["bob"]
        mine = self.to_alice.protocol
        before_theirs, before_mine = len(theirs.received), len(mine.received)
        try:
            self.to_alice.send(b"to alice %d" % self._n)
            theirs.connection.send(b"to bob %d" % self._n)
        except Exception as e:
            return [f"alice <-> bob: {e!r}"]
        self.clock.advance(0.05)
        if theirs.received[before_theirs:] != [b"to alice %d" % self._n]:
            problems.append(f"bob -> alice lost: {theirs.received[before_theirs:]}")
        if mine.received[before_mine:] != [b"to bob %d" % self._n]:
            problems.append(f"alice -> bob lost: {mine.received[before_mine:]}")
        return problems

    def tick(self) -> None:
        now = self.clock.seconds()
        if now - self._last >= 5.0:
            self._last = now
            self.failures.extend(f"t={now:.0f} s: {p}" for p in self._exchange())
            if not self.insecure and (self.from_mallory.ended or self.at_bob_mallory.ended):
                if now - self._reconnected >= 20.0:
                    self._reconnected = now
                    self._reconnect_mallory()

    def _reconnect_mallory(self) -> None:
        """
        Mallory connects again (at most every 20 s) when a mutated (sealed)
        close or a timeout ended its connection, so that its sealed seeds keep reaching bob's
        frame decoder (they are sealed with its current session's keys).
        """
        try:
            self.from_mallory = self._result(self.mallory.connect("bob", _Recorder()))
        except Exception:
            return
        self.clock.advance(0.05)
        self.at_bob_mallory = self.factories["bob"].built["mallory"].connection
        self.mallory_reconnects += 1

    def check(self) -> list[str]:
        problems = list(self.failures[:5])
        problems += self._exchange()
        if self.to_alice.ended or self.to_alice.address is None or self.to_alice.address.as_tuple() != self.alice_addr:
            problems.append(f"bob's connection to alice moved or ended: {self.to_alice!r}")
        if self.introducer.registry.lookup("bob", self.clock.seconds()) is None:
            problems.append("bob's registration expired")
        self.clock.advance(20.0)
        if self.bob._introducer_lost:
            problems.append("bob lost the introducer")
        carol = self.endpoints["carol"]
        try:
            self._result(carol.start())
            connection = self._result(carol.connect("bob", _Recorder()))
            connection.send(b"hi bob")
            self.clock.advance(0.1)
            if self.factories["bob"].built["carol"].received != [b"hi bob"]:
                problems.append("carol's datagram did not reach bob")
        except Exception as e:
            problems.append(f"carol could not connect to bob: {e!r}")
        return problems

    def own_log(self, event: dict) -> bool:
        """
        Bob's lines: his endpoint's and his connections' (not alice's,
        mallory's, carol's or the introducer's).
        """
        source = event.get("log_source")
        return source is self.bob or getattr(source, "_endpoint", None) is self.bob

    def tables(self) -> dict[str, int]:
        bob = self.bob
        return {
            "connections": len(bob._by_intro),
            "conn-ids": len(bob._by_conn_id),
            "awaiting": len(bob._awaiting),
            "allocations": len(bob._by_allocation),
            "timers": len(self.clock.calls),
        }

    # -- seeds -----------------------------------------------------------------

    def _seeds(self, rng: random.Random) -> list[Seed]:
        local = (Address("10.0.0.5", 5000), Address("192.168.1.5", 5000))
        public = Address("198.51.100.99", 4000)
        alice, mallory = self.alice_to_bob, self.at_bob_mallory
        txid = lambda: rng.randbytes(8)  # noqa: E731
        from_introducer = [
            ("introduction", wire.Introduction(txid(), rng.randbytes(8), "zed", public, local, rng.randbytes(16), 0,
                                               None, 0x11, 30, rng.randbytes(32))),
            ("introduction-initiator", wire.Introduction(txid(), rng.randbytes(8), "zed", public, (), rng.randbytes(16),
                                                         wire.FLAG_INITIATOR, rng.randbytes(8), None, None,
                                                         rng.randbytes(32))),
            ("introduction-keyless", wire.Introduction(txid(), rng.randbytes(8), "zed", public, local, rng.randbytes(16))),
            ("introduction-alice", wire.Introduction(txid(), alice.intro_id, "alice", public, local, rng.randbytes(16), 0)),
            ("registered", wire.Registered(txid(), public, 60, rng.randbytes(8))),
            ("registered-key", wire.Registered(txid(), public, 60, rng.randbytes(8), rng.randbytes(32))),
            ("challenge", wire.Challenge(txid(), rng.randbytes(wire.CHALLENGE_SIZE), public, rng.randbytes(32))),
            ("heartbeat-ack", wire.HeartbeatAck(txid(), public, 60)),
            ("error", wire.Error(txid(), 3, "no peer")),
            ("session-list", wire.SessionList(txid(), (wire.SessionInfo(rng.randbytes(8), "g", "game", "zed", 1, 8),), None, 1)),
            ("relay-offer", wire.RelayOffer(txid(), alice.intro_id, rng.randbytes(8), Address("0.0.0.0", 3479),
                                            rng.randbytes(16), 0)),
            ("relay-offer-known", wire.RelayOffer(txid(), alice.intro_id, self.ALLOCATION, Address("0.0.0.0", 3479),
                                                  self.ALLOCATION_KEY, 0)),
            ("candidate", wire.Candidate(txid(), alice.intro_id, "alice", public, rng.randbytes(8))),
            ("reverse", wire.Reverse(txid(), "alice", alice.intro_id, public)),
        ]
        seeds = [control_seed(name, message).sent_from(INTRODUCER.as_tuple()) for name, message in from_introducer]
        first = len(seeds)
        key = mallory.key
        for who, captured in (("alice", self.captured), ("mallory", self.captured_mallory)):
            for kind, datagram in sorted(captured.items()):
                name = f"alice-{kind}" if who == "alice" else f"mallory-captured-{kind}"
                if datagram[1] == wire.MessageType.DATA:
                    seeds.append(Seed(name, datagram, "opaque", (), ((2, 2),)))
                elif datagram[1] == wire.MessageType.SEALED:
                    # Connection id, key epoch, packet number.
                    seeds.append(Seed(name, datagram, "opaque", (), ((2, 2), (4, 4), (8, 4))))
                else:
                    plain = control_seed(name, wire.decode(datagram), key if who == "mallory" else None)
                    seeds.append(plain if who == "mallory" else
                                 Seed(name, datagram, plain.layout, plain.fields, plain.ints))
        forged = [
            ("hello", wire.Hello(txid(), mallory.intro_id, "mallory", 77, local + (public,), 5, rng.randbytes(96))),
            ("hello-ack", wire.HelloAck(txid(), mallory.intro_id, "mallory", 77, public, rng.randbytes(48))),
            ("keepalive", wire.Keepalive(txid(), mallory.intro_id, 9)),
            ("close", wire.Close(txid(), mallory.intro_id)),
            ("probe", wire.Probe(txid(), mallory.intro_id)),
        ]
        seeds.extend(control_seed(f"mallory-{name}", message, key) for name, message in forged)
        if self.insecure:
            seeds.append(data_seed("mallory-data", mallory.conn_id, b"game datagram", key))
        else:
            seeds.extend(self._sealed_seeds(rng))
        seeds[first:] = [s.sent_from(self.alice_addr, self.mallory_addr) for s in seeds[first:]]
        seeds.append(relay_seed("relay-forward", rng.randbytes(8), 1, b"\xd1\x40\x00\x01x", rng.randbytes(16), True,
                                wire.MessageType.RELAY_FORWARD))
        # Relayed frames under the allocation the spoofed offer names (its
        # key is the attacker's): captured and forged packets inside, and
        # the relay's binding challenges (which bob answers to the relay).
        captured = [s.datagram() for s in seeds if s.name.startswith("alice-")]
        forged = [s.datagram() for s in seeds if s.name.startswith("mallory-")]
        for inner in captured + forged:
            seeds.append(relay_seed("relayed-inner", self.ALLOCATION, 1, inner, self.ALLOCATION_KEY, True,
                                    wire.MessageType.RELAY_FORWARD))
        challenge = encode_challenge(self.ALLOCATION, 0, rng.randbytes(16), self.ALLOCATION_KEY)
        seeds.append(Seed("relay-challenge", challenge, "opaque", (), ((2, 8), (10, 1))))
        seeds.append(relay_seed("relay-challenge", self.ALLOCATION, CHALLENGE, rng.randbytes(16), self.ALLOCATION_KEY,
                                True, wire.MessageType.RELAY_FORWARD))
        seeds.extend(s for s in stun_seeds(rng) if s.name in ("stun-binding", "turn-channel-data"))
        return seeds

    def _sealed_seeds(self, rng: random.Random) -> list[Seed]:
        """
        Frames mallory seals with its own session's keys, sealed again
        after mutation: they get past the AEAD into the frame decoder.
        """
        def seal(plaintext: bytes) -> bytes:
            connection = self.from_mallory
            session = connection._path.session
            if not session.ready or connection.remote_conn_id is None:
                return plaintext
            return session.seal(connection.remote_conn_id, plaintext, self.clock.seconds())

        plaintexts = [
            ("datagram", frames.encode_datagram(b"mallory's game datagram")),
            ("ping", frames.encode_frames([frames.Ping()])),
            ("path-challenge", frames.encode_frames([frames.PathChallenge(rng.randbytes(8))])),
            ("path-response", frames.encode_frames([frames.PathResponse(rng.randbytes(8))])),
            ("close", frames.encode_frames([frames.Close(1, "bye")])),
            ("coalesced", frames.encode_frames([frames.Datagram(b"one"), frames.Datagram(b"two"), frames.Ping(),
                                                 frames.Padding(9)])),
            ("channel", b"\x10\x00\x01\x00\x03abc" + b"\x3f\xff"),
        ]
        return [
            Seed(f"mallory-sealed-{name}", plaintext, "opaque", (), ((0, 1), (1, 2)) if len(plaintext) > 2 else (),
                 seal)
            for name, plaintext in plaintexts
        ]

    def close(self) -> None:
        for endpoint in self.endpoints.values():
            endpoint.stop()
        self.clock.advance(1.0)
