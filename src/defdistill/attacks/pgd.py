"""Projected Gradient Descent / Basic Iterative Method.

Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks",
arXiv:1706.06083; Kurakin, Goodfellow, Bengio 2017, "Adversarial examples in the physical
world", arXiv:1607.02533 (BIM = PGD without random start).
"""

from __future__ import annotations

import torch
from torch import nn

from defdistill.attacks.base import (
    Attack,
    attack_objective,
    check_choice,
    check_nonnegative,
    check_positive_int,
    input_gradient,
    is_adversarial,
    per_sample_norm,
    project,
    view_per_sample,
)
from defdistill.names import PGD_LOSSES, Loss, Norm
from defdistill.temperature import check_temperature


class PGD(Attack):
    """Iterated gradient steps projected onto the ``eps``-ball around ``x`` and onto [0, 1].

    L∞ (``norm="linf"``): ``x ← Π(x + step_size · sign(g))``, projection = clamp of
    ``x_adv - x`` to ``[-eps, eps]``. L2 (``norm="l2"``): ``x ← Π(x + step_size · g/||g||₂)``,
    projection = per-sample rescaling of ``x_adv - x`` onto the L2 ball of radius ``eps``.
    Every iterate is clipped to [0, 1] (which keeps it inside the ball). ``g`` is the
    gradient of the loss on ``y`` (untargeted, ascended) or of minus the loss on
    ``target`` (targeted), computed on ``logits / temperature``. Distance measure: the
    chosen norm, ``||x_adv - x|| <= eps``.

    Which iterate is returned: with ``early_stop=True`` (default) each sample stops at the
    **first iterate that is adversarial** (checked on the logits of the forward pass that
    precedes each step, and once more after the last step) and that iterate is returned;
    a sample that never succeeds returns its **last** iterate. With ``early_stop=False``
    every sample takes all ``steps`` (Madry et al.'s PGD): the examples end deep in the
    adversarial region, which is what a transfer attack needs. ``info["iterations"]`` is the number of
    gradient steps each sample took.

    Args:
        eps: radius of the ball, finite and >= 0. ``eps = 0`` returns ``x`` exactly.
        norm: ``"linf"`` (default) or ``"l2"``.
        steps: number of steps, >= 1. Default 40.
        step_size: step length; default ``None`` = ``2.5 * eps / steps`` (Madry et al.).
        random_start: start from a uniform random point of the ball (L∞) or a random
            direction with uniform radius in [0, eps] (L2). Default ``True``;
            ``False`` gives BIM.
        loss: ``"ce"`` (default) or ``"margin"`` (Carlini & Wagner logit margin).
        temperature: the loss is computed on ``logits / temperature``. Default 1.0.
        seed: seed of the random start (local generator). Default 0.
        early_stop: stop each sample at its first adversarial iterate. Default ``True``.
        batch_size: process at most this many samples at once. Default ``None`` (all).

    Shapes:
        ``x``: ``(N, ...)`` float in [0, 1]; ``y``, ``target``: ``(N,)`` int64;
        ``x_adv``: ``(N, ...)``; ``success``: ``(N,)`` bool; ``info["iterations"]``: ``(N,)``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from defdistill.attacks import PGD
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
        >>> res = PGD(eps=0.5, norm="l2", steps=10)(model, x, y)
        >>> bool(((res.x_adv - x).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all())
        True
    """

    def __init__(
        self,
        eps: float,
        norm: str = Norm.LINF,
        steps: int = 40,
        step_size: float | None = None,
        random_start: bool = True,
        loss: str = Loss.CE,
        temperature: float = 1.0,
        seed: int = 0,
        early_stop: bool = True,
        *,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed)
        self.eps = check_nonnegative("eps", eps)
        self.norm = check_choice("norm", norm, tuple(Norm))
        self.steps = check_positive_int("steps", steps)
        if step_size is None:
            self.step_size = 2.5 * self.eps / self.steps
        else:
            self.step_size = check_nonnegative("step_size", step_size)
        if not isinstance(random_start, bool):
            raise ValueError(f"random_start must be a bool, got {random_start!r}")
        self.random_start = random_start
        if not isinstance(early_stop, bool):
            raise ValueError(f"early_stop must be a bool, got {early_stop!r}")
        self.early_stop = early_stop
        self.loss = check_choice("loss", loss, PGD_LOSSES)
        self.temperature = check_temperature(temperature)

    def _project(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        return project(x, x_adv, self.eps, self.norm)

    def _random_start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.norm == Norm.LINF:
            noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            delta = (2 * noise - 1) * self.eps
        else:
            direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            direction = direction / view_per_sample(per_sample_norm(direction).clamp_min(1e-12), x)
            radius = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
            delta = direction * view_per_sample(radius * self.eps, x)
        return self._project(x, x + delta)

    def _step(self, x_adv: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        if self.norm == Norm.LINF:
            return x_adv + self.step_size * grad.sign()
        gnorm = per_sample_norm(grad).clamp_min(1e-12)
        return x_adv + self.step_size * grad / view_per_sample(gnorm, grad)

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = x.shape[0]
        iterations = torch.zeros(n, dtype=torch.long, device=x.device)
        if self.eps == 0:
            return x.clone(), {"iterations": iterations}
        x_adv = self._random_start(x, generator) if self.random_start else x.clone()
        active = torch.arange(n, device=x.device)
        for _ in range(self.steps):
            xa = x_adv[active].requires_grad_(True)
            ta = None if target is None else target[active]
            logits = model(xa)
            done = is_adversarial(logits.detach(), y[active], ta)
            objective = attack_objective(logits, y[active], ta, self.loss, self.temperature)
            grad = input_gradient(objective, xa)
            keep = ~done if self.early_stop else torch.ones_like(done)
            if not bool(keep.any()):
                active = active[keep]
                break
            active, xa, grad = active[keep], xa.detach()[keep], grad[keep]
            x_adv[active] = self._project(x[active], self._step(xa, grad))
            iterations[active] += 1
        return x_adv, {"iterations": iterations}
