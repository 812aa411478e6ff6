"""
A real C{redis-server} for the cluster tests: started on a free loopback
port with no persistence, stopped (or killed and restarted on the same
port) by the test.  Tests skip without the binary, except under
C{CI=true}, where they fail.
"""

from __future__ import annotations

import os
import random
import select
import shutil
import socket
import subprocess
import time

from twisted.trial.unittest import SkipTest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def require_redis() -> None:
    """
    Skip (fail under CI=true) without C{redis-server}.
    """
    if not os.path.exists(REDIS_SERVER):
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            raise AssertionError(message)
        raise SkipTest(message)


def free_port() -> int:
    """
    A free TCP port on 127.0.0.1 below the ephemeral range: a client
    reconnecting to a stopped server on an ephemeral port can connect to
    itself (TCP simultaneous open) and hold the port the restarted server
    needs.
    """
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port for redis-server")


class RedisServer:
    """
    One C{redis-server} process on 127.0.0.1.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.process: subprocess.Popen | None = None
        #: Prepended to the command line (benchmarks pin it: taskset).
        self.start_argv_prefix: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(
            self.start_argv_prefix + [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--loglevel", "notice"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        seen = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], deadline - time.monotonic())
            if not ready:
                break
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
            if b"Ready to accept connections" in seen:
                return
        self.stop()
        raise AssertionError(f"redis-server did not start: {seen.decode(errors='replace')}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait()
            process.stdout.close()

    def memory_used(self) -> int:
        """
        C{used_memory} from INFO memory (a blocking call: benchmarks only).
        """
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(b"INFO memory\r\n")
            data = b""
            while b"used_memory:" not in data or not data.endswith(b"\r\n"):
                data += s.recv(65536)
        for line in data.split(b"\r\n"):
            if line.startswith(b"used_memory:"):
                return int(line.split(b":")[1])
        raise AssertionError("no used_memory in INFO")
