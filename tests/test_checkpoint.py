"""Checkpoints: a round trip is exact; modified, half-written or mismatched ones are rejected.

Planted half-written files (truncated weights or ``meta.json``, new weights beside an
old ``meta.json``, leftover temporary files) are what a crash can leave: each is rejected
with a ``CheckpointError`` or ignored, never trusted.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from defdistill.checkpoint import META, WEIGHTS, CheckpointError, load_model, save_model
from defdistill.models import build_model

META_BASE = {"architecture": "mnist_cnn", "input_shape": [1, 28, 28], "num_classes": 10}


def saved(path, seed: int = 0):
    """The paper's MNIST network (initialised with ``seed``) saved at ``path``."""
    torch.manual_seed(seed)
    model = build_model("mnist_cnn", 1, 28, 10).eval()
    meta = save_model(path, model, {**META_BASE, "role": "baseline", "temperature": 1.0})
    return model, meta


def test_round_trip_gives_identical_outputs(tmp_path):
    model, _ = saved(tmp_path / "m")
    loaded, meta = load_model(tmp_path / "m")
    assert not loaded.training
    x = torch.rand(8, 1, 28, 28)
    assert torch.equal(model(x), loaded(x))
    assert meta["role"] == "baseline" and meta["environment"]["torch"] == torch.__version__
    assert not list((tmp_path / "m").glob(".*.tmp"))  # no temporary files left behind


def _flip(position):
    def edit(blob: bytes) -> bytes:
        changed = bytearray(blob)
        changed[position(len(blob))] ^= 0x40
        return bytes(changed)

    return edit


