"""What a node refused from its peers: counted by kind, logged without floods.

Every layer that reads what peers send (the message network, the graphsync
engine, the Manager) ends a bad input in a refusal: the input is dropped or
answered, never raised out of a task. Each layer keeps a :class:`Refusals`:
counts by kind (exported as metrics by :class:`~datatransfer.node.NodeMetrics`)
and a WARNING line per refusal, at most ``burst`` lines per kind in each
``window`` seconds, then one line saying how many were not shown, so a
flood of bad input never becomes a flood of log lines.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["Refusals"]


class Refusals:
    """Counts and rate-limited WARNING log lines of refused inputs."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 20,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.window = window
        self.clock = clock
        #: Refused inputs so far, by kind.
        self.counts: Counter[str] = Counter()
        self._windows: dict[str, tuple[float, int]] = {}

    def refuse(self, kind: str, text: str) -> None:
        """Count one refused input of ``kind`` and log ``text`` (rate-limited)."""
        self.counts[kind] += 1
        now = self.clock()
        start, seen = self._windows.get(kind, (now, 0))
        if now - start > self.window:
            if seen > self.burst:
                self.logger.warning("%d more inputs refused as %s in the last %.0f s",
                                    seen - self.burst, kind, now - start)
            start, seen = now, 0
        seen += 1
        self._windows[kind] = (start, seen)
        if seen <= self.burst:
            self.logger.warning("%s", text)
