import json

import pytest
import torch

from defdistill.checkpoint import META, WEIGHTS, CheckpointError, load_model, save_model
from defdistill.models import build_model

META_BASE = {"architecture": "mnist_cnn", "input_shape": [1, 28, 28], "num_classes": 10}


def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, 10).eval()
    save_model(tmp_path / "m", model, {**META_BASE, "role": "baseline", "temperature": 1.0})
    return model, tmp_path / "m"


def test_round_trip_gives_identical_outputs(tmp_path):
    model, path = saved(tmp_path)
    loaded, meta = load_model(path)
    assert not loaded.training
    x = torch.rand(8, 1, 28, 28)
    assert torch.equal(model(x), loaded(x))
    assert meta["role"] == "baseline" and meta["environment"]["torch"] == torch.__version__
    assert not list(path.glob(".*.tmp"))  # no temporary files left behind


def test_tampered_weights_are_rejected(tmp_path):
    _, path = saved(tmp_path)
    blob = bytearray((path / WEIGHTS).read_bytes())
    blob[-1] ^= 0x01
    (path / WEIGHTS).write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_model(path)


def test_architecture_mismatch_and_missing_files(tmp_path):
    _, path = saved(tmp_path)
    meta = json.loads((path / META).read_text())
    meta["architecture"] = "cifar10_cnn"
    meta["input_shape"] = [3, 32, 32]
    (path / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit architecture 'cifar10_cnn'"):
        load_model(path)
    meta["architecture"] = "resnet9000"
    (path / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown architecture"):
        load_model(path)
    (path / META).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nothing")
