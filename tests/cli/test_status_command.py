"""``defdistill status --out DIR`` says what a reproduce run has trained and measured so far."""

from __future__ import annotations

from pathlib import Path

import torch
from cli_helpers import META_BASE, assert_user_error, constant_model, run_cli

from defdistill.checkpoint import save_model
from defdistill.experiments.units import UnitStore
from defdistill.io import atomic_write_json, exclusive
from defdistill.training.resume import STATE_FILE, TrainingState


def a_run(out: Path) -> Path:
    """A stopped run: the baseline trained (2 epochs, 98.5 %), a student at epoch 4 of 50
    after 200 s, one measurement finished."""
    models = out / "mnist" / "models"
    save_model(models / "baseline", constant_model(3),
               {**META_BASE, "test_accuracy": 0.985, "train_seconds": 100.0,
                "config": {"epochs": 2}, "history": [{"epoch": 1}, {"epoch": 2}]})  # fmt: skip
    (models / "distilled-T20").mkdir(parents=True)
    TrainingState(key="k", epoch=4, model={"w": torch.zeros(1)}, optimizer={"state": {}, "param_groups": []},
                  generators={}, history=[], seconds=200.0, extra={}, machines=["here"],
                  epochs=50).save(models / "distilled-T20" / STATE_FILE)  # fmt: skip
    atomic_write_json(out / "mnist" / "units" / "eval-baseline.json", {"result": {}})
    UnitStore(out / "mnist").steps("eval-control", {"k": 1}).save("jsma-f", {"samples": 4})
    return out


def test_status_lists_trained_and_training_networks_and_measurements(tmp_path: Path, capsys) -> None:
    out = a_run(tmp_path / "run")
    code, text, err = run_cli(["status", "--out", out], capsys)
    assert code == 0 and not err
    lines = text.splitlines()
    assert lines[0] == f"{out}: no run is writing it now (rerun the same command to resume)"
    assert "mnist, seed 0: 1 network(s) trained, 1 in training; 1 measurement(s) finished" in lines
    baseline = next(line for line in lines if line.strip().startswith("baseline"))
    assert baseline.split()[1:3] == ["2/2", "50"] and "test accuracy 98.50 %" in baseline
    student = next(line for line in lines if line.strip().startswith("distilled-T20"))
    # 46 epochs left at 50 s each: 38 min
    assert student.split()[1:3] == ["4/50", "50"] and "training, about 38 min left at this pace" in student
    assert "  measurements: eval-baseline" in lines
    assert "  measuring: eval-control (1 attack(s) finished; a rerun resumes after them)" in lines


def test_status_says_when_a_run_is_writing_the_directory(tmp_path: Path, capsys) -> None:
    out = a_run(tmp_path / "run")
    with exclusive(out):
        _, text, _ = run_cli(["status", "--out", out], capsys)
    assert text.splitlines()[0] == f"{out}: a defdistill run is writing it now"


def test_status_of_what_is_not_a_run_is_one_line(tmp_path: Path, capsys) -> None:
    assert_user_error(capsys, ["status", "--out", tmp_path / "missing"], "is not a directory", "--out")
    assert_user_error(capsys, ["status", "--out", tmp_path], "holds no `defdistill reproduce` run")


def test_a_damaged_state_is_counted_as_unreadable_not_as_in_training(tmp_path: Path, capsys) -> None:
    out = a_run(tmp_path / "run")
    (out / "mnist" / "models" / "distilled-T5").mkdir()
    (out / "mnist" / "models" / "distilled-T5" / STATE_FILE).write_bytes(b"not a training state")
    code, text, _ = run_cli(["status", "--out", out], capsys)
    lines = text.splitlines()
    assert code == 0
    summary = "mnist, seed 0: 1 network(s) trained, 1 in training, 1 unreadable; 1 measurement(s) finished"
    assert summary in lines
    damaged = next(line for line in lines if line.strip().startswith("distilled-T5"))
    assert "unreadable:" in damaged
