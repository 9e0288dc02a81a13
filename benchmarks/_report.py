"""Shared reporting for benchmarks.

Every figure is printed beside a baseline measured in the same run, because the
machines are noisy and only ratios within one run mean anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio

#: Seconds an in-process scenario may take (the slowest, a 1 GiB in-memory
#: pull, takes about 10 s on a quiet 2-core machine): past it the scenario
#: fails with :class:`ScenarioTimeout` instead of waiting forever.
SCENARIO_DEADLINE = 900.0


class ScenarioTimeout(RuntimeError):
    """A benchmark scenario did not finish within its deadline."""


@contextmanager
def deadline(what: str, seconds: float = SCENARIO_DEADLINE) -> Iterator[None]:
    """Fail the enclosed (async) scenario with :class:`ScenarioTimeout` past
    ``seconds``."""
    try:
        with anyio.fail_after(seconds):
            yield
    except TimeoutError:
        raise ScenarioTimeout(f"{what} did not finish within {seconds:.0f} s") from None


@dataclass
class Line:
    name: str
    value: float
    unit: str
    baseline_name: str | None = None
    baseline_value: float | None = None
    section: str = ""
    samples: list[float] | None = None  # every measurement the value is of

    def render(self) -> str:
        text = f"{self.name:<48} {self.value:>14,.1f} {self.unit}"
        if self.baseline_name is not None and self.baseline_value:
            ratio = self.value / self.baseline_value
            text += (
                f"   | {self.baseline_name}: {self.baseline_value:,.1f} {self.unit}"
                f"  (ratio {ratio:.2f})"
            )
        return text


@dataclass
class Reporter:
    """Collects and prints benchmark lines as they are measured."""

    lines: list[Line] = field(default_factory=list)
    current: str = ""

    def line(
        self,
        name: str,
        value: float,
        unit: str,
        baseline_name: str | None = None,
        baseline_value: float | None = None,
        samples: list[float] | None = None,
    ) -> Line:
        entry = Line(name, value, unit, baseline_name, baseline_value, self.current, samples)
        self.lines.append(entry)
        print(entry.render(), flush=True)
        return entry

    def note(self, name: str, text: str) -> None:
        """A line with no figure: something not measured, and why."""
        print(f"{name:<48} {text:>14}", flush=True)

    def section(self, title: str) -> None:
        self.current = title
        print(f"\n== {title} ==", flush=True)


def rate(fn: Callable[[], int], min_seconds: float = 0.5) -> float:
    """Call ``fn`` (which returns how many units it processed) until at least
    ``min_seconds`` have passed; return units per second."""
    units = 0
    start = time.perf_counter()
    while True:
        units += fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return units / elapsed
