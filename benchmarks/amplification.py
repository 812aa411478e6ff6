"""
Amplification table (#14.8): for every request the introducer accepts, the
bytes and packets it sends back, in total over all packets and
retransmits, for one request, with nobody acknowledging anything (the
worst case), measured in process on a Clock with a recording transport.

    python -m benchmarks.amplification [--members 150]

"open" rows are an introducer without a shared secret (anyone can send
them); "secret" rows are sent by holders of the shared secret.

"back" is what went to the request's source address, the address a forged
request aims at: a "back ratio" above 1 on an open row is an amplification
an attacker can use.  "to peers" is what went to other registered peers
(the other side of an introduction, the members of a mesh): addresses that
proved themselves (a registration moves only on a proof from the new
address), paced per destination and stopped by their acknowledgements, so
no third party; the worst case, nobody acknowledging, is shown.
"""

from __future__ import annotations

import argparse

from twisted.internet.task import Clock

from benchmarks._common import table, write_result

A = ("203.0.113.5", 40000)
B = ("198.51.100.7", 41000)
ELSEWHERE = ("192.0.2.200", 9999)
SECRET = b"benchmark secret"


class Recording:
    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple]] = []

    def write(self, data, addr):
        self.written.append((data, addr))

    def getHost(self):
        from twisted.internet.address import IPv4Address

        return IPv4Address("UDP", "192.0.2.1", 3478)


class Bench:
    def __init__(self, secret: bytes | None, members: int) -> None:
        import random

        from p2pnet import wire
        from p2pnet._registry import Registry
        from p2pnet._stunserver import StunResponder
        from p2pnet.introducer import IntroducerProtocol, RelaySettings

        rng = random.Random(1)
        self.wire = wire
        self.secret = secret
        self.clock = Clock()
        self.transport = Recording()
        self.random = lambda n: bytes(rng.getrandbits(8) for _ in range(n))
        self.protocol = IntroducerProtocol(
            self.clock,
            Registry(600.0, self.random),
            self.random,
            secret=secret,
            stun_responder=StunResponder(),
            relay=RelaySettings(b"relay secret", None, lambda: 3479),
        )
        self.protocol.makeConnection(self.transport)
        self.cookies = {}
        self.n = 0
        self.register("a", A)
        self.register("b", B)
        self.session = self.host("a", A, mesh=False)
        self.mesh = self.host("b", B, mesh=True)
        for n in range(members):
            name, source = f"m{n}", ("198.18.0.1", 2000 + n)
            self.register(name, source)
            self.request(wire.Introduce(self.txid(), name, self.cookies[name], session_id=self.mesh), source)
            self.drain(ack=True)

    def txid(self):
        self.n += 1
        return self.n.to_bytes(8, "big")

    def request(self, message, source, pad=True):
        wire = self.wire
        raw = wire.encode(wire.padded(message) if pad else message, self.secret)
        self.protocol.datagramReceived(raw, source)
        return raw

    def drain(self, ack):
        wire = self.wire
        while self.transport.written:
            written, self.transport.written = self.transport.written, []
            if not ack:
                continue
            for raw, to in written:
                message = wire.decode(raw)
                if isinstance(message, (wire.Introduction, wire.RelayOffer, wire.Candidate)):
                    push_id = message.intro_id if isinstance(message, wire.Introduction) else message.allocation
                    self.request(wire.IntroAck(self.txid(), push_id), to)

    def register(self, name, source):
        wire = self.wire
        self.request(wire.Register(self.txid(), name, ()), source)
        answer = wire.decode(self.transport.written[-1][0])
        self.cookies[name] = answer.cookie
        self.request(wire.Heartbeat(self.txid(), name, answer.cookie), source)
        self.drain(ack=False)

    def host(self, name, source, mesh):
        wire = self.wire
        self.request(
            wire.HostSession(self.txid(), name, self.cookies[name], "s", "g", 1024, wire.FLAG_MESH if mesh else 0), source
        )
        answer = wire.decode(self.transport.written[-1][0])
        self.drain(ack=False)
        return answer.session_id

    def measure(self, raw_or_message, source, pad=True):
        """
        Bytes in, bytes out, packets out over 60 s with no acknowledgement.
        """
        self.drain(ack=False)
        if isinstance(raw_or_message, bytes):
            raw = raw_or_message
            self.protocol.datagramReceived(raw, source)
        else:
            raw = self.request(raw_or_message, source, pad)
        back = out = packets = 0
        for _ in range(240):
            written, self.transport.written = self.transport.written, []
            back += sum(len(r) for r, to in written if to == source)
            out += sum(len(r) for r, to in written if to != source)
            packets += len(written)
            self.clock.advance(0.25)
        return len(raw), back, out, packets


