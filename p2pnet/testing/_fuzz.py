"""
The fuzz harness: mutated valid datagrams, from many spoofed sources, fed
in process to the real receivers (introducer, relay, STUN server, peer
endpoint) on a L{Clock} that moves as it goes, so timers, retransmits and
sweeps run.  Shared by C{benchmarks/fuzz.py} (a million datagrams) and
C{tests/test_adversarial.py} (a seeded few thousand per target).

A run counts what must never happen: exceptions escaping
C{datagramReceived} (I{escapes}) and errors or tracebacks logged while
handling (I{logged errors}); samples memory and table sizes; and at the
end checks that the legitimate state set up before the fuzzing is intact
(L{Target.check}: registered peers still heartbeat, list, join and
connect; established paths still carry data).

The targets live in L{p2pnet.testing._fuzztargets}.
"""

from __future__ import annotations

import random
import time
import traceback
from typing import Callable

from attrs import define, field
from twisted.logger import LogLevel, globalLogPublisher

from p2pnet.testing._fuzzgen import Mutator, Seed

#: Examples of each kind of problem kept per run (the rest are counted).
MAX_EXAMPLES = 5

#: The levels a server's log shows by default (its log lines).
_SHOWN = frozenset((LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical))


@define
class Problem:
    """
    One escape or logged error, with what reproduces it.

    @ivar kind: C{"escape"} or C{"logged"}.
    @ivar summary: the exception or log message.
    @ivar seed: the name of the seed the datagram was mutated from.
    @ivar data: the datagram.
    @ivar source: where it claimed to come from.
    @ivar index: its position in the run.
    @ivar detail: the traceback, when there is one.
    """

    kind: str
    summary: str
    seed: str
    data: bytes
    source: tuple
    index: int
    detail: str = ""


@define
class Report:
    """
    What one run against one target found.

    @ivar tables: the target's table sizes at the end.
    @ivar peak_tables: the largest size each table reached (sampled).
    @ivar legit_problems: what L{Target.check} found wrong at the end.
    @ivar log_lines: events logged at info level or above (what a
        server's log shows), errors included, by the target itself
        (L{Target.own_log}: not by the other parties of its scene).
    @ivar rss_before: resident memory (bytes) before the run.
    @ivar rss_peak: the largest resident memory sampled during the run.
    """

    target: str
    messages: int = 0
    escapes: int = 0
    logged_errors: int = 0
    log_lines: int = 0
    seconds: float = 0.0
    simulated: float = 0.0
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    tables: dict = field(factory=dict)
    peak_tables: dict = field(factory=dict)
    legit_problems: list = field(factory=list)
    problems: list = field(factory=list)
    kinds: dict = field(factory=dict)
    error_types: dict = field(factory=dict)

    def count_error(self, kind: str) -> None:
        """Count one escape or logged error by exception type."""
        self.error_types[kind] = self.error_types.get(kind, 0) + 1

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def clean(self) -> bool:
        return not (self.escapes or self.logged_errors or self.legit_problems)


class Target:
    """
    Something to fuzz.  Subclasses set up the receiver and its legitimate
    state in C{__init__}.

    @ivar name: the target's name.
    @ivar clock: the L{Clock} everything runs on.
    @ivar seeds: the valid datagrams to mutate.
    @ivar sources: the spoofed source addresses to send from.
    """

    name = "target"
    clock = None
    seeds: list[Seed] = []
    sources: list[tuple] = []

    def receive(self, data: bytes, addr: tuple) -> None:
        """Deliver one datagram the way the reactor would."""
        raise NotImplementedError

    def tick(self) -> None:
        """Legitimate traffic between batches (heartbeats, data)."""

    def tables(self) -> dict[str, int]:
        """The sizes of the target's tables."""
        return {}

    def own_log(self, event: dict) -> bool:
        """
        Whether a log event is the target's own (counted in
        L{Report.log_lines}); by default every event is.
        """
        return True

    def check(self) -> list[str]:
        """What is wrong with the legitimate state (empty: intact)."""
        return []

    def close(self) -> None:
        """Stop timers and sockets."""


