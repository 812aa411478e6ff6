"""
The CPU cost of p2pnet's secure-session handshake
(C{Noise_IKpsk2_25519_AESGCM_BLAKE2s}), both sides in one process, no
sockets: the initiator builds message 1, the responder reads it and
writes message 2, the initiator reads message 2 (fresh ephemeral keys
every time; static keys made once).  Beside it, the same handshake with
the C{noiseprotocol} package from PyPI, for scale, if it is installed.

    python -m benchmarks.noise_handshake [--count 300] [--repeats 7]

Prints the median and the best of C{--repeats} runs of C{--count}
handshakes, in microseconds per handshake, and the median per step.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks._common import table, write_result
from p2pnet.secure._handshake import PROTOCOL_NAME, InitiatorHandshake, ResponderHandshake, derive_psk
from p2pnet.secure.identity import Identity

INTRO_ID = bytes(range(8))
INTRO_KEY = bytes(range(16))


def ours(count: int, alice: Identity, bob: Identity) -> dict:
    steps = {"message 1 (initiator)": 0.0, "read 1 + write 2 (responder)": 0.0, "read 2 (initiator)": 0.0}
    clock = time.perf_counter
    start = clock()
    for _ in range(count):
        t0 = clock()
        initiator = InitiatorHandshake(alice, bob.public, INTRO_ID, INTRO_KEY)
        message1 = initiator.message1()
        t1 = clock()
        responder = ResponderHandshake(bob, alice.public, INTRO_ID, INTRO_KEY)
        responder.read_message1(message1)
        message2, keys = responder.write_message2()
        t2 = clock()
        initiator.read_message2(message2)
        t3 = clock()
        steps["message 1 (initiator)"] += t1 - t0
        steps["read 1 + write 2 (responder)"] += t2 - t1
        steps["read 2 (initiator)"] += t3 - t2
    total = clock() - start
    return {"total": total / count * 1e6, **{k: v / count * 1e6 for k, v in steps.items()}}


def theirs(count: int, alice: Identity, bob: Identity) -> float | None:
    try:
        from noise.connection import Keypair, NoiseConnection
    except ImportError:
        return None
    name = PROTOCOL_NAME
    psk = derive_psk(INTRO_KEY)
    prologue = b"p2pnet/1" + INTRO_ID
    alice_private = alice.key_pair.private_bytes()
    bob_private = bob.key_pair.private_bytes()
    start = time.perf_counter()
    for _ in range(count):
        initiator = NoiseConnection.from_name(name)
        initiator.set_as_initiator()
        initiator.set_prologue(prologue)
        initiator.set_psks(psk=psk)
        initiator.set_keypair_from_private_bytes(Keypair.STATIC, alice_private)
        initiator.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, bob.public)
        initiator.start_handshake()
        responder = NoiseConnection.from_name(name)
        responder.set_as_responder()
        responder.set_prologue(prologue)
        responder.set_psks(psk=psk)
        responder.set_keypair_from_private_bytes(Keypair.STATIC, bob_private)
        responder.start_handshake()
        responder.read_message(bytes(initiator.write_message()))
        initiator.read_message(bytes(responder.write_message()))
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="handshakes per run")
    parser.add_argument("--repeats", type=int, default=7, help="runs")
    options = parser.parse_args()
    alice, bob = Identity.generate(), Identity.generate()
    ours(20, alice, bob)  # warm up
    runs = [ours(options.count, alice, bob) for _ in range(options.repeats)]
    reference = [theirs(options.count, alice, bob) for _ in range(options.repeats)]
    totals = [run["total"] for run in runs]
    rows = [["p2pnet IKpsk2, both sides", statistics.median(totals), min(totals)]]
    for step in runs[0]:
        if step != "total":
            values = [run[step] for run in runs]
            rows.append([f"  {step}", statistics.median(values), min(values)])
    if reference[0] is not None:
        rows.append(["noiseprotocol IKpsk2, both sides", statistics.median(reference), min(reference)])
    print(table(["handshake", "median µs", "best µs"], rows))
    path = write_result(
        "noise_handshake",
        {
            "count": options.count,
            "repeats": options.repeats,
            "ours_us": runs,
            "noiseprotocol_us": reference,
            "median_us": statistics.median(totals),
        },
    )
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
