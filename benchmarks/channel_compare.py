"""
p2pnet channels beside ENet and aioquic, in one run, over real sockets.

Each library runs as two processes of its own (L{benchmarks._compare_peer}):
p2pnet channels (reliable-ordered channel 0 of a secure connection between
two L{PeerEndpoint}s that met through a real introducer, on Twisted), ENet
(PyPI C{pyenet}, a reliable packet on channel 0, blocking C{service}
loop), aioquic (one QUIC stream, asyncio; default configuration, a
self-signed certificate).  Every figure is the client's wall clock from its
first send until the server's C{done} answer (so one extra half round
trip is counted).

  - B{bulk goodput}: one 1 MiB and one 16 MiB transfer (one message for
    p2pnet and ENet, the bytes of one stream for aioquic), as MB/s
    (10^6 bytes); median of C{--repeat} runs;
  - B{64 B message rate}: C{--count} 64-byte reliable messages, coalesced
    (written all at once, the library packs them; p2pnet C{flush=False})
    and one per datagram (each flushed at once; acks read every 64),
    with client and server pinned to the same core (C{taskset -c 0}):
    messages per wall second on one core, and messages per CPU second of
    both processes together (client: first send to C{done}; server: first
    byte to last), which other jobs on a shared machine do not change.  For aioquic these are 64-byte
    writes on one stream (QUIC has no messages).

Where: B{loopback} (127.0.0.1, no loss), and the B{kernel lab}
(L{p2pnet.testing.netlab}; needs root): two public sites (router kind
C{none}), the server on one, the client on the other, the p2pnet
introducer on the lab's introducer host; 0, 2 and 10 % loss each way on
the client's site link (nftables C{numgen random} drop).  A run that does
not finish within C{--timeout} seconds is reported as such.

    flock /tmp/p2pnet-lab.lock python -m benchmarks.channel_compare
        [--where loopback,lab] [--losses 0,2,10] [--repeat 3]
        [--count 100000] [--timeout 60] [--libs p2pnet,enet,aioquic]
        [--sizes-mib 1,16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks._common import table, write_result

LIBS = ("p2pnet", "enet", "aioquic")
SIZES = (1 << 20, 16 << 20)
PORT = 19100
INTRODUCER_PORT = 19000


def _peer_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks._compare_peer", *args]


def _environment() -> dict:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Place:
    """
    Where the processes run: C{spawn(side, argv)} starts one (side is
    C{server}, C{client} or C{introducer}) and returns a L{subprocess.Popen}.
    """

    server_host = "127.0.0.1"
    introducer = f"127.0.0.1:{INTRODUCER_PORT}"
    interface = "127.0.0.1"

    def spawn(self, side: str, argv: list[str]) -> subprocess.Popen:
        return subprocess.Popen(argv, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def close(self) -> None:
        pass


class Lab(Place):
    def __init__(self) -> None:
        from p2pnet.testing.netlab import INTRODUCER_ADDRESS, Lab as NetLab

        self.lab = NetLab()
        self.lab.add_site("left", "none")
        self.lab.add_site("right", "none")
        self.lab.add_host("left", "alice")
        self.lab.add_host("right", "bob")
        self.server_host = self.lab.address_of("bob")
        self.introducer = f"{INTRODUCER_ADDRESS}:{INTRODUCER_PORT}"
        self.interface = ""

    def loss(self, percent: int) -> None:
        self.lab.set_loss("left", percent)

    def spawn(self, side: str, argv: list[str]) -> subprocess.Popen:
        host = {"server": "bob", "client": "alice", "introducer": "introducer"}[side]
        return self.lab.run(host, argv, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def close(self) -> None:
        self.lab.close()


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def one(place: Place, lib: str, mode: str, size: int, count: int, timeout: float, pin: bool, run: int) -> dict:
    common = ["--port", str(PORT), "--mode", mode, "--size", str(size), "--count", str(count),
              "--introducer", place.introducer, "--name", f"sink{run}"]
    taskset = ["taskset", "-c", "0"] if pin else []
    server = place.spawn("server", taskset + _peer_argv(lib, "server", "--interface", place.interface, *common))
    try:
        line = server.stdout.readline()
        if line.strip() != "ready":
            return {"error": "server: " + line + server.stderr.read()[-400:]}
        client = place.spawn("client", taskset + _peer_argv(lib, "client", "--host", place.server_host, "--interface", place.interface, *common))
        try:
            out, err = client.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(client)
            return {"error": f"timeout ({timeout:g} s)"}
        lines = [x for x in out.splitlines() if x.startswith("{")]
        if not lines:
            return {"error": "client: " + err[-400:]}
        result = json.loads(lines[-1])
        _stop(server)
        for line in server.stdout.read().splitlines():
            if line.startswith("{"):
                result.update(json.loads(line))
        return result
    finally:
        _stop(server)


def measure(place: Place, where: str, loss: int, args, results: list) -> None:
    for size in args.sizes:
        for lib in args.libs:
            runs = [one(place, lib, "bulk", size, 0, args.timeout, False, len(results) * 10 + r) for r in range(args.repeat)]
            good = [r["seconds"] for r in runs if "seconds" in r]
            row = {"where": where, "loss": loss, "test": f"bulk {size >> 20} MiB", "lib": lib,
                   "runs": runs, "ok": len(good)}
            if good:
                row["MB_per_s"] = round(size / statistics.median(good) / 1e6, 1)
            else:
                row["error"] = runs[-1].get("error")
            results.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
    if where != "loopback" or not args.count:
        return
    for mode in ("coalesced", "datagram"):
        for lib in args.libs:
            runs = [one(place, lib, mode, 0, args.count, args.timeout, True, len(results) * 10 + r) for r in range(args.repeat)]
            good = [r["seconds"] for r in runs if "seconds" in r]
            row = {"where": where, "loss": loss, "test": f"64 B {mode}", "lib": lib, "runs": runs, "ok": len(good)}
            if good:
                row["msgs_per_s"] = round(args.count / statistics.median(good))
                cpus = [r["cpu"] + r["server_cpu"] for r in runs if "server_cpu" in r]
                if cpus:
                    row["msgs_per_cpu_s"] = round(args.count / statistics.median(cpus))
                datagrams = [r.get("datagrams") for r in runs if r.get("datagrams")]
                if datagrams:
                    row["datagrams"] = int(statistics.median(datagrams))
            else:
                row["error"] = runs[-1].get("error")
            results.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--where", default="loopback,lab")
    parser.add_argument("--losses", default="0,2,10")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--libs", default=",".join(LIBS))
    parser.add_argument("--sizes-mib", default="1,16")
    args = parser.parse_args()
    args.libs = args.libs.split(",")
    args.sizes = [int(x) << 20 for x in args.sizes_mib.split(",")]
    results: list = []
    started = time.time()
    for where in args.where.split(","):
        place = Lab() if where == "lab" else Place()
        introducer = place.spawn("introducer", [sys.executable, "-m", "p2pnet", "introducer", "--port",
                                               str(INTRODUCER_PORT), "--interface", place.interface or "0.0.0.0"])
        try:
            time.sleep(1.0)
            losses = [int(x) for x in args.losses.split(",")] if where == "lab" else [0]
            for loss in losses:
                if where == "lab":
                    place.loss(loss)
                measure(place, where, loss, args, results)
        finally:
            _stop(introducer)
            place.close()
    rows = []
    for r in results:
        value = r.get("MB_per_s", r.get("msgs_per_s"))
        unit = "MB/s" if "MB_per_s" in r else "msgs/s"
        rows.append([r["where"], f"{r['loss']}%", r["test"], r["lib"],
                     f"{value} {unit}" if value is not None else r.get("error"), r.get("msgs_per_cpu_s", ""),
                     f"{r['ok']}/{args.repeat}", r.get("datagrams", "")])
    print(table(["where", "loss", "test", "library", "median (wall)", "msgs / CPU s", "runs ok", "datagrams"], rows))
    write_result("channel_compare_" + args.where.replace(",", "_"), {"args": vars(args), "seconds": time.time() - started, "results": results})


if __name__ == "__main__":
    main()
