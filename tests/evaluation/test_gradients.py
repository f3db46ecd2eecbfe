"""Gradient amplitude of the softmax with respect to the input (the paper's Figure 8)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from defdistill.evaluation.gradients import gradient_amplitude, log10_gradient_amplitude


def test_gradient_amplitude_of_a_linear_model_matches_the_hand_jacobian() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(6, 3)
    model = nn.Sequential(nn.Flatten(), lin).train()
    x = torch.rand(5, 1, 2, 3)
    temperature = 2.5
    w, b = lin.weight.detach().double(), lin.bias.detach().double()
    s = torch.softmax((x.flatten(1).double() @ w.T + b) / temperature, dim=1)
    # dF_c/dx = F_c (w_c - sum_k F_k w_k) / T
    jac = s[:, :, None] * (w[None] - (s @ w)[:, None, :]) / temperature
    expected = jac.abs().mean(dim=(1, 2)).float()
    got = gradient_amplitude(model, x, temperature=temperature, batch_size=2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-9)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_gradient_amplitude_keeps_tiny_values_that_autograd_rounds_to_zero() -> None:
    """Saturated softmax: dF_c/dz_c = F_c (1 - F_c) must not be computed as 0."""
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[20.0, 0.0], [0.0, 0.0]]))
        lin.bias.zero_()
    x = torch.tensor([[1.0, 0.5]])
    got = float(gradient_amplitude(lin, x))
    # F_0 = 1 / (1 + e^-20): the Jacobian entries are F0 F1 * 20 (features 0) and 0.
    f1 = 1 / (1 + math.exp(20))
    assert got == pytest.approx((1 - f1) * f1 * 20 * 2 / 4, rel=1e-4)


def test_log10_gradient_amplitude_matches_float64_and_does_not_underflow():
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(),
                               torch.nn.Linear(8, 4)).double()  # fmt: skip
    x = torch.rand(6, 1, 3, 4, dtype=torch.float64)
    for t in (1.0, 3.0):
        exact = gradient_amplitude(base, x, t).log10()
        assert torch.allclose(log10_gradient_amplitude(base, x, t), exact, atol=1e-9)

    class Scaled(torch.nn.Module):  # logits x 1e5: float64 underflows, the log does not
        def forward(self, v):
            return base(v) * 1e5

    assert (gradient_amplitude(Scaled(), x) == 0).all()
    logs = log10_gradient_amplitude(Scaled(), x)
    assert torch.isfinite(logs).all() and (logs < -300).all()
    assert (logs < log10_gradient_amplitude(base, x) - 100).all()
