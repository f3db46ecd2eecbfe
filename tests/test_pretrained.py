"""Shipped models by name: the registry, resolving a name or a directory, loading with the
sha256 checked; and the real shipped models, each checked against what its meta.json claims."""

from __future__ import annotations

import hashlib
import shutil
import tomllib
from pathlib import Path, PurePosixPath

import pytest
import torch

import defdistill
from defdistill import pretrained
from defdistill.checkpoint import META, WEIGHTS, CheckpointError, read_meta, save_model
from defdistill.data import load_dataset
from defdistill.inference import accuracy
from defdistill.models import build_model

SHIPPED = pretrained.available()  # the real registry, read at collection (before any monkeypatch)
N_TEST = 100


def check_shipped(name: str) -> None:
    """Shipped model ``name`` loads, matches its sha256, has its provenance and its accuracy."""
    model, meta = pretrained.load_pretrained(name)
    path = pretrained.REGISTRY / name
    digest = hashlib.sha256((path / WEIGHTS).read_bytes()).hexdigest()
    assert digest == meta["weights_sha256"]
    provenance = meta.get("provenance")
    assert isinstance(provenance, dict), f"{name}: meta.json has no provenance object"
    missing = [f for f in pretrained.PROVENANCE_FIELDS if provenance.get(f) in (None, "")]
    assert not missing, f"{name}: provenance lacks {missing}"
    assert provenance["sha256"] == digest
    assert provenance["test_accuracy"] == meta["test_accuracy"]
    dataset = meta["dataset"]
    if dataset["name"] == "cifar10":
        pytest.skip(f"{name}: the full CIFAR-10 is not embedded")
    ds = load_dataset(dataset["name"], limit_test=dataset.get("n_test"))
    measured = accuracy(model, ds.x_test, ds.y_test)
    assert abs(measured - meta["test_accuracy"]) <= 0.001, (name, measured, meta["test_accuracy"])


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.heavy
def test_every_shipped_model_is_what_its_meta_says(name: str) -> None:
    check_shipped(name)


def test_the_registry_ships_with_the_package() -> None:
    """The registry directory exists, and pyproject's package-data carries its model files."""
    assert pretrained.REGISTRY.is_dir()
    pyproject = Path(defdistill.__file__).parents[2] / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("an installed package: no pyproject.toml beside it")
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["defdistill"]
    prefix = pretrained.REGISTRY.relative_to(Path(defdistill.__file__).parent).as_posix()
    for file in (META, WEIGHTS):
        shipped = PurePosixPath(prefix, "example", file)
        assert any(shipped.match(p) for p in patterns), f"package-data does not carry {shipped}"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch) -> Path:
    """A registry holding ``tiny``: the paper's MNIST network, untrained, its accuracy measured."""
    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, 10).eval()
    ds = load_dataset("mnist", limit_test=N_TEST)
    acc = accuracy(model, ds.x_test, ds.y_test)
    root = tmp_path / "registry"
    meta = save_model(root / "tiny", model, {
        "architecture": "mnist_cnn", "input_shape": [1, 28, 28], "num_classes": 10,
        "dataset": {"name": "mnist", "n_test": N_TEST}, "role": "baseline", "temperature": 1.0,
        "test_accuracy": acc,
    })  # fmt: skip
    provenance = {
        "command": "torch.manual_seed(0); build_model('mnist_cnn', 1, 28, 10)",
        "commit": "test",
        "test_accuracy": acc,
        "training_seconds": 0.0,
        "cpu": "none",
        "sha256": meta["weights_sha256"],
    }
    save_model(root / "tiny", model, {**meta, "provenance": provenance})
    (root / "not-a-model").mkdir()
    (root / "notes.txt").write_text("not a model\n")
    monkeypatch.setattr(pretrained, "REGISTRY", root)
    return root


def test_available_lists_the_directories_with_meta_json(registry: Path) -> None:
    assert pretrained.available() == ["tiny"]
    d = pretrained.describe("tiny")
    assert d["name"] == "tiny" and d["role"] == "baseline" and d["temperature"] == 1.0
    assert d["dataset"] == "mnist" and d["test_accuracy"] == d["provenance"]["test_accuracy"]


def test_a_temporary_registry_passes_the_check_of_the_shipped_models(registry: Path) -> None:
    check_shipped("tiny")


def test_resolve_prefers_an_existing_directory_then_a_name(
    registry: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert pretrained.resolve_model("tiny") == registry / "tiny"
    assert pretrained.resolve_model(Path("tiny")) == registry / "tiny"
    (tmp_path / "tiny").mkdir()  # an empty local directory of that name: a hint, not "not found"
    with pytest.raises(CheckpointError, match="local directory without meta.json hides the shipped model"):
        pretrained.resolve_model("tiny")
    (tmp_path / "tiny" / "meta.json").write_text("{}")  # a local model directory of that name wins
    assert pretrained.resolve_model("tiny") == Path("tiny")
    assert pretrained.resolve_model(registry / "tiny") == registry / "tiny"


def test_an_unknown_name_is_one_line_listing_the_shipped_ones(registry: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        pretrained.resolve_model("nope")
    message = str(err.value)
    assert "\n" not in message
    for fragment in ("nope", "shipped: tiny", "or give a model directory"):
        assert fragment in message, message
    with pytest.raises(CheckpointError, match="shipped: tiny"):
        pretrained.load_pretrained("nope")
    with pytest.raises(CheckpointError, match="shipped: tiny"):
        pretrained.describe("not-a-model")


def test_load_pretrained_checks_the_sha256(registry: Path, tmp_path: Path, monkeypatch) -> None:
    model, meta = pretrained.load_pretrained("tiny")
    assert not model.training and meta == read_meta(registry / "tiny")
    assert defdistill.load_pretrained is pretrained.load_pretrained
    corrupt = tmp_path / "corrupt"
    shutil.copytree(registry, corrupt)
    blob = bytearray((corrupt / "tiny" / WEIGHTS).read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (corrupt / "tiny" / WEIGHTS).write_bytes(bytes(blob))
    monkeypatch.setattr(pretrained, "REGISTRY", corrupt)
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        pretrained.load_pretrained("tiny")