def rss() -> int:
    """Resident memory of this process, in bytes (0 where unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except OSError:
        return 0


class _ErrorWatcher:
    """
    A log observer counting errors and tracebacks, tagged with the datagram
    being handled when they were logged.
    """

    def __init__(self, report: Report, own: Callable[[dict], bool] = lambda event: True) -> None:
        self.report = report
        self.own = own
        self.current: tuple | None = None

    def __call__(self, event: dict) -> None:
        failure = event.get("log_failure")
        level = event.get("log_level")
        if level in _SHOWN and self.own(event):
            self.report.log_lines += 1
        if failure is None and level not in (LogLevel.error, LogLevel.critical):
            return
        self.report.logged_errors += 1
        self.report.count_error(failure.type.__name__ if failure is not None else "error")
        if len([p for p in self.report.problems if p.kind == "logged"]) >= MAX_EXAMPLES:
            return
        summary = str(event.get("log_format", ""))
        detail = ""
        if failure is not None:
            summary = f"{summary}: {failure.type.__name__}: {failure.value}"
            detail = failure.getTraceback()
        seed, data, source, index = self.current or ("(between datagrams)", b"", (), -1)
        self.report.problems.append(Problem("logged", summary, seed, data, source, index, detail))


def run(
    target: Target,
    count: int,
    seed: int = 0,
    batch: int = 100,
    step: float = 0.5,
    progress: Callable[[Report], None] | None = None,
) -> Report:
    """
    Feed C{count} mutated datagrams to C{target}.

    @param seed: seeds the mutator and the choice of seeds and sources.
    @param batch: datagrams between clock advances (and L{Target.tick}).
    @param step: simulated seconds each batch takes.
    """
    rng = random.Random(seed)
    mutator = Mutator(rng, frozenset(s.datagram() for s in target.seeds))
    report = Report(target.name)
    watcher = _ErrorWatcher(report, target.own_log)
    seeds = target.seeds
    sources = target.sources
    receive = target.receive
    clock = target.clock
    kinds = report.kinds
    n_seeds, n_sources = len(seeds), len(sources)
    report.rss_before = report.rss_peak = rss()
    start_time = clock.seconds()
    peak = report.peak_tables
    globalLogPublisher.addObserver(watcher)
    started = time.perf_counter()
    try:
        for index in range(count):
            chosen = seeds[rng.randrange(n_seeds)]
            data = mutator.mutate(chosen, seeds[rng.randrange(n_seeds)])
            if chosen.sources and rng.random() < 0.8:
                addr = chosen.sources[rng.randrange(len(chosen.sources))]
            else:
                addr = sources[rng.randrange(n_sources)]
            watcher.current = (chosen.name, data, addr, index)
            kinds[chosen.name] = kinds.get(chosen.name, 0) + 1
            try:
                receive(data, addr)
            except Exception as e:
                report.escapes += 1
                report.count_error(type(e).__name__)
                if len([p for p in report.problems if p.kind == "escape"]) < MAX_EXAMPLES:
                    report.problems.append(
                        Problem("escape", f"{type(e).__name__}: {e}", chosen.name, data, addr, index,
                                traceback.format_exc())
                    )
            if index % batch == batch - 1:
                watcher.current = None
                _advance(clock, step, report)
                target.tick()
                if index % (batch * 50) == batch * 50 - 1:
                    report.rss_peak = max(report.rss_peak, rss())
                    for name, size in target.tables().items():
                        if size > peak.get(name, -1):
                            peak[name] = size
                    if progress is not None:
                        report.messages = index + 1
                        report.seconds = time.perf_counter() - started
                        progress(report)
        report.messages = count
        watcher.current = None
        report.seconds = time.perf_counter() - started
        report.legit_problems = target.check()
        report.tables = target.tables()
        for name, size in report.tables.items():
            if size > peak.get(name, -1):
                peak[name] = size
        report.rss_after = rss()
        report.rss_peak = max(report.rss_peak, report.rss_after)
        report.simulated = clock.seconds() - start_time
    finally:
        globalLogPublisher.removeObserver(watcher)
    return report


def replay(target: Target, datagrams: list[tuple[bytes, tuple]], seconds: float = 30.0, step: float = 0.1) -> Report:
    """
    Feed C{datagrams} (C{(data, source)} pairs, e.g. a regression corpus)
    to C{target}, then run its clock for C{seconds} with legitimate
    traffic; the report counts escapes and logged errors as L{run} does.
    """
    report = Report(target.name)
    watcher = _ErrorWatcher(report)
    globalLogPublisher.addObserver(watcher)
    try:
        for index, (data, addr) in enumerate(datagrams):
            watcher.current = ("corpus", data, addr, index)
            report.messages += 1
            try:
                target.receive(data, addr)
            except Exception as e:
                report.escapes += 1
                report.count_error(type(e).__name__)
                report.problems.append(
                    Problem("escape", f"{type(e).__name__}: {e}", "corpus", data, addr, index, traceback.format_exc())
                )
        watcher.current = None
        for _ in range(int(round(seconds / step))):
            _advance(target.clock, step, report)
            target.tick()
        report.tables = target.tables()
    finally:
        globalLogPublisher.removeObserver(watcher)
    return report


def settle(target: Target, seconds: float, step: float = 1.0) -> dict[str, int]:
    """
    Run C{target}'s clock on for C{seconds} with only legitimate traffic;
    its table sizes afterwards.
    """
    report = Report(target.name)
    for _ in range(int(round(seconds / step))):
        _advance(target.clock, step, report)
        target.tick()
    return target.tables()


def _advance(clock, step: float, report: Report) -> None:
    """
    Advance C{clock} by C{step}; a timer that raises is logged as a real
    reactor logs it ("Unhandled Error") and the other due timers still run.
    """
    while True:
        try:
            clock.advance(step)
            return
        except Exception as e:
            report.logged_errors += 1
            report.count_error(type(e).__name__)
            if len([p for p in report.problems if p.kind == "timer"]) < MAX_EXAMPLES:
                report.problems.append(
                    Problem("timer", f"{type(e).__name__}: {e}", "(a timer)", b"", (), -1, traceback.format_exc())
                )
            step = 0.0


def describe(problem: Problem) -> str:
    """A reproducer: the datagram as a Python literal, its source and seed."""
    return (
        f"{problem.kind} #{problem.index} ({problem.seed}) from {problem.source}: {problem.summary}\n"
        f"    datagram = {problem.data!r}"
    )
