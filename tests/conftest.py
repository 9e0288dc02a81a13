"""Test-wide settings.

Hypothesis runs a bounded number of examples by default so the suite stays
fast; ``HYPOTHESIS_PROFILE=long pytest`` runs many more for soak testing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _fixtures import IPLD
from _processes import Proc
from _relay import Relay
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

@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The IPLD fixtures, from this repository (see ``tests/_fixtures.py``)."""
    return IPLD


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """A failed test that started processes shows every process's stderr
    tail, not only that of the one its failing assertion names."""
    outcome = yield
    report = outcome.get_result()
    started = getattr(item, "_started_procs", None)
    if report.when == "call" and report.failed and started:
        for p in started:
            report.sections.append((f"stderr of {p.argv[:3]}", "".join(p.stderr[-40:])))


@pytest.fixture
def procs(request: pytest.FixtureRequest) -> Iterator[Callable[..., Proc]]:
    """Start processes (``procs(argv, stdin=False)``); every one is killed
    when the test ends, pass or fail (and, on Linux, when the test process
    itself dies: see :class:`_processes.Proc`)."""
    started: list[Proc] = []
    request.node._started_procs = started

    def start(argv: list[str], *, stdin: bool = False) -> Proc:
        p = Proc(argv, stdin=stdin)
        started.append(p)
        return p

    try:
        yield start
    finally:
        for p in started:
            p.kill()


@pytest.fixture
def relay_to() -> Iterator[Callable[[int], Relay]]:
    """``relay_to(port)``: a TCP relay (tests/_relay.py) in this process to
    127.0.0.1:port; all closed after the test."""
    relays: list[Relay] = []

    def make(port: int) -> Relay:
        relays.append(Relay(port))
        return relays[-1]

    try:
        yield make
    finally:
        for r in relays:
            r.close()
