"""Backward Pass Differentiable Approximation (BPDA).

Athalye, Carlini & Wagner 2018, "Obfuscated Gradients Give a False Sense of Security",
ICML, arXiv:1802.00420, Section 4.1: a layer ``f`` whose gradient is useless (zero,
undefined) is run as is on the forward pass and replaced by a differentiable ``g ≈ f`` on
the backward pass; for a preprocessing step with ``f(x) ≈ x`` (quantisation, denoising)
``g`` is the identity. Any gradient attack (:class:`~defdistill.attacks.PGD`,
:class:`~defdistill.attacks.APGD`) attacks the wrapped model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

Approximation = Callable[[torch.Tensor], torch.Tensor]


class _StraightThrough(nn.Module):
    """``f(x)`` forward, the gradient of ``g(x)`` backward: ``g(x) + (f(x) - g(x)).detach()``."""

    def __init__(self, layer: nn.Module, approximation: Approximation | None) -> None:
        super().__init__()
        self.layer = layer
        self.approximation = approximation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        smooth = x if self.approximation is None else self.approximation(x)
        exact = self.layer(x)
        if exact.shape != smooth.shape:
            raise ValueError(
                f"BPDA: the layer returns shape {tuple(exact.shape)} but its approximation "
                f"{tuple(smooth.shape)}; the identity only fits a layer that keeps the shape, "
                "give an approximation that returns the layer's shape"
            )
        return smooth + (exact - smooth).detach()


def bpda(model: nn.Module, layer: str, approximation: Approximation | None = None) -> nn.Module:
    """A copy of ``model`` whose submodule ``layer`` is differentiated through ``approximation``.

    The forward pass, hence every prediction and every success an attack measures, is the
    model's own; only the gradient changes.

    Args:
        model: the defended model, returning logits.
        layer: the dotted name of the submodule to approximate (as in ``named_modules``),
            e.g. ``"preprocess"`` for a :class:`defdistill.defences.Preprocessed` model.
        approximation: the differentiable ``g``; ``None`` (default) = the identity, which
            needs a layer whose output has its input's shape.

    Returns:
        The wrapped copy (``model`` itself is unchanged).

    Raises:
        ValueError: ``model`` has no submodule ``layer``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from defdistill.attacks.bpda import bpda
        >>> class Rounded(nn.Module):
        ...     def forward(self, x):
        ...         return torch.round(x)
        >>> model = nn.Sequential(Rounded(), nn.Flatten(), nn.Linear(4, 2))
        >>> x = torch.rand(3, 1, 2, 2, requires_grad=True)
        >>> bpda(model, "0")(x).sum().backward()
        >>> bool(x.grad.abs().sum() > 0)
        True
    """
    names = dict(model.named_modules())
    if not layer or layer not in names:
        known = ", ".join(repr(n) for n in names if n) or "none"
        raise ValueError(f"BPDA: the model has no submodule {layer!r}; its submodules: {known}")
    wrapped = copy.deepcopy(model)
    parent_name, _, child = layer.rpartition(".")
    parent = wrapped.get_submodule(parent_name) if parent_name else wrapped
    setattr(parent, child, _StraightThrough(getattr(parent, child), approximation))
    return wrapped
