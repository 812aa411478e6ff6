"""
Tests for p2pnet, run with C{trial tests}.

Hypothesis runs with a deterministic profile so that CI is repeatable.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "p2pnet",
    derandomize=True,
    deadline=None,
    max_examples=200,
    # differing_executors: mutmut runs the same tests through pytest
    # several times in one process, each time on a new TestCase instance.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
settings.load_profile("p2pnet")
