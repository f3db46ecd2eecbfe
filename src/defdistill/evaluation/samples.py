"""Which test samples an evaluation attacks."""
from __future__ import annotations

import torch
from torch import nn

from defdistill.inference import correct_mask


def first_correct(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` samples of ``(x, y)`` that ``model`` classifies correctly."""
    keep = correct_mask(model, x, y)
    idx = keep.nonzero().flatten()[:n]
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
