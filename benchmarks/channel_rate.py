"""
Channel machine throughput on one core: two L{ChannelMachine}s in one
process joined by the virtual link of L{p2pnet.testing.channellink}
(1 ms each way, no rate limit unless said), so every figure is the CPU
both ends spend, sender and receiver together, without sockets or
encryption.

  - 64 B reliable-ordered messages per CPU second, coalesced (sent with
    C{flush=False}: many per datagram) and one per datagram (one
    C{send} then C{datagrams_to_send} each, spaced so each leaves alone),
    through the link model and through the thinnest possible owner (two
    FIFO queues with a fixed delay, "direct": the machines' own cost);
  - bulk goodput: one 16 MiB reliable message through 0/2/10% random loss
    each way, as MB per CPU second (no rate limit), and as MB per virtual
    second through a 12.5 MB/s (100 Mbit/s), 50 ms RTT bottleneck with a
    256 kB buffer.

    python -m benchmarks.channel_rate [--messages 200000] [--bulk-mib 16]
"""

from __future__ import annotations

import argparse
import time
from collections import deque

from benchmarks._common import table, write_result
from p2pnet.channels import Channel, ChannelMachine, Delivery, MessageReceived
from p2pnet.testing.channellink import Direction, Link

CHANNELS = [Channel(0, Delivery.RELIABLE_ORDERED)]


def _delivered(link) -> list:
    return [e for _, e in link.received[1] if isinstance(e, MessageReceived)]


def coalesced(count: int) -> dict:
    a, b = ChannelMachine(CHANNELS), ChannelMachine(CHANNELS)
    link = Link(a, b, Direction(delay=0.001), Direction(delay=0.001))
    message = bytes(64)
    started = time.process_time()

    def send():
        for _ in range(count):
            a.send(0, message, flush=False)

    link.at(0.0, send)
    link.run(stop=lambda: link.idle() and link.now > 0)
    cpu = time.process_time() - started
    got = len(_delivered(link))
    assert got == count, (got, count)
    return {
        "mode": "coalesced",
        "messages": count,
        "datagrams": a.stats().packets_sent,
        "cpu_seconds": cpu,
        "messages_per_cpu_second": count / cpu,
    }


def one_per_datagram(count: int) -> dict:
    a, b = ChannelMachine(CHANNELS), ChannelMachine(CHANNELS)
    link = Link(a, b, Direction(delay=0.001), Direction(delay=0.001))
    message = bytes(64)
    # Spaced 100 us apart (virtual): well under BBR's pacing rate once
    # past start-up, so every message leaves in its own datagram.
    step = 100e-6
    left = [count]

    def send():
        # Each send schedules the next, so the event queue stays short.
        a.send(0, message)
        left[0] -= 1
        if left[0]:
            link.at(link.now + step, send)

    started = time.process_time()
    link.at(0.0, send)
    link.run(stop=lambda: not left[0] and link.idle())
    cpu = time.process_time() - started
    got = len(_delivered(link))
    assert got == count, (got, count)
    datagrams = a.stats().packets_sent
    return {
        "mode": "one per datagram",
        "messages": count,
        "datagrams": datagrams,
        "cpu_seconds": cpu,
        "messages_per_cpu_second": count / cpu,
    }


