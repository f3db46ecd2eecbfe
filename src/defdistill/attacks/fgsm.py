"""Fast Gradient Sign Method (Goodfellow, Shlens, Szegedy 2015, arXiv:1412.6572)."""

from __future__ import annotations

import torch
from torch import nn

from defdistill.attacks.base import (
    Attack,
    attack_objective,
    check_choice,
    check_nonnegative,
    input_gradient,
)
from defdistill.names import PGD_LOSSES, Loss
from defdistill.temperature import check_temperature


class FGSM(Attack):
    """One signed-gradient step of size ``eps``: an L∞ attack.

    ``x_adv = clip(x + eps * sign(grad_x objective), 0, 1)`` where the objective is the loss
    on ``y`` (untargeted, ascended) or minus the loss on ``target`` (targeted). The loss is
    computed on ``logits / temperature``: with the distillation temperature ``T`` this is
    the adaptive attack on a distilled network, whose deployed softmax (T = 1) is
    saturated and has (numerically) zero gradient. Distance measure: L∞,
    ``||x_adv - x||_∞ <= eps``.

    Args:
        eps: L∞ budget, finite and >= 0. ``eps = 0`` returns ``x`` unchanged.
        loss: ``"ce"`` (cross-entropy, default) or ``"margin"`` (Carlini & Wagner logit
            margin ``max_{i != c} z_i - z_c``).
        temperature: the loss is computed on ``logits / temperature``. Default 1.0.
        batch_size: process at most this many samples at once. Default ``None`` (all).

    Shapes:
        ``x``: ``(N, ...)`` float in [0, 1]; ``y``, ``target``: ``(N,)`` int64;
        ``AttackResult.x_adv``: ``(N, ...)``; ``AttackResult.success``: ``(N,)`` bool.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from defdistill.attacks import FGSM
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
        >>> res = FGSM(eps=0.1)(model, x, y)
        >>> bool((res.x_adv - x).abs().max() <= 0.1 + 1e-6)
        True
    """

    def __init__(
        self,
        eps: float,
        loss: str = Loss.CE,
        temperature: float = 1.0,
        *,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size)
        self.eps = check_nonnegative("eps", eps)
        self.loss = check_choice("loss", loss, PGD_LOSSES)
        self.temperature = check_temperature(temperature)

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.eps == 0:
            return x.clone(), {}
        xg = x.clone().requires_grad_(True)
        objective = attack_objective(model(xg), y, target, self.loss, self.temperature)
        grad = input_gradient(objective, xg)
        return (x + self.eps * grad.sign()).clamp_(0.0, 1.0), {}
