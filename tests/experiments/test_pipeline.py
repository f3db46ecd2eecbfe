import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kill_helpers import sigkill_when
from pipeline_runner import TINY, tiny_dataset, without_timings

from defdistill.devices import machine_label
from defdistill.experiments import units as units_module
from defdistill.experiments.pipeline import collect_results, reproduce_on
from defdistill.experiments.report import CSV_COLUMNS
from defdistill.experiments.results import READABLE_SCHEMAS, SCHEMA_VERSION
from defdistill.experiments.units import StepLog, key_digest
from defdistill.io import OutputError, exclusive
from defdistill.names import AttackId

TESTS = Path(__file__).resolve().parents[1]

STABLE_KEYS = ("name", "temperature", "test_accuracy", "attacks", "robust_accuracy", "gradients",
               "weights_sha256")  # fmt: skip


def stable(results: dict) -> list[dict]:
    """Everything measured, without wall-clock times."""
    return [without_timings({k: row[k] for k in STABLE_KEYS}) for row in results["models"]]


def test_every_output_file_and_the_json_schema(tiny_run):
    out, _paths, _, _ = tiny_run
    for name in ("results.json", "results.csv", "report.md", "report.html"):
        assert (out / name).stat().st_size > 0
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert {"success_vs_temperature.png", "accuracy_variation_vs_temperature.png",
            "rho_adv_vs_temperature.png", "gradient_amplitude_distributions.png",
            "gradient_amplitude_vs_temperature.png",
            "robust_vs_temperature.png"} <= figures  # fmt: skip
    for png in (out / "figures").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    combined = json.loads((out / "results.json").read_text())
    assert combined["schema_version"] == SCHEMA_VERSION
    result = combined["datasets"]["synthetic"]
    # one seed: no per-seed rows (only with several seeds); the ablations of the hottest student
    assert set(result) == {"schema_version", "config", "environment", "models", "ablations"}
    assert result["config"]["seed"] == 0 and "seeds" not in result["config"]
    assert result["config"]["profile"]["temperatures"] == [5.0, 50.0]
    rows = result["models"]
    assert [r["name"] for r in rows] == ["baseline", "distilled-T5", "distilled-T50", "adversarial-pgd"]
    assert [r["role"] for r in rows] == ["baseline", "student", "student", "adversarial"]
    adversarial = rows[3]
    assert not adversarial["distilled"] and adversarial["temperature"] is None
    # plumbing only (2 epochs on 320 images): that it resists is tests/evaluation/test_positive_control.py
    assert adversarial["train_seed"] not in {r["train_seed"] for r in rows[:3]}
    for row in rows:
        assert row["test_accuracy"] > 0.9  # every model learned
        jsma = row["attacks"][AttackId.JSMA_F]
        assert jsma["attempts"] == 4 * 2  # 4 samples x the 2 other classes
        assert 0.0 <= jsma["success_rate"] <= 1.0
        assert jsma["success_interval"]["k"] == jsma["successes"] and jsma["success_interval"]["n"] == 8
        assert row["gradients"]["samples"] == 16
        expected = {"jsma-f", "jsma-z", "pgd-ce-f", "pgd-margin", "cw-l2"}
        expected |= {"jsma-zt", "pgd-ce-zt"} if row["distilled"] else set()
        expected |= {"transfer"} if row["name"] != "baseline" else set()
        assert set(row["attacks"]) == expected
        robust = row["robust_accuracy"]
        assert robust["unconditional"] <= min(row["attacks"][a]["accuracy"] for a in robust["attacks"])
        assert set(row["timings"]) == {"accuracy", "gradients", *row["attacks"]}
        assert all(seconds >= 0 for seconds in row["timings"].values())
    # each distilled row carries its teacher's curve, as the teacher's meta.json recorded it
    for row in rows[1:3]:
        meta = out / "synthetic" / "models" / row["name"] / "teacher" / "meta.json"
        teacher = json.loads(meta.read_text())
        assert [h["entropy_at_t"] for h in row["teacher_history"]] == [
            h["entropy_at_t"] for h in teacher["history"]] and len(row["teacher_history"]) == 2
    assert rows[0]["teacher_history"] is None and rows[3]["teacher_history"] is None
    # every row carries its own network's curve (held-out accuracy by epoch), from its meta.json
    for row in rows[:3]:
        meta = json.loads((out / "synthetic" / "models" / row["name"] / "meta.json").read_text())
        assert [h["heldout_accuracy"] for h in row["training_history"]] == [
            h["heldout_accuracy"] for h in meta["history"]] and len(row["training_history"]) == 2
    assert "soft_label_convergence.png" in figures and "training_curves.png" in figures
    # where the time went: the executor, the machine, and per model training and each step
    assert result["config"]["executor"] == "local" and result["config"]["machine"]["cpus"] >= 1
    here = machine_label()  # each unit names what computed it: one machine here
    assert all(r["eval_machine"] == here for r in rows)
    assert all(r["train_machines"] == [here] for r in rows if not r.get("shipped"))
    assert all(r["teacher_train_machines"] == [here] for r in rows if r["distilled"])
    md_lines = (out / "report.md").read_text().splitlines()
    start = next(i for i, line in enumerate(md_lines) if line.startswith("Where the time went"))
    table = {line.split(" | ")[0].lstrip("| "): line for line in md_lines[start + 2 : start + 9]
             if line.startswith("| ")}  # fmt: skip
    models = {"baseline", "distilled-T5", "distilled-T50", "adversarial-pgd"}
    assert set(table) == {"model", *models, "all models"}
    totals = [float(table[name].rstrip(" |").rsplit(" | ", 1)[1]) for name in models]
    assert abs(float(table["all models"].rstrip(" |").rsplit(" | ", 1)[1]) - sum(totals)) <= len(models)
    t5 = rows[1]
    assert f"| {t5['teacher_train_seconds'] + t5['train_seconds']:.0f} (" in table["distilled-T5"]
    assert "soft_label_convergence.png" in (out / "report.md").read_text()
    # distillation saturates the deployed softmax: gradients shrink by orders of magnitude
    logs = [r["gradients"]["median_log10"] for r in rows[:3]]
    assert logs[2] < logs[1] - 5 and logs[1] < logs[0]

    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].split(",") == CSV_COLUMNS and len(csv_lines) == 5
    md = (out / "report.md").read_text()
    assert "## Is defensive distillation robust?" in md and "| distilled-T50 |" in md
    assert "| adversarial-pgd | – |" in md and "The positive control, `adversarial-pgd`" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures)
    assert "<table>" in html


