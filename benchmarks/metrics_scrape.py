"""
The cost of one Prometheus scrape (L{p2pnet._metrics}): C{generate_latest}
of an introducer's registry after C{--peers} registrations and a few
heartbeats each (so its counters hold the usual keys), and of a relay's
registry.  A scrape reads the statistics counters and the tables' sizes,
so its cost should not grow with the number of registrations; the
per-datagram path is not touched (compare C{introducer_hotpath} and
C{relay_hotpath} with and without this branch).

    python -m benchmarks.metrics_scrape [--peers 100000] [--scrapes 2000]
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks import _loadgen
from benchmarks._common import table, write_result
from benchmarks.introducer_hotpath import build


def scrape_cost(registry, scrapes: int) -> tuple[float, int]:
    from prometheus_client import generate_latest

    size = len(generate_latest(registry))
    start = time.perf_counter()
    for _ in range(scrapes):
        generate_latest(registry)
    return (time.perf_counter() - start) / scrapes * 1e6, size


def introducer(peers: int, scrapes: int) -> dict:
    from p2pnet._metrics import introducer_registry

    protocol = build(False)
    registry = introducer_registry(protocol)
    receive = protocol.datagramReceived
    for n in range(peers):
        addr = ("10.%d.%d.%d" % (n >> 16, (n >> 8) & 255, n & 255), 40000 + n % 20000)
        peer_id = _loadgen._peer_id(0, 0, n)
        receive(_loadgen.register_packet(os.urandom(8), peer_id), addr)
        cookie = protocol.transport.last[-8:]
        receive(_loadgen.heartbeat_packet(os.urandom(8), peer_id, cookie), addr)
    receive(b"junk", ("10.255.0.1", 1))
    assert len(protocol.registry) == peers
    us, size = scrape_cost(registry, scrapes)
    return {"service": "introducer", "registrations": peers, "scrape_us": us, "bytes": size}


def relay(scrapes: int) -> dict:
    from twisted.internet.task import Clock

    from p2pnet._metrics import relay_registry
    from p2pnet.relay import RelayProtocol

    protocol = RelayProtocol(Clock(), b"secret")
    protocol.datagramReceived(b"junk", ("10.0.0.1", 1))
    us, size = scrape_cost(relay_registry(protocol), scrapes)
    return {"service": "relay", "registrations": 0, "scrape_us": us, "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=2000)
    parser.add_argument("--name", default="metrics_scrape")
    args = parser.parse_args()
    results = [introducer(1000, args.scrapes), introducer(args.peers, args.scrapes), relay(args.scrapes)]
    print(table(["service", "registrations", "µs per scrape", "bytes"],
                [[r["service"], r["registrations"], r["scrape_us"], r["bytes"]] for r in results]))
    print(f"wrote {write_result(args.name, {'settings': vars(args), 'results': results})}")


if __name__ == "__main__":
    main()
