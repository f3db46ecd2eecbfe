"""``defdistill models`` lists the shipped models, and every ``--model`` takes their names."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import META_BASE, assert_user_error, constant_model, run_cli

from defdistill import pretrained
from defdistill.checkpoint import save_model
from defdistill.data import load_dataset

PROVENANCE = {"command": "constant_model(3)", "commit": "test", "training_seconds": 12.0, "cpu": "a test CPU"}


@pytest.fixture
def registry(tmp_path: Path, monkeypatch) -> Path:
    """A registry holding ``three``, a network that answers 3, with its accuracy on 100 images."""
    acc = float((load_dataset("mnist", limit_test=100).y_test == 3).float().mean())
    root = tmp_path / "registry"
    meta = save_model(root / "three", constant_model(3), {**META_BASE, "test_accuracy": acc})
    save_model(
        root / "three",
        constant_model(3),
        {**meta, "provenance": {**PROVENANCE, "test_accuracy": acc, "sha256": meta["weights_sha256"]}},
    )
    monkeypatch.setattr(pretrained, "REGISTRY", root)
    monkeypatch.chdir(tmp_path)  # no directory named ``three`` here
    return root


def test_models_lists_the_shipped_models(registry: Path, capsys) -> None:
    code, out, _ = run_cli(["models", "--quiet"], capsys)
    assert code == 0
    line = next(line for line in out.splitlines() if "three" in line)
    for fragment in ("mnist", "baseline", "T=1", f"{pretrained.describe('three')['test_accuracy']:.2%}"):
        assert fragment in line, line
    assert "constant_model(3)" in out and "a test CPU" in out


def test_models_says_when_none_is_shipped(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(pretrained, "REGISTRY", tmp_path)
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0 and "no pretrained model is shipped" in out and "defdistill train" in out


def test_evaluate_takes_a_shipped_name(registry: Path, cached_mnist, capsys) -> None:
    code, out, err = run_cli(["evaluate", "--model", "three", "--limit-test", "100", "--quiet"], capsys)
    assert code == 0, err
    recorded = pretrained.describe("three")["test_accuracy"]
    assert "on 100 mnist test images" in out and f"accuracy              {recorded:.2%}" in out


def test_an_unknown_name_is_one_line_listing_the_shipped_ones(registry: Path, cached_mnist, capsys) -> None:
    assert_user_error(
        capsys, ["evaluate", "--model", "nope"], "nope", "shipped: three", "or give a model directory"
    )
    assert_user_error(
        capsys,
        ["audit", "--model", "three", "--reference", "nope", "--limit-test", "100"],
        "nope",
        "shipped: three",
    )