def test_rerun_reuses_every_unit(tiny_run):
    out, _, first_seconds, _ = tiny_run
    start = time.perf_counter()
    reproduce_on(tiny_dataset(), TINY, out, progress=False)
    result = json.loads((out / "synthetic" / "results.json").read_text())
    assert result["config"]["units_computed"] == []  # no model retrained, nothing re-measured
    assert len(result["config"]["units_reused"]) == 9  # 4 models + 4 evaluations + the ablations
    assert time.perf_counter() - start < first_seconds


@pytest.mark.heavy
def test_changed_configuration_recomputes(tiny_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(tiny_run[0], out)
    result = tiny_run[3]
    changed = TINY.with_overrides(attack_samples=3)
    reproduce_on(tiny_dataset(), changed, out, progress=False)
    new = json.loads((out / "synthetic" / "results.json").read_text())
    assert sorted(new["config"]["units_computed"]) == [  # models reused; the ablations draw attack_samples
        "ablations", "eval-adversarial-pgd", "eval-baseline", "eval-distilled-T5", "eval-distilled-T50"]
    assert new["models"][0]["attacks"][AttackId.JSMA_F]["attempts"] == 3 * 2
    assert result["models"][0]["weights_sha256"] == new["models"][0]["weights_sha256"]


@pytest.mark.heavy
def test_force_retrains_every_model_and_remeasures(tiny_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(tiny_run[0], out)
    teacher = out / "synthetic" / "models" / "distilled-T5" / "teacher" / "model.safetensors"
    before = teacher.stat().st_mtime_ns
    reproduce_on(tiny_dataset(), TINY, out, force=True, progress=False)
    new = json.loads((out / "synthetic" / "results.json").read_text())
    assert new["config"]["units_reused"] == []
    assert len(new["config"]["units_computed"]) == 9  # 4 models (teachers too) + 4 evaluations + ablations
    assert teacher.stat().st_mtime_ns != before
    assert stable(new) == stable(tiny_run[3])  # same seeds: the same models and numbers


@pytest.mark.heavy
def test_sigkill_mid_run_then_rerun_gives_the_same_results(tiny_run, tmp_path):
    expected = stable(tiny_run[3])
    out = tmp_path / "killed"
    runner = [sys.executable, str(TESTS / "pipeline_runner.py"), str(out)]
    for marker in ("models/distilled-T5/teacher/meta.json", "units/eval-baseline.json"):
        sigkill_when(runner, out / "synthetic" / marker, 120, poll=0.05)
    assert not (out / "synthetic" / "results.json").exists()
    subprocess.run(runner, check=True, timeout=300, capture_output=True)
    got = json.loads((out / "synthetic" / "results.json").read_text())
    assert stable(got) == expected
    assert "eval-baseline" not in got["config"]["units_computed"]


@pytest.mark.parametrize("content", [b"[1]", b'{"schema_version": 2}', b'{"schema_version": 3, "co',
                                     b'{"schema_version": 3, "config": []}'])  # fmt: skip
def test_a_damaged_sibling_result_is_named_and_left_out_of_the_report(tmp_path, caplog, content):
    good = {"schema_version": READABLE_SCHEMAS[-1], "config": {"dataset": "mnist"}, "models": []}
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "results.json").write_text(json.dumps(good))
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "results.json").write_bytes(content)
    with caplog.at_level(logging.WARNING):
        collected = collect_results(tmp_path)
    assert list(collected) == ["mnist"]
    assert str(tmp_path / "cifar10" / "results.json") in caplog.text and "rerun that data set" in caplog.text


