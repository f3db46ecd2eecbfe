"""The entropy of soft labels at T, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from defdistill.evaluation.soft_labels import entropy_at, soft_label_entropy


def _entropy(p: list[float]) -> float:
    return -sum(q * math.log(q) for q in p if q > 0)


def test_entropy_at_matches_hand_computations() -> None:
    z = torch.tensor([[0.0, 0.0], [math.log(3), 0.0], [1000.0, 0.0]], dtype=torch.float64)
    h = entropy_at(z, 1.0).tolist()
    h.insert(2, float(entropy_at(torch.zeros(1, 4), 1.0)))
    assert h[0] == pytest.approx(math.log(2), abs=1e-12)
    assert h[1] == pytest.approx(_entropy([0.75, 0.25]), abs=1e-12)  # 0.5623 nats
    assert h[2] == pytest.approx(math.log(4), abs=1e-12)
    assert h[3] == pytest.approx(0.0, abs=1e-300) and h[3] >= 0.0  # one-hot, no 0 * log 0 = nan
    # at T = 2 the logits (ln 3, 0) become (ln 3 / 2, 0): p = (√3, 1) / (√3 + 1)
    s = math.sqrt(3)
    assert float(entropy_at(z[1:2], 2.0)) == pytest.approx(_entropy([s / (s + 1), 1 / (s + 1)]), abs=1e-12)
    # a higher temperature never lowers the entropy
    assert float(entropy_at(z[1:2], 2.0)) > h[1]


def test_soft_label_entropy_is_the_mean_with_a_seeded_bootstrap_interval() -> None:
    teacher = nn.Identity()  # the "images" are the logits themselves
    x = torch.tensor([[0.0, 0.0], [math.log(3), 0.0], [5.0, 0.0], [0.0, 2.0]])
    est = soft_label_entropy(teacher, x, 1.0, seed=3)
    values = [_entropy([0.5, 0.5]), _entropy([0.75, 0.25])]
    values += [_entropy([1 / (1 + math.exp(-5)), 1 / (1 + math.exp(5))]),
               _entropy([1 / (1 + math.exp(2)), 1 / (1 + math.exp(-2))])]  # fmt: skip
    assert est.n == 4 and est.mean == pytest.approx(sum(values) / 4, abs=1e-6)  # float32 logits
    assert min(values) <= est.low < est.mean < est.high <= max(values)
    assert soft_label_entropy(teacher, x, 1.0, seed=3) == est  # the same seed, the same interval
    constant = soft_label_entropy(teacher, x[:1].repeat(5, 1), 1.0)
    assert constant.low == constant.high == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="temperature"):
        soft_label_entropy(teacher, x, 0.0)
