"""
The introducer cluster on Redis (p2pnet/cluster): what sharing state costs.

    flock /tmp/p2pnet-lab.lock python -m benchmarks.cluster [--rounds 3] [--duration 5] [--part all]

Parts (each starts its own redis-server on a free loopback port, no
persistence):

 - C{rate}: registrations+heartbeats/s of one introducer node on core 0,
   in memory and as a C{--redis} node (redis-server on core 1 with the
   load generator), at the 1:3 mix of L{benchmarks.introducer_pps}; the
   Redis cost per registration from C{INFO commandstats} and C{INFO cpu}.
 - C{memory}: Redis C{used_memory} per registration record, as nodes
   write them (a keyed peer with one local address), at 100,000.
 - C{latency}: introduction latency on real loopback sockets in one
   process, two nodes: Introduce sent -> both Introductions received, for
   two peers on the same node and on different nodes.
 - C{lobby}: the node's CPU and the wall time per Redis lobby page
   (cursor paging, no filter) at 1k and 100k sessions (C{--lobby-max N}
   adds a lobby of N).
 - C{client}: 20,000 SET commands, awaited one by one and all pipelined,
   with C{txredisapi} (Twisted) and C{redis.asyncio} (plain asyncio).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

from benchmarks import _loadgen
from benchmarks._common import Server, write_result
from tests.redislab import RedisServer


def _redis(cpu: int | None = None) -> RedisServer:
    server = RedisServer()
    if cpu is not None:
        # Pin it: the same start, under taskset.
        server.start_argv_prefix = ["taskset", "-c", str(cpu)]
    server.start()
    return server


def _info(port: int, section: str) -> dict:
    import redis

    return redis.Redis(port=port).info(section)


def rate(args) -> list[dict]:
    """
    One round per configuration and round: C{memory} (one in-memory node),
    C{redis-1} (one node), C{redis-2} (two nodes, both on core 0, each
    under its own load generator at the same time).
    """
    import threading

    rows = []
    for round_ in range(args.rounds):
        for kind, count in (("memory", 1), ("redis-1", 1), ("redis-2", 2)):
            redis_server = _redis(cpu=1) if kind != "memory" else None
            extra = ["--log", "none"] + (["--redis", redis_server.url] if redis_server else [])
            servers = [Server("introducer", cpu=0, extra=extra) for _ in range(count)]
            before = _redis_usage(redis_server)
            results = [None] * count

            def load(i):
                results[i] = _loadgen.run("reg", servers[i].port, heartbeats=3, duration=args.duration,
                                          on_measure=servers[i].sample, generator="c",
                                          processes=2 if count == 1 else 1)

            try:
                threads = [threading.Thread(target=load, args=(i,)) for i in range(count)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            finally:
                for server in servers:
                    server.stop()
            after = _redis_usage(redis_server)
            if redis_server is not None:
                redis_server.stop()
            registered = 0
            for server, result in zip(servers, results):
                server.describe(result)
                registered += (result.get("server_stats") or {}).get("registered", 0)
            row = {
                "round": round_, "nodes": kind,
                "per_node_pps": [r["pps"] for r in results],
                "per_node_cpu": [r["server_cpu"] for r in results],
                "per_node_pps_per_cpu": [r["pps"] / r["server_cpu"] if r["server_cpu"] else None for r in results],
                "registered": registered,
            }
            if redis_server is not None and registered:
                row["redis_commands_per_registration"] = (after["calls"] - before["calls"]) / registered
                row["redis_usec_per_registration"] = (after["usec"] - before["usec"]) / registered
                row["redis_cpu_us_per_registration"] = (after["cpu"] - before["cpu"]) / registered * 1e6
            rows.append(row)
            print(row, flush=True)
    return rows


def _redis_usage(server) -> dict | None:
    if server is None:
        return None
    stats = _info(server.port, "commandstats")
    cpu = _info(server.port, "cpu")
    calls = sum(v["calls"] for v in stats.values())
    usec = sum(v["usec"] for v in stats.values())
    return {"calls": calls, "usec": usec, "cpu": cpu["used_cpu_user"] + cpu["used_cpu_sys"]}


def memory(args) -> dict:
    import redis

    from p2pnet._registry import Registration
    from p2pnet.address import Address
    from p2pnet.cluster import _scripts as S
    from p2pnet.cluster._records import peer_record

    server = _redis()
    try:
        client = redis.Redis(port=server.port)
        put = client.register_script(S.PUT_PEERS)
        base = client.info("memory")["used_memory"]
        count = args.registrations
        for start in range(0, count, 500):
            keys, records = [], []
            for i in range(start, min(count, start + 500)):
                registration = Registration(
                    f"player-{i:08d}", Address("203.0.113.7", 40000 + i % 20000), (Address("10.0.0.7", 40000),),
                    b"", 0.0, verified=True, nat=1, rtt=0.0312, peer_key=os.urandom(32),
                )
                keys.append(S.PEER + registration.peer_id)
                records.append(peer_record(registration))
            put(keys=keys, args=["0a1b2c3d4e5f", 600_000, *records])
        used = client.info("memory")["used_memory"]
        sample = client.hget(S.PEER + "player-00000001", "d")
    finally:
        server.stop()
    result = {"registrations": count, "bytes_per_registration": (used - base) / count,
              "record_bytes": len(sample)}
    print(result, flush=True)
    return result


def latency(args) -> dict:
    code = (
        "import sys; sys.argv=['x', %r, '%d']; from benchmarks._cluster_latency import main; main()"
        % (sys.executable, args.trials)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import json

    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(result, flush=True)
    return result


def lobby(args) -> dict:
    """
    The Redis lobby's page cost at 1k, 100k and (with --lobby-max) more
    sessions: the node's CPU and the wall time per page.
    """
    import json

    import redis

    from p2pnet._registry import Session
    from p2pnet.cluster import _scripts as S
    from p2pnet.cluster._records import session_record

    sizes = [1000, 100_000] + ([args.lobby_max] if args.lobby_max else [])
    server = _redis()
    try:
        client = redis.Redis(port=server.port)
        put = client.register_script(S.PUT_SESSION)
        for size in sizes:
            game = f"g{size}"
            pipe = client.pipeline(transaction=False)
            for i in range(size):
                sid = i.to_bytes(4, "big") + size.to_bytes(4, "big")
                session = Session(sid, f"host-{i}", f"Server number {i}", game, 8, False, (("map", "dust"),))
                put(keys=[S.SESSION + sid.hex(), S.LOBBY_ALL, S.LOBBY_GAME + game, S.LOBBY_SEQ, S.HOSTED + f"h{i}"],
                    args=["bench", 3_600_000, session_record(session, None), sid.hex(), ""], client=pipe)
                if i % 5000 == 4999:
                    pipe.execute()
            pipe.execute()
        code = (f"from benchmarks._cluster_latency import lobby_pages; "
                f"lobby_pages({server.url!r}, {sizes!r}, {args.pages})")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["redis_used_memory"] = client.info("memory")["used_memory"]
    finally:
        server.stop()
    print(result, flush=True)
    return result


def client(args) -> dict:
    server = _redis()
    try:
        result = {
            "txredisapi": _twisted_client(server.port, args.commands),
            "redis.asyncio": asyncio.run(_asyncio_client(server.port, args.commands)),
        }
    finally:
        server.stop()
    print(result, flush=True)
    return result


def _twisted_client(port: int, n: int) -> dict:
    code = f"from benchmarks._cluster_latency import txredis_client; txredis_client({port}, {n})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import json

    return json.loads(out.stdout.strip().splitlines()[-1])


async def _asyncio_client(port: int, n: int) -> dict:
    import redis.asyncio as aioredis

    client = aioredis.Redis(port=port)
    await client.ping()
    t0 = time.perf_counter()
    for i in range(n):
        await client.set(f"k{i}", "v")
    one_by_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"k{i}", "v")
    await pipe.execute()
    pipelined = time.perf_counter() - t0
    await client.aclose()
    # (Commands issued concurrently without a pipeline each take a pooled
    # connection: 20,000 at once fail with MaxConnectionsError.)
    return {"awaited_us": one_by_one / n * 1e6, "pipeline_us": pipelined / n * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--registrations", type=int, default=100_000)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--lobby-max", type=int, default=0, help="also page a lobby of this many sessions")
    parser.add_argument("--part", choices=["all", "rate", "memory", "latency", "client", "lobby"], default="all")
    args = parser.parse_args()
    results = {}
    for part in ("client", "memory", "latency", "lobby", "rate"):
        if args.part in ("all", part):
            results[part] = globals()[part](args)
    write_result("cluster" if args.part == "all" else f"cluster_{args.part}", results)


if __name__ == "__main__":
    main()
