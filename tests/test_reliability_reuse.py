"""Class 2 of issue 26: a unit is reused only for the data it was trained or measured on.

Each case changes one thing the reuse key must see (one training label; the teacher beside a
student) and asserts the retrain, with what is on disk before and after.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from synthetic import make_synthetic

from defdistill.checkpoint import read_meta
from defdistill.data import Dataset
from defdistill.experiments.profiles import get_profile
from defdistill.experiments.sweep import _train_task
from defdistill.experiments.tasks import train_unit
from defdistill.experiments.units import UnitStore
from defdistill.training.runs import dataset_signature

PROFILE = get_profile("mnist", "quick").with_overrides(epochs=3, batch_size=32)


def flip_one_label(ds: Dataset) -> Dataset:
    y = ds.y_train.clone()
    y[0] = (y[0] + 1) % ds.num_classes
    return replace(ds, y_train=y)


def task(ds: Dataset, root, temperature=None):
    return _train_task(ds.name, PROFILE, root, 0, temperature, "mnist_cnn", dataset_signature(ds),
                       "cpu", False, False)  # fmt: skip


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return make_synthetic(n_train=192, n_test=48, num_classes=3, seed=3)


def test_the_data_digest_sees_one_label_and_is_computed_once(ds):
    other = flip_one_label(ds)
    assert dataset_signature(ds)["sha256"] != dataset_signature(other)["sha256"]
    assert {k: v for k, v in dataset_signature(ds).items() if k != "sha256"} == {
        k: v for k, v in dataset_signature(other).items() if k != "sha256"}  # counts alike
    assert "content_sha256" in vars(ds)  # cached on the data set: once per run


@pytest.mark.parametrize("temperature", [None, 20.0], ids=["baseline", "student"])
def test_one_changed_training_label_retrains_the_model(ds, tmp_path, temperature):
    first = train_unit(ds, task(ds, tmp_path, temperature))
    before = read_meta(tmp_path / "models" / first["name"])["weights_sha256"]
    again = train_unit(ds, task(ds, tmp_path, temperature))
    assert again["reused"] and again["meta"]["weights_sha256"] == before  # same data: reused
    other = flip_one_label(ds)
    retrained = train_unit(other, task(other, tmp_path, temperature))
    assert not retrained["reused"]
    after = read_meta(tmp_path / "models" / first["name"])
    assert after["dataset"]["sha256"] == dataset_signature(other)["sha256"] != dataset_signature(ds)["sha256"]
    if temperature is not None:  # the teacher was retrained on the new data too
        teacher = read_meta(tmp_path / "models" / first["name"] / "teacher")
        assert teacher["dataset"]["sha256"] == dataset_signature(other)["sha256"]
        assert after["teacher"]["weights_sha256"] == teacher["weights_sha256"]


def test_a_student_beside_another_teacher_is_retrained(ds, tmp_path):
    first = train_unit(ds, task(ds, tmp_path, 20.0))
    student_dir = tmp_path / "models" / first["name"]
    meta_path = student_dir / "meta.json"
    text = meta_path.read_text()
    # the student now claims another teacher: its own meta.json is intact, the pairing is not
    meta_path.write_text(text.replace(first["meta"]["teacher"]["weights_sha256"], "0" * 64))
    again = train_unit(ds, task(ds, tmp_path, 20.0))
    assert not again["reused"]
    assert read_meta(student_dir)["teacher"]["weights_sha256"] == read_meta(student_dir / "teacher")[
        "weights_sha256"]  # fmt: skip


def test_an_edited_unit_result_is_recomputed(tmp_path):
    store = UnitStore(tmp_path)
    assert store.run("u", {"k": 1}, lambda: {"accuracy": 0.5}) == {"accuracy": 0.5}
    path = tmp_path / "units" / "u.json"
    path.write_text(path.read_text().replace("0.5", "0.99"))  # the key digest is kept
    before = path.read_text()
    assert UnitStore(tmp_path).run("u", {"k": 1}, lambda: {"accuracy": 0.5}) == {"accuracy": 0.5}
    assert path.read_text() != before and '"accuracy": 0.5' in path.read_text()
    again = UnitStore(tmp_path)
    again.run("u", {"k": 1}, lambda: {"accuracy": 0.0})
    assert again.reused == ["u"]  # an intact result is reused
