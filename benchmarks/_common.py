"""
Helpers shared by the benchmarks: machine description, JSON results,
tables, and CPU accounting of other processes.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
    }


def command() -> str:
    return "python -m " + __import__("__main__").__spec__.name + "".join(
        " " + shlex.quote(a) for a in sys.argv[1:]
    )


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "command": command(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        **data,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}"
    return str(value)


def add_generator_options(parser, unit: str) -> None:
    """
    The packet-rate benchmarks' load generator options: C{--generator},
    C{--processes} and C{--UNIT} (sockets or socket pairs per process);
    call L{resolve_generator_options} after parsing.
    """
    parser.add_argument("--generator", choices=["c", "python"], default="c",
                        help="the load generator's loop: c (benchmarks/_fastgen.c, built with cc) or python")
    parser.add_argument("--processes", type=int, default=None,
                        help="generator processes, all on core 1 (default: 1 with the C loop, 2 with Python's)")
    parser.add_argument(f"--{unit}", type=int, default=None,
                        help=f"{unit} per generator process (default: 16 with the C loop, 8 with Python's)")


def resolve_generator_options(args, unit: str) -> None:
    """
    Fill in the defaults of L{add_generator_options}: the same number of
    sockets either way.
    """
    c = args.generator == "c"
    if args.processes is None:
        args.processes = 1 if c else 2
    if getattr(args, unit) is None:
        setattr(args, unit, 16 if c else 8)


def cpu_seconds(pid: int) -> float:
    """
    User plus system CPU seconds used so far by process C{pid} (all its
    threads).
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def sample_during(on_measure, warmup: float, duration: float, settle: float = 0.3) -> None:
    """
    Call C{on_measure("start")} once the load has run for C{warmup} plus
    C{settle} seconds and C{on_measure("end")} before it stops, so the
    server's CPU is sampled inside the measured interval (nothing when
    C{on_measure} is None).
    """
    if on_measure is None:
        return
    time.sleep(warmup + settle)
    on_measure("start")
    time.sleep(max(0.1, duration - 0.6))
    on_measure("end")


class Server:
    """
    A server process pinned to one core, for the packet-rate benchmarks.

    C{kind} is one of L{benchmarks._server}'s kinds, or C{"coturn"}.
    """

    def __init__(self, kind: str, cpu: int = 0, extra: list[str] | None = None) -> None:
        import socket
        import subprocess

        self.kind = kind
        self.stats = None
        self._samples: dict[str, tuple[float, float]] = {}
        if kind == "coturn":
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
            probe.close()
            self.argv = [
                "taskset", "-c", str(cpu), "turnserver", "-n", "--no-cli", "--stun-only",
                "--listening-ip", "127.0.0.1", "--listening-port", str(self.port),
                "--relay-threads", "1", "--no-tls", "--no-dtls", "--no-tcp",
                "--log-file", "/tmp/p2pnet-bench-coturn.log", "--simple-log",
                "--pidfile", "/tmp/p2pnet-bench-coturn.pid",
            ] + (extra or [])
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait_for_stun(self.port)
        else:
            self.argv = ["taskset", "-c", str(cpu), sys.executable, "-m", "benchmarks._server", kind] + (extra or [])
            self.proc = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, text=True, cwd=str(RESULTS.parent.parent)
            )
            line = self.proc.stdout.readline()
            if not line.startswith("PORT "):
                raise RuntimeError(f"{kind} server did not start: {line!r}")
            self.port = int(line.split()[1])

    def describe(self, result: dict) -> dict:
        """
        Add the server's command line, CPU use and final statistics to a
        load generator's C{result} (after L{stop}).
        """
        result.update(server_argv=self.argv, server_cpu=self.cpu, server_stats=self.stats)
        return result

    def sample(self, phase: str) -> None:
        self._samples[phase] = (time.monotonic(), cpu_seconds(self.proc.pid))

    @property
    def cpu(self) -> float | None:
        """The server's CPU use (1.0 = one core) between the two samples."""
        if "start" not in self._samples or "end" not in self._samples:
            return None
        (t0, c0), (t1, c1) = self._samples["start"], self._samples["end"]
        return (c1 - c0) / (t1 - t0)

    def stop(self) -> None:
        import json
        import signal

        self.proc.send_signal(signal.SIGTERM)
        if self.kind != "coturn":
            for line in self.proc.stdout:
                if line.startswith("STATS "):
                    self.stats = json.loads(line[6:])
        self.proc.wait(timeout=20)


def _wait_for_stun(port: int) -> None:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
    try:
        for _ in range(50):
            s.sendto(request, ("127.0.0.1", port))
            try:
                s.recvfrom(2048)
                return
            except (socket.timeout, ConnectionRefusedError):
                time.sleep(0.1)
        raise RuntimeError(f"no STUN answer on port {port}")
    finally:
        s.close()
