"""Fixtures for the evaluation tests: a small trained network, and the same network masked."""

import pytest
import torch
from synthetic import make_synthetic
from torch import nn

from defdistill.evaluation.ablations import ScaledLogits


@pytest.fixture(scope="session")
def trained():
    torch.manual_seed(0)
    ds = make_synthetic(n_train=600, n_test=200, num_classes=3, size=8, seed=2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = nn.functional.cross_entropy(model(ds.x_train), ds.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert (model(ds.x_test).argmax(1) == ds.y_test).float().mean() > 0.95
    return model, ds


@pytest.fixture
def masked(trained):
    """The trained network with its logits x 1000 (masks its gradients, decides alike)."""
    return ScaledLogits(trained[0], 1000.0).eval()
