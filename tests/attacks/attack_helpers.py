"""Small models and data for the attack tests (CPU, seconds). Imported by the tests."""

from __future__ import annotations

import torch
from torch import nn


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
