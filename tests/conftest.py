"""Shared fixtures: one intra-op thread, a small synthetic data set."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from synthetic import make_synthetic

from defdistill.data import Dataset

# A Ray instance started by a test binds to the loopback interface only (read when ray is
# first imported, so set before any test imports it).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Iterator[None]:
    """Small models: intra-op threads only add overhead (and thrash on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synthetic() -> Dataset:
    return make_synthetic()
