"""
The receivers the fuzz harness (L{p2pnet.testing._fuzz}) attacks, each
with legitimate state set up before the fuzzing and checked after it.

  - L{IntroducerTarget}: an L{IntroducerProtocol} as the tap builds it
    (rate limiter, STUN, a relay to hand out), open or with a secret.
  - L{RelayTarget}: a L{RelayProtocol} as the relay tap builds it.
  - L{StunTarget}: an RFC 5780 STUN server on four sockets.
  - L{EndpointTarget}: a L{PeerEndpoint} on the simulated network with an
    established connection to an honest peer and one to a hostile peer.

Every transport refuses what the kernel refuses (port 0, the limited
broadcast address), so a handler that writes wherever a datagram says
fails here as it would on a real socket.
"""

from __future__ import annotations

import errno
import random

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from p2pnet import stun, wire
from p2pnet._ratelimit import RateLimiter, SourceLimiter
from p2pnet._registry import Registry
from p2pnet._stunserver import SOCKET_NAMES, StunResponder, StunServer, StunServerProtocol
from p2pnet.address import Address
from p2pnet.introducer import IntroducerProtocol, RelaySettings
from p2pnet._relayclient import ANSWER, answer_challenge
from p2pnet._relayprobe import STATUS_PROBE, status_key
from p2pnet.relay import RelayProtocol
from p2pnet.testing._fuzz import Target
from p2pnet.testing._fuzzgen import (
    Seed,
    control_seed,
    data_seed,
    relay_seed,
    stun_seed,
)

SECRET = b"fuzz introducer secret"
RELAY_SECRET = b"fuzz relay secret"
HOST = ("198.51.100.7", 4000)
GUEST = ("198.51.100.8", 4000)


def kernel_check(addr: tuple) -> None:
    """
    Raise what Linux's C{sendto} raises for C{addr}, if anything: EINVAL
    for port 0, EACCES for the limited broadcast address.
    """
    if addr[1] == 0:
        raise OSError(errno.EINVAL, "Invalid argument")
    if addr[0] == "255.255.255.255":
        raise PermissionError(errno.EACCES, "Permission denied")


class KernelTransport:
    """
    A UDP transport double: counts what is written, keeps what goes to
    C{watched} addresses, and refuses what the kernel refuses.
    """

    def __init__(self, host: str = "192.0.2.10", port: int = 3478, watched=()) -> None:
        self._host = IPv4Address("UDP", host, port)
        self.watched = {addr: [] for addr in watched}
        self.packets = 0
        self.bytes = 0

    def write(self, data: bytes, addr: tuple) -> None:
        kernel_check(addr)
        self.packets += 1
        self.bytes += len(data)
        kept = self.watched.get(addr)
        if kept is not None:
            kept.append(data)

    def getHost(self) -> IPv4Address:
        return self._host

    def take(self, addr: tuple) -> list[bytes]:
        kept = self.watched[addr]
        result = kept[:]
        del kept[:]
        return result


