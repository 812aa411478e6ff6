"""
The TURN client as a fuzz target (see L{p2pnet.testing._fuzz}).

A L{TurnClient} holds an allocation, a permission and a channel on a small
in-process TURN server (L{_MiniTurnServer}: just enough of RFC 8656 to
answer the client), which keeps answering its refreshes during the fuzzing.
Fuzzed datagrams claim the server's address most of the time: mutated
copies of the server's real answers (the 401 challenge, the Allocate,
Refresh, CreatePermission and ChannelBind successes), Data indications and
ChannelData; some re-signed with the long-term key (a server that holds
it), the rest not.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import struct
import zlib

from twisted.internet.task import Clock

from p2pnet import stun
from p2pnet.address import Address
from p2pnet.testing._fuzz import Target
from p2pnet.testing._fuzzgen import STUN, Seed, stun_fields
from p2pnet.testing._fuzztargets import kernel_check, spoofed_sources
from p2pnet.turn import TurnClient, encode_channel_data

SERVER = Address("192.0.2.30", 3478)
PEER = Address("198.51.100.40", 7000)
RELAYED = Address("192.0.2.30", 50000)
MAPPED = Address("203.0.113.200", 40000)
USER, PASSWORD, REALM, NONCE = "fuzz", "fuzz password", "fuzz.example", "nonce-1"
KEY = stun.long_term_key(USER, REALM, PASSWORD)

_XOR_RELAYED = 0x0016
_LIFETIME = 0x000D
_XOR_PEER = 0x0012
_DATA = 0x0013


def _integrity_and_fingerprint(body: bytes) -> bytes:
    """
    A STUN message from a header and attributes (without trailer), with
    its length fixed and MESSAGE-INTEGRITY and FINGERPRINT appended, as a
    holder of L{KEY} signs it.
    """
    if len(body) < stun.HEADER_LENGTH:
        return body
    attributes = body[stun.HEADER_LENGTH:]
    head = body[:2] + struct.pack("!H", (len(attributes) + 24) & 0xFFFF) + body[4:20]
    mac = hmac.new(KEY, head + attributes, hashlib.sha1).digest()
    signed = head + attributes + struct.pack("!HH", 0x0008, 20) + mac
    head = signed[:2] + struct.pack("!H", (len(signed) - 20 + 8) & 0xFFFF) + signed[4:20]
    crc = (zlib.crc32(head + signed[20:]) ^ 0x5354554E) & 0xFFFFFFFF
    return head + signed[20:] + struct.pack("!HHI", 0x8028, 4, crc)


class _MiniTurnServer:
    """
    Answers a TURN client's requests: 401 with REALM and NONCE to an
    Allocate without credentials, success (signed) to everything else.
    Keeps every answer it sent, as an on-path attacker would.
    """

    def __init__(self) -> None:
        self.answers: dict[str, bytes] = {}

    def answer(self, data: bytes) -> bytes | None:
        if data[:1] >= b"\x40":
            return None  # ChannelData to a peer
        request = stun.decode(data)
        if request.message_class is not stun.MessageClass.REQUEST:
            return None
        tid = request.transaction_id
        raw = stun.RawAttribute
        if request.method == stun.Method.ALLOCATE and request.get(stun.Username) is None:
            answer = request.error(401, "Unauthorized", [stun.Realm(REALM), stun.Nonce(NONCE)])
            encoded = stun.encode(answer)
            self.answers.setdefault("turn-401", encoded)
            return encoded
        if request.method == stun.Method.ALLOCATE:
            attributes = [
                raw(_XOR_RELAYED, stun.encode_xor_address(RELAYED, tid)),
                stun.XorMappedAddress(MAPPED),
                raw(_LIFETIME, struct.pack("!I", 600)),
            ]
        elif request.method == stun.Method.REFRESH:
            attributes = [raw(_LIFETIME, struct.pack("!I", 600))]
        else:
            attributes = []
        encoded = stun.encode(request.success(attributes), integrity_key=KEY)
        self.answers.setdefault(f"turn-{stun.Method(request.method).name.lower()}-ok", encoded)
        return encoded


class TurnClientTarget(Target):
    """
    A L{TurnClient} with an allocation, a permission for L{PEER} and a
    channel to it.
    """

    name = "turn-client"

    def __init__(self, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.clock = Clock()
        self.server = _MiniTurnServer()
        self.sent: list[tuple[bytes, tuple]] = []
        self.delivered: list[tuple[Address, bytes]] = []
        self.client = TurnClient(
            self.clock, self._write, SERVER, USER, PASSWORD, random_bytes=lambda n: rng.randbytes(n)
        )
        self.client.on_data = lambda peer, data: self.delivered.append((peer, data))
        self._rng = rng
        self._delay = 0.01
        self._settle(self.client.allocate())
        self._settle(self.client.create_permission(PEER))
        self._settle(self.client.bind_channel(PEER))
        self.channel = self.client.channel_for(PEER)
        # From now on the server answers after a second, and the client
        # asks for a permission every tick: requests stay pending while
        # fuzzed answers arrive (see receive).
        self._delay = 1.0
        self.sources = spoofed_sources(rng, 64)
        self.seeds = self._seeds(rng)
        self.failures: list[str] = []
        self._n = 0
        self._last = self.clock.seconds()

    def _write(self, data: bytes, addr: tuple) -> None:
        kernel_check(addr)
        self.sent.append((data, addr))
        if addr == SERVER.as_tuple():
            answer = self.server.answer(data)
            if answer is not None:
                self.clock.callLater(self._delay, self.client.datagram_received, answer, SERVER.as_tuple())

    def receive(self, data: bytes, addr: tuple) -> None:
        """
        Deliver a fuzzed datagram; while a request is pending, a third of
        the STUN ones carry its transaction id (half of those signed
        again), so that answers are matched and their contents parsed.
        """
        pending = self.client._transactions
        if pending and len(data) >= stun.HEADER_LENGTH and data[0] < 0x40 and self._rng.random() < 0.33:
            tid = next(iter(pending))
            data = data[:8] + tid + data[20:]
            if len(data) > 52 and self._rng.random() < 0.5:
                data = _integrity_and_fingerprint(data[:-32])
        self.client.datagram_received(data, addr)

    def _settle(self, d) -> None:
        box = []
        d.addBoth(box.append)
        for _ in range(100):
            if box:
                break
            self.clock.advance(0.01)
        if not box or hasattr(box[0], "raiseException"):
            raise RuntimeError(f"the TURN client did not get set up: {box}")

    def _seeds(self, rng: random.Random) -> list[Seed]:
        seeds = []
        for name, answer in sorted(self.server.answers.items()):
            seeds.append(Seed(name, answer, STUN, stun_fields(answer)))
            body = answer[:-32] if name != "turn-401" else answer[:-8]
            seeds.append(Seed(name + "+mi", body, STUN, stun_fields(body), ((0, 2),), _integrity_and_fingerprint))
        tid = rng.randbytes(12)
        indication = stun.encode(stun.StunMessage(
            stun.Method.DATA, stun.MessageClass.INDICATION, tid,
            (stun.RawAttribute(_XOR_PEER, stun.encode_xor_address(PEER, tid)), stun.RawAttribute(_DATA, b"peer data")),
        ))
        seeds.append(Seed("turn-data-indication", indication, STUN, stun_fields(indication)))
        seeds.append(Seed("turn-channel-data", encode_channel_data(self.channel, b"channel payload"), "opaque", (),
                          ((0, 2), (2, 2))))
        return [s.sent_from(SERVER.as_tuple()) for s in seeds]

    def tick(self) -> None:
        now = self.clock.seconds()
        if now - self._last >= 10.0:
            self._last = now
            self._n += 1
            peer = Address("198.51.100.41", 7000 + self._n % 1000)
            self.client.create_permission(peer).addErrback(lambda _: None)
            problem = self._exchange()
            if problem:
                self.failures.append(f"t={now:.0f} s: {problem}")

    def _exchange(self) -> str | None:
        self._n += 1
        payload = b"to peer %d" % self._n
        del self.sent[:]
        self.client.send(PEER, payload)
        if self.sent != [(encode_channel_data(self.channel, payload), SERVER.as_tuple())]:
            return f"data to the peer went out as {self.sent}"
        del self.delivered[:]
        self.client.datagram_received(encode_channel_data(self.channel, b"from peer %d" % self._n), SERVER.as_tuple())
        self.clock.advance(0.01)
        if self.delivered != [(PEER, b"from peer %d" % self._n)]:
            return f"data from the peer arrived as {self.delivered}"
        return None

    def check(self) -> list[str]:
        problems = list(self.failures[:5])
        client = self.client
        if client.state != "allocated" or client.relayed_address != RELAYED:
            problems.append(f"the allocation changed: {client.state} {client.relayed_address}")
        if client.channel_for(PEER) != self.channel:
            problems.append(f"the channel to the peer changed: {client.channel_for(PEER)}")
        problem = self._exchange()
        if problem:
            problems.append(problem)
        return problems

    def tables(self) -> dict[str, int]:
        client = self.client
        return {
            "transactions": len(client._transactions),
            "permissions": len(client._permissions),
            "channels": len(client._channels_by_number),
            "timers": len(self.clock.calls),
        }

    def close(self) -> None:
        d = self.client.close()
        d.addErrback(lambda _: None)
        for _ in range(300):
            self.clock.advance(0.01)
