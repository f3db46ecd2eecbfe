"""Which test samples an evaluation attacks."""
from __future__ import annotations

import torch
from torch import nn

from defdistill.inference import correct_mask

FIRST_CHUNK = 256  # the smallest first chunk :func:`first_correct_indices` predicts


def first_correct_indices(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
    """Indices (on ``x``'s device, ascending) of the first ``n`` samples ``model`` classifies
    correctly; fewer if the whole of ``x`` holds fewer.

    ``x`` is predicted in chunks, the first of ``max(2n, 256)`` samples and each next one
    twice as large, until ``n`` are found: a few correct samples out of a 10,000-image test
    set cost a few hundred predictions, not 10,000; a model that gets nothing right costs
    the whole set, once.
    """
    found: list[torch.Tensor] = []
    count, start, chunk = 0, 0, max(2 * n, FIRST_CHUNK)
    while count < n and start < len(x):
        stop = min(start + chunk, len(x))
        idx = correct_mask(model, x[start:stop], y[start:stop]).nonzero().flatten() + start
        found.append(idx)
        count += len(idx)
        start, chunk = stop, 2 * chunk
    return torch.cat(found)[:n] if found else torch.zeros(0, dtype=torch.long, device=x.device)


def first_correct(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` samples of ``(x, y)`` that ``model`` classifies correctly, in order
    (predicted chunk by chunk until ``n`` are found: :func:`first_correct_indices`)."""
    idx = first_correct_indices(model, x, y, n)
    return x[idx], y[idx]


def common_correct(
    models: list[nn.Module], x: torch.Tensor, y: torch.Tensor, n: int, chunk: int = 1000
) -> torch.Tensor:
    """Indices of the first ``n`` samples that *every* model classifies correctly.

    Attacking every model of a comparison on these same images (paired samples) makes
    the differences between rows differences between models, not between samples. The
    test set is predicted in chunks until ``n`` are found.
    """
    found: list[torch.Tensor] = []
    count = 0
    for start in range(0, len(x), chunk):
        xb, yb = x[start : start + chunk], y[start : start + chunk]
        keep = torch.ones(len(xb), dtype=torch.bool)
        for model in models:
            keep &= correct_mask(model, xb, yb).cpu()
        idx = keep.nonzero().flatten() + start
        found.append(idx)
        count += len(idx)
        if count >= n:
            break
    return torch.cat(found)[:n] if found else torch.zeros(0, dtype=torch.long)
