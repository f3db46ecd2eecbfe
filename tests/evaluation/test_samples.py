"""Which samples are attacked: random ones drawn with a seed, found without predicting the
whole set."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from defdistill.evaluation.samples import (
    random_common_correct,
    random_correct_indices,
    random_indices,
    random_order,
)
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


def _full_set_draw(x: torch.Tensor, y: torch.Tensor, n: int, seed: int) -> list[int]:
    """The computation without chunking: predict the whole set, keep the first ``n`` correct
    samples in the order of the seed's permutation."""
    order = random_order(len(x), seed)
    return order[correct_mask(Counting(), x[order], y[order])][:n].tolist()


@pytest.mark.parametrize("n", [1, 5, 100, 1000])
def test_a_draw_predicts_only_a_prefix_of_the_permutation_and_matches_the_full_set(n: int) -> None:
    x, y = _test_set()
    model = Counting()
    idx = random_correct_indices(model, x, y, n, seed=11)
    assert model.seen <= 4 * max(2 * n, 256) < len(x)  # chunks double: at most ~2x what is needed
    assert idx.tolist() == _full_set_draw(x, y, n, seed=11) and len(idx) == n


@pytest.mark.parametrize("accuracy", [0.0, 0.001])
def test_too_few_correct_predicts_the_whole_set_once(accuracy: float) -> None:
    x, y = _test_set(n=5000, accuracy=accuracy, seed=2)
    model = Counting()
    idx = random_correct_indices(model, x, y, 100, seed=0)
    assert model.seen == len(x)
    assert idx.tolist() == _full_set_draw(x, y, 100, seed=0) and len(idx) < 100
    assert random_correct_indices(model, x[:0], y[:0], 3, seed=0).tolist() == []


# ------------------------------------------------------------------ random samples with a seed
class Never(nn.Module):
    """A model right on nothing: always predicts class 10, which no label is."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(torch.full((len(x),), 10), 11).float()


class Shifted(Counting):
    """Right where ``Counting`` is, except on the samples whose index feature is odd."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        odd = x.flatten(1)[:, 1].long() % 2 == 1
        return torch.where(odd[:, None], out.roll(1, dims=1), out)


def _indexed_test_set(n: int = 3000, accuracy: float = 0.5, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """:func:`_test_set` with each sample's own index stored in its second feature."""
    x, y = _test_set(n, accuracy, seed)
    x[:, 1] = torch.arange(n).float()
    return x, y


def test_random_correct_indices_are_deterministic_correct_and_differ_between_seeds() -> None:
    x, y = _test_set(n=3000, accuracy=0.5, seed=3)
    model = Counting()
    a = random_correct_indices(model, x, y, 100, seed=7)
    b = random_correct_indices(Counting(), x, y, 100, seed=7)
    c = random_correct_indices(Counting(), x, y, 100, seed=8)
    assert a.tolist() == b.tolist() and len(a) == 100 and len(set(a.tolist())) == 100
    assert a.tolist() != c.tolist()
    assert bool(correct_mask(Counting(), x[a], y[a]).all())
    # a random sample, not the first correct ones: it reaches far into the test set
    first = correct_mask(Counting(), x, y).nonzero().flatten()[:100]
    assert a.max() > first.max() and sorted(a.tolist()) != first.tolist()
    # draw order: the first correct samples of the seed's permutation, in that order
    order = random_order(len(x), 7)
    assert a.tolist() == order[correct_mask(Counting(), x[order], y[order])][:100].tolist()
    # a larger draw extends a smaller one; only a prefix of the set was predicted
    assert random_correct_indices(Counting(), x, y, 30, seed=7).tolist() == a[:30].tolist()
    assert model.seen < len(x)


def test_the_global_rng_neither_changes_nor_is_changed_by_a_draw() -> None:
    x, y = _test_set(n=2000, accuracy=0.5, seed=4)
    torch.manual_seed(0)
    a = random_correct_indices(Counting(), x, y, 50, seed=1)
    after_a = torch.rand(1)
    torch.manual_seed(123)
    b = random_correct_indices(Counting(), x, y, 50, seed=1)
    torch.manual_seed(0)
    assert a.tolist() == b.tolist() and torch.equal(torch.rand(1), after_a)


def test_random_common_correct_gives_the_same_images_every_model_gets_right() -> None:
    x, y = _indexed_test_set()
    models = [Counting(), Shifted()]
    idx = random_common_correct(models, x, y, 200, seed=5)
    assert len(idx) == 200
    for model in models:
        assert bool(correct_mask(model, x[idx], y[idx]).all())
    assert not bool((x[idx, 1].long() % 2).any())  # Shifted's odd samples are excluded
    assert random_common_correct([Counting()], x, y, 200, seed=5).tolist() == \
        random_correct_indices(Counting(), x, y, 200, seed=5).tolist()
    with pytest.raises(ValueError, match="models is empty"):
        random_common_correct([], x, y, 3, seed=0)


def test_fewer_correct_than_asked_gives_all_of_them_and_none_gives_nothing() -> None:
    x, y = _test_set(n=2000, accuracy=0.01, seed=6)
    available = int(correct_mask(Counting(), x, y).sum())
    model = Counting()
    idx = random_correct_indices(model, x, y, 100, seed=0)
    assert len(idx) == available < 100 and model.seen == len(x)  # the whole set, once
    assert sorted(idx.tolist()) == correct_mask(Counting(), x, y).nonzero().flatten().tolist()
    assert random_correct_indices(Never(), x, y, 10, seed=0).tolist() == []
    assert random_common_correct([Counting(), Never()], x, y, 10, seed=0).tolist() == []
    assert random_correct_indices(Counting(), x, y, 0, seed=0).tolist() == []


def test_random_indices_draw_regardless_of_correctness_and_say_which_are_correct() -> None:
    x, y = _indexed_test_set(n=1000, accuracy=0.5, seed=8)
    models = [Counting(), Shifted(), Never()]
    idx, correct = random_indices(models, x, y, 300, seed=9)
    assert idx.tolist() == random_order(len(x), 9)[:300].tolist()
    assert correct.shape == (3, 300) and not bool(correct[2].any())
    for row, model in zip(correct, models, strict=True):
        assert row.tolist() == correct_mask(model, x[idx], y[idx]).tolist()
    assert 0.3 < float(correct[0].float().mean()) < 0.7  # about half, as the set was made
    # the conditional draw of the same seed takes the correct ones of the same sequence
    both = correct[0] & correct[1]
    assert random_common_correct(models[:2], x, y, int(both.sum()), seed=9).tolist() == idx[both].tolist()
    idx_all, _ = random_indices(models, x, y, 5000, seed=9)
    assert sorted(idx_all.tolist()) == list(range(1000))


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_bad_counts_and_seeds_are_refused(bad) -> None:
    x, y = _test_set(n=10)
    with pytest.raises(ValueError, match="n"):
        random_correct_indices(Counting(), x, y, bad, seed=0)
    with pytest.raises(ValueError, match="seed"):
        random_order(10, 1.5)