def _direct(count: int, step: float, flush: bool, delay: float = 0.001) -> dict:
    """
    The same exchange without the link model: the thinnest owner there can
    be (two FIFO queues with a fixed delay, one timer per machine), so the
    CPU is the machines' own.  C{step} 0 sends all messages at once.
    """
    a, b = ChannelMachine(CHANNELS), ChannelMachine(CHANNELS)
    queues = (deque(), deque())  # a -> b, b -> a: (arrival, datagram)
    machines = (a, b)
    timers = [None, None]
    message = bytes(64)
    now = 0.0
    left = count
    next_send = 0.0
    received = 0
    inf = float("inf")

    def service(side):
        machine = machines[side]
        queue = queues[side]
        arrival = now + delay
        for datagram in machine.datagrams_to_send(now):
            queue.append((arrival, datagram))
        timers[side] = machine.get_timer()

    started = time.process_time()
    while True:
        when_send = next_send if left else inf
        when_ab = queues[0][0][0] if queues[0] else inf
        when_ba = queues[1][0][0] if queues[1] else inf
        when_ta = timers[0] if timers[0] is not None else inf
        when_tb = timers[1] if timers[1] is not None else inf
        now = min(when_send, when_ab, when_ba, when_ta, when_tb)
        if now == inf or (not left and received == count and not queues[0] and not queues[1]
                          and not a.sent.bytes_in_flight):
            break
        if now == when_send:
            if step:
                a.send(0, message, flush=flush)
                left -= 1
                next_send = now + step
            else:
                for _ in range(left):
                    a.send(0, message, flush=flush)
                left = 0
            service(0)
        elif now == when_ab:
            b.receive(queues[0].popleft()[1], now)
            while b.next_event() is not None:
                received += 1
            service(1)
        elif now == when_ba:
            a.receive(queues[1].popleft()[1], now)
            service(0)
        elif now == when_ta:
            a.handle_timer(now)
            service(0)
        else:
            b.handle_timer(now)
            while b.next_event() is not None:
                received += 1
            service(1)
    cpu = time.process_time() - started
    assert received == count, (received, count)
    return {
        "mode": ("one per datagram" if step else "coalesced") + ", direct",
        "messages": count,
        "datagrams": a.stats().packets_sent,
        "cpu_seconds": cpu,
        "messages_per_cpu_second": count / cpu,
    }


def bulk(size: int, loss: float, rate: float | None, delay: float, seed: int = 1) -> dict:
    a, b = ChannelMachine(CHANNELS), ChannelMachine(CHANNELS)
    ab = Direction(delay=delay, loss=loss, rate=rate, queue=256_000)
    link = Link(a, b, ab, Direction(delay=delay, loss=loss), seed=seed)
    message = bytes(size)
    link.at(0.0, lambda: a.send(0, message))
    started = time.process_time()
    link.run(stop=lambda: bool(link.received[1]))
    cpu = time.process_time() - started
    [event] = _delivered(link)
    assert len(event.data) == size
    stats = a.stats()
    return {
        "loss": loss,
        "bottleneck_bytes_per_second": rate,
        "rtt": 2 * delay,
        "bytes": size,
        "virtual_seconds": link.now,
        "goodput_virtual_MBps": size / link.now / 1e6,
        "cpu_seconds": cpu,
        "goodput_per_cpu_second_MBps": size / cpu / 1e6,
        "sender_measured_loss": stats.loss,
        "bandwidth_estimate_MBps": stats.bandwidth / 1e6,
        "packets_sent": stats.packets_sent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--bulk-mib", type=int, default=16)
    args = parser.parse_args()
    rates = [
        coalesced(args.messages),
        one_per_datagram(args.messages // 4),
        _direct(args.messages, 0.0, False),
        _direct(args.messages // 4, 100e-6, True),
    ]
    print(table(
        ["mode", "messages", "datagrams", "CPU s", "64 B msgs / CPU s"],
        [[r["mode"], r["messages"], r["datagrams"], r["cpu_seconds"], r["messages_per_cpu_second"]] for r in rates],
    ))
    size = args.bulk_mib * 1024 * 1024
    bulks = []
    for loss in (0.0, 0.02, 0.10):
        bulks.append(bulk(size, loss, None, 0.001))
    for loss in (0.0, 0.02, 0.10):
        bulks.append(bulk(size, loss, 12_500_000, 0.025))
    print()
    print(table(
        ["loss", "bottleneck B/s", "RTT", "MB / CPU s", "virtual MB/s", "virtual s", "est. MB/s"],
        [[b["loss"], b["bottleneck_bytes_per_second"] or "none", b["rtt"],
          b["goodput_per_cpu_second_MBps"], b["goodput_virtual_MBps"], b["virtual_seconds"],
          b["bandwidth_estimate_MBps"]] for b in bulks],
    ))
    path = write_result("channel_rate", {"message_rate": rates, "bulk": bulks})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
