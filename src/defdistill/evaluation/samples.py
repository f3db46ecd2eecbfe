"""Which test samples an evaluation attacks.

The evidence an evaluation publishes rests on images drawn **at random from the test set
with a recorded seed**, the same images for every model of a run (paired samples): the
first N images of a test set are not a random sample of it (on MNIST they are easier
than the rest). Every draw goes through one seeded permutation of the test set
(:func:`random_order`, a local ``torch.Generator``, never the global RNG):

* :func:`random_indices`: the first ``n`` positions of the permutation, whatever the
  models do with them, with which of them each model classifies correctly (robust
  accuracy as AutoAttack and RobustBench report it, a clean error counting as a failure);
* :func:`random_correct_indices`: the first ``n`` positions of the permutation that one
  model classifies correctly (the paper's protocol attacks correct samples only);
* :func:`random_common_correct`: the first ``n`` that every model classifies correctly.

Indices come back in **draw order** (the order of the permutation, not ascending), so a
larger ``n`` with the same seed extends a smaller one: the 100 images of a quick run are
the first 100 of a 1,000-image run. The test set is predicted in chunks of the
permutation, the first of ``max(2n, 256)`` samples and each next one twice as large,
until ``n`` are found: a few hundred correct images out of 10,000 cost a few hundred
predictions, and a model that gets nothing right costs the whole set, once.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from defdistill.inference import correct_mask

FIRST_CHUNK = 256  # the smallest first chunk predicted


def random_order(size: int, seed: int) -> torch.Tensor:
    """A permutation of ``range(size)`` (CPU int64) drawn from a ``torch.Generator`` seeded
    with ``seed``: the same seed gives the same order on every machine."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n (the number of samples to draw) must be an int >= 0, got {n!r}")


def _all_correct(models: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(len(x),)`` bool on CPU: the samples every model classifies correctly."""
    keep = torch.ones(len(x), dtype=torch.bool)
    for model in models:
        keep &= correct_mask(model, x, y).cpu()
    return keep


def _search(
    models: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor, n: int, order: torch.Tensor
) -> torch.Tensor:
    """The first ``n`` entries of ``order`` (positions in ``x``) that every model classifies
    correctly, in that order, on ``x``'s device; fewer if ``order`` holds fewer.

    ``order`` is predicted in chunks, the first of ``max(2n, FIRST_CHUNK)`` and each next one
    twice as large, until ``n`` are found.
    """
    _check_n(n)
    found: list[torch.Tensor] = []
    count, start, chunk = 0, 0, max(2 * n, FIRST_CHUNK)
    while count < n and start < len(order):
        part = order[start : start + chunk]
        rows = part.to(x.device)
        keep = _all_correct(models, x[rows], y[rows])
        found.append(part[keep])
        count += int(keep.sum())
        start, chunk = start + len(part), 2 * chunk
    idx = torch.cat(found)[:n] if found else torch.zeros(0, dtype=torch.long)
    return idx.to(x.device)


def random_correct_indices(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, seed: int
) -> torch.Tensor:
    """Indices of ``n`` samples drawn at random (with ``seed``) among those ``model``
    classifies correctly; fewer if ``x`` holds fewer.

    The first ``n`` correct ones in the order :func:`random_order` ``(len(x), seed)``,
    returned in draw order on ``x``'s device (see the module docstring).
    """
    return random_common_correct([model], x, y, n, seed)


def random_common_correct(
    models: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor, n: int, seed: int
) -> torch.Tensor:
    """Indices of ``n`` samples drawn at random (with ``seed``) among those that **every**
    model classifies correctly; fewer if ``x`` holds fewer.

    Attacking every model of a comparison on these same images makes the differences
    between rows differences between models, not between samples. In draw order on ``x``'s
    device; with one model, the same as :func:`random_correct_indices`.
    """
    if not models:
        raise ValueError("models is empty: give at least one model to classify the samples")
    return _search(models, x, y, n, random_order(len(x), seed))


def random_indices(
    models: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples drawn at random (with ``seed``) regardless of what the models predict,
    and which of them each model classifies correctly.

    For unconditional robust accuracy (a clean error counts as a failure, Croce & Hein
    2020, arXiv:2003.01690): attack the correct ones, count the others as fooled.

    Returns:
        ``(index, correct)``: ``(min(n, len(x)),)`` int64 indices in draw order (the first
        ``n`` of :func:`random_order`, so :func:`random_common_correct` with the same seed
        picks its samples from the same sequence) and ``(len(models), len(index))`` bool.
    """
    _check_n(n)
    index = random_order(len(x), seed)[:n].to(x.device)
    rows = torch.zeros(len(models), len(index), dtype=torch.bool, device=x.device)
    for i, model in enumerate(models):
        rows[i] = correct_mask(model, x[index], y[index])
    return index, rows

