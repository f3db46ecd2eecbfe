"""``run_status``: where a reproduce run stands, read from its output directory alone."""

import json
import shutil

import pytest
import torch
from state_headers import drop_header_field

from defdistill.checkpoint import META
from defdistill.experiments.status import run_status
from defdistill.experiments.units import UnitStore
from defdistill.io import exclusive
from defdistill.training.resume import STATE_FILE, TrainingState, read_progress


def a_state(path, epoch, epochs, seconds):
    """A training state as the training loop writes it (one weight tensor is enough here)."""
    TrainingState(key="k", epoch=epoch, model={"w": torch.zeros(2)},
                  optimizer={"state": {}, "param_groups": []}, generators={},
                  history=[{"epoch": e + 1} for e in range(epoch)], seconds=seconds, extra={},
                  machines=["here"], epochs=epochs).save(path)  # fmt: skip


def test_a_finished_run_lists_every_network_with_its_accuracy_and_every_measurement(tiny_run):
    out = tiny_run[0]
    found = run_status(out)
    assert not found.running and [(s.dataset, s.seed) for s in found.seeds] == [("synthetic", 0)]
    seed = found.seeds[0]
    models = out / "synthetic" / "models"
    metas = {p.parent.relative_to(models).as_posix(): json.loads(p.read_text()) for p in models.rglob(META)}
    assert {n.name for n in seed.networks} == set(metas)
    for network in seed.networks:
        meta = metas[network.name]
        assert network.trained and network.test_accuracy == meta["test_accuracy"]
        assert network.epoch == network.epochs == meta["config"]["epochs"] and network.seconds_left is None
    names = [n.name for n in seed.networks]
    # the first phase (baseline, teachers by temperature), then the students by temperature
    assert names[:3] == ["baseline", "distilled-T5/teacher", "distilled-T50/teacher"]
    assert names.index("distilled-T5") < names.index("distilled-T50")
    assert seed.measurements == sorted(p.stem for p in (out / "synthetic" / "units").glob("*.json"))
    assert "eval-baseline" in seed.measurements


def test_a_network_in_training_shows_its_epoch_and_the_time_left_at_its_pace(tiny_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_run[0], out)
    student = out / "synthetic" / "models" / "distilled-T50"
    (student / META).unlink()
    (student / "model.safetensors").unlink()
    a_state(student / STATE_FILE, epoch=3, epochs=50, seconds=150.0)
    # a state left beside a saved model is not a network in training
    a_state(out / "synthetic" / "models" / "baseline" / STATE_FILE, epoch=1, epochs=2, seconds=1.0)
    seed = run_status(out).seeds[0]
    training = [n for n in seed.networks if not n.trained]
    assert [(n.name, n.epoch, n.epochs, n.seconds) for n in training] == [("distilled-T50", 3, 50, 150.0)]
    assert training[0].seconds_left == pytest.approx(47 * 50.0)
    assert next(n for n in seed.networks if n.name == "baseline").trained


def test_a_run_holding_the_directory_is_reported_running(tiny_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_run[0], out)
    with exclusive(out):
        assert run_status(out).running
    assert not run_status(out).running


def test_damaged_files_are_named_not_raised(tiny_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_run[0], out)
    models = out / "synthetic" / "models"
    (models / "baseline" / META).write_text("{not json")
    student = models / "distilled-T5"
    (student / META).unlink()
    (student / STATE_FILE).write_bytes((2**40).to_bytes(8, "little") + b"{}")  # a header of 1 TiB
    by_name = {n.name: n for n in run_status(out).seeds[0].networks}
    assert "not readable JSON" in by_name["baseline"].problem
    assert "not a training state" in by_name["distilled-T5"].problem


def test_read_progress_reads_the_header_of_a_state_and_of_one_from_before_the_total_was_recorded(tmp_path):
    path = tmp_path / STATE_FILE
    a_state(path, epoch=7, epochs=50, seconds=350.0)
    found = read_progress(path)
    assert (found.epoch, found.epochs, found.seconds) == (7, 50, 350.0)
    drop_header_field(path, "epochs")  # as the code from before the record wrote it
    assert read_progress(path).epochs == 0


@pytest.mark.parametrize("content", [b"", b"\x01\x00", (5).to_bytes(8, "little") + b"[1,2]", b"\xff" * 8])
def test_read_progress_refuses_what_is_not_a_state(tmp_path, content):
    path = tmp_path / STATE_FILE
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a training state"):
        read_progress(path)


def test_an_empty_or_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="holds no `defdistill reproduce` run"):
        run_status(tmp_path)
    with pytest.raises(ValueError, match="is not a directory"):
        run_status(tmp_path / "missing")


def test_an_unfinished_measurement_shows_its_finished_attacks(tiny_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_run[0], out)
    units = out / "synthetic" / "units"
    (units / "eval-distilled-T50.json").unlink()
    (units / "eval-distilled-T5.json").unlink()
    steps = UnitStore(out / "synthetic").steps("eval-distilled-T50", {"k": 1})
    steps.save("jsma-f", {"samples": 4})
    steps.save("jsma-z", {"samples": 4})
    (units / "in-progress" / "eval-distilled-T5.json").write_text("[1]")  # a record of another shape
    (units / "in-progress" / "eval-baseline.json").write_text("{}")  # left beside a finished unit
    seed = run_status(out).seeds[0]
    assert "eval-distilled-T50" not in seed.measurements
    assert seed.in_progress == {"eval-distilled-T5": None, "eval-distilled-T50": 2}
