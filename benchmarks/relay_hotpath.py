"""
The relay's cost per forwarded packet on real loopback sockets, in one
process: a burst of RELAYED frames is queued in the relay's socket, then
the port's C{doRead} is timed until the burst is forwarded (to a second
socket, drained afterwards and checked).  No second core, no load
generator, no scheduling: steadier than C{relay_pps}, for comparing
versions of the per-packet path.  Each variant is the best of
C{--repeats} bursts.

    python -m benchmarks.relay_hotpath [--burst 1000] [--repeats 40]

Variants: the relay as the tap builds it (rate and byte limiters on, caps
far above the load) on Twisted's own C{udp.Port} and on
L{p2pnet._udpread.FastReadPort}, and on the latter without the per-source
limiters and with C{--verify-all} (every datagram's tag checked); plus
the bare C{sendto} and C{recvfrom} of the same frames.
"""

from __future__ import annotations

import argparse
import shlex
import socket
import tempfile
import time

from benchmarks import _relayload
from benchmarks._common import table, write_result
from p2pnet import wire

_BUFFER = 16 << 20


def _client(server: tuple) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
    s.connect(server)
    s.setblocking(False)
    return s


def _drain(s: socket.socket) -> int:
    n = 0
    while True:
        try:
            s.recv(4096)
        except BlockingIOError:
            return n
        n += 1


def relay_variant(port_kind: str, limiters: bool, burst: int, repeats: int, verify_all: bool = False) -> float:
    """
    Best microseconds per forwarded packet over C{repeats} bursts.
    """
    from twisted.internet import epollreactor, udp

    from p2pnet import relay_tap
    from p2pnet._udpread import FastReadPort

    reactor = epollreactor.EPollReactor()  # never run: only its clock and fd set
    secret = b"relay hot path secret"
    with tempfile.NamedTemporaryFile("wb", suffix=".secret") as f:
        f.write(secret + b"\n")
        f.flush()
        options = relay_tap.Options()
        options.parseOptions(shlex.split(
            f"--secret-file {f.name} --max-packets 1000000000 --max-bytes 1000000000000 "
            "--rate 1e9 --source-bytes 1e12"
        ))
        relay = relay_tap.make_protocol(options, reactor)
    relay.verify_all = verify_all
    if not limiters:
        relay.source_limiter = None
    port = (FastReadPort if port_kind == "fast" else udp.Port)(0, relay, "127.0.0.1", 8192, reactor)
    port.startListening()
    try:
        port.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
        server = ("127.0.0.1", port.getHost().port)
        a, b = _client(server), _client(server)
        inner = _relayload.datagram(0, 0, 0, 100)
        sent, forwarded = _relayload.p2pnet_templates(secret, b"hotpath!", [inner])
        for side, member in ((1, b), (0, a)):
            _relayload.bind(member, sent[side][0], wire.relay_key(secret, b"hotpath!"), port.doRead)
        _drain(a)
        _drain(b)
        best = float("inf")
        for _ in range(repeats):
            for _ in range(burst):
                a.send(sent[0][0])
            before = relay.stats["forwarded"]
            start = time.perf_counter()
            while True:
                done = relay._forwarded
                port.doRead()
                if relay._forwarded == done:
                    break
            elapsed = time.perf_counter() - start
            if relay.stats["forwarded"] - before != burst:
                raise RuntimeError("the relay did not forward the whole burst")
            got = b.recv(4096)
            if got != forwarded[0][0]:
                raise RuntimeError("the relay forwarded unexpected bytes")
            if _drain(b) != burst - 1:
                raise RuntimeError("a forwarded packet went missing")
            best = min(best, elapsed / burst * 1e6)
        return best
    finally:
        port.stopListening()


def syscalls(burst: int, repeats: int, size: int = 131) -> dict:
    """
    Best microseconds per C{sendto} and per C{recvfrom} of a C{size}-byte
    frame (131: a relayed game datagram) between two loopback sockets.
    """
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    w = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (r, w):
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
        s.setblocking(False)
    frame = bytes(size)
    to = r.getsockname()
    best = {"sendto": float("inf"), "recvfrom": float("inf")}
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(burst):
            w.sendto(frame, to)
        middle = time.perf_counter()
        for _ in range(burst):
            r.recvfrom(8192)
        end = time.perf_counter()
        best["sendto"] = min(best["sendto"], (middle - start) / burst * 1e6)
        best["recvfrom"] = min(best["recvfrom"], (end - middle) / burst * 1e6)
    r.close()
    w.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--name", default="relay_hotpath")
    args = parser.parse_args()
    results = {
        "twisted udp.Port, limiters": relay_variant("twisted", True, args.burst, args.repeats),
        "FastReadPort, limiters": relay_variant("fast", True, args.burst, args.repeats),
        "FastReadPort, no limiters": relay_variant("fast", False, args.burst, args.repeats),
        "FastReadPort, limiters, --verify-all": relay_variant("fast", True, args.burst, args.repeats, True),
    }
    calls = syscalls(args.burst, args.repeats)
    print(table(["variant", "µs per forwarded packet"], [[k, v] for k, v in results.items()]))
    print(f"\nbare system calls: sendto {calls['sendto']:.3f} µs, recvfrom {calls['recvfrom']:.3f} µs")
    path = write_result(args.name, {"settings": vars(args), "us_per_packet": results, "syscalls_us": calls})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
