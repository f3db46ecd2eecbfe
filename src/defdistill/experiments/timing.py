"""Where a unit's time goes: the wall time of each of its steps, in seconds.

A :class:`Stopwatch` is started before a unit's first step; :meth:`Stopwatch.lap` is
wrapped around each step's result and books the time since the previous lap under the
step's name, so timing a sequence of calls changes none of them::

    clock = Stopwatch("eval-baseline")
    accuracy = clock.lap("accuracy", evaluate(model, x, y))
    jsma = clock.lap("jsma_probs", run_jsma(model, x, y))
    result = {"accuracy": accuracy, "jsma": jsma, "timings": clock.seconds}

Each lap is logged at INFO (the CLI's default level; ``--quiet`` hides it).
"""

from __future__ import annotations

import logging
import time
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Stopwatch:
    """Books the wall time between successive laps under the laps' names.

    Attributes:
        unit: the name the log lines carry.
        seconds: step name -> seconds (a step lapped twice adds up).
    """

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, step: str, value: T) -> T:
        """Book the time since the previous lap (or the start) under ``step``; return ``value``."""
        now = time.perf_counter()
        elapsed, self._last = now - self._last, now
        self.seconds[step] = self.seconds.get(step, 0.0) + elapsed
        log.info("%s: %s took %.1f s", self.unit, step, elapsed)
        return value
