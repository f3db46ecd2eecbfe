"""Running a model over data: eval mode, no gradients, bounded memory.

The one place where a model's outputs are computed for evaluation (accuracy, soft labels,
success checks); attacks and measurements that need gradients use :func:`eval_mode` only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from defdistill.temperature import softmax_at

PREDICT_BATCH = 500  # one forward pass over the 10,000 CIFAR-10 test images peaks at ~6 GiB


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` (and all submodules) in eval mode, restore every module's flag after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def model_device(model: nn.Module, default: torch.device) -> torch.device:
    """The device of the model's first parameter (``default`` for a parameter-free model)."""
    param = next(model.parameters(), None)
    return default if param is None else param.device


def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Logits ``(N, K)`` (float32) of ``model`` for all of ``x``, on ``x``'s device.

    Eval mode (each module's flag restored afterwards), no gradients, chunks of
    ``batch_size`` samples (None: :data:`PREDICT_BATCH`) moved to the model's device.
    """
    step = batch_size or PREDICT_BATCH
    device = model_device(model, x.device)
    with eval_mode(model), torch.no_grad():
        out = [model(x[i : i + step].to(device)).float().to(x.device) for i in range(0, len(x), step)]
    return torch.cat(out) if out else torch.zeros(0, 0, device=x.device)


def predict(model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Predicted classes ``argmax`` of the logits, ``(N,)`` int64 on ``x``'s device."""
    if len(x) == 0:
        return torch.zeros(0, dtype=torch.long, device=x.device)
    return predict_logits(model, x, batch_size).argmax(dim=1)


def correct_mask(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None
) -> torch.Tensor:
    """``(N,)`` bool: the samples that ``model`` classifies correctly."""
    if y.shape != (len(x),):
        raise ValueError(f"y must have shape ({len(x)},), got {tuple(y.shape)}")
    return predict(model, x, batch_size) == y.to(x.device)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None) -> float:
    """Fraction of ``x`` classified as ``y`` (``nan`` for an empty batch)."""
    mask = correct_mask(model, x, y, batch_size)
    return float(mask.float().mean()) if len(mask) else math.nan


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, temperature: float = 1.0
) -> dict[str, float]:
    """Accuracy and saturation of the softmax at ``temperature`` (deployed: 1).

    Returns ``accuracy``, ``mean_max_probability``, ``saturated_fraction`` (samples whose
    top probability is exactly 1 in float32) and ``mean_max_logit`` (the logit scale that
    distillation at T multiplies, about T times the baseline's for a student).
    """
    logits = predict_logits(model, x)
    probs = softmax_at(logits.double(), temperature).float()
    return {
        "accuracy": float((logits.argmax(1) == y).float().mean()),
        "mean_max_probability": float(probs.max(1).values.mean()),
        "saturated_fraction": float((probs.max(1).values == 1.0).float().mean()),
        "mean_max_logit": float(logits.max(1).values.double().mean()),
    }
