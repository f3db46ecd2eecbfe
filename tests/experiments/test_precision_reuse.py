"""``--precision auto`` (the command line's and the profiles' default) resolves where a model
trains: the model, its ``meta.json`` and the reuse key record ``fp32`` or ``bf16``, so a float32
model is found again under ``auto`` on a machine without native bfloat16, and is not taken for
a bfloat16 one on a machine with it."""

from __future__ import annotations

import pytest
from synthetic import make_synthetic

import defdistill.devices
from defdistill.checkpoint import read_meta
from defdistill.data import Dataset
from defdistill.experiments.profiles import get_profile
from defdistill.experiments.sweep import _train_task
from defdistill.experiments.tasks import train_unit
from defdistill.training.runs import dataset_signature

PROFILE = get_profile("mnist", "quick").with_overrides(epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return make_synthetic(n_train=160, n_test=40, num_classes=3, seed=5)


def task(ds: Dataset, root, temperature, precision):
    profile = PROFILE.with_overrides(precision=precision)
    return _train_task(ds.name, profile, root, 0, temperature, "mnist_cnn", dataset_signature(ds),
                       "cpu", False, False)  # fmt: skip


def native_bf16(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(defdistill.devices, "cpu_has_native_bf16", lambda cpuinfo=None: native)


@pytest.mark.parametrize("temperature", [None, 20.0], ids=["baseline", "student"])
def test_auto_reuses_a_float32_model_only_where_auto_means_float32(ds, tmp_path, monkeypatch, temperature):
    native_bf16(monkeypatch, False)
    first = train_unit(ds, task(ds, tmp_path, temperature, "fp32"))
    assert first["meta"]["precision"] == "fp32" and "precision" not in first["meta"]["config"]
    again = train_unit(ds, task(ds, tmp_path, temperature, "auto"))
    assert again["reused"] and again["meta"]["weights_sha256"] == first["meta"]["weights_sha256"]
    native_bf16(monkeypatch, True)
    retrained = train_unit(ds, task(ds, tmp_path, temperature, "auto"))
    assert not retrained["reused"]
    assert retrained["meta"]["precision"] == retrained["meta"]["config"]["precision"] == "bf16"
    if temperature is not None:  # the teacher is retrained in bfloat16 too, not reused
        teacher = read_meta(tmp_path / "models" / first["name"] / "teacher")
        assert teacher["precision"] == teacher["config"]["precision"] == "bf16"
    assert train_unit(ds, task(ds, tmp_path, temperature, "bf16"))["reused"]  # asked by name: the same
