"""
Per-datagram framing and idle-path keepalive cost.

  - Framing: C{len(wire.encode_data(conn_id, payload[, key])) - len(payload)},
    without and with data authentication (C{PeerConfig.authenticate_data}).
  - Keepalives: two peers behind port-restricted NATs on the simulator
    connect, then the connection stays idle for 10 simulated minutes; every
    datagram each endpoint writes is decoded and counted by type.

    python -m benchmarks.overhead [--minutes 10]
"""

from __future__ import annotations

import argparse
import random
from collections import Counter

from twisted.internet.task import Clock

from p2pnet import wire
from p2pnet._registry import Registry
from p2pnet.endpoint import PeerConfig, PeerEndpoint
from p2pnet.introducer import IntroducerProtocol
from p2pnet.testing._simnet import Network
from p2pnet.testing.scenarios import INTRODUCER, _Factory, _Recorder, _run_until, add_site, seeded_bytes
from benchmarks._common import table, write_result


def framing() -> list[dict]:
    rows = []
    for size in (0, 32, 100, 1000):
        payload = bytes(size)
        plain = len(wire.encode_data(7, payload)) - size
        tagged = len(wire.encode_data(7, payload, b"k" * 16)) - size
        rows.append({"payload": size, "framing": plain, "framing_authenticated": tagged})
    return rows


def keepalives(minutes: float, seed: int = 0) -> dict:
    clock = Clock()
    network = Network(clock, seed=seed)
    random_bytes = seeded_bytes(random.Random(seed))
    ihost = network.add_host(INTRODUCER.host, name="introducer")
    ihost.listenUDP(INTRODUCER.port, IntroducerProtocol(clock, Registry(60.0, random_bytes), random_bytes))
    hosts = {"A": add_site(network, "port-restricted", 1), "B": add_site(network, "port-restricted", 2)}
    network.set_link(hosts["A"], latency=0.02)
    network.set_link(hosts["B"], latency=0.03)
    sent = {"A": Counter(), "B": Counter()}
    counting = {"on": False}

    def counted(side, host):
        listen = host.listenUDP

        def listen_and_count(*a, **kw):
            port = listen(*a, **kw)
            write = port.write

            def write_and_count(data, addr=None):
                if counting["on"]:
                    kind = wire.MessageType(data[1]).name if data[:1] == b"\xd1" else "other"
                    to = "introducer" if addr and addr[0] == INTRODUCER.host else "peer"
                    sent[side][(to, kind)] += 1
                return write(data, addr)

            port.write = write_and_count
            return port

        host.listenUDP = listen_and_count

    for side, host in hosts.items():
        counted(side, host)
    config = PeerConfig()
    a = PeerEndpoint(hosts["A"], INTRODUCER, "A", config=config, random_bytes=random_bytes)
    b = PeerEndpoint(hosts["B"], INTRODUCER, "B", config=config, random_bytes=random_bytes, factory=_Factory())
    started = []
    a.start().addBoth(started.append)
    b.start().addBoth(started.append)
    _run_until(clock, 0.01, 10, lambda: len(started) == 2)
    done = []
    a.connect("B", _Recorder()).addBoth(done.append)
    _run_until(clock, 0.01, 10, lambda: bool(done))
    assert done and not isinstance(done[0], Exception), done
    _run_until(clock, 0.01, 1.0, lambda: False)  # let the handshake's last packets go
    counting["on"] = True
    begin = clock.seconds()
    _run_until(clock, 0.05, minutes * 60, lambda: False)
    elapsed = clock.seconds() - begin
    still = bool(a.connections) and bool(b.connections)
    counting["on"] = False
    a.stop()
    b.stop()
    _run_until(clock, 0.01, 1.0, lambda: False)
    return {
        "idle_seconds": elapsed,
        "connected_at_end": still,
        "sent": {side: {f"{to} {kind}": n for (to, kind), n in sorted(c.items())} for side, c in sent.items()},
        "keepalives_per_minute": {
            side: sum(n for (to, kind), n in c.items() if to == "peer") / (elapsed / 60) for side, c in sent.items()
        },
        "introducer_packets_per_minute": {
            side: sum(n for (to, kind), n in c.items() if to == "introducer") / (elapsed / 60)
            for side, c in sent.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--name", default="overhead")
    args = parser.parse_args()
    frames = framing()
    print(table(["payload bytes", "framing bytes", "framing, authenticate_data"],
                [[f["payload"], f["framing"], f["framing_authenticated"]] for f in frames]))
    idle = keepalives(args.minutes)
    print(f"\nIdle connection, {idle['idle_seconds']:.0f} simulated seconds (still connected: {idle['connected_at_end']}):")
    rows = []
    for side in ("A", "B"):
        for what, n in idle["sent"][side].items():
            rows.append([side, what, n, n / (idle["idle_seconds"] / 60)])
    print(table(["side", "sent to / type", "packets", "per minute"], rows))
    print(f"peer-path packets per minute: {idle['keepalives_per_minute']} (goal <= 4 each way)")
    print(f"wrote {write_result(args.name, {'settings': vars(args), 'framing': frames, 'idle': idle})}")


if __name__ == "__main__":
    main()
