"""Test-wide settings.

Hypothesis runs a bounded number of examples by default so the suite stays
fast; ``HYPOTHESIS_PROFILE=long pytest`` runs many more for soak testing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=2000,
    stateful_step_count=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures" / "ipld"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The IPLD fixtures shipped beside the repository (../shared/fixtures/ipld)."""
    if not FIXTURES.is_dir():
        pytest.fail(f"IPLD fixtures not found at {FIXTURES}")
    return FIXTURES
