"""
The relay's slow path, in one process: what a challenge and a binding
cost (microseconds each), and the heap an allocation takes once bound
(tracemalloc, in a second pass).  N allocations, each bound by one member
from its own address: first every member's frame (each draws a
challenge), then every answer.  The members' own work (building frames,
answering) is done outside the timed loops.

    python -m benchmarks.relay_binding [--allocations 100000]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

from twisted.internet.task import Clock

from benchmarks._common import write_result
from p2pnet import wire
from p2pnet._relayclient import answer_challenge
from p2pnet.relay import RelayProtocol

_SECRET = b"relay binding benchmark secret"


class _Recorder:
    """A transport that keeps what the relay writes."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple]] = []

    def write(self, data: bytes, addr: tuple) -> None:
        self.written.append((data, addr))


def run(count: int, trace: bool) -> dict:
    relay = RelayProtocol(Clock(), _SECRET)
    relay.transport = transport = _Recorder()
    members = []
    for n in range(count):
        allocation = n.to_bytes(8, "big")
        key = wire.relay_key(_SECRET, allocation)
        source = (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 1000)
        members.append((allocation, key, wire.encode_relayed(allocation, 0, bytes(24), key), source))
    if trace:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if trace else 0
    start = time.perf_counter()
    for _, _, frame, source in members:
        relay.datagramReceived(frame, source)
    challenged = time.perf_counter() - start
    answers = [
        (answer_challenge(challenge, allocation, 0, key), source)
        for (challenge, _), (allocation, key, _, source) in zip(transport.written, members)
    ]
    transport.written.clear()
    start = time.perf_counter()
    for answer, source in answers:
        relay.datagramReceived(answer, source)
    bound = time.perf_counter() - start
    del answers
    after = tracemalloc.get_traced_memory()[0] if trace else 0
    if trace:
        tracemalloc.stop()
    if len(relay.allocations) != count:
        raise RuntimeError(f"only {len(relay.allocations)} of {count} allocations bound")
    return {
        "challenge_us": challenged / count * 1e6,
        "bind_us": bound / count * 1e6,
        "bytes_per_allocation": (after - before) / count if trace else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--allocations", type=int, default=100_000)
    parser.add_argument("--name", default="relay_binding")
    args = parser.parse_args()
    timed = run(args.allocations, trace=False)
    memory = run(args.allocations, trace=True)
    result = {**timed, "bytes_per_allocation": memory["bytes_per_allocation"]}
    print(f"challenge {result['challenge_us']:.1f} µs, binding {result['bind_us']:.1f} µs, "
          f"{result['bytes_per_allocation']:.0f} bytes per bound allocation ({args.allocations:,} allocations)")
    print(f"wrote {write_result(args.name, {'settings': vars(args), **result})}")


if __name__ == "__main__":
    main()
