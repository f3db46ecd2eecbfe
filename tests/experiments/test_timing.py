"""The stopwatch books the time between successive laps under each lap's name."""

import logging

from defdistill.experiments import timing
from defdistill.experiments.timing import Stopwatch


def test_laps_book_the_time_since_the_previous_lap(monkeypatch, caplog):
    ticks = iter([10.0, 12.5, 13.0, 20.0])  # start, then one reading per lap
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(ticks))
    clock = Stopwatch("eval-baseline")
    with caplog.at_level(logging.INFO, logger="defdistill.experiments.timing"):
        assert clock.lap("accuracy", "value") == "value"  # the step's result passes through
        clock.lap("pgd", None)
        clock.lap("accuracy", None)  # a step lapped twice adds up
    assert clock.seconds == {"accuracy": 2.5 + 7.0, "pgd": 0.5}
    assert caplog.messages[0] == "eval-baseline: accuracy took 2.5 s"
