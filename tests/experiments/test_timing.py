"""The stopwatch books the time between successive laps under each lap's name."""

import logging

from defdistill.experiments import timing
from defdistill.experiments.report.render import _timing_section
from defdistill.experiments.report.tables import row_machines, timing_table
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


def _row(name, train, eval_machine, teacher=None, **extra):
    return {"name": name, "role": "distilled" if teacher else "baseline",
            "temperature": 5.0 if teacher else None, "distilled": bool(teacher), "learned": True,
            "train_seconds": 100.0, "train_machines": train,
            "teacher_train_seconds": 50.0 if teacher else None, "teacher_train_machines": teacher,
            "eval_machine": eval_machine, "timings": {"accuracy": 1.0}, **extra}  # fmt: skip


def test_a_run_computed_on_two_machines_names_each_rows_and_one_machine_names_it_once():
    a, b = "CPU A (2 CPUs)", "CPU B (16 CPUs, GPU H100)"
    config = {"executor": "ray", "machine": {"cpu": "CPU B", "cpus": 16, "gpu": "H100"}}
    rows = [_row("baseline", [a], a), _row("distilled-T5", [a, b], b, teacher=[a]),
            _row("adversarial-pgd", [b], a, shipped="mnist-adversarial-pgd", role="adversarial")]
    assert row_machines(rows[1]) == [a, b]
    assert row_machines(rows[2]) == [a]  # a shipped model's training is not the run's
    # a measurement resumed on another machine names both, in order
    assert row_machines(_row("baseline", [a], b, eval_machines=[a, b])) == [a, b]
    table = timing_table({"config": config, "models": rows})
    assert table[0].endswith("| total s | computed on |")
    assert table[3].endswith(f"| {a} + {b} |") and table[2].endswith(f"| {a} |")
    # the sums: 100 + (50 + 100) of training (the shipped model's is not the run's), 3 × 1 s
    assert table[-1] == "| all models | 250 | 3.0 | 253 | |"
    caption = _timing_section({"config": config, "models": rows})[0]
    assert "on the machines of the last column, executor ray" in caption

    alone = [_row("baseline", [a], a)]
    assert "computed on" not in timing_table({"config": config, "models": alone})[0]
    assert f"on {a}, executor ray" in _timing_section({"config": config, "models": alone})[0]
    # results written before the record: the run's own machine, as before
    old = [{k: v for k, v in alone[0].items() if k not in ("train_machines", "eval_machine")}]
    caption = _timing_section({"config": config, "models": old})[0]
    assert "on CPU B (16 CPUs, GPU H100), executor ray" in caption
