"""Training hyper-parameters: validation, and what a configuration records."""

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


def test_amp_is_recorded_only_when_on():
    assert "amp" not in TrainConfig().to_dict()  # configs from before the option stay reusable
    assert TrainConfig(amp=True).to_dict()["amp"] is True
    assert TrainConfig(**TrainConfig(amp=True).to_dict()).amp
