"""
Kernel lab with defaults only (issue 16): the introducer started as
C{p2pnet introducer --port 3478} (one IP address: its relay on the next
port, a second STUN port after it) and plain C{p2pnet peer}s (only
C{--introducer}, C{--name}, what to connect to, and C{--json --send} to
watch them).  Symmetric <-> symmetric ends relayed; cone <-> symmetric
connects directly through the birthday search.

Like C{tests/test_netlab.py}: they need Linux, root, C{ip} and C{nft};
without them they skip, except under CI (C{CI=true}), where a missing
prerequisite fails.  Measured rates over many runs:
C{python -m benchmarks.lab_defaults} (docs/netlab.md, "Defaults only").
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from p2pnet.testing.netlab import INTRODUCER_ADDRESS, Lab, LabProcess
from tests.test_netlab import CONNECT_TIMEOUT, PeerScenarioMixin

PORT = 3478


def defaults_introducer_argv() -> list[str]:
    """
    The introducer with no option but its port.
    """
    return Lab.p2pnet_argv("introducer", "--port", str(PORT))


def defaults_peer_argv(name: str, *what: str) -> list[str]:
    """
    A peer with no option that changes its behaviour.
    """
    return Lab.p2pnet_argv("peer", "--introducer", f"{INTRODUCER_ADDRESS}:{PORT}", "--name", name,
                           "--json", "--send", f"from-{name}", *what)


def introducer_listening(process: LabProcess, timeout: float) -> bool:
    """
    Wait until the introducer, its relay and its second STUN port listen.
    """
    seen = set()

    def listening(line: str) -> bool:
        for what in ("introducer", "relay", "STUN alt-port"):
            if f"p2pnet {what} listening" in line:
                seen.add(what)
        return len(seen) == 3

    return bool(process.wait_for_line(listening, timeout))


class DefaultsScenarios(PeerScenarioMixin, SynchronousTestCase):
    def start_defaults_introducer(self) -> None:
        introducer = self.lab.spawn("introducer", defaults_introducer_argv())
        self.processes.append(introducer)
        self.check(introducer_listening(introducer, CONNECT_TIMEOUT), "the introducer did not start")

    def pair(self, first: str, second: str, suffix: str = "") -> tuple[LabProcess, LabProcess, dict, dict]:
        """
        Start C{second} (waits until registered), then C{first} connecting
        to it; wait until both are connected and datagrams crossed.
        """
        second_name, first_name = f"{second}{suffix}", f"{first}{suffix}"
        passive = self.lab.spawn(second, defaults_peer_argv(second_name))
        self.processes.append(passive)
        self.check(passive.wait_for_event("registered", CONNECT_TIMEOUT), f"{second_name} did not register")
        active = self.lab.spawn(first, defaults_peer_argv(first_name, "--connect", second_name))
        self.processes.append(active)
        on_first = active.wait_for_event("connected", CONNECT_TIMEOUT, peer=second_name)
        on_second = passive.wait_for_event("connected", CONNECT_TIMEOUT, peer=first_name)
        self.check(on_first and on_second, f"{first_name} and {second_name} did not both connect")
        self.assert_datagrams(active, second_name)
        self.assert_datagrams(passive, first_name)
        return active, passive, on_first, on_second

    def test_symmetric_pair_relayed(self) -> None:
        """
        Symmetric <-> symmetric (C{fully-random} NATs): both peers learn
        from their NAT checks that no direct path can exist, ask for the
        introducer's default relay at once, and exchange datagrams through
        it.
        """
        self.lab.add_site("left", "symmetric")
        self.lab.add_site("right", "symmetric")
        self.lab.add_host("left", "alice")
        self.lab.add_host("right", "bob")
        self.start_defaults_introducer()
        alice, bob, on_alice, on_bob = self.pair("alice", "bob")
        for event in (on_alice, on_bob):
            self.check(event["path"] == "relayed", f"expected relayed: {event}")
            self.check(event["address"] == f"relay {INTRODUCER_ADDRESS}:{PORT + 1}", f"not our relay: {event}")
        introduced = next(e["t"] for e in alice.events if e.get("event") == "introduced")
        relaying = next(e["t"] for e in alice.events if e.get("event") == "relaying")
        self.check(relaying - introduced < 1.0, f"the relay was not asked for at once ({relaying - introduced} s)")

    #: Attempts at a direct cone <-> symmetric path before giving up.
    attempts = 3

    def test_cone_symmetric_birthday(self) -> None:
        """
        Cone <-> symmetric: the NAT checks (on by default, against the
        introducer's one IP address) tell the sides apart, both start the
        birthday search, every attempt ends connected, and at least one
        of up to three is direct.
        """
        self.lab.add_site("left", "cone")
        self.lab.add_site("right", "symmetric")
        self.lab.add_host("left", "alice")
        self.lab.add_host("right", "bob")
        self.start_defaults_introducer()
        outcomes = []
        for attempt in range(self.attempts):
            alice, bob, on_alice, on_bob = self.pair("alice", "bob", str(attempt))
            for process in (alice, bob):
                self.check(any(e.get("event") == "birthday" for e in process.events),
                           f"{process.host} did not start the birthday search")
            outcomes.append((on_alice["path"], on_bob["path"]))
            alice.stop()
            bob.stop()
            if all(path.startswith("direct") for path in outcomes[-1]):
                break
        self.check(any(all(path.startswith("direct") for path in outcome) for outcome in outcomes),
                   f"no direct path in {len(outcomes)} attempts: {outcomes}")
