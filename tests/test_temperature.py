"""The softmax and the loss at temperature T: exact values, properties, extreme values.

* Hand-computed values; the softmax tends to uniform as T grows.
* Properties (hypothesis): for logits up to |z| = 1e4 and T from 0.01 to 1000 the
  softmax is a finite distribution that does not change when a constant is added to the
  logits; the loss is >= 0 for one-hot targets (equal to the loss on class indices) and
  >= the entropy of soft targets (Gibbs), and its gradient is (softmax - p) / T.
* The softmax, the loss and their gradients stay finite at extreme logits and T.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from defdistill.models import build_model
from defdistill.temperature import log_softmax_at, softmax_at, temperature_loss, trained_at

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TEMPERATURES = st.floats(min_value=0.01, max_value=1000.0)
LOGIT = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def logits_batches(draw, dtype=torch.float32):
    n = draw(st.integers(1, 4))
    k = draw(st.integers(2, 12))
    values = draw(st.lists(LOGIT, min_size=n * k, max_size=n * k))
    return torch.tensor(values, dtype=dtype).view(n, k)


# --------------------------------------------------------------------------- exact values


def test_loss_matches_hand_computed_value():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    t = 2.0
    # softmax of [1, 0, -0.5]: log-sum-exp by hand
    lse = math.log(math.exp(1.0) + math.exp(0.0) + math.exp(-0.5))
    assert temperature_loss(logits, torch.tensor([0]), t).item() == pytest.approx(lse - 1.0)
    soft = torch.tensor([[0.5, 0.25, 0.25]])
    expected = 0.5 * (lse - 1.0) + 0.25 * (lse - 0.0) + 0.25 * (lse + 0.5)
    assert temperature_loss(logits, soft, t).item() == pytest.approx(expected, rel=1e-6)


def test_softmax_sums_to_one_and_tends_to_uniform():
    logits = torch.tensor([[5.0, 1.0, -3.0, 0.0]])
    entropies = []
    for t in (0.5, 1.0, 10.0, 100.0, 1000.0):
        p = softmax_at(logits, t)
        assert p.sum().item() == pytest.approx(1.0, abs=1e-6)
        entropies.append(float(-(p * p.log()).sum()))
    assert entropies == sorted(entropies)
    assert softmax_at(logits, 1e6).max().item() == pytest.approx(0.25, abs=1e-4)


@pytest.mark.parametrize("t", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature_is_value_error(t):
    with pytest.raises(ValueError, match="temperature"):
        softmax_at(torch.zeros(1, 3), t)
    with pytest.raises(ValueError, match="temperature"):
        temperature_loss(torch.zeros(1, 3), torch.tensor([0]), t)


def test_trained_at_reads_none_as_one_and_checks_a_given_temperature():
    assert trained_at(None) == 1.0
    assert trained_at(20) == 20.0 and isinstance(trained_at(20), float)
    with pytest.raises(ValueError, match="temperature must be"):
        trained_at(0.0)


# --------------------------------------------------------------------------- properties


@FAST
@given(logits_batches(), TEMPERATURES)
def test_softmax_is_a_finite_distribution(z, t):
    p = softmax_at(z, t)
    assert torch.isfinite(p).all()
    assert (p >= 0).all() and (p <= 1).all()
    assert torch.allclose(p.sum(-1), torch.ones(len(z)), atol=1e-5)
    # the largest logit has the largest probability (ties are possible after rounding)
    assert torch.equal(p.gather(1, z.argmax(-1, keepdim=True)), p.max(-1, keepdim=True).values)


@FAST
@given(logits_batches(torch.float64), TEMPERATURES, st.floats(-1e4, 1e4))
def test_softmax_is_invariant_to_a_constant_shift(z, t, c):
    assert torch.allclose(softmax_at(z + c, t), softmax_at(z, t), atol=1e-7, rtol=1e-6)
    assert torch.allclose(log_softmax_at(z + c, t).exp(), log_softmax_at(z, t).exp(), atol=1e-7)


@FAST
@given(logits_batches(), TEMPERATURES, st.data())
def test_loss_with_one_hot_targets_is_finite_and_nonnegative(z, t, data):
    y = torch.tensor(data.draw(st.lists(st.integers(0, z.shape[1] - 1), min_size=len(z), max_size=len(z))))
    loss = temperature_loss(z, y, t)
    assert torch.isfinite(loss) and loss.item() >= 0.0
    one_hot = torch.nn.functional.one_hot(y, z.shape[1]).float()
    assert torch.allclose(temperature_loss(z, one_hot, t), loss, rtol=1e-6, atol=1e-6)


@FAST
@given(logits_batches(torch.float64), TEMPERATURES, st.data())
def test_soft_loss_is_at_least_the_entropy_and_its_gradient_is_exact(z, t, data):
    raw = data.draw(hnp.arrays(np.float64, z.shape, elements=st.floats(0.0, 1.0)))
    p = torch.from_numpy(raw) + 1e-3
    p = p / p.sum(-1, keepdim=True)
    z = z.clone().requires_grad_(True)
    loss = temperature_loss(z, p, t)
    entropy = -(p * p.log()).sum(-1).mean()
    assert loss.item() >= entropy.item() - 1e-9 * max(1.0, abs(loss.item()))
    (grad,) = torch.autograd.grad(loss, z)
    expected = (softmax_at(z.detach(), t) - p) / t / len(z)
    assert torch.isfinite(grad).all()
    assert torch.allclose(grad, expected, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- extreme values


@pytest.mark.parametrize("t", [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0])
@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e2, 1e4])
def test_softmax_loss_and_gradients_are_finite_for_extreme_logits_and_temperatures(t, scale):
    z = (torch.tensor([[1.0, -1.0, 0.0, 0.5], [-1.0, -1.0, -1.0, -1.0], [1.0, 1.0, -1.0, 0.0]]) * scale)
    p = softmax_at(z, t)
    assert torch.isfinite(p).all()
    assert torch.allclose(p.sum(1), torch.ones(3))
    z.requires_grad_(True)
    y = torch.tensor([1, 0, 3])  # including the least likely class
    soft = softmax_at(z.detach() * 0.5, 3.0)
    for target in (y, soft):
        loss = temperature_loss(z, target, t)
        assert torch.isfinite(loss), (t, scale, target)
        (g,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(g).all(), (t, scale, target)
        assert g.abs().max() <= 2.0 / t  # |softmax - p| <= 1 per entry, over a batch mean
    (g,) = torch.autograd.grad((softmax_at(z, t) * torch.arange(4.0)).sum(), z)
    assert torch.isfinite(g).all()
    (g,) = torch.autograd.grad(log_softmax_at(z, t)[:, 0].sum(), z)
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("t", [0.01, 1.0, 1000.0])
def test_input_gradients_of_a_network_with_huge_logits_are_finite(t):
    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, 10).eval()
    with torch.no_grad():
        model.head.weight.mul_(1e3)  # logits of order 1e3..1e4, as after distillation at T=100
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    z = model(x)
    assert z.abs().max() > 1e3
    (g,) = torch.autograd.grad(temperature_loss(z, torch.tensor([0, 1, 2, 3]), t), x)
    assert torch.isfinite(g).all()
