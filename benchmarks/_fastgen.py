"""
The C load generator loop (C{_fastgen.c}): build it, hand it sockets and a
plan, read its counters.

The Python generators (L{benchmarks._loadgen}, L{benchmarks._relayload})
cost more per packet than coturn does, so they could not load coturn (or
the bare Twisted echo server) to its limit; this loop can.  Python still
does all the protocol work: it opens and connects the sockets, runs the
setup exchanges, and builds every datagram from L{p2pnet.wire}; the C
program only turns the closed loop around (recvmmsg/sendmmsg batches).

The binary is compiled once per source version with the system C compiler
(C{$CC}, else C{cc}) into the temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "_fastgen.c"
MAGIC = 0x47464E50
NONE = 0xFFFFFFFF
REQUEST, TABLE = 1, 2


class NoCompiler(RuntimeError):
    """
    The C generator cannot be built here (no C compiler).
    """


def binary(source_path: Path = SOURCE, what: str = "the C load generator (or use --generator python)") -> str:
    """
    The path of the compiled C{source_path} (by default the generator),
    building it if needed.

    @raise NoCompiler: if there is no C compiler.
    @raise RuntimeError: if it does not compile.
    """
    source = source_path.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"p2pnet-{source_path.stem.lstrip('_')}-{digest}"
    if path.exists():
        return str(path)
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise NoCompiler(f"no C compiler (cc or $CC) for {what}")
    partial = path.with_suffix(f".{os.getpid()}")
    build = subprocess.run([cc, "-O2", "-Wall", "-o", str(partial), str(source_path)], capture_output=True, text=True)
    if build.returncode != 0:
        raise RuntimeError(f"{what} did not compile:\n{build.stderr}")
    partial.replace(path)
    return str(path)


def _u32(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


def _bytes(data: bytes) -> bytes:
    return _u32(len(data)) + data


def _head(mode, fds, window, warmup, duration, stall, cpu, spin) -> bytes:
    return _u32(
        MAGIC, mode, len(fds), window, round(warmup * 1000), round(duration * 1000), round(stall * 1000),
        NONE if cpu is None else cpu, int(spin), *fds,
    )


def request_plan(fds, window, cycle, *, tx_offset, answer_tx_offset=None, id_offset=None, worker=0,
                 cookie_type=0, cookie_len=0, cookie_offset=0, warmup, duration, stall, cpu, spin=True) -> bytes:
    """
    A request/answer plan: each slot of each socket sends C{cycle[0]},
    C{cycle[1]}, ... in turn, each as soon as the previous one's answer
    came back (see C{_fastgen.c}).
    """
    return (
        _head(REQUEST, fds, window, warmup, duration, stall, cpu, spin)
        + _u32(tx_offset, tx_offset if answer_tx_offset is None else answer_tx_offset,
               NONE if id_offset is None else id_offset, worker, cookie_type, cookie_len, cookie_offset,
               len(cycle))
        + b"".join(_bytes(t) for t in cycle)
    )


def table_plan(fds, window, slot_offsets, tables, *, warmup, duration, stall, cpu, spin=True) -> bytes:
    """
    A table plan: sockets in pairs (A, B); C{tables[s][k]} is the
    (expected, answer) pair of socket C{s}'s slot C{k} (see C{_fastgen.c}).
    """
    for s, (offset, rows) in enumerate(zip(slot_offsets, tables)):
        for k, (expected, _) in enumerate(rows):
            if expected[offset:offset + 2] != k.to_bytes(2, "big"):
                raise ValueError(f"socket {s} slot {k}: the slot is not at offset {offset}")
    return (
        _head(TABLE, fds, window, warmup, duration, stall, cpu, spin)
        + _u32(*slot_offsets)
        + b"".join(_bytes(e) + _bytes(a) for rows in tables for e, a in rows)
    )


class Run:
    """
    One generator process running a plan on the given sockets (which the
    caller keeps open until L{result}).
    """

    def __init__(self, plan: bytes, fds: list[int]) -> None:
        self.proc = subprocess.Popen(
            [binary()], stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=fds, text=False
        )
        self.proc.stdin.write(plan)
        self.proc.stdin.close()
        self.proc.stdin = None
        line = self.proc.stdout.readline()
        if line != b"READY\n":
            self.proc.wait()
            raise RuntimeError(f"the C load generator did not start (exit {self.proc.returncode})")

    def result(self, timeout: float) -> dict:
        out, _ = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the C load generator failed (exit {self.proc.returncode})")
        return json.loads(out)


def run_workers(workers, on_measure, warmup: float, duration: float) -> list[dict]:
    """
    Start one generator for each C{(plan, sockets)} of C{workers}, call
    C{on_measure} inside the measured interval (L{sample_during}), and
    return each generator's counters.  The sockets are closed afterwards.
    """
    from benchmarks._common import sample_during

    socks, runs = [], []
    try:
        for plan, mine in workers:
            socks += mine
            runs.append(Run(plan, [s.fileno() for s in mine]))
        sample_during(on_measure, warmup, duration)
        return [r.result(timeout=duration + warmup + 120) for r in runs]
    finally:
        for s in socks:
            s.close()
