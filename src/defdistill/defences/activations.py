"""k-Winners-Take-All activations (Xiao, Zhong & Zheng, ICLR 2020, arXiv:1905.10510).

Each layer keeps, per sample, its ``k`` largest activations (``k = ratio`` times the
layer's units) and sets the others to zero. The network is discontinuous in its input
wherever two units swap ranks, which was meant to defeat gradient attacks; Tramèr,
Carlini, Brendel & Mądry 2020 (arXiv:2002.08347, Section 7) broke it. The network must be
trained with the activation in place.
"""

from __future__ import annotations

import torch
from torch import nn

from defdistill.models import build_model


class KWinnersTakeAll(nn.Module):
    """Keeps the ``ceil(ratio · units)`` largest values of each sample, zeroes the rest.

    Args:
        ratio: the fraction of units kept, in (0, 1] (Xiao et al.'s sparsity γ; 0.1 to 0.2).

    Shapes:
        ``(N, ...)`` to ``(N, ...)``; the ranking is over all of a sample's units.
    """

    def __init__(self, ratio: float = 0.1) -> None:
        super().__init__()
        if isinstance(ratio, bool) or not isinstance(ratio, float | int) or not 0 < ratio <= 1:
            raise ValueError(f"ratio must be a number in (0, 1], got {ratio!r}")
        self.ratio = float(ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        k = max(1, int(-(-self.ratio * flat.shape[1] // 1)))
        threshold = flat.topk(k, dim=1).values[:, -1:]
        return (flat * (flat >= threshold)).view_as(x)


def kwta_network(name: str, in_channels: int, image_size: int, num_classes: int,
                 ratio: float = 0.1) -> nn.Module:  # fmt: skip
    """A registered architecture (:func:`defdistill.models.build_model`) with every ReLU
    replaced by :class:`KWinnersTakeAll` (Xiao et al. 2020 replace ReLUs the same way)."""
    model = build_model(name, in_channels, image_size, num_classes)
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, child_name, KWinnersTakeAll(ratio))
    return model
