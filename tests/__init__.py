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
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("p2pnet")
