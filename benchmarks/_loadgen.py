"""
A pipelined UDP load generator written for speed: worker processes pinned
to one core, each with several connected non-blocking sockets, each socket
keeping a window of requests outstanding and sending the next request as
soon as an answer arrives.  Plain C{socket} + C{epoll}; requests are built
from byte templates (checked once against L{p2pnet.wire} so they are exactly
what real clients send).

Modes:
  - C{reg}: each window slot is a client: a padded Register (distinct peer
    id, one local address), then C{heartbeats} padded Heartbeats with the
    cookie from the answer, then a new peer id.  Against an echo server the
    same packets come back and the same code runs (a dummy cookie).
  - C{stun}: 20-byte STUN Binding requests with fresh transaction ids.
  - C{intro}: each slot owns two registered, verified peers on its socket
    and asks, padded, to be introduced from one to the other; both
    Introduction copies are acknowledged (IntroAck) as real peers do, and
    the requester's copy completes the slot's request.

Lost datagrams: a socket that heard nothing for C{stall} seconds resends
its whole window with fresh transaction ids (counted as C{stalls}).

Two engines run the C{reg} and C{stun} loops: C{c} (the default;
L{benchmarks._fastgen}, the same requests from the same templates, the
loop in C with recvmmsg/sendmmsg batches) and C{python} (the loop below).
The Python loop costs more per packet than a bare Twisted echo server or
coturn does, so it could not load those to their limit.  C{intro} runs in
Python only: its load is the introducer's, far below either limit.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import socket
import struct
import time

from benchmarks import _fastgen
from benchmarks._common import sample_during
from p2pnet import wire
from p2pnet.address import Address

_LOCAL = Address("192.168.1.20", 40000)
_ID_LEN = 14


def _peer_id(worker: int, sock: int, n: int) -> bytes:
    return b"w%02ds%02dn%07d" % (worker, sock, n % 10_000_000)


def _tlv(tag: int, value: bytes) -> bytes:
    return struct.pack("!BH", tag, len(value)) + value


_LOCAL_TLV = _tlv(wire.Tag.LOCAL, wire._enc_addr(_LOCAL))


def register_packet(txid: bytes, peer_id: bytes) -> bytes:
    size = wire.PADDED_SIZE[wire.MessageType.REGISTER]
    head = b"\xd1\x01" + txid + _tlv(wire.Tag.PEER_ID, peer_id) + _LOCAL_TLV
    return head + _tlv(wire.Tag.PADDING, bytes(size - len(head) - 3))


def heartbeat_packet(txid: bytes, peer_id: bytes, cookie: bytes) -> bytes:
    size = wire.PADDED_SIZE[wire.MessageType.HEARTBEAT]
    head = b"\xd1\x03" + txid + _tlv(wire.Tag.PEER_ID, peer_id) + _tlv(wire.Tag.COOKIE, cookie)
    return head + _tlv(wire.Tag.PADDING, bytes(size - len(head) - 3))


def introduce_packet(txid: bytes, peer_id: bytes, cookie: bytes, target: bytes) -> bytes:
    return wire.encode(
        wire.padded(wire.Introduce(txid, peer_id.decode(), cookie, target=target.decode()))
    )


def intro_ack_packet(txid: bytes, intro_id: bytes) -> bytes:
    return b"\xd1\x10" + txid + _tlv(wire.Tag.INTRO_ID, intro_id)


def check_templates() -> None:
    """
    The byte templates equal what the codec makes of the same messages.
    """
    txid, pid, cookie = b"12345678", _peer_id(1, 2, 3), b"cookie!!"
    assert len(pid) == _ID_LEN
    assert register_packet(txid, pid) == wire.encode(
        wire.padded(wire.Register(txid, pid.decode(), (_LOCAL,)))
    )
    assert heartbeat_packet(txid, pid, cookie) == wire.encode(
        wire.padded(wire.Heartbeat(txid, pid.decode(), cookie))
    )
    assert intro_ack_packet(txid, cookie) == wire.encode(wire.IntroAck(txid, cookie))


_STUN_HEAD = b"\x00\x01\x00\x00\x21\x12\xa4\x42"


def _socket(host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.connect((host, port))
    s.setblocking(False)
    return s


def c_plan(mode, fds, worker, window, heartbeats, warmup, duration, stall, cpu) -> bytes:
    """
    The C engine's plan for C{mode} (C{reg} or C{stun}) on the sockets
    C{fds}: the same templates as the Python loop, with the offsets where
    the C loop writes the transaction, the peer id and the cookie.
    """
    timing = dict(warmup=warmup, duration=duration, stall=stall, cpu=cpu)
    if mode == "stun":
        return _fastgen.request_plan(fds, window, [_STUN_HEAD + bytes(12)], tx_offset=8, **timing)
    placeholder, cookie = _peer_id(0, 0, 0), b"\xc0" * 8
    register = register_packet(bytes(8), placeholder)
    heartbeat = heartbeat_packet(bytes(8), placeholder, cookie)
    id_offset = register.index(placeholder)
    assert heartbeat.index(placeholder) == id_offset and heartbeat.count(cookie) == 1
    return _fastgen.request_plan(
        fds, window, [register] + [heartbeat] * heartbeats, tx_offset=2, id_offset=id_offset, worker=worker,
        cookie_type=wire.MessageType.REGISTERED, cookie_len=len(cookie), cookie_offset=heartbeat.index(cookie),
        **timing,
    )


def _worker(mode, host, port, worker, sockets, window, heartbeats, warmup, duration, stall, cpu, out):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    socks = [_socket(host, port) for _ in range(sockets)]

    # Per socket: slot -> [seq, state...]
    n_ids = [0] * sockets
    dummy_cookie = b"\0" * 8

    def next_id(si):
        n_ids[si] += 1
        return _peer_id(worker, si, n_ids[si])

    if mode == "intro":
        setup = _intro_setup(socks, window, worker, next_id)
    answered = 0
    stalls = 0
    seqs = [[0] * window for _ in range(sockets)]
    # reg: state per slot = [peer_id, cookie, heartbeats_left]
    states = [[[next_id(si), None, 0] for _ in range(window)] for si in range(sockets)]

    def build(si, slot):
        seq = seqs[si][slot] = (seqs[si][slot] + 1) & 0xFFFFFFFFFFFF
        txid = slot.to_bytes(2, "big") + seq.to_bytes(6, "big")
        if mode == "reg":
            st = states[si][slot]
            if st[1] is None:
                return register_packet(txid, st[0])
            return heartbeat_packet(txid, st[0], st[1])
        if mode == "stun":
            return _STUN_HEAD + txid + b"\0\0\0\0"
        requester, cookie, target = setup[si][slot]
        return introduce_packet(txid, requester, cookie, target)

    ep = select.epoll()
    by_fd = {}
    for si, s in enumerate(socks):
        ep.register(s.fileno(), select.EPOLLIN)
        by_fd[s.fileno()] = (si, s)
        for slot in range(window):
            s.send(build(si, slot))
    last_rx = [time.monotonic()] * sockets
    start = time.monotonic()
    measure_from = start + warmup
    end = measure_from + duration
    counted_at_start = None
    cpu_at_start = None
    is_stun = mode == "stun"
    is_reg = mode == "reg"
    recv_size = 2048
    while True:
        now = time.monotonic()
        if counted_at_start is None and now >= measure_from:
            counted_at_start = answered
            cpu_at_start = time.process_time()
            wall_at_start = now
        if now >= end:
            break
        for si in range(sockets):
            if now - last_rx[si] > stall:
                stalls += 1
                last_rx[si] = now
                for slot in range(window):
                    try:
                        socks[si].send(build(si, slot))
                    except OSError:
                        pass
        for fd, _ in ep.poll(0.01):
            si, s = by_fd[fd]
            seq_row = seqs[si]
            got = False
            while True:
                try:
                    data = s.recv(recv_size)
                except BlockingIOError:
                    break
                except OSError:
                    break
                got = True
                if is_stun:
                    slot = int.from_bytes(data[8:10], "big")
                    if slot >= window or int.from_bytes(data[10:16], "big") != seq_row[slot]:
                        continue
                else:
                    slot = int.from_bytes(data[2:4], "big")
                    if slot >= window or int.from_bytes(data[4:10], "big") != seq_row[slot]:
                        if mode == "intro" and data[1] == 0x0C:
                            # the target's copy: acknowledge it
                            s.send(intro_ack_packet(data[2:10], data[13:21]))
                        continue
                    if is_reg:
                        st = states[si][slot]
                        if st[1] is None:
                            st[1] = data[-8:] if data[1] == 0x02 else dummy_cookie
                            st[2] = heartbeats
                        else:
                            st[2] -= 1
                            if st[2] <= 0:
                                st[0] = next_id(si)
                                st[1] = None
                    elif data[1] == 0x0C:
                        s.send(intro_ack_packet(data[2:10], data[13:21]))
                answered += 1
                try:
                    s.send(build(si, slot))
                except OSError:
                    pass
            if got:
                last_rx[si] = time.monotonic()
    wall = time.monotonic() - wall_at_start
    out.put(
        {
            "worker": worker,
            "answered": answered - counted_at_start,
            "seconds": wall,
            "cpu_seconds": time.process_time() - cpu_at_start,
            "stalls": stalls,
            "peer_ids": sum(n_ids),
        }
    )


def _intro_setup(socks, window, worker, next_id):
    """
    Register and verify two peers per slot (blocking, before the clock
    starts); returns per socket, per slot C{(requester, cookie, target)}.
    """
    setup = []
    for si, s in enumerate(socks):
        s.setblocking(True)
        s.settimeout(2.0)
        row = []
        for slot in range(window):
            pair = []
            for _ in range(2):
                pid = next_id(si)
                cookie = _request(s, lambda t: register_packet(t, pid))[-8:]
                _request(s, lambda t: heartbeat_packet(t, pid, cookie))
                pair.append((pid, cookie))
            row.append((pair[0][0], pair[0][1], pair[1][0]))
        s.setblocking(False)
        setup.append(row)
    return setup


def _request(s, make):
    txid = os.urandom(8)
    for _ in range(5):
        s.send(make(txid))
        try:
            while True:
                data = s.recv(2048)
                if data[2:10] == txid:
                    return data
        except socket.timeout:
            continue
    raise RuntimeError("no answer during setup")


def run(
    mode: str,
    port: int,
    *,
    host: str = "127.0.0.1",
    processes: int = 2,
    sockets: int = 8,
    window: int = 16,
    heartbeats: int = 3,
    warmup: float = 1.0,
    duration: float = 5.0,
    stall: float = 0.2,
    cpu: int | None = 1,
    on_measure=None,
    generator: str = "c",
) -> dict:
    """
    Load C{host:port} and return answers per second with the generator's
    own CPU use.  C{on_measure(phase)} is called with "start" and "end"
    around the measured interval (to sample the server's CPU).
    C{generator} is the engine: C{c} or C{python} (C{intro} is always
    Python).
    """
    check_templates()
    if mode == "intro":
        generator = "python"
    if generator == "c":

        def workers():
            for w in range(processes):
                mine = [_socket(host, port) for _ in range(sockets)]
                yield c_plan(mode, [s.fileno() for s in mine], w, window, heartbeats, warmup, duration, stall,
                             cpu), mine

        results = _fastgen.run_workers(workers(), on_measure, warmup, duration)
    else:
        results = _run_python(mode, host, port, processes, sockets, window, heartbeats, warmup, duration,
                              stall, cpu, on_measure)
    answered = sum(r["answered"] for r in results)
    seconds = max(r["seconds"] for r in results)
    return {
        "mode": mode,
        "generator": generator,
        "processes": processes,
        "sockets_per_process": sockets,
        "window_per_socket": window,
        "outstanding": processes * sockets * window,
        "answered": answered,
        "seconds": seconds,
        "pps": answered / seconds,
        "generator_cpu": sum(r["cpu_seconds"] for r in results) / seconds,
        "generator_idle": sum(r["idle_seconds"] for r in results) / seconds if generator == "c" else None,
        "stalls": sum(r["stalls"] for r in results),
        "peer_ids": sum(r["peer_ids"] for r in results),
    }


def _run_python(mode, host, port, processes, sockets, window, heartbeats, warmup, duration, stall, cpu,
                on_measure) -> list[dict]:
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(mode, host, port, w, sockets, window, heartbeats, warmup, duration, stall, cpu, out),
        )
        for w in range(processes)
    ]
    for p in procs:
        p.start()
    sample_during(on_measure, warmup, duration, settle=2.0 if mode == "intro" else 0.3)
    results = [out.get(timeout=duration + warmup + 120) for _ in procs]
    for p in procs:
        p.join()
    return results
