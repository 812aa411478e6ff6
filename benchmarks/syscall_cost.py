"""
What batching system calls could save the relay: the kernel's cost per
loopback datagram with one system call each (C{sendto}, C{recvfrom})
against one per batch (C{sendmmsg}, C{recvmmsg}), measured by a small C
program (C{_syscost.c}, built on first use like the load generator), next
to the same two calls made from Python's C{socket} module.

    python -m benchmarks.syscall_cost [--size 131] [--batch 64]

A round queues C{--count} datagrams in an unread socket, then reads them
all back; each figure is the best of C{--repeats} rounds.  The
difference between a C call and the Python one is the interpreter's
share (argument parsing, the address tuple, the bytes object); the
difference between the single and the batched C call is all a
C{recvmmsg}/C{sendmmsg} binding could save in the kernel.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from benchmarks._common import table, write_result
from benchmarks._fastgen import binary
from benchmarks.relay_hotpath import syscalls

SOURCE = Path(__file__).resolve().parent / "_syscost.c"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=131, help="datagram bytes (131: a relayed game datagram)")
    parser.add_argument("--count", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--name", default="syscall_cost")
    args = parser.parse_args()
    program = binary(SOURCE, "the system call benchmark")
    run = subprocess.run(
        [program, str(args.size), str(args.count), str(args.batch), str(args.repeats)],
        capture_output=True, text=True, check=True,
    )
    kernel = json.loads(run.stdout)
    python = syscalls(args.count, args.repeats, args.size)
    rows = [
        ["send", python["sendto"], kernel["sendto"], kernel["sendmmsg"]],
        ["receive", python["recvfrom"], kernel["recvfrom"], kernel["recvmmsg"]],
    ]
    print(table(["µs per datagram", "Python socket", "C, one call each", f"C, batches of {args.batch}"], rows))
    saved = kernel["sendto"] - kernel["sendmmsg"] + kernel["recvfrom"] - kernel["recvmmsg"]
    interpreter = python["sendto"] - kernel["sendto"] + python["recvfrom"] - kernel["recvfrom"]
    print(f"\nbatching saves the kernel {saved:.3f} µs per forwarded datagram (one receive, one send); "
          f"Python's socket calls add {interpreter:.3f} µs to the kernel's")
    path = write_result(args.name, {
        "settings": vars(args), "python_us": python, "c_us": kernel,
        "batching_saves_us": saved, "python_socket_overhead_us": interpreter,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