def rows(secret: bytes | None, members: int) -> list[list]:
    import struct

    kind = "secret" if secret else "open"
    result = []

    def row(name, measured):
        bytes_in, back, to_peers, packets = measured
        result.append([kind, name, bytes_in, back, round(back / bytes_in, 2), to_peers, packets])

    def fresh():
        return Bench(secret, members)

    b = fresh()
    wire = b.wire
    row("Register (new)", b.measure(wire.Register(b.txid(), "new", ()), ELSEWHERE))
    row("Register (taken name)", b.measure(wire.Register(b.txid(), "a", ()), ELSEWHERE))
    row("Heartbeat", b.measure(wire.Heartbeat(b.txid(), "a", b.cookies["a"]), A))
    row("Heartbeat (replayed elsewhere)", b.measure(wire.Heartbeat(b.txid(), "a", b.cookies["a"]), ELSEWHERE))
    if hasattr(wire, "Proof"):
        row("Proof (wrong)", b.measure(wire.Proof(b.txid(), "a", bytes(16), bytes(16)), ELSEWHERE))
    row("HostSession", b.measure(wire.HostSession(b.txid(), "a", b.cookies["a"], "x", "g", 4), A))
    row("ListSessions", b.measure(wire.ListSessions(b.txid()), ELSEWHERE))
    row("ListSessions (unpadded)", b.measure(wire.ListSessions(b.txid()), ELSEWHERE, pad=False))
    # (A fresh introducer: each row advances the clock 60 s, and the
    # registrations above must not expire before the rows that use them.)
    lobby = fresh()
    filters = dict(properties=(("map", "x"),) * 4, name_prefix="s", flags=wire.FLAG_OPEN, limit=1)
    row("ListSessions (filters)", lobby.measure(wire.ListSessions(b.txid(), "g", **filters), ELSEWHERE))
    row("ListSessions (bad cursor)", lobby.measure(wire.ListSessions(b.txid(), cursor=b"bad"), ELSEWHERE, pad=False))
    row("Introduce (peer)", b.measure(wire.Introduce(b.txid(), "a", b.cookies["a"], "b"), A))
    row(
        f"Introduce (mesh of {members})",
        fresh().measure(wire.Introduce(b.txid(), "a", b.cookies["a"], session_id=b.mesh), A),
    )
    b = fresh()
    row(
        "Introduce (mesh, replayed elsewhere)",
        b.measure(wire.Introduce(b.txid(), "a", b.cookies["a"], session_id=b.mesh), ELSEWHERE),
    )
    row("Introduce (unknown target)", b.measure(wire.Introduce(b.txid(), "a", b.cookies["a"], "x" * 64), A))
    row("ReverseRequest", b.measure(wire.ReverseRequest(b.txid(), "a", b.cookies["a"], "b", bytes(8)), A))
    b.request(wire.Introduce(b.txid(), "a", b.cookies["a"], "b"), A)
    intro_id = wire.decode(b.transport.written[0][0]).intro_id
    b.drain(ack=True)
    row("RelayRequest", b.measure(wire.RelayRequest(b.txid(), "a", b.cookies["a"], "b", intro_id), A))
    row("RelayRequest (made-up intro id)", b.measure(wire.RelayRequest(b.txid(), "a", b.cookies["a"], "b", bytes(8)), A))
    row(
        "CandidateOffer",
        b.measure(wire.CandidateOffer(b.txid(), "a", b.cookies["a"], "b", bytes(8), wire.Address("192.0.2.9", 1)), A),
    )
    row("IntroAck", b.measure(wire.IntroAck(b.txid(), bytes(8)), A))
    row("Unregister", b.measure(wire.Unregister(b.txid(), "b", b.cookies["b"]), B))
    if secret is None:
        binding = struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, bytes(12))
        row("STUN Binding request", b.measure(binding, ELSEWHERE))
        bad = struct.pack("!HHI12s", 0x0001, 8, 0x2112A442, bytes(12)) + struct.pack("!HH4s", 0x7777, 4, bytes(4))
        row("STUN unknown attribute (error)", b.measure(bad, ELSEWHERE))
        other = struct.pack("!HHI12s", 0x0003, 0, 0x2112A442, bytes(12))
        row("STUN Allocate (error)", b.measure(other, ELSEWHERE))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--members", type=int, default=150)
    args = parser.parse_args()
    headers = ["introducer", "request", "bytes in", "back", "back ratio", "to peers", "packets"]
    data = rows(None, args.members) + rows(SECRET, args.members)
    print(table(headers, data))
    write_result("amplification", {"headers": headers, "rows": data})


if __name__ == "__main__":
    main()
