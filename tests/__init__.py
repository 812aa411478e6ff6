"""
Tests for p2pnet, run with C{trial tests}.

Hypothesis runs with a deterministic profile so that CI is repeatable.
The C{mutation} profile (C{P2PNET_HYPOTHESIS_PROFILE=mutation}, used by the
mutation-testing command in docs/testing.md) tries 50 examples instead of
200, so that running the suite once per mutant stays affordable.
"""

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    derandomize=True,
    deadline=None,
    # differing_executors: mutmut runs the same tests through pytest
    # several times in one process, each time on a new TestCase instance.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
settings.register_profile("p2pnet", max_examples=200, **_COMMON)
settings.register_profile("mutation", max_examples=50, **_COMMON)
settings.load_profile(os.environ.get("P2PNET_HYPOTHESIS_PROFILE", "p2pnet"))