def test_a_second_reproduce_on_the_same_out_stops_before_any_work(tmp_path):
    with exclusive(tmp_path):
        with pytest.raises(OutputError, match=r"is in use by another defdistill run"):
            reproduce_on(tiny_dataset(), TINY, tmp_path, progress=False)
        assert [p.name for p in tmp_path.iterdir()] == [".defdistill.lock"]  # nothing computed


def test_reproduce_sweeps_temporaries_of_an_interrupted_run(tmp_path, tiny_run):
    out = tmp_path / "out"
    shutil.copytree(tiny_run[0], out)
    planted = [out / ".defdistill-a1b2c3d4.partial",
               out / "synthetic" / "models" / "baseline" / ".defdistill-zzzzzzzz.partial"]
    for path in planted:
        path.write_text("half-written")
    reproduce_on(tiny_dataset(), TINY, out, progress=False)  # every unit reused: seconds
    assert not any(p.exists() for p in planted)


@pytest.mark.heavy  # a tiny sweep of two temperatures, no positive control (about 30 s)
def test_a_temperature_that_does_not_learn_is_kept_flagged_and_the_hottest_that_did_is_read(tmp_path):
    """At T = 10^4 plain training divides the loss's gradient by 10^4: in 2 epochs the teacher
    stays at chance (3 classes: the floor is 40 %), and its student, distilled from noise, is
    not read whatever its accuracy. The sweep keeps them, marks the row, and the report and
    the ablations read the T = 5 student instead."""
    from dataclasses import replace

    profile = replace(TINY, temperatures=(5.0, 1e4), adversarial=None)
    reproduce_on(tiny_dataset(), profile, tmp_path, progress=False)
    result = json.loads((tmp_path / "synthetic" / "results.json").read_text())
    rows = {r["name"]: r for r in result["models"]}
    cold, hot = rows["distilled-T5"], rows["distilled-T10000"]
    assert [rows["baseline"]["learned"], cold["learned"], hot["learned"]] == [True, True, False]
    assert hot["teacher_accuracy"] <= 0.4 < cold["teacher_accuracy"]
    assert result["ablations"]["temperature"] == 5.0
    report = (tmp_path / "report.md").read_text()
    assert "| distilled-T10000 (did not learn: not read) |" in report
    assert "Masking checks on the T = 5 student" in report and "**Did not learn in 2 epoch(s)**" in report


@pytest.mark.heavy
def test_an_interrupted_measurement_resumes_at_the_attack_it_was_in(tiny_run, tmp_path, monkeypatch):
    out = tmp_path / "copy"
    shutil.copytree(tiny_run[0], out)
    units = out / "synthetic" / "units"
    (units / "eval-distilled-T50.json").unlink()
    saved = []

    def interrupt_after_three(self, step, result):
        if len(saved) == 3:
            raise KeyboardInterrupt
        saved.append(step)
        original(self, step, result)

    original = StepLog.save
    monkeypatch.setattr(StepLog, "save", interrupt_after_three)
    monkeypatch.setattr(units_module, "machine_label", lambda: "another machine (2 CPUs)")
    with pytest.raises(KeyboardInterrupt):
        reproduce_on(tiny_dataset(), TINY, out, progress=False)
    monkeypatch.undo()  # the rerun: this machine, the real StepLog.save
    record = units / "in-progress" / "eval-distilled-T50.json"
    stored = json.loads(record.read_text())
    assert list(stored["steps"]) == saved  # the three attacks that finished, in order
    # mark the first one, so that its reuse shows in the result (its sha256 updated: a valid record)
    stored["steps"][saved[0]]["seconds"] = 12345.0
    stored["steps_sha256"] = key_digest(stored["steps"])
    record.write_text(json.dumps(stored))
    reproduce_on(tiny_dataset(), TINY, out, progress=False)
    new = json.loads((out / "synthetic" / "results.json").read_text())
    assert new["config"]["units_computed"] == ["eval-distilled-T50"]
    assert stable(new) == stable(tiny_run[3])  # the same numbers as the uninterrupted run
    student = next(row for row in new["models"] if row["name"] == "distilled-T50")
    assert student["attacks"][saved[0]]["seconds"] == 12345.0  # reused, not run again
    assert student["attacks"][saved[1]]["seconds"] != 12345.0
    assert not record.exists()  # the unit's result is stored: its record of steps is gone
    # its attacks were timed on two machines: both named, in order
    assert student["eval_machines"] == ["another machine (2 CPUs)", machine_label()]
    assert all("eval_machines" not in row for row in new["models"] if row is not student)
