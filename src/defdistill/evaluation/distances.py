"""Distortions of a perturbation ``delta = x_adv - x``, per sample over its flattened features,
and their summary over samples."""
from __future__ import annotations

import math

import torch


def _flat(delta: torch.Tensor) -> torch.Tensor:
    if delta.dim() < 2:
        raise ValueError(f"delta must have shape (N, ...), got {tuple(delta.shape)}")
    return delta.flatten(1)


def l0(delta: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
    """Number of features with ``|delta| > tol`` per sample, ``(N,)`` int64."""
    return (_flat(delta).abs() > tol).sum(dim=1)


def l0_fraction(delta: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
    """Fraction of features with ``|delta| > tol`` per sample, ``(N,)`` float in [0, 1]."""
    flat = _flat(delta)
    return (flat.abs() > tol).sum(dim=1).to(torch.float32) / max(1, flat.shape[1])


def l2(delta: torch.Tensor) -> torch.Tensor:
    """L2 norm of each sample of ``delta`` over its flattened features, ``(N,)``."""
    return torch.linalg.vector_norm(_flat(delta), ord=2, dim=1)


def linf(delta: torch.Tensor) -> torch.Tensor:
    """L∞ norm of each sample of ``delta`` over its flattened features, ``(N,)``."""
    return torch.linalg.vector_norm(_flat(delta), ord=math.inf, dim=1)


def summary_stats(values: torch.Tensor) -> dict[str, float | None]:
    """Mean and median of ``values`` (None for an empty tensor)."""
    values = values.double()
    if values.numel() == 0:
        return {"mean": None, "median": None}
    return {"mean": float(values.mean()), "median": float(values.median())}
