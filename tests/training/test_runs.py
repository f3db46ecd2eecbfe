"""A training run ends as a saved model that is reused only for the same configuration, and
a run killed at any moment, then rerun, gives bit-identical weights.

The kills are real SIGKILLs of ``defdistill train`` subprocesses (``tests/crash_runner.py``):
before the rerun, the checkpoint either loads with the right weights or is rejected with a
``CheckpointError``.
"""

from __future__ import annotations

import pytest
from kill_helpers import SMALL, assert_trusted_or_rejected, killed, run_until, stable_meta
from synthetic import make_synthetic

from defdistill.checkpoint import META, CheckpointError, load_model, load_reusable
from defdistill.training.config import TrainConfig
from defdistill.training.runs import dataset_signature, train_model


def test_models_of_another_configuration_are_not_reused(tmp_path):
    ds = make_synthetic(n_train=64, n_test=32)
    config = TrainConfig(epochs=1, batch_size=32, lr=0.05)
    train_model(ds, "mnist_cnn", config, tmp_path / "m", "baseline", progress=False, allow_untrained=True)
    signature = dataset_signature(ds)
    wanted = {"config": config.to_dict(), "dataset": signature, "architecture": "mnist_cnn"}
    _, meta = load_reusable(tmp_path / "m", wanted)  # same configuration: reused
    assert meta["config"] == config.to_dict()
    other = TrainConfig(epochs=2, batch_size=32, lr=0.05).to_dict()
    for changed in ({"config": other}, {"dataset": {**signature, "n_train": 65}},
                    {"architecture": "cifar10_cnn"}):  # fmt: skip
        with pytest.raises(CheckpointError, match="trained with another configuration"):
            load_reusable(tmp_path / "m", {**wanted, **changed})
    with pytest.raises(CheckpointError, match="not found"):
        load_reusable(tmp_path / "nothing", wanted)
    (tmp_path / "m" / "model.safetensors").write_bytes(b"tampered")  # meta matches, weights do not
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_reusable(tmp_path / "m", wanted)


@pytest.mark.heavy
def test_sigkilled_train_then_rerun_is_bit_identical(tmp_path):
    """Runs in the default suite (about 30 s): training killed at several points."""
    ref = tmp_path / "ref"
    assert run_until("none", "train", *SMALL, "--out", ref).returncode == 0
    expected = stable_meta(ref)
    # mid-training; new weights complete but not renamed; weights renamed, no meta.json;
    # meta.json complete but not renamed
    for point in ("step:3", "replace:1", "replaced:1", "replace:2"):
        out = tmp_path / point.replace(":", "-")
        proc = run_until(point, "train", *SMALL, "--out", out)
        assert killed(proc), (point, proc.returncode, proc.stderr)
        assert_trusted_or_rejected(out, expected["weights_sha256"])
        force = ["--force"] if (out / META).exists() else []
        assert run_until("none", "train", *SMALL, *force, "--out", out).returncode == 0
        assert stable_meta(out) == expected, point
    # a --force retrain over an older model, killed between its two renames: the directory
    # holds the new weights beside the old meta.json; rejected, then the rerun repairs it
    out = tmp_path / "over-older"
    assert run_until("none", "train", *SMALL, "--seed", "1", "--out", out).returncode == 0
    assert killed(run_until("replaced:1", "train", *SMALL, "--force", "--out", out))
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_model(out)
    assert run_until("none", "train", *SMALL, "--force", "--out", out).returncode == 0
    assert stable_meta(out) == expected
