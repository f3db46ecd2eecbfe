"""Inference helpers: predictions and accuracy leave the model as they found it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from defdistill.inference import accuracy


def test_accuracy_restores_the_models_mode() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.9)).train()
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    assert accuracy(model, x, y) == pytest.approx(2 / 3)
    assert accuracy(model, x, y, batch_size=1) == pytest.approx(2 / 3)
    assert model.training