def spoofed_sources(rng: random.Random, count: int = 512) -> list[tuple]:
    """
    Source addresses for fuzzed datagrams: many hosts and ports, plus a
    few a socket cannot answer (port 0) or that name special addresses.
    """
    sources = [
        (f"203.0.113.{rng.randrange(1, 255)}", rng.randrange(1024, 65536)) for _ in range(count // 2)
    ] + [
        (f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}", rng.randrange(1, 65536))
        for _ in range(count // 2)
    ]
    # A spoofed source with port 0 reaches a socket (the kernel drops
    # broadcast and unspecified sources as martians).
    sources += [("203.0.113.99", 0), ("10.9.9.9", 0)]
    return sources


def _txid(rng: random.Random) -> bytes:
    return rng.randbytes(wire.TXID_SIZE)


def stun_seeds(rng: random.Random) -> list[Seed]:
    """
    STUN and TURN datagrams: Binding requests of every shape a client or a
    NAT checker sends, TURN requests and indications, ChannelData, and a
    response (which servers must drop).
    """
    tid = lambda: rng.randbytes(12)  # noqa: E731
    raw = stun.RawAttribute
    peer = Address("198.51.100.50", 6000)
    from p2pnet.turn import _channel_number, _lifetime, _xor_peer, encode_channel_data

    messages = [
        ("stun-binding", stun.StunMessage.request(transaction_id=tid()), False),
        ("stun-binding-fp", stun.StunMessage.request(transaction_id=tid()), True),
        ("stun-binding-software", stun.StunMessage.request(attributes=[stun.Software("fuzz client")], transaction_id=tid()), True),
        ("stun-change-both", stun.StunMessage.request(attributes=[stun.ChangeRequest(True, True)], transaction_id=tid()), True),
        ("stun-change-port", stun.StunMessage.request(attributes=[stun.ChangeRequest(False, True)], transaction_id=tid()), False),
        ("stun-response-port", stun.StunMessage.request(attributes=[stun.ResponsePort(5001)], transaction_id=tid()), True),
        ("stun-padding", stun.StunMessage.request(attributes=[stun.Padding(500)], transaction_id=tid()), False),
        ("stun-username", stun.StunMessage.request(attributes=[stun.Username("alice:bob"), raw(0x0024, b"\x6e\x00\x01\xff"), raw(0x0025, b"")], transaction_id=tid()), True),
        ("stun-unknown-attr", stun.StunMessage.request(attributes=[raw(0x0030, b"abcd")], transaction_id=tid()), True),
        ("stun-xor-mapped", stun.StunMessage.request(attributes=[stun.XorMappedAddress(peer)], transaction_id=tid()), True),
        ("stun-success", stun.StunMessage(1, stun.MessageClass.SUCCESS, tid(), (stun.XorMappedAddress(peer),)), True),
        ("turn-allocate", stun.StunMessage.request(stun.Method.ALLOCATE, [raw(0x0019, b"\x11\x00\x00\x00"), _lifetime(600)], tid()), True),
        ("turn-refresh", stun.StunMessage.request(stun.Method.REFRESH, [_lifetime(0)], tid()), True),
    ]
    t = tid()
    messages.append(("turn-permission", stun.StunMessage.request(stun.Method.CREATE_PERMISSION, [_xor_peer(peer, t)], t), True))
    t = tid()
    messages.append(("turn-channel-bind", stun.StunMessage.request(stun.Method.CHANNEL_BIND, [_channel_number(0x4001), _xor_peer(peer, t)], t), True))
    t = tid()
    messages.append(("turn-send", stun.StunMessage(stun.Method.SEND, stun.MessageClass.INDICATION, t, (_xor_peer(peer, t), raw(0x0013, b"game data"))), False))
    seeds = []
    for name, message, fingerprint in messages:
        seeds.append(stun_seed(name, message, fingerprint))
        seeds.append(stun_seed(name, message, fingerprint, refit=True))
    integrity = stun.encode(
        stun.StunMessage.request(attributes=[stun.Username("user")], transaction_id=tid()),
        integrity_key=stun.short_term_key("password"),
    )
    seeds.append(Seed("stun-integrity", integrity, "stun", ()))
    seeds.append(Seed("turn-channel-data", encode_channel_data(0x4001, b"channel payload"), "opaque", (), ((0, 2), (2, 2))))
    return seeds


class IntroducerTarget(Target):
    """
    An introducer as the tap builds it; a host and a guest registered and
    confirmed before the fuzzing, the host hosting a session; a hostile
    peer (mallory) registered too, whose cookie the seeds carry so that
    its mutated requests get past authentication.

    @param secret: with a secret, seeds are signed with it (a holder of
        the shared secret), and some are unsigned.
    """

    def __init__(self, seed: int = 0, secret: bool = False) -> None:
        self.name = "introducer+secret" if secret else "introducer"
        rng = random.Random(seed)
        random_bytes = lambda n: rng.randbytes(n)  # noqa: E731
        self.clock = Clock()
        self.key = SECRET if secret else None
        self.sources = spoofed_sources(rng)
        self.mallory = self.sources[0]
        self.transport = KernelTransport(watched=(HOST, GUEST, self.mallory, self.sources[1]))
        self.protocol = IntroducerProtocol(
            self.clock,
            Registry(60.0, random_bytes),
            random_bytes,
            secret=self.key,
            rate_limiter=RateLimiter(50.0, 100.0),
            stun_responder=StunResponder(),
            relay=RelaySettings(RELAY_SECRET, Address("192.0.2.20", 3479)),
            stats_interval=60.0,
            identity=X25519PrivateKey.from_private_bytes(rng.randbytes(32)),
        )
        self.protocol.transport = self.transport
        self.protocol.startProtocol()
        self.receive = self.protocol.datagramReceived
        self._rng = rng
        self.cookies = {}
        # The guest registers with a key (its name is bound to it); the
        # host and mallory without.
        self.guest_key = X25519PrivateKey.from_private_bytes(rng.randbytes(32)).public_key().public_bytes_raw()
        for name, addr in (("host", HOST), ("guest", GUEST), ("mallory", self.mallory)):
            self.cookies[name] = self._register(name, addr)
            self._heartbeat(name, addr)
        self.session_id = self._host_session()
        self.challenge = self._challenge_for_mallory(self.sources[1])
        self.seeds = self._seeds(rng)
        self.failures: list[str] = []
        self._last_beat = self.clock.seconds()

    # -- legitimate traffic ------------------------------------------------

    def _request(self, message: wire.Message, addr: tuple) -> list:
        if self.key is None:
            message = wire.padded(message)
        self.transport.take(addr)
        self.protocol.datagramReceived(wire.encode(message, self.key), addr)
        return [wire.decode(raw) for raw in self.transport.take(addr)]

    def _register(self, name: str, addr: tuple) -> bytes:
        key = self.guest_key if name == "guest" else None
        answers = self._request(wire.Register(_txid(self._rng), name, (Address("10.0.0.2", addr[1]),), peer_key=key), addr)
        registered = [a for a in answers if isinstance(a, wire.Registered)]
        if not registered:
            raise RuntimeError(f"{name} could not register: {answers}")
        return registered[0].cookie

    def _challenge_for_mallory(self, addr: tuple) -> bytes:
        """
        Mallory, with its cookie, asks to move its registration to
        C{addr}: the challenge the introducer sends there (its proof is a
        seed).
        """
        register = wire.padded(wire.Register(_txid(self._rng), "mallory", (), self.cookies["mallory"]))
        [challenge] = [a for a in self._request(register, addr) if isinstance(a, wire.Challenge)]
        return challenge.challenge

    def _heartbeat(self, name: str, addr: tuple) -> bool:
        answers = self._request(wire.Heartbeat(_txid(self._rng), name, self.cookies[name]), addr)
        return any(isinstance(a, wire.HeartbeatAck) and a.public == Address(*addr) for a in answers)

    def _host_session(self) -> bytes:
        answers = self._request(
            wire.HostSession(_txid(self._rng), "host", self.cookies["host"], "legit game", "legit", 8,
                             wire.FLAG_MESH, (("map", "dust"),)),
            HOST,
        )
        return [a for a in answers if isinstance(a, wire.SessionHosted)][0].session_id

    def tick(self) -> None:
        now = self.clock.seconds()
        if now - self._last_beat >= 10.0:
            self._last_beat = now
            for name, addr in (("host", HOST), ("guest", GUEST)):
                if not self._heartbeat(name, addr):
                    self.failures.append(f"{name}'s heartbeat at t={now:.0f} s was not answered")
            self._keep_mallory(now)

    def _keep_mallory(self, now: float) -> None:
        """
        Mallory re-registers when its mutated requests unregistered it or
        let it expire, with the cookie its seeds carry, so they keep
        getting past authentication.
        """
        registration = self.protocol.registry.lookup("mallory", now)
        if registration is None:
            self._register("mallory", self.mallory)
            registration = self.protocol.registry.lookup("mallory", now)
            registration.cookie = self.cookies["mallory"]
        self._heartbeat("mallory", self.mallory)

    def check(self) -> list[str]:
        problems = list(self.failures[:5])
        if len(self.failures) > 5:
            problems.append(f"... {len(self.failures) - 5} more unanswered heartbeats")
        for name, addr in (("host", HOST), ("guest", GUEST)):
            if not self._heartbeat(name, addr):
                problems.append(f"{name}'s heartbeat is not answered")
        answers = self._request(wire.ListSessions(_txid(self._rng), "legit"), GUEST)
        listed = [s for a in answers if isinstance(a, wire.SessionList) for s in a.sessions]
        if not any(s.session_id == self.session_id and s.host == "host" for s in listed):
            problems.append(f"the host's session is not listed: {answers}")
        for how in ("join", "connect"):
            if how == "join":
                message = wire.Introduce(_txid(self._rng), "guest", self.cookies["guest"], session_id=self.session_id)
            else:
                message = wire.Introduce(_txid(self._rng), "guest", self.cookies["guest"], target="host")
            self.transport.take(HOST)
            answers = self._request(message, GUEST)
            to_host = [wire.decode(raw) for raw in self.transport.take(HOST)]
            if not any(isinstance(a, wire.Introduction) and a.peer_id == "host" for a in answers):
                problems.append(f"the guest's {how} got no introduction to the host: {answers}")
            if not any(isinstance(a, wire.Introduction) and a.peer_id == "guest" for a in to_host):
                problems.append(f"the host got no introduction for the guest's {how}")
            for a in to_host:
                if isinstance(a, wire.Introduction):
                    self.protocol.datagramReceived(wire.encode(wire.IntroAck(_txid(self._rng), a.intro_id), self.key), HOST)
        request = stun.encode(stun.StunMessage.request(transaction_id=bytes(12)))
        self.transport.take(GUEST)
        self.protocol.datagramReceived(request, GUEST)
        answers = self.transport.take(GUEST)
        if len(answers) != 1 or stun.decode(answers[0]).get(stun.XorMappedAddress).address != Address(*GUEST):
            problems.append(f"a STUN Binding request is not answered right: {answers}")
        return problems

    def tables(self) -> dict[str, int]:
        p = self.protocol
        return {
            "registrations": len(p.registry),
            "sessions": p.registry.session_count,
            "pushes": len(p._pusher),
            "recent": len(p._recent),
            "introductions": len(p.introductions),
            "challenges": p.registry.challenge_count,
            "rate-limiter": len(p._rate_limiter),
            "stun-sources": len(p.stun_server._sources),
            "timers": len(self.clock.calls),
        }

    def close(self) -> None:
        self.protocol.stopProtocol()

    # -- seeds ---------------------------------------------------------------

    def _seeds(self, rng: random.Random) -> list[Seed]:
        cookie = self.cookies["mallory"]
        local = (Address("10.0.0.5", 5000), Address("192.168.1.5", 5000))
        fuzz_id = lambda: f"fuzz-{rng.randrange(1 << 30):x}"  # noqa: E731
        messages = [
            ("register", wire.padded(wire.Register(_txid(rng), fuzz_id(), local, None, 0x12))),
            ("register-cookie", wire.padded(wire.Register(_txid(rng), "mallory", local, cookie))),
            ("register-squat", wire.padded(wire.Register(_txid(rng), "host", ()))),
            ("register-key", wire.padded(wire.Register(_txid(rng), fuzz_id(), local, None, 0x12, None, rng.randbytes(32)))),
            # The guest's name and key, without its cookie: a reclaim, answered
            # with a challenge to the (spoofed) source.
            ("register-reclaim", wire.padded(wire.Register(_txid(rng), "guest", local, None, None, None, self.guest_key))),
            ("proof", wire.padded(wire.Proof(_txid(rng), "mallory", self.challenge,
                                             wire.proof_tag(cookie, self.challenge, "mallory", Address(*self.sources[1]))))),
            ("challenge", wire.Challenge(_txid(rng), rng.randbytes(wire.CHALLENGE_SIZE), Address(*GUEST), rng.randbytes(32))),
            ("heartbeat", wire.padded(wire.Heartbeat(_txid(rng), "mallory", cookie))),
            ("heartbeat-host", wire.padded(wire.Heartbeat(_txid(rng), "host", bytes(8)))),
            ("unregister", wire.Unregister(_txid(rng), "mallory", cookie)),
            ("unregister-host", wire.Unregister(_txid(rng), "host", bytes(8))),
            ("host-session", wire.padded(wire.HostSession(_txid(rng), "mallory", cookie, "fuzz game", "fuzz", 16,
                                                         wire.FLAG_MESH, (("k", "v"), ("mode", "ctf"))))),
            ("unhost", wire.Unhost(_txid(rng), "mallory", cookie, self.session_id)),
            ("list", wire.padded(wire.ListSessions(_txid(rng), None))),
            ("list-game", wire.padded(wire.ListSessions(_txid(rng), "legit", b"\0" * 7 + b"\1", (("map", "dust"),), "K", wire.FLAG_OPEN, 5))),
            ("introduce", wire.padded(wire.Introduce(_txid(rng), "mallory", cookie, target="host"))),
            ("join", wire.padded(wire.Introduce(_txid(rng), "mallory", cookie, session_id=self.session_id))),
            ("reverse", wire.ReverseRequest(_txid(rng), "mallory", cookie, "host", rng.randbytes(8))),
            ("intro-ack", wire.IntroAck(_txid(rng), rng.randbytes(8))),
            ("relay-request", wire.padded(wire.RelayRequest(_txid(rng), "mallory", cookie, "host", rng.randbytes(8)))),
            ("candidate-offer", wire.padded(wire.CandidateOffer(_txid(rng), "mallory", cookie, "guest", rng.randbytes(8),
                                                               Address("198.51.100.99", 7000)))),
            ("registered", wire.Registered(_txid(rng), Address("203.0.113.5", 4000), 60, bytes(8))),
            ("introduction", wire.Introduction(_txid(rng), rng.randbytes(8), "x", Address("203.0.113.5", 4000), local,
                                               rng.randbytes(16), 2, None, 0x11, 20, rng.randbytes(32))),
            ("hello", wire.Hello(_txid(rng), rng.randbytes(8), "mallory", 7, local, 1, rng.randbytes(48))),
        ]
        seeds = []
        for name, message in messages:
            if self.key is None:
                seeds.append(control_seed(name, message))
            else:
                seeds.append(control_seed(name, message, self.key))
                if name in ("register", "list", "introduce", "heartbeat"):
                    seeds.append(control_seed(name, message))
        seeds = [s.sent_from(self.sources[1]) if s.name.startswith("proof") else s for s in seeds]
        seeds.append(data_seed("data", 7, b"payload", None))
        seeds.extend(s for s in stun_seeds(rng) if s.name.startswith("stun-binding") or "refit" in s.name)
        return seeds


class RelayTarget(Target):
    """
    A relay as the tap builds it; an allocation between two legitimate
    members bound before the fuzzing; a hostile member holding the key
    of its own allocation (its seeds are re-tagged after mutation).
    """

    name = "relay"

    def __init__(self, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.clock = Clock()
        self.sources = spoofed_sources(rng)
        self.transport = KernelTransport("192.0.2.20", 3479, watched=(HOST, GUEST))
        self.protocol = RelayProtocol(self.clock, RELAY_SECRET, source_limiter=SourceLimiter(5000.0, 5_000_000.0))
        self.protocol.transport = self.transport
        self.protocol.startProtocol()
        self.receive = self.protocol.datagramReceived
        self.allocation = rng.randbytes(8)
        self.key = wire.relay_key(RELAY_SECRET, self.allocation)
        self.failures: list[str] = []
        self._n = 0
        # Each member's first frame draws the relay's challenge; the answer
        # binds its side.
        for side, addr in ((0, HOST), (1, GUEST)):
            self._bind(self.allocation, side, addr, self.key)
        mine = rng.randbytes(8)
        key = wire.relay_key(RELAY_SECRET, mine)
        for side in (0, 1):
            self._bind(mine, side, self.sources[side], key)
        self.mine = mine
        inners = [
            wire.encode_data(0x1234, b"game state" * 5, b"k" * 16),
            wire.encode(wire.Hello(_txid(rng), rng.randbytes(8), "mallory", 9, (Address("10.0.0.5", 5000),)), b"k" * 16),
            wire.encode(wire.Keepalive(_txid(rng), rng.randbytes(8), 3), b"k" * 16),
            b"\xd1\x41" + rng.randbytes(40),
            b"",
        ]
        self.seeds = []
        for inner in inners:
            for side in (0, 1):
                self.seeds.append(relay_seed(f"relayed-{side}", self.allocation, side, inner, self.key, False))
                self.seeds.append(relay_seed(f"own-relayed-{side}", mine, side, inner, key, True).sent_from(self.sources[side]))
        # Answers to challenges: a captured one (without the key) for the
        # legitimate allocation, and the hostile member's own, re-tagged
        # after mutation (its nonce is stale by then, or for another address).
        for side, addr in ((0, HOST), (1, GUEST)):
            self.seeds.append(Seed(f"answer-{side}", self._answers[side], "opaque", (), ((2, 8), (10, 1), (11, 8))))
        for side in (0, 1):
            nonce = self._answers[2 + side][11:27]
            self.seeds.append(relay_seed(f"own-answer-{side}", mine, ANSWER | side, nonce, key, True)
                              .sent_from(self.sources[side]))
            self.seeds.append(relay_seed(f"own-frame-{side}", mine, side, b"\xd1\x41" + nonce + bytes(24), key, True)
                              .sent_from(self.sources[side]))
        self.seeds.append(relay_seed("forward", mine, 0, inners[0], key, True, wire.MessageType.RELAY_FORWARD))
        # Status probes (p2pnet/_relayprobe.py): a valid one, re-tagged
        # after mutation, and one under a wrong secret.
        nonce = rng.randbytes(8)
        self.seeds.append(relay_seed("status-probe", nonce, STATUS_PROBE, bytes(4), status_key(RELAY_SECRET, nonce), True))
        self.seeds.append(relay_seed("status-probe-forged", nonce, STATUS_PROBE, bytes(4), status_key(b"x", nonce), False))
        self.seeds.append(control_seed("relay-request", wire.RelayRequest(_txid(rng), "m", bytes(8), "h", mine)))
        self.seeds.append(data_seed("data", 7, b"payload", None))
        self.seeds.extend(s for s in stun_seeds(rng) if s.name.startswith("turn"))
        self._last = self.clock.seconds()

    def _bind(self, allocation: bytes, side: int, addr: tuple, key: bytes) -> None:
        """
        Bind C{side} of C{allocation} at C{addr} as a member does: a frame
        large enough to be challenged, then the answer to the challenge.
        """
        self.transport.watched.setdefault(addr, [])
        frame = wire.encode_relayed(allocation, side, b"\xd1\x41" + bytes(40), key)
        self.transport.take(addr)
        self.protocol.datagramReceived(frame, addr)
        [challenge] = self.transport.take(addr)
        answer = answer_challenge(challenge, allocation, side, key)
        self.protocol.datagramReceived(answer, addr)
        self._answers = getattr(self, "_answers", []) + [answer]
        entry = self.protocol.allocations.get(allocation)
        if entry is None or entry.members[side] != addr:
            raise RuntimeError(f"side {side} of {allocation.hex()} did not bind at {addr}")

    def _send(self, side: int, addr: tuple) -> bool:
        self._n += 1
        inner = wire.encode_data(1, self._n.to_bytes(4, "big"), b"k" * 16)
        frame = wire.encode_relayed(self.allocation, side, inner, self.key)
        other = GUEST if side == 0 else HOST
        self.transport.take(other)
        self.protocol.datagramReceived(frame, addr)
        got = self.transport.take(other)
        return got == [bytes((wire.MAGIC, wire.MessageType.RELAY_FORWARD)) + frame[2:]]

    def tick(self) -> None:
        now = self.clock.seconds()
        if now - self._last >= 5.0:
            self._last = now
            for side, addr in ((0, HOST), (1, GUEST)):
                if not self._send(side, addr):
                    self.failures.append(f"side {side}'s frame at t={now:.0f} s was not forwarded")

    def check(self) -> list[str]:
        problems = list(self.failures[:5])
        for side, addr in ((0, HOST), (1, GUEST)):
            if not self._send(side, addr):
                problems.append(f"side {side}'s frame is not forwarded to the other member")
        entry = self.protocol.allocations.get(self.allocation)
        if entry is None or entry.members != [HOST, GUEST]:
            problems.append(f"the legitimate allocation's members moved: {entry and entry.members}")
        return problems

    def tables(self) -> dict[str, int]:
        return {
            "allocations": len(self.protocol.allocations),
            "source-limiter": len(self.protocol.source_limiter),
            "timers": len(self.clock.calls),
        }

    def close(self) -> None:
        self.protocol.stopProtocol()


class StunTarget(Target):
    """
    An RFC 5780 STUN server: four sockets (primary, alternate port,
    alternate IP, both), each a L{StunServerProtocol} on a kernel-like
    transport; datagrams arrive on any of them.
    """

    name = "stun"

    def __init__(self, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.clock = Clock()
        self.sources = spoofed_sources(rng)
        primary, other = Address("192.0.2.10", 3478), Address("192.0.2.11", 3479)
        self.server = StunServer(StunResponder("p2pnet", other, primary_address=primary))
        self.sockets = []
        for (alt_ip, alt_port), name in SOCKET_NAMES.items():
            local = Address(other.host if alt_ip else primary.host, other.port if alt_port else primary.port)
            protocol = StunServerProtocol(self.server, name, local)
            protocol.transport = KernelTransport(local.host, local.port, watched=(GUEST,))
            self.server.protocols[name] = protocol
            self.sockets.append(protocol)
        self.seeds = stun_seeds(rng)
        self._rng = rng

    def receive(self, data: bytes, addr: tuple) -> None:
        self.sockets[len(data) & 3].datagramReceived(data, addr)

    def check(self) -> list[str]:
        problems = []
        for protocol in self.sockets:
            for change, answered_on in (((False, False), protocol.name), ((True, True), None)):
                request = stun.StunMessage.request(
                    attributes=[stun.ChangeRequest(*change)], transaction_id=self._rng.randbytes(12)
                )
                protocol.datagramReceived(stun.encode(request), GUEST)
                answers = [(s.name, raw) for s in self.sockets for raw in s.transport.take(GUEST)]
                if len(answers) != 1:
                    problems.append(f"{protocol.name}: {len(answers)} answers to a Binding request")
                    continue
                via, raw = answers[0]
                answer = stun.decode(raw)
                if answer.transaction_id != request.transaction_id or answer.get(stun.XorMappedAddress).address != Address(*GUEST):
                    problems.append(f"{protocol.name}: wrong answer {answer}")
                if answered_on is not None and via != answered_on:
                    problems.append(f"{protocol.name}: answered from {via}")
                if answered_on is None and via == protocol.name:
                    problems.append(f"{protocol.name}: CHANGE-REQUEST answered from the same socket")
        return problems

    def tables(self) -> dict[str, int]:
        return {"sources": len(self.server._sources), "templates": len(self.server.responder._templates)}
