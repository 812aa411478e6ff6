"""
A closed-loop load generator for relays, written for speed like
L{benchmarks._loadgen}: worker processes pinned to one core, plain
C{socket} + C{epoll}, every datagram a precomputed byte string.

Each worker owns C{pairs} pairs of connected non-blocking UDP sockets
(A, B), one relay allocation per pair.  Each pair keeps C{window} packets
circulating: A sends packet I{k} through the relay to B; when B receives
it, B sends packet I{k} back through the relay to A; when A receives it, A
sends it to B again, and so on.  Every datagram received has crossed the
relay once and is counted as one forwarded packet.

The relayed datagram is the same for both relays: a p2pnet data datagram
(L{wire.encode_data}: 4 bytes of framing, C{payload} bytes of application
payload starting with the pair and slot numbers, an 8-byte data tag as with
C{PeerConfig.authenticate_data}).  What goes on the wire around it:

  - C{p2pnet}: both A and B are members of a p2pnet relay allocation (A is
    side 0, B side 1).  They send RELAYED frames (L{wire.encode_relayed}:
    11-byte header, the datagram, an 8-byte HMAC-SHA256 tag with the
    allocation key over bytes 2..-8, which is exactly what
    L{RelayProtocol} verifies, with L{wire.verify_relayed}); the relay
    forwards them as RELAY_FORWARD (only the type byte differs).  The tag
    covers the payload, so there is one precomputed frame per (allocation,
    side, slot).
  - C{coturn}: A is a TURN client (Allocate answered 401, then repeated
    with long-term credentials; ChannelBind of channel 0x4000 to B's
    address) and sends ChannelData (4-byte header + datagram); coturn sends
    the bare datagram from A's relayed address to B; B, a plain peer, sends
    the bare datagram back to the relayed address and coturn delivers it to
    A as ChannelData.
  - C{direct}: no relay, A and B connected to each other, sending the
    p2pnet templates: the generator's own ceiling with the same per-packet
    work (one C{recv}, one dict lookup, one C{send}).

Every received datagram is looked up in a per-socket table of the exact
bytes expected (anything else is counted as C{unexpected} and dropped).
Before the load starts each pair passes one packet A -> B -> A through the
relay and checks the bytes, so a relay that does not relay fails setup
loudly.

Lost datagrams: every C{stall} seconds, each slot of each pair that saw no
packet since the previous check is resent from A (counted in C{resent}).

Two engines run the loop once the pairs are set up: C{c} (the default;
L{benchmarks._fastgen}: the same sockets and the same byte tables, the
loop in C with recvmmsg/sendmmsg batches) and C{python} (the loop below,
which costs more per packet than coturn does and so could not load it to
its limit).
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
from p2pnet import stun, turn, wire
from p2pnet._relayclient import answer_challenge
from p2pnet.address import Address

CHANNEL = turn.CHANNEL_MIN
_DATA_KEY = b"benchmark data k"
_SOCKBUF = 1 << 20


def datagram(worker: int, pair: int, slot: int, payload: int) -> bytes:
    """
    The relayed p2pnet data datagram of one slot (payload C{payload} bytes).
    """
    head = struct.pack("!BHH", worker, pair, slot)
    body = head + bytes(payload - len(head))
    return wire.encode_data((worker << 8 | pair) & 0xFFFF, body, _DATA_KEY)


def p2pnet_templates(secret: bytes, allocation: bytes, inners: list[bytes]):
    """
    Per slot: the RELAYED frames A (side 0) and B (side 1) send, and the
    RELAY_FORWARD frames the relay makes of them.  Checked against the
    relay's own verification.
    """
    key = wire.relay_key(secret, allocation)
    sent = [[wire.encode_relayed(allocation, side, inner, key) for inner in inners] for side in (0, 1)]
    for side in (0, 1):
        for inner, frame in zip(inners, sent[side]):
            assert wire.verify_relayed(frame, key) == inner
            assert wire.relayed_fields(frame) == (allocation, side)
    forwarded = [[bytes((wire.MAGIC, wire.MessageType.RELAY_FORWARD)) + f[2:] for f in row] for row in sent]
    return sent, forwarded


def bind(sock: socket.socket, frame: bytes, key: bytes, pump=None) -> None:
    """
    Bind C{sock} (connected to the relay) as the member that sends
    C{frame}: the frame draws the relay's challenge, the answer binds.
    C{pump}, if given, makes an in-process relay read what was sent.
    """
    allocation, side = wire.relayed_fields(frame)
    for datagram in (frame, None):
        if datagram is None:
            datagram = answer_challenge(sock.recv(2048), allocation, side, key)
            if datagram is None:
                raise RuntimeError("the relay's challenge did not verify")
        sock.send(datagram)
        if pump is not None:
            pump()


# --- TURN setup (blocking, before the clock starts) ---------------------------


def _transact(sock: socket.socket, message: stun.StunMessage, key: bytes | None) -> stun.StunMessage:
    """
    Send a request until its answer comes; with C{key}, the answer must
    carry a MESSAGE-INTEGRITY made with it.
    """
    raw = stun.encode(message, integrity_key=key)
    for _ in range(5):
        sock.send(raw)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                data = sock.recv(2048)
            except socket.timeout:
                break
            if not stun.looks_like_stun(data):
                continue
            answer = stun.decode(data)
            if answer.transaction_id == message.transaction_id:
                if key is not None and not stun.verify_integrity(data, key):
                    raise RuntimeError(f"answer to {message.method:#x} without valid MESSAGE-INTEGRITY: {answer}")
                return answer
    raise RuntimeError(f"no answer from the TURN server to {message.method:#x}")


def turn_allocate(a: socket.socket, peer: tuple, user: str, password: str) -> tuple:
    """
    On A's socket (connected to the TURN server): Allocate (expect 401,
    repeat with credentials), ChannelBind L{CHANNEL} to C{peer}.  Returns
    the relayed address.
    """
    transport = stun.RawAttribute(stun.AttributeType.REQUESTED_TRANSPORT, b"\x11\0\0\0")
    first = _transact(a, stun.StunMessage.request(stun.Method.ALLOCATE, [transport]), None)
    error = first.error_code
    if first.message_class != stun.MessageClass.ERROR or error is None or error.code != 401:
        raise RuntimeError(f"expected 401 to an unauthenticated Allocate, got {first}")
    realm, nonce = first.get(stun.Realm).text, first.get(stun.Nonce).text
    key = stun.long_term_key(user, realm, password)
    creds = [stun.Username(user), stun.Realm(realm), stun.Nonce(nonce)]
    answer = _transact(a, stun.StunMessage.request(stun.Method.ALLOCATE, [transport, *creds]), key)
    if answer.message_class != stun.MessageClass.SUCCESS:
        raise RuntimeError(f"authenticated Allocate failed: {answer}")
    relayed = turn._read_xor(answer, stun.AttributeType.XOR_RELAYED_ADDRESS)
    request = stun.StunMessage.request(stun.Method.CHANNEL_BIND, [])
    request = stun.StunMessage.request(
        stun.Method.CHANNEL_BIND,
        [turn._channel_number(CHANNEL), turn._xor_peer(Address(*peer), request.transaction_id), *creds],
        request.transaction_id,
    )
    answer = _transact(a, request, key)
    if answer.message_class != stun.MessageClass.SUCCESS:
        raise RuntimeError(f"ChannelBind failed: {answer}")
    return (relayed.host, relayed.port)


# --- the worker ---------------------------------------------------------------


def _socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKBUF)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKBUF)
    s.bind(("127.0.0.1", 0))
    return s


def _setup_pair(mode, server, worker, pi, window, payload, secret, credentials):
    """
    Two connected sockets and, per socket, the table: received bytes ->
    (bytes to send back, slot); and the bytes A sends first per slot.
    """
    a, b = _socket(), _socket()
    inners = [datagram(worker, pi, k, payload) for k in range(window)]
    if mode in ("p2pnet", "direct"):
        allocation = struct.pack("!HHI", worker, pi, os.getpid() & 0xFFFFFFFF)
        sent, forwarded = p2pnet_templates(secret, allocation, inners)
        arrive = forwarded if mode == "p2pnet" else sent
        if mode == "p2pnet":
            a.connect(server)
            b.connect(server)
        else:
            a.connect(b.getsockname())
            b.connect(a.getsockname())
        first = sent[0]
        # at A: B's frame of slot k arrives -> A's frame of slot k goes out
        table_a = {arrive[1][k]: (sent[0][k], k) for k in range(window)}
        table_b = {arrive[0][k]: (sent[1][k], k) for k in range(window)}
        if mode == "p2pnet":
            # Each member's first datagram draws the relay's challenge and
            # the answer binds it, as a real member's first hello does.
            key = wire.relay_key(secret, allocation)
            for side, member in ((1, b), (0, a)):
                member.settimeout(2.0)
                bind(member, sent[side][0], key)
    else:
        a.connect(server)
        a.settimeout(1.0)
        relayed = turn_allocate(a, b.getsockname(), *credentials)
        b.connect(relayed)
        channel = [turn.encode_channel_data(CHANNEL, inner) for inner in inners]
        first = channel
        table_a = {channel[k]: (channel[k], k) for k in range(window)}
        table_b = {inners[k]: (inners[k], k) for k in range(window)}
    # one packet there and back through the relay, bytes checked
    for s in (a, b):
        s.settimeout(2.0)
    for attempt in range(5):
        a.send(first[0])
        try:
            got = b.recv(2048)
            if got not in table_b:
                raise RuntimeError(f"{mode}: B received unexpected bytes {got[:24].hex()}...")
            b.send(table_b[got][0])
            got = a.recv(2048)
            if got not in table_a:
                raise RuntimeError(f"{mode}: A received unexpected bytes {got[:24].hex()}...")
            break
        except socket.timeout:
            continue
    else:
        raise RuntimeError(f"{mode}: pair {pi} of worker {worker}: nothing came back through the relay")
    for s in (a, b):
        s.setblocking(False)
    return a, b, table_a, table_b, first


def _worker(mode, server, worker, pairs, window, payload, secret, credentials,
            warmup, duration, stall, cpu, ready, go, out):
    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        setup = [_setup_pair(mode, server, worker, pi, window, payload, secret, credentials) for pi in range(pairs)]
    except Exception as e:  # report to the parent instead of hanging it
        ready.put((worker, repr(e)))
        return
    ready.put((worker, None))
    go.wait()

    ep = select.epoll()
    by_fd = {}
    seen = []
    for a, b, table_a, table_b, first in setup:
        row = bytearray(window)
        seen.append((row, a, first))
        for s, table in ((a, table_a), (b, table_b)):
            ep.register(s.fileno(), select.EPOLLIN)
            by_fd[s.fileno()] = (s, table, row)
    for _, a, first in seen:
        for k in range(window):
            a.send(first[k])

    received = 0
    unexpected = 0
    resent = 0
    send_errors = 0
    start = time.monotonic()
    measure_from = start + warmup
    end = measure_from + duration
    next_check = start + stall
    counted_at_start = None
    cpu_at_start = wall_at_start = None
    poll = ep.poll
    polls = 0
    while True:
        now = time.monotonic()
        if counted_at_start is None and now >= measure_from:
            counted_at_start = received
            polls_at_start = polls
            cpu_at_start = time.process_time()
            wall_at_start = now
        if now >= end:
            break
        if now >= next_check:
            next_check = now + stall
            for row, a, first in seen:
                for k in range(window):
                    if not row[k]:
                        resent += 1
                        try:
                            a.send(first[k])
                        except OSError:
                            send_errors += 1
                    row[k] = 0
        polls += 1
        for fd, _ in poll(0.01):
            s, table, row = by_fd[fd]
            recv = s.recv
            send = s.send
            get = table.get
            while True:
                try:
                    data = recv(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                hit = get(data)
                if hit is None:
                    unexpected += 1
                    continue
                received += 1
                row[hit[1]] = 1
                try:
                    send(hit[0])
                except OSError:
                    send_errors += 1
    wall = time.monotonic() - wall_at_start
    out.put(
        {
            "worker": worker,
            "received": received - counted_at_start,
            "seconds": wall,
            "cpu_seconds": time.process_time() - cpu_at_start,
            "resent": resent,
            "unexpected": unexpected,
            "send_errors": send_errors,
            "polls": polls - polls_at_start,
        }
    )


def c_plan(setup, window, payload, worker, warmup, duration, stall, cpu) -> tuple[bytes, list]:
    """
    The C engine's plan for one worker's set-up pairs (L{_setup_pair}),
    and the sockets it runs on: the same byte tables as the Python loop,
    ordered by slot, with where each socket's datagrams carry the slot.
    """
    fds, offsets, tables, socks = [], [], [], []
    for pi, (a, b, table_a, table_b, _) in enumerate(setup):
        inner = datagram(worker, pi, 0, payload)
        for s, table in ((a, table_a), (b, table_b)):
            rows = [(expected, answer) for expected, (answer, _) in sorted(table.items(), key=lambda i: i[1][1])]
            # the inner datagram's body starts with !BHH worker, pair, slot
            offsets.append(rows[0][0].index(inner[:wire.DATA_HEADER_SIZE + 3]) + wire.DATA_HEADER_SIZE + 3)
            tables.append(rows)
            fds.append(s.fileno())
            socks.append(s)
    plan = _fastgen.table_plan(fds, window, offsets, tables, warmup=warmup, duration=duration, stall=stall, cpu=cpu)
    return plan, socks


def run(
    mode: str,
    server: tuple | None,
    *,
    secret: bytes = b"",
    credentials: tuple = ("u", "p"),
    processes: int = 2,
    pairs: int = 8,
    window: int = 16,
    payload: int = 100,
    warmup: float = 1.0,
    duration: float = 5.0,
    stall: float = 0.5,
    cpu: int | None = 1,
    on_measure=None,
    generator: str = "c",
) -> dict:
    """
    Run the closed loop through C{server} (C{(host, port)}; None for
    C{direct}) and return forwarded packets per second with the generator's
    own CPU use.  C{on_measure(phase)} is called with "start" and "end"
    inside the measured interval (to sample the server's CPU).
    C{generator} is the loop's engine, C{c} or C{python}.

    @raise RuntimeError: if setup fails (e.g. nothing comes back through
        the relay) or nothing is forwarded in the measured interval.
    """
    if generator == "c":
        results = _run_c(mode, server, secret, credentials, processes, pairs, window, payload, warmup, duration,
                         stall, cpu, on_measure)
    else:
        results = _run_python(mode, server, secret, credentials, processes, pairs, window, payload, warmup,
                              duration, stall, cpu, on_measure)
    received = sum(r["received"] for r in results)
    seconds = max(r["seconds"] for r in results)
    if received == 0:
        raise RuntimeError(f"{mode}: nothing was forwarded in {seconds:.1f} s")
    inner = len(datagram(0, 0, 0, payload))
    return {
        "mode": mode,
        "generator": generator,
        "processes": processes,
        "pairs_per_process": pairs,
        "window_per_pair": window,
        "outstanding": processes * pairs * window,
        "payload_bytes": payload,
        "relayed_datagram_bytes": inner,
        "wire_bytes": {
            "p2pnet": {"to_relay": inner + wire.RELAY_HEADER_SIZE + wire.DATA_TAG_SIZE,
                       "from_relay": inner + wire.RELAY_HEADER_SIZE + wire.DATA_TAG_SIZE},
            "coturn": {"client_leg_channeldata": inner + 4, "peer_leg": inner},
            "direct": {"each_way": inner + wire.RELAY_HEADER_SIZE + wire.DATA_TAG_SIZE},
        }[mode],
        "forwarded": received,
        "seconds": seconds,
        "pps": received / seconds,
        "generator_cpu": sum(r["cpu_seconds"] for r in results) / seconds,
        "generator_idle": sum(r["idle_seconds"] for r in results) / seconds if generator == "c" else None,
        "resent": sum(r["resent"] for r in results),
        "unexpected": sum(r["unexpected"] for r in results),
        "send_errors": sum(r["send_errors"] for r in results),
        "epoll_waits": sum(r["polls"] for r in results),
    }


def _run_c(mode, server, secret, credentials, processes, pairs, window, payload, warmup, duration, stall, cpu,
           on_measure) -> list[dict]:
    workers = (
        c_plan([_setup_pair(mode, server, w, pi, window, payload, secret, credentials) for pi in range(pairs)],
               window, payload, w, warmup, duration, stall, cpu)
        for w in range(processes)
    )
    results = _fastgen.run_workers(workers, on_measure, warmup, duration)
    for r in results:
        r["received"] = r.pop("answered")
        r["resent"] = r.pop("stalls")
    return results


def _run_python(mode, server, secret, credentials, processes, pairs, window, payload, warmup, duration, stall,
                cpu, on_measure) -> list[dict]:
    ctx = multiprocessing.get_context("fork")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(
            target=_worker,
            args=(mode, server, w, pairs, window, payload, secret, credentials,
                  warmup, duration, stall, cpu, ready, go, out),
        )
        for w in range(processes)
    ]
    for p in procs:
        p.start()
    errors = []
    for _ in procs:
        worker, error = ready.get(timeout=120)
        if error is not None:
            errors.append(f"worker {worker}: {error}")
    if errors:
        for p in procs:
            p.terminate()
            p.join()
        raise RuntimeError(f"{mode}: setup failed: " + "; ".join(errors))
    go.set()
    sample_during(on_measure, warmup, duration)
    results = [out.get(timeout=duration + warmup + 120) for _ in procs]
    for p in procs:
        p.join()
    return results