WEIGHT_EDITS = {
    "flip-last-byte": _flip(lambda n: n - 1),
    "flip-middle-byte": _flip(lambda n: n // 2),
    "truncated-to-0": lambda blob: blob[:0],
    "truncated-to-8": lambda blob: blob[:8],
    "truncated-to-100": lambda blob: blob[:100],
    "truncated-to-half": lambda blob: blob[: len(blob) // 2],
}


@pytest.mark.parametrize("edit", sorted(WEIGHT_EDITS))
def test_modified_or_truncated_weights_are_rejected(tmp_path, edit):
    saved(tmp_path / "m")
    path = tmp_path / "m" / WEIGHTS
    path.write_bytes(WEIGHT_EDITS[edit](path.read_bytes()))
    with pytest.raises(CheckpointError, match="model.safetensors: sha256 does not match meta.json; "
                                              ".*retrain or restore the model"):  # fmt: skip
        load_model(tmp_path / "m")


def test_new_weights_beside_old_meta_are_rejected(tmp_path):
    """What a crash between the two renames of a re-save would leave."""
    saved(tmp_path / "old", seed=0)
    saved(tmp_path / "new", seed=1)
    shutil.copy(tmp_path / "new" / WEIGHTS, tmp_path / "old" / WEIGHTS)
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_model(tmp_path / "old")


def test_leftover_temporary_files_are_ignored(tmp_path):
    _, meta = saved(tmp_path / "m")
    blob = (tmp_path / "m" / WEIGHTS).read_bytes()
    (tmp_path / "m" / f".{WEIGHTS}.abc123.tmp").write_bytes(blob[:1000])  # a SIGKILLed write
    (tmp_path / "m" / f".{META}.def456.tmp").write_text('{"format_version": 1, "architec')
    assert load_model(tmp_path / "m")[1]["weights_sha256"] == meta["weights_sha256"]


@pytest.mark.parametrize("keep", [0, 1, 50, -1])
def test_truncated_meta_is_rejected(tmp_path, keep):
    saved(tmp_path / "m")
    text = (tmp_path / "m" / META).read_bytes()
    (tmp_path / "m" / META).write_bytes(text[:keep] if keep >= 0 else text[: len(text) // 2])
    message = r"meta.json: (not (valid|readable) JSON|unknown checkpoint format)"
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("edit", ["drop-input-shape", "num-classes-string", "not-a-dict", "old-format"])
def test_meta_with_missing_or_invalid_fields_is_rejected(tmp_path, edit):
    saved(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / META).read_text())
    if edit == "drop-input-shape":
        del meta["input_shape"]
    elif edit == "num-classes-string":
        meta["num_classes"] = "10"
    elif edit == "not-a-dict":
        meta = [meta]
    else:
        meta["format_version"] = 0
    (tmp_path / "m" / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as caught:
        load_model(tmp_path / "m")
    message = str(caught.value)
    assert "meta.json" in message and "retrain" in message
    assert any(word in message for word in ("invalid", "unknown checkpoint format", "expected a JSON object"))


def test_architecture_mismatch(tmp_path):
    saved(tmp_path / "m")
    path = tmp_path / "m"
    meta = json.loads((path / META).read_text())
    (path / META).write_text(json.dumps({**meta, "architecture": "cifar10_cnn", "input_shape": [3, 32, 32]}))
    with pytest.raises(CheckpointError, match="weights do not fit architecture 'cifar10_cnn'.*retrain"):
        load_model(path)
    (path / META).write_text(json.dumps({**meta, "architecture": "vgg16"}))
    with pytest.raises(CheckpointError, match="unknown architecture 'vgg16'"):
        load_model(path)
    (path / META).write_text(json.dumps({**meta, "input_shape": [1, 8, 8]}))  # too small
    with pytest.raises(CheckpointError, match="do not fit architecture 'mnist_cnn' with inputs"):
        load_model(path)


def test_missing_files(tmp_path):
    message = "meta.json: not found; is .*nothing a defdistill model directory"
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / "nothing")
    saved(tmp_path / "m")
    (tmp_path / "m" / META).write_text("{not json")
    with pytest.raises(CheckpointError, match=r"meta.json: not (valid|readable) JSON"):
        load_model(tmp_path / "m")


HOSTILE_FIELDS = {
    "dataset-a-string": ("dataset", "mnist", "dataset must be an object"),
    "dataset-name-a-number": ("dataset", {"name": 7}, "dataset must be an object"),
    "temperature-a-word": ("temperature", "hot", "temperature must be a number in"),
    "temperature-nan": ("temperature", float("nan"), "temperature must be a number in"),
    "temperature-negative": ("temperature", -1, "temperature must be a number in"),
    "temperature-a-bool": ("temperature", True, "temperature must be a number in"),
    "role-a-number": ("role", 5, "role must be a string"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FIELDS))
def test_meta_fields_that_commands_read_are_checked_when_loading(tmp_path, case):
    key, value, message = HOSTILE_FIELDS[case]
    saved(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / META).read_text())
    meta[key] = value
    (tmp_path / "m" / META).write_text(json.dumps(meta))  # NaN written as the non-standard NaN
    with pytest.raises(CheckpointError, match=message) as caught:
        load_model(tmp_path / "m")
    assert str(tmp_path / "m" / META) in str(caught.value)


HUGE = [("num_classes", 2_000_000), ("input_shape", [1, 50_000, 50_000]), ("num_classes", 2**63),
        ("input_shape", [1, 10**30, 28])]  # fmt: skip


@pytest.mark.parametrize(("field", "value"), HUGE)
def test_a_meta_claiming_a_huge_model_is_rejected_before_anything_is_allocated(
    tmp_path, monkeypatch, field, value
):
    from defdistill import checkpoint

    saved(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / META).read_text())
    meta[field] = value
    (tmp_path / "m" / META).write_text(json.dumps(meta))
    built_on = []

    def recording_build(*args):
        built_on.append(torch.empty(0).device.type)  # the default device where it is built
        return build_model(*args)

    monkeypatch.setattr(checkpoint, "build_model", recording_build)
    with pytest.raises(CheckpointError, match="num_classes or weights_sha256 missing or invalid"):
        load_model(tmp_path / "m")
    assert built_on == []  # range-checked where read: nothing built, even on the meta device


def test_a_meta_of_a_model_too_large_for_its_weights_is_refused_on_the_meta_device(tmp_path, monkeypatch):
    from defdistill import checkpoint

    saved(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / META).read_text())
    meta["num_classes"] = 50_000  # within range, but not the weights on disk
    (tmp_path / "m" / META).write_text(json.dumps(meta))
    built_on = []

    def recording_build(*args):
        built_on.append(torch.empty(0).device.type)
        return build_model(*args)

    monkeypatch.setattr(checkpoint, "build_model", recording_build)
    with pytest.raises(CheckpointError, match="weights do not fit architecture"):
        load_model(tmp_path / "m")
    assert set(built_on) == {"meta"}  # the size cap and the shape check, on the device without memory
    assert set(built_on) == {"meta"}  # the size cap and the shape check, on the device without memory
