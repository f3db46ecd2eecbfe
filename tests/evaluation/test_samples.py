"""Which samples are attacked: the first N correct ones, found without predicting the whole set."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from defdistill.evaluation.samples import first_correct, first_correct_indices
from defdistill.inference import correct_mask


class Counting(nn.Module):
    """Predicts class ``round(x[0]) mod 10``, and counts the inputs it has seen."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        cls = x.flatten(1)[:, 0].round().long() % 10
        return nn.functional.one_hot(cls, 10).float()


def _test_set(n: int = 10_000, accuracy: float = 0.3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` inputs whose label the model gets right with probability ``accuracy``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    right = torch.rand(n, generator=g) < accuracy
    predicted = torch.where(right, y, (y + 1 + torch.randint(0, 9, (n,), generator=g)) % 10)
    return predicted.float()[:, None].expand(n, 4).clone(), y


def _old_first_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int):
    """The computation before chunking: predict the whole set, keep the first ``n`` correct."""
    idx = correct_mask(model, x, y).nonzero().flatten()[:n]
    return x[idx], y[idx]


@pytest.mark.parametrize("n", [1, 5, 100, 1000])
def test_first_correct_predicts_only_a_prefix_and_matches_the_full_set(n: int) -> None:
    x, y = _test_set()
    model = Counting()
    xs, ys = first_correct(model, x, y, n)
    assert model.seen <= 4 * max(2 * n, 256) < len(x)  # chunks double: at most ~2x what is needed
    want_x, want_y = _old_first_correct(Counting(), x, y, n)
    assert torch.equal(xs, want_x) and torch.equal(ys, want_y) and len(xs) == n


def test_first_correct_indices_are_the_first_correct_ones_in_order() -> None:
    x, y = _test_set(n=3000, accuracy=0.05, seed=1)
    idx = first_correct_indices(Counting(), x, y, 40)
    assert idx.tolist() == correct_mask(Counting(), x, y).nonzero().flatten()[:40].tolist()


@pytest.mark.parametrize("accuracy", [0.0, 0.001])
def test_too_few_correct_predicts_the_whole_set_once(accuracy: float) -> None:
    x, y = _test_set(n=5000, accuracy=accuracy, seed=2)
    model = Counting()
    xs, ys = first_correct(model, x, y, 100)
    assert model.seen == len(x)
    want_x, want_y = _old_first_correct(Counting(), x, y, 100)
    assert torch.equal(xs, want_x) and torch.equal(ys, want_y) and len(xs) < 100
    assert first_correct_indices(model, x[:0], y[:0], 3).tolist() == []
