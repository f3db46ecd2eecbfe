"""The MNIST profiles measure the shipped positive control instead of training one."""

import json
from dataclasses import replace

import pytest
from pipeline_runner import TINY, tiny_dataset

from defdistill.data import load_dataset
from defdistill.experiments.pipeline import reproduce_on
from defdistill.experiments.profiles import Profile, get_profile


@pytest.mark.parametrize("name", ["quick", "paper"])
def test_the_mnist_profiles_measure_the_shipped_control_and_train_none(name):
    profile = get_profile("mnist", name)
    assert profile.control == "mnist-adversarial-pgd" and profile.adversarial is None
    assert profile.to_dict()["control"] == "mnist-adversarial-pgd" and "adversarial" not in profile.to_dict()
    with pytest.raises(ValueError, match="not both"):
        replace(profile, adversarial={"adversarial": "pgd"})


def test_a_control_of_another_data_set_is_refused_before_any_measurement(tmp_path):
    profile = replace(TINY, adversarial=None, control="mnist-adversarial-pgd")
    with pytest.raises(ValueError, match="not an adversarially trained mnist_cnn of the synthetic data set"):
        reproduce_on(tiny_dataset(), profile, tmp_path, progress=False)
    assert not list(tmp_path.rglob("eval-*.json"))


@pytest.mark.heavy  # trains three small networks on 3,000 MNIST images, attacks 3 images per model
def test_the_shipped_control_is_measured_beside_the_trained_models(tmp_path):
    ds = load_dataset("mnist", limit_train=3000, limit_test=300)
    profile = Profile("mini", (2.0,), epochs=3, attack_samples=3, gradient_samples=8, adaptive_samples=3,
                      cw_iterations=20, cw_search_steps=2, control="mnist-adversarial-pgd")  # fmt: skip
    reproduce_on(ds, profile, tmp_path, progress=False)
    rows = json.loads((tmp_path / "mnist" / "results.json").read_text())["models"]
    assert [r["name"] for r in rows] == ["baseline", "distilled-T2", "adversarial-pgd"]
    control = rows[2]
    assert control["shipped"] == "mnist-adversarial-pgd" and control["role"] == "adversarial"
    assert control["recipe"]["adversarial_eps"] == 0.3 and control["recipe"]["epochs"] == 8
    assert control["test_accuracy"] > 0.95
    assert not (tmp_path / "mnist" / "models" / "adversarial-pgd").exists()  # nothing trained
    assert "the shipped `mnist-adversarial-pgd`" in (tmp_path / "report.md").read_text()
