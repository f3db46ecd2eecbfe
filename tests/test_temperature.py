import math

import pytest
import torch

from defdistill.temperature import softmax_at, temperature_loss


def test_loss_matches_hand_computed_value():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    t = 2.0
    # softmax of [1, 0, -0.5]: log-sum-exp by hand
    lse = math.log(math.exp(1.0) + math.exp(0.0) + math.exp(-0.5))
    assert temperature_loss(logits, torch.tensor([0]), t).item() == pytest.approx(lse - 1.0)
    soft = torch.tensor([[0.5, 0.25, 0.25]])
    expected = 0.5 * (lse - 1.0) + 0.25 * (lse - 0.0) + 0.25 * (lse + 0.5)
    assert temperature_loss(logits, soft, t).item() == pytest.approx(expected, rel=1e-6)


def test_hard_labels_equal_one_hot_soft_labels():
    logits = torch.randn(5, 4)
    y = torch.tensor([0, 3, 1, 2, 3])
    one_hot = torch.nn.functional.one_hot(y, 4).float()
    assert torch.allclose(temperature_loss(logits, y, 7.0), temperature_loss(logits, one_hot, 7.0))


def test_softmax_sums_to_one_and_tends_to_uniform():
    logits = torch.tensor([[5.0, 1.0, -3.0, 0.0]])
    entropies = []
    for t in (0.5, 1.0, 10.0, 100.0, 1000.0):
        p = softmax_at(logits, t)
        assert p.sum().item() == pytest.approx(1.0, abs=1e-6)
        entropies.append(float(-(p * p.log()).sum()))
    assert entropies == sorted(entropies)
    assert softmax_at(logits, 1e6).max().item() == pytest.approx(0.25, abs=1e-4)


@pytest.mark.parametrize("t", [0.01, 1.0, 1000.0])
def test_softmax_and_loss_finite_for_extreme_logits(t):
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    p = softmax_at(logits, t)
    assert torch.isfinite(p).all()
    assert torch.allclose(p.sum(1), torch.ones(2))
    loss = temperature_loss(logits, torch.tensor([1, 0]), t)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("t", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature_is_value_error(t):
    with pytest.raises(ValueError, match="temperature"):
        softmax_at(torch.zeros(1, 3), t)
    with pytest.raises(ValueError, match="temperature"):
        temperature_loss(torch.zeros(1, 3), torch.tensor([0]), t)
