"""Softmax at temperature T and the training loss at T (Papernot et al. 2016, Eq. 1).

``F_T(x)_i = exp(z_i / T) / sum_j exp(z_j / T)`` for logits ``z``. The loss against a
target distribution ``p`` is ``-(p * log_softmax(z / T)).sum(1).mean()``; hard labels
are one-hot ``p``. ``log_softmax`` keeps it finite for any logits and T.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_temperature(temperature: float) -> float:
    """Return ``temperature`` as a float, or raise ``ValueError`` unless it is finite and > 0."""
    t = float(temperature)
    if not (t > 0 and t < float("inf")):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return t


def trained_at(temperature: float | None) -> float:
    """The temperature a model was trained at: 1 for a model trained without one (``None``)."""
    return 1.0 if temperature is None else check_temperature(temperature)


def softmax_at(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax of ``logits / temperature`` over the last dimension."""
    return F.softmax(logits / check_temperature(temperature), dim=-1)


def log_softmax_at(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-softmax of ``logits / temperature`` over the last dimension."""
    return F.log_softmax(logits / check_temperature(temperature), dim=-1)


def temperature_loss(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Cross-entropy at temperature T.

    Args:
        logits: ``(N, K)`` logits ``z``.
        targets: ``(N,)`` int64 class indices (hard labels) or ``(N, K)`` probabilities.
        temperature: T > 0.

    Returns:
        Scalar ``-(p * log_softmax(z / T)).sum(1).mean()``.
    """
    log_p = log_softmax_at(logits, temperature)
    if targets.dim() == 1:
        return -log_p.gather(1, targets.long().unsqueeze(1)).mean()
    if targets.shape != logits.shape:
        raise ValueError(f"soft targets {tuple(targets.shape)} must match logits {tuple(logits.shape)}")
    return -(targets * log_p).sum(1).mean()
