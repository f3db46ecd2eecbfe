"""Small models and data shared by the attack tests (all CPU, all seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models: intra-op threads only add overhead (and thrash on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mlp(n_features: int, num_classes: int, hidden: int = 16, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(n_features, hidden),
        nn.Tanh(),
        nn.Dropout(0.5),
        nn.Linear(hidden, num_classes),
    )


def linear(n_features: int, num_classes: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(n_features, num_classes))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 300) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model.eval()


def blobs(
    n: int, n_features: int, num_classes: int, spread: float = 0.08, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Separable Gaussian blobs inside [0.2, 0.8]^d (the box rarely binds)."""
    g = torch.Generator().manual_seed(seed)
    centers = 0.3 + 0.4 * torch.rand(num_classes, n_features, generator=g)
    y = torch.arange(n) % num_classes
    x = centers[y] + spread * torch.randn(n, n_features, generator=g)
    return x.clamp(0.0, 1.0), y


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
