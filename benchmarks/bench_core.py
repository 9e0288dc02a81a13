"""How fast the channel core's property test runs beside the Manager's.

Both are Hypothesis state machines over two or three peers doing the same
kind of things (open pushes and pulls, pause, resume, cancel, restart, pay,
cut links, let time pass, then settle and check every channel ends in
agreement). The Manager's (``tests/test_manager_property.py``) runs real
Managers on an event loop over the in-memory network with the graphsync
engine; the core's (``tests/test_core_property.py``) drives
:class:`~datatransfer.core.ChannelCore` objects directly, with a
synchronous model of the network and an injected clock. The figure is
examples per second, each run for the same number of steps per example,
in the same process, one after the other.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from benchmarks._report import Reporter

TESTS = Path(__file__).resolve().parent.parent / "tests"


def _examples_per_second(machine: Any, examples: int, steps: int) -> float:
    done = 0
    teardown = machine.teardown

    def counted(self: Any) -> None:
        nonlocal done
        teardown(self)
        done += 1

    machine.teardown = counted
    try:
        start = time.perf_counter()
        run_state_machine_as_test(machine, settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
            phases=[Phase.generate], suppress_health_check=list(HealthCheck)))
        elapsed = time.perf_counter() - start
    finally:
        machine.teardown = teardown
    return done / elapsed


def run(report: Reporter, quick: bool) -> None:
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import test_core_property
    import test_manager_property

    steps = 30
    manager_rate = _examples_per_second(test_manager_property.ManagersMachine,
                                        3 if quick else 10, steps)
    core_rate = _examples_per_second(test_core_property.CoreMachine,
                                     50 if quick else 300, steps)
    report.line("core property test (no event loop)", core_rate, "examples/s",
                "Manager property test on the engine", manager_rate)
