"""
What one ListSessions page costs as the lobby grows: 1k, 100k and 1M
sessions of one game, in memory, no sockets.

For each size it measures, over pages starting at seeded random places in
the lobby:

 - C{page}: the lobby's own work (seek the cursor, read the sessions, size
   their entries) and encoding the 1,200-byte L{wire.SessionList};
 - C{request}: a padded C{ListSessions} datagram fed to the introducer's
   C{datagramReceived} (decode, page, encode, write to a fake transport);
 - C{filtered}: a request whose name-prefix filter matches nothing, so the
   page looks at its full 256 sessions (the worst case a filter costs);
 - C{property}: a request for C{map=oval}, which one session in four has.

    python -m benchmarks.lobby_pages [--sizes 1000,100000,1000000] [--pages 2000]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import time

from benchmarks._common import table, write_result

MAPS = ("oval", "dunes", "harbour", "canyon")


class FakeTransport:
    def __init__(self) -> None:
        self.sent = 0

    def write(self, data, addr):
        self.sent += 1

    def getHost(self):
        from twisted.internet.address import IPv4Address

        return IPv4Address("UDP", "127.0.0.1", 3478)


def build(size: int, rng: random.Random):
    from twisted.internet.task import Clock

    from p2pnet._lobby import MemoryLobby
    from p2pnet._registry import Registry, Session
    from p2pnet.introducer import IntroducerProtocol

    lobby = MemoryLobby()
    for n in range(size):
        lobby.add(
            Session(
                rng.randbytes(8),
                f"player{n:07d}",
                f"Race {n} at {MAPS[n % 4]}",
                "race",
                8,
                False,
                (("map", MAPS[n % 4]), ("mode", "ffa")),
            )
        )
    registry = Registry(600.0, os.urandom, lobby=lobby, max_sessions=size)
    protocol = IntroducerProtocol(Clock(), registry, os.urandom, rate_limiter=None)
    protocol.transport = FakeTransport()
    return lobby, protocol


def per_page(run, pages: int) -> float:
    gc.collect()
    began = time.perf_counter()
    run()
    return (time.perf_counter() - began) / pages * 1e6


def measure(size: int, pages: int, seed: int) -> dict:
    from p2pnet import wire
    from p2pnet._lobby import LobbyQuery, encode_cursor

    rng = random.Random(seed)
    began = time.perf_counter()
    lobby, protocol = build(size, rng)
    built = time.perf_counter() - began
    # Resume points spread over the whole lobby (keys are 1..size).
    cursors = [encode_cursor(rng.randrange(1, size)) for _ in range(pages)]
    budget = 1200 - 10 - 7 - 19
    queries = [LobbyQuery("race", cursor) for cursor in cursors]
    held = []

    def pages_only():
        for query in queries:
            page = lobby.page(query, budget, 0.0)
            held.append(len(page.sessions))
            wire.encode(wire.SessionList(b"t" * 8, page.sessions, page.cursor, page.total))

    def datagrams(make):
        raws = [wire.encode(wire.padded(make(cursor))) for cursor in cursors]
        receive = protocol.datagramReceived
        source = ("198.51.100.8", 42000)

        def run():
            for raw in raws:
                receive(raw, source)

        return run

    page_us = per_page(pages_only, pages)
    request_us = per_page(datagrams(lambda c: wire.ListSessions(b"t" * 8, "race", c)), pages)
    filtered_us = per_page(datagrams(lambda c: wire.ListSessions(b"t" * 8, "race", c, name_prefix="Nobody")), pages)
    property_us = per_page(
        datagrams(lambda c: wire.ListSessions(b"t" * 8, "race", c, properties=(("map", "oval"),))), pages
    )
    return {
        "sessions": size,
        "build_s": round(built, 2),
        "sessions_per_page": round(sum(held) / len(held), 1),
        "page_us": round(page_us, 2),
        "request_us": round(request_us, 2),
        "filtered_us": round(filtered_us, 2),
        "property_us": round(property_us, 2),
        "answers": protocol.transport.sent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--name", default="lobby_pages")
    args = parser.parse_args()
    results = [measure(int(size), args.pages, args.seed) for size in args.sizes.split(",")]
    rows = [
        [r["sessions"], r["sessions_per_page"], r["page_us"], r["request_us"], r["filtered_us"], r["property_us"]]
        for r in results
    ]
    print(table(["sessions", "per page", "page us", "request us", "no-match filter us", "map=oval us"], rows))
    print(f"wrote {write_result(args.name, {'settings': vars(args), 'results': results})}")


if __name__ == "__main__":
    main()
