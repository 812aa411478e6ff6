"""
Hand-written mutants of the relay's checks (issues 14, 13 and 19): each
one takes out or weakens one check in the relay, its table, its client
side or the introducer's relay request handling; C{tests.test_relay}
must fail for every one.  Each mutant is applied to the file in place,
the tests run, and the file is restored (also on interruption).

    python -m benchmarks.relay_mutants [INDEX ...]

Prints one line per mutant, KILLED or SURVIVED, and the failing tests.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

MUTANTS = [
 ("p2pnet/relay.py", "        if not compare_digest(mac.tag(data[2:-_TAG]), data[-_TAG:]):\n            self._stats[\"dropped-unauthenticated\"] += 1\n            return\n        # Never", "        # Never", "tag check on a new allocation / unproven frame"),
 ("p2pnet/relay.py", "        if not compare_digest(mac.tag(data[2:-_TAG]), data[-_TAG:]):\n            self._stats[\"dropped-unauthenticated\"] += 1\n            return\n        if entry is not None and stamp", "        if entry is not None and stamp", "tag check on a binding answer"),
 ("p2pnet/_relaytable.py", "            if len(self.entries) >= self.max_allocations:", "            if False:", "max_allocations limit"),
 ("p2pnet/relay.py", "if entry.packets > max_packets or entry.bytes > max_bytes:", "if entry.packets > max_packets:", "byte cap"),
 ("p2pnet/relay.py", "if entry.packets > max_packets or entry.bytes > max_bytes:", "if entry.bytes > max_bytes:", "packet cap"),
 ("p2pnet/relay.py", "                    entry.last = now\n", "", "entry.last = now"),
 ("p2pnet/relay.py", "        self._sweep_call = self._clock.callLater(self.sweep_interval, self._sweep)\n\n    def _note", "\n    def _note", "sweep rescheduling"),
 ("p2pnet/relay.py", "refused_by_source(addr[0], now, size)", "refused_by_source(addr, now, size)", "source limiter keyed by ip:port"),
 ("p2pnet/_relaytable.py", "        ip = address[0]\n", "        ip = address\n", "table per-source keyed by ip:port"),
 ("p2pnet/relay.py", "if entry is not None and stamp <= entry.proven[side]:", "if False:", "replay check"),
 ("p2pnet/relay.py", '        where = f"{addr[0]}|{addr[1]}".encode()', '        where = b""', "proof names the address"),
 ("p2pnet/relay.py", "if stamp > self._last_stamp or stamp < now * 1000 - self._challenge_lifetime_ms:", "if False:", "freshness check"),
 ("p2pnet/relay.py", "if stamp > self._last_stamp or stamp < now * 1000 - self._challenge_lifetime_ms:", "if stamp < now * 1000 - self._challenge_lifetime_ms:", "future stamp check"),
 ("p2pnet/relay.py", "        if len(data) < BIND_FRAME_SIZE:\n            self._stats[\"dropped-unproven-small\"]", "        if False:\n            self._stats[\"dropped-unproven-small\"]", "no challenge larger than the frame"),
 ("p2pnet/relay.py", "        if not self._challenges.allow((data[2:11], addr[0]), now):", "        if False:", "challenge rate limit"),
 ("p2pnet/relay.py", "        stamp = max(int(now * 1000), self._last_stamp + 1)", "        stamp = int(now * 1000)", "strictly increasing stamps"),
 ("p2pnet/_relaytable.py", "                if not self._pending:\n                    return None, \"dropped-full\"\n                victim_id, victim = self._pending.popitem(last=False)\n                self._drop(victim_id, victim)", "                victim_id = next(iter(self.entries))\n                victim = self.entries[victim_id]\n                self._pending.pop(victim_id, None)\n                self._drop(victim_id, victim)", "evict half-bound first"),
 ("p2pnet/_relaytable.py", "            if entry.created > young:", "            if True:", "unbound lifetime"),
 ("p2pnet/_relaytable.py", "        for member in entry.members:\n            if member is not None:\n                self._release(member[0])", "        pass", "release per-source on drop"),
 ("p2pnet/_relaytable.py", "            if old is not None:\n                self._release(old[0])\n", "", "release per-source on move"),
 ("p2pnet/_relaytable.py", "if (old is None or old[0] != ip) and self._per_source.get(ip, 0) >= self.max_per_source:", "if False:", "per-source binding cap"),
 ("p2pnet/relay.py", "        if self._log_budget.allow(kind, now):\n", "        if True:\n", "log budget"),
 ("p2pnet/relay.py", "            if side & ~1 == ANSWER:", "            if side & ANSWER:", "challenge side byte not an answer"),
 ("p2pnet/endpoint.py", "                self.write(answer, route.relay)", "                self.write(answer, Address(\"192.0.2.66\", 6666))", "endpoint answers to the relay only"),
 ("p2pnet/_relayclient.py", "    nonce = wire.verify_relayed(_RELAYED + frame[2:], key)\n    if nonce is None:\n        return None\n", "    nonce = frame[11:-8]\n", "endpoint checks the challenge's tag"),
 ("p2pnet/_relaytable.py", "        if not entry.established and entry.members[1 - side] is not None:", "        if False:", "established allocations leave the pending list"),
 ("p2pnet/introducer.py", "            if by.get(requester.peer_id, 0) >= RELAY_OFFERS_PER_PEER:", "            if False:", "introducer per-requester cap"),
]


def main() -> int:
    only = sys.argv[1:]
    survived = 0
    for index, (path, old, new, what) in enumerate(MUTANTS):
        if only and str(index) not in only:
            continue
        file = pathlib.Path(path)
        source = file.read_text()
        if source.count(old) != 1:
            raise SystemExit(f"mutant {index} ({what}): its text is not in {path} exactly once")
        file.write_text(source.replace(old, new))
        try:
            run = subprocess.run(
                [sys.executable, "-m", "twisted.trial", "tests.test_relay"], capture_output=True, text=True
            )
        finally:
            file.write_text(source)
        failed = sorted({line.split(".")[-1] for line in run.stdout.splitlines() if line.startswith("tests.") and line.count(".") >= 3})
        survived += run.returncode == 0
        print(f"{index:2d} {what:48s} {'SURVIVED' if run.returncode == 0 else 'KILLED  '} {', '.join(failed[:3])}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
