"""
The cost of sealing and opening one data packet (L{p2pnet.secure._packet}),
beside the bare AES-256-GCM calls it is built on.

For each plaintext size, in alternating rounds:

  - C{aead encrypt} / C{aead decrypt}: pyca/cryptography's C{AESGCM.encrypt}
    and C{decrypt} with a 32-byte key, a 12-byte nonce and 12-byte
    associated data, the floor any sealing in Python pays;
  - C{seal}: L{PacketProtection.seal} (header, nonce, AEAD, concatenation,
    the rekey checks);
  - C{open}: L{PacketProtection.open} of packets sealed beforehand, in
    order (header checks, epoch lookup, replay check and mark, AEAD).

For reference, the same bare calls with ChaCha20-Poly1305, the cipher the
packets used before (and the usual choice on processors without AES
instructions): C{chacha20-poly1305 encrypt} / C{decrypt}.

Decryption (bare and C{open}) runs over batches of L{CHUNK} distinct
ciphertexts made just before each timed batch; only the decryption is
timed.

Each figure is the CPU time (of this thread; C{--wall}: wall-clock time)
of a loop of C{--packets} calls divided by their
number (loop overhead included, as a caller pays it); the table gives the
median and the best round.

    python -m benchmarks.secure_cost [--rounds 9] [--packets 51200] [--wall]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from p2pnet.secure._packet import PacketProtection
from benchmarks._common import table, write_result

SIZES = (64, 1200)
#: The timer: this thread's CPU time (C{--wall} for wall-clock time), so
#: time the scheduler gives other processes on a shared machine is not
#: counted.
_clock = time.thread_time

#: Decryption runs over this many distinct buffers at a time (sealed just
#: before, so in cache as a datagram just read from the socket would be).
CHUNK = 256


def _aead_encrypt(size: int, packets: int, cipher=AESGCM) -> float:
    aead = cipher(os.urandom(32))
    encrypt = aead.encrypt
    nonce, ad, plaintext = bytes(12), bytes(12), os.urandom(size)
    start = _clock()
    for _ in range(packets):
        encrypt(nonce, plaintext, ad)
    return (_clock() - start) / packets


def _aead_decrypt(size: int, packets: int, cipher=AESGCM) -> float:
    aead = cipher(os.urandom(32))
    decrypt = aead.decrypt
    nonce, ad = bytes(12), bytes(12)
    plaintext = os.urandom(size)
    elapsed = 0.0
    for _ in range(packets // CHUNK):
        ciphertexts = [aead.encrypt(nonce, plaintext, ad) for _ in range(CHUNK)]
        start = _clock()
        for ciphertext in ciphertexts:
            decrypt(nonce, ciphertext, ad)
        elapsed += _clock() - start
    return elapsed / (packets // CHUNK * CHUNK)


def _ends() -> tuple[PacketProtection, PacketProtection]:
    a_key, b_key = os.urandom(32), os.urandom(32)
    return PacketProtection(a_key, b_key, 0.0), PacketProtection(b_key, a_key, 0.0)


def _seal(size: int, packets: int) -> float:
    sender, _ = _ends()
    seal = sender.seal
    plaintext = os.urandom(size)
    start = _clock()
    for _ in range(packets):
        seal(7, plaintext, 1.0)
    return (_clock() - start) / packets


def _open(size: int, packets: int) -> float:
    sender, receiver = _ends()
    plaintext = os.urandom(size)
    open_ = receiver.open
    elapsed = 0.0
    for _ in range(packets // CHUNK):
        datagrams = [sender.seal(7, plaintext, 1.0) for _ in range(CHUNK)]
        start = _clock()
        for datagram in datagrams:
            open_(datagram, 1.0)
        elapsed += _clock() - start
    return elapsed / (packets // CHUNK * CHUNK)


KINDS = {
    "aead encrypt": _aead_encrypt,
    "seal": _seal,
    "aead decrypt": _aead_decrypt,
    "open": _open,
    "chacha20-poly1305 encrypt": lambda size, packets: _aead_encrypt(size, packets, ChaCha20Poly1305),
    "chacha20-poly1305 decrypt": lambda size, packets: _aead_decrypt(size, packets, ChaCha20Poly1305),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--packets", type=int, default=51_200)
    parser.add_argument("--wall", action="store_true", help="time with the wall clock, not CPU time")
    args = parser.parse_args()
    global _clock
    if args.wall:
        _clock = time.perf_counter

    runs: dict[str, dict[str, list[float]]] = {str(s): {k: [] for k in KINDS} for s in SIZES}
    for _ in range(args.rounds):
        for size in SIZES:
            for kind, measure in KINDS.items():
                runs[str(size)][kind].append(measure(size, args.packets) * 1e6)

    rows, summary = [], {}
    for size in SIZES:
        per = runs[str(size)]
        medians = {k: statistics.median(v) for k, v in per.items()}
        summary[str(size)] = {
            k: {"median_us": medians[k], "best_us": min(v)} for k, v in per.items()
        }
        for kind in KINDS:
            floor = medians["aead encrypt" if "encrypt" in kind or kind == "seal" else "aead decrypt"]
            rows.append([size, kind, medians[kind], min(per[kind]), medians[kind] - floor])
    print(table(["bytes", "operation", "median µs", "best µs", "above AES-256-GCM µs"], rows))
    path = write_result(
        "secure_cost",
        {
            "rounds": args.rounds,
            "packets": args.packets,
            "clock": "wall" if args.wall else "thread CPU time",
            "load_average": os.getloadavg(),
            "summary": summary,
            "runs_us": runs,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
