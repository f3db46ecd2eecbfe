"""Fixtures for the attack tests: tiny trained models."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import blobs, linear, mlp, train
from torch import nn


@pytest.fixture(scope="session")
def trained_linear2() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A logistic regression on 2 well separated blobs in 10 dimensions."""
    x, y = blobs(200, 10, 2, seed=1)
    model = train(linear(10, 2, seed=1), x, y)
    return model, x, y


@pytest.fixture(scope="session")
def trained_mlp3() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small tanh MLP (with dropout) on 3 blobs in 12 dimensions."""
    x, y = blobs(240, 12, 3, seed=2)
    model = train(mlp(12, 3, seed=2), x, y)
    return model, x, y
