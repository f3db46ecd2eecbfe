"""Fixtures for the command-line tests: model directories, and fast data loaders."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from cli_helpers import META_BASE, constant_model, replace_loader
from synthetic import make_synthetic

from defdistill.checkpoint import save_model
from defdistill.cli import main
from defdistill.data import Dataset
from defdistill.data.dataset import subset
from defdistill.data.mnist import load_mnist


@pytest.fixture
def existing(tmp_path) -> Path:
    """A model directory written before the command under test (it must survive)."""
    save_model(tmp_path / "existing", constant_model(0), META_BASE)
    (tmp_path / "existing" / "notes.json").write_text('{"keep": true}\n')
    return tmp_path / "existing"


@functools.cache
def _mnist_full() -> Dataset:
    return load_mnist()


@pytest.fixture
def cached_mnist(monkeypatch):
    """The CLI's data loader with the embedded MNIST read once per session (speed only)."""

    def load(name, data_dir=None, limit_train=None, limit_test=None, train=True):
        assert name == "mnist" and data_dir is None
        return subset(_mnist_full(), limit_train, limit_test)

    replace_loader(monkeypatch, load)


@pytest.fixture
def synthetic_cli(monkeypatch):
    """The CLI with a tiny synthetic data set instead of MNIST (speed only)."""
    ds = make_synthetic(n_train=64, n_test=32, seed=6)
    replace_loader(monkeypatch, lambda *args, **kwargs: ds)


@pytest.fixture(scope="session")
def small_model(tmp_path_factory) -> Path:
    """The paper's MNIST network trained by ``defdistill train`` for seconds (1 epoch, 4000 images)."""
    out = tmp_path_factory.mktemp("cli") / "baseline"
    assert main(["train", "--epochs", "1", "--limit-train", "4000", "--limit-test", "300",
                 "--batch-size", "32", "--quiet", "--out", str(out)]) == 0
    return out
