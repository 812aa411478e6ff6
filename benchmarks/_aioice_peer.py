"""
One aioice peer for C{benchmarks.lab_connect}, run inside a kernel-lab host.

    python -m benchmarks._aioice_peer --controlling|--controlled \
        --stun 192.0.2.10:3478 [--text TEXT]

It talks to the benchmark (the signalling channel) over stdin/stdout, one
JSON object per line; every event carries C{mono}, C{time.monotonic()}
when it happened.  CLOCK_MONOTONIC is one system-wide clock (network
namespaces do not change it), so the benchmark compares the values of
both peers directly.

 1. prints C{ready} once aioice is imported and the C{Connection} exists;
 2. on the stdin line C{gather}: notes C{gather_start} (the moment the
    application decides to connect), gathers host and server-reflexive
    candidates (STUN to coturn) and prints C{candidates} with its
    candidates (SDP attribute form), ufrag and pwd;
 3. the next stdin line is the other peer's C{candidates} object: it adds
    them, signals end-of-candidates, notes C{connect_start} and runs
    C{await connection.connect()}, prints C{connected}, at once sends one
    application datagram (C{connection.send}) and prints C{sent};
 4. prints C{datagram} when the application gets the other side's
    datagram from C{connection.recv()} (with C{arrived}: when aioice
    handed it to the connection, possibly before C{connect()} returned);
 5. runs until stdin closes or says C{quit} (it must keep answering
    the other side's checks), then closes the connection.

With C{--log}, aioice's own log (INFO: check state changes, nomination)
goes to stderr, each line prefixed with its C{time.monotonic()}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import threading
import time


def emit(event: str, **fields: object) -> None:
    record = {"event": event, "mono": fields.pop("mono", None) or time.monotonic()}
    record.update(fields)
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


class StdinLines:
    """
    Lines from stdin, read by a thread and timestamped when read.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._queue: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
        self._loop = loop
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            stamp = time.monotonic()
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (line.strip(), stamp))
        self._loop.call_soon_threadsafe(self._queue.put_nowait, ("quit", time.monotonic()))

    async def get(self) -> tuple[str, float]:
        return await self._queue.get()


async def run(arguments: argparse.Namespace) -> int:
    import aioice

    host, _, port = arguments.stun.rpartition(":")
    connection = aioice.Connection(
        ice_controlling=arguments.controlling,
        components=1,
        stun_server=(host, int(port)),
        use_ipv6=False,
    )
    arrived: list[float] = []
    original = connection.data_received

    def data_received(data: bytes, component: int) -> None:
        if not arrived:
            arrived.append(time.monotonic())
        original(data, component)

    # StunProtocol hands application data to connection.data_received.
    connection.data_received = data_received  # type: ignore[method-assign]

    lines = StdinLines(asyncio.get_running_loop())
    emit("ready", aioice=aioice.__version__, controlling=arguments.controlling)
    try:
        line, stamp = await lines.get()
        if line != "gather":
            emit("error", message=f"expected 'gather', got {line!r}")
            return 1
        gather_start = time.monotonic()
        await connection.gather_candidates()
        emit(
            "candidates",
            gather_start=gather_start,
            candidates=[c.to_sdp() for c in connection.local_candidates],
            ufrag=connection.local_username,
            pwd=connection.local_password,
        )

        line, stamp = await lines.get()
        if line == "quit":
            return 1
        remote = json.loads(line)
        connection.remote_username = remote["ufrag"]
        connection.remote_password = remote["pwd"]
        for sdp in remote["candidates"]:
            await connection.add_remote_candidate(aioice.Candidate.from_sdp(sdp))
        await connection.add_remote_candidate(None)
        connect_start = time.monotonic()
        emit("connect", mono=connect_start, signalled=stamp)
        try:
            await asyncio.wait_for(connection.connect(), arguments.timeout)
        except (ConnectionError, asyncio.TimeoutError) as e:
            emit("failed", reason=f"{type(e).__name__}: {e}")
            await lines.get()
            return 1
        emit("connected", pair=_selected(connection))
        await connection.send(arguments.text.encode())
        emit("sent")

        async def receive() -> None:
            data = await connection.recv()
            emit("datagram", text=data.decode("utf-8", "replace"), arrived=arrived[0] if arrived else None)

        receiver = asyncio.create_task(receive())
        while (await lines.get())[0] != "quit":
            pass
        receiver.cancel()
        return 0
    finally:
        await connection.close()


def _selected(connection) -> str | None:
    pair = connection._nominated.get(1)  # for the report only
    if pair is None:
        return None
    local, remote = pair.local_candidate, pair.remote_candidate
    return f"{local.type} {local.host}:{local.port} -> {remote.type} {remote.host}:{remote.port}"


def _stamp(record: logging.LogRecord) -> bool:
    record.mono = time.monotonic()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._aioice_peer")
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--controlling", action="store_true")
    role.add_argument("--controlled", dest="controlling", action="store_false")
    parser.add_argument("--stun", default="192.0.2.10:3478", help="STUN server HOST:PORT")
    parser.add_argument("--text", default="first-datagram")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds for connect()")
    parser.add_argument("--log", action="store_true", help="aioice's INFO log to stderr")
    arguments = parser.parse_args(argv)
    if arguments.log:
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(_stamp)
        handler.setFormatter(logging.Formatter("%(mono).6f %(message)s"))
        logger = logging.getLogger("aioice")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return asyncio.run(run(arguments))


if __name__ == "__main__":
    sys.exit(main())
