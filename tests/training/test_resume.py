"""Training resumes after the last finished epoch and ends with an uninterrupted run's weights."""

import logging

import pytest
import torch
from state_headers import drop_header_field

import defdistill.training.loop as loop
from defdistill.models import build_model
from defdistill.training.config import TrainConfig
from defdistill.training.loop import train
from defdistill.training.resume import STATE_FILE, UNRECORDED, _parse
from defdistill.training.runs import train_model


class KilledError(Exception):
    """Stands for the process being killed during an epoch."""


def fit(ds, state_path=None, **config):
    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, ds.num_classes)
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 32, "seed": 0, **config})
    return train(model, ds.x_train, ds.y_train, ds.x_test, ds.y_test, cfg, progress=False,
                 state_path=state_path)  # fmt: skip


def killed_in_epoch(monkeypatch, n):
    """Make the ``n``-th epoch (1-based) of the next run fail, as a kill would."""
    real, calls = loop._epoch, []

    def epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KilledError
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "_epoch", epoch)
    return lambda: monkeypatch.setattr(loop, "_epoch", real)


def same_weights(a, b):
    return all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


ADVERSARIAL = {"adversarial": "pgd", "adversarial_steps": 2, "adversarial_eps": 0.1, "optimizer": "adam",
               "lr": 1e-3}  # fmt: skip


@pytest.mark.parametrize("config", [{}, ADVERSARIAL], ids=["plain", "adversarial"])
def test_a_run_killed_in_its_third_epoch_resumes_and_matches_the_uninterrupted_run(
    synthetic, tmp_path, monkeypatch, config
):
    """Dropout (torch's generator), the data order, the attack's random starts, the optimiser's
    momentum and the history all come back: the weights are bit-identical."""
    whole = fit(synthetic, **config)
    state = tmp_path / STATE_FILE
    restore = killed_in_epoch(monkeypatch, 3)
    with pytest.raises(KilledError):
        fit(synthetic, state, **config)
    restore()
    assert _parse(state.read_bytes()).epoch == 2
    epochs_run = []
    real = loop._epoch
    monkeypatch.setattr(loop, "_epoch", lambda *a, **k: epochs_run.append(1) or real(*a, **k))
    resumed = fit(synthetic, state, **config)
    assert len(epochs_run) == 1  # only the third epoch ran again
    assert same_weights(whole.model, resumed.model)
    assert resumed.history == whole.history and len(resumed.history) == 3


def test_a_state_of_another_run_or_a_damaged_one_is_ignored(synthetic, tmp_path, monkeypatch, caplog):
    state = tmp_path / STATE_FILE
    restore = killed_in_epoch(monkeypatch, 2)
    with pytest.raises(KilledError):
        fit(synthetic, state, lr=0.05)  # another learning rate: another run
    restore()
    with caplog.at_level(logging.INFO, logger="defdistill.training.resume"):
        other = fit(synthetic, state)
    assert "belongs to another run" in caplog.text
    assert same_weights(other.model, fit(synthetic).model)
    state.write_bytes(b"not a safetensors file")
    with caplog.at_level(logging.WARNING, logger="defdistill.training.resume"):
        damaged = fit(synthetic, state)
    assert "is unreadable" in caplog.text and same_weights(damaged.model, other.model)


def test_a_saved_model_leaves_no_state_behind(synthetic, tmp_path):
    out = tmp_path / "model"
    train_model(synthetic, "mnist_cnn", TrainConfig(epochs=1, batch_size=32), out, "baseline", progress=False)
    assert (out / "meta.json").is_file() and not (out / STATE_FILE).exists()


def test_a_run_resumed_on_another_machine_names_both_and_a_state_without_the_record_says_so(
    synthetic, tmp_path, monkeypatch
):
    """The state lists the machines that trained it, so a network trained across sittings on
    different CPUs does not publish its time under the last one alone."""
    state = tmp_path / STATE_FILE
    monkeypatch.setattr(loop, "machine_label", lambda: "CPU A (2 CPUs)")
    restore = killed_in_epoch(monkeypatch, 3)
    with pytest.raises(KilledError):
        fit(synthetic, state)
    restore()
    assert _parse(state.read_bytes()).machines == ["CPU A (2 CPUs)"]
    monkeypatch.setattr(loop, "machine_label", lambda: "CPU B (16 CPUs)")
    assert fit(synthetic, state).machines == ["CPU A (2 CPUs)", "CPU B (16 CPUs)"]
    assert fit(synthetic).machines == ["CPU B (16 CPUs)"]  # one sitting, one machine

    state.unlink()  # (the loop leaves its last state; saving the model removes it)
    restore = killed_in_epoch(monkeypatch, 2)
    with pytest.raises(KilledError):
        fit(synthetic, state)
    restore()
    drop_header_field(state, "machines")  # as an earlier version wrote it: no list of machines
    assert fit(synthetic, state).machines == [UNRECORDED, "CPU B (16 CPUs)"]
