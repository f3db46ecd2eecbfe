"""How much a teacher's soft labels say beyond the hard label: their entropy at T.

Papernot et al. 2016 (arXiv:1511.04508, Section IV-B) motivate training at a high
temperature by the information the teacher's probabilities ``F_T(x) = softmax(Z(x) / T)``
carry about the other classes. Their entropy, ``H(x) = -Σ_c F_c log F_c`` in nats (0 for
a one-hot label, ``ln K`` for the uniform one), measures it; the mean over images comes
with a bootstrap interval (:class:`~defdistill.evaluation.stats.MeanEstimate`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from defdistill.evaluation.stats import MeanEstimate
from defdistill.inference import predict_logits
from defdistill.temperature import check_temperature


def entropy_at(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-row entropy (nats, float64) of ``softmax(logits / T)``, ``(N,)``.

    Computed from ``log_softmax`` in float64, so probabilities far below float32's range
    contribute their (tiny) share instead of ``0 · log 0``.
    """
    log_p = F.log_softmax(logits.double() / check_temperature(temperature), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def soft_label_entropy(
    teacher: nn.Module, x: torch.Tensor, temperature: float, seed: int = 0
) -> MeanEstimate:
    """Mean entropy (nats) of ``teacher``'s soft labels at ``temperature`` over the images
    ``x``, with a 95 % bootstrap interval over images resampled with ``seed``."""
    return MeanEstimate.of(entropy_at(predict_logits(teacher, x), temperature), seed=seed)
