"""Training hyper-parameters: validation, and what a configuration records."""

import re

import pytest

from defdistill.training.config import TrainConfig


@pytest.mark.parametrize(
    "bad", [{"epochs": 0}, {"lr": 0.0}, {"momentum": 1.0}, {"optimizer": "lbfgs"}, {"lr_decay": 1.5}],
)
def test_bad_config_is_value_error(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_temperature_must_be_finite_and_positive(value):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        TrainConfig(temperature=value)


def test_precision_is_recorded_only_when_not_the_default():
    assert "precision" not in TrainConfig().to_dict()  # configs from before the option stay reusable
    assert TrainConfig(precision="bf16").to_dict()["precision"] == "bf16"
    assert TrainConfig(**TrainConfig(precision="auto").to_dict()).precision == "auto"
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, auto, got 'fp16'"):
        TrainConfig(precision="fp16")


@pytest.mark.parametrize(
    ("values", "fragment"),
    [({"lr": 1e300}, "lr <= 3.4e+38"), ({"lr": float("inf")}, "lr <= 3.4e+38"),
     ({"lr": float("nan")}, "need 0 < lr"), ({"temperature": 1e30}, "too large to train at"),
     ({"temperature": 10_001.0}, "at most 10000"),
     ({"lr": 1e31, "temperature": 1e4, "head_scaling": True}, "head scaling multiplies lr by T^2")],
)  # fmt: skip
def test_numbers_that_would_overflow_or_cannot_train_are_refused_up_front(values, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        TrainConfig(**values)
    TrainConfig(lr=1e30, temperature=1e4, head_scaling=True)  # extreme but representable: accepted


def test_resolved_replaces_auto_by_what_the_hardware_computes(monkeypatch):
    import defdistill.devices

    monkeypatch.setattr(defdistill.devices, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    assert "precision" not in TrainConfig(precision="auto").resolved("cpu").to_dict()  # a float32 model's key
    assert TrainConfig(precision="bf16").resolved("cpu").precision == "bf16"  # asked: kept
    monkeypatch.setattr(defdistill.devices, "cpu_has_native_bf16", lambda cpuinfo=None: True)
    assert TrainConfig(precision="auto").resolved("cpu").to_dict()["precision"] == "bf16"
    assert TrainConfig(precision="fp32").resolved("cpu").precision == "fp32"
