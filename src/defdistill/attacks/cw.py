"""Carlini & Wagner L2 attack (Carlini, Wagner, IEEE S&P 2017, arXiv:1608.04644).

Follows the reference implementation (github.com/carlini/nn_robust_attacks, ``l2_attack.py``):
tanh change of variables, Adam, per-sample binary search over the constant ``c``, and the
logit margin loss that does not care whether the softmax saturates, which is why it breaks
defensive distillation.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from defdistill.attacks.base import (
    Attack,
    check_nonnegative,
    check_positive_int,
    other_max,
)

logger = logging.getLogger(__name__)

_SHRINK = 0.999999  # keeps atanh finite at x = 0 and x = 1 (reference implementation)
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_NO_UPPER = 1e10


class CarliniWagnerL2(Attack):
    """Minimal-L2 attack minimising ``||x' - x||₂² + c · f(x')`` with a logit margin ``f``.

    ``x' = (tanh(w) + 1) / 2`` (always in [0, 1]) is optimised over ``w`` with Adam
    (initialised at ``w = atanh((2x - 1) · 0.999999)``). On the logits ``Z``:
    targeted ``f = max(max_{i != t} Z_i - Z_t, -κ)``, untargeted
    ``f = max(Z_y - max_{i != y} Z_i, -κ)``. An iterate is *successful* when
    ``Z_t - max_{i != t} Z_i > κ`` (targeted) or ``max_{i != y} Z_i - Z_y > κ``
    (untargeted). Each sample has its own ``c``: after each of the
    ``binary_search_steps`` optimisations, ``c`` is halved toward the lower bound on
    success and multiplied by 10 on failure until an upper bound exists, then bisected.
    The returned ``x_adv`` is the successful iterate with the smallest L2 over all steps,
    or ``x`` itself when none was found. Distance measure: L2.

    Early abort (``abort_early``): every ``max_iterations // 10`` iterations a sample
    whose loss has not decreased by 0.01 % since the previous check stops for this
    binary-search step (per sample; the reference implementation aborts the whole batch).
    Samples that stopped leave the active batch, so they cost nothing.

    Args:
        confidence: κ >= 0, required margin of the logits. Default 0.0.
        initial_const: initial ``c`` > 0. Default 1e-3 (reference implementation).
        binary_search_steps: number of optimisations per sample, >= 1. Default 9.
            As in the reference, with 10 or more the last step uses the upper bound.
        max_iterations: Adam steps per optimisation, >= 1. Default 1000 (the paper uses
            10 000).
        learning_rate: Adam step size > 0. Default 1e-2.
        abort_early: stop an optimisation that stalls. Default ``True``.
        batch_size: process at most this many samples at once. Default ``None`` (all).

    Shapes:
        ``x``: ``(N, ...)`` float in [0, 1]; ``y``, ``target``: ``(N,)`` int64;
        ``x_adv``: ``(N, ...)``; ``success``: ``(N,)`` bool;
        ``info["l2"]``: ``(N,)`` L2 distance of ``x_adv`` to ``x`` (0 where it failed);
        ``info["const"]``: ``(N,)`` smallest ``c`` with which a step succeeded, or, where
        none did, the largest ``c`` tried.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from defdistill.attacks import CarliniWagnerL2
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
        >>> res = CarliniWagnerL2(binary_search_steps=3, max_iterations=50)(model, x, y)
        >>> res.info["l2"].shape
        torch.Size([5])
    """

    def __init__(
        self,
        confidence: float = 0.0,
        initial_const: float = 1e-3,
        binary_search_steps: int = 9,
        max_iterations: int = 1000,
        learning_rate: float = 1e-2,
        abort_early: bool = True,
        *,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size)
        self.confidence = check_nonnegative("confidence", confidence)
        self.initial_const = check_nonnegative("initial_const", initial_const, allow_zero=False)
        self.binary_search_steps = check_positive_int("binary_search_steps", binary_search_steps)
        self.max_iterations = check_positive_int("max_iterations", max_iterations)
        self.learning_rate = check_nonnegative("learning_rate", learning_rate, allow_zero=False)
        if not isinstance(abort_early, bool):
            raise ValueError(f"abort_early must be a bool, got {abort_early!r}")
        self.abort_early = abort_early

    def _margin(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """``max_{i != t} Z_i - Z_t`` (targeted) or ``Z_y - max_{i != y} Z_i``: < -κ is success."""
        if target is None:
            return logits.gather(1, y[:, None])[:, 0] - other_max(logits, y)
        return other_max(logits, target) - logits.gather(1, target[:, None])[:, 0]

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The outer loop: a search over the constant c, one optimisation per value."""
        n = x.shape[0]
        dev, dt = x.device, x.dtype
        w0 = torch.atanh((2 * x - 1) * _SHRINK)
        lower = torch.zeros(n, dtype=torch.float64, device=dev)
        upper = torch.full((n,), _NO_UPPER, dtype=torch.float64, device=dev)
        const = torch.full((n,), self.initial_const, dtype=torch.float64, device=dev)
        best_l2 = torch.full((n,), float("inf"), dtype=dt, device=dev)
        best_x = x.clone()
        for step in range(self.binary_search_steps):
            if self.binary_search_steps >= 10 and step == self.binary_search_steps - 1:
                const = torch.where(upper < _NO_UPPER, upper, const)
            found = self._minimise(model, x, y, target, w0, const, best_l2, best_x)
            lower, upper, const = _search_const(found, lower, upper, const)
            logger.debug(
                "C&W step %d: %d/%d samples successful so far",
                step,
                int(torch.isfinite(best_l2).sum()),
                n,
            )
        success = torch.isfinite(best_l2)
        info = {
            "l2": torch.where(success, best_l2, torch.zeros_like(best_l2)),
            "const": torch.where(upper < _NO_UPPER, upper, lower).to(dt),
        }
        return best_x, info

    def _minimise(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        w0: torch.Tensor,
        const: torch.Tensor,
        best_l2: torch.Tensor,
        best_x: torch.Tensor,
    ) -> torch.Tensor:
        """Adam on ``||x' - x||² + c · max(margin, -κ)`` in tanh space for a fixed ``c``.

        Updates ``best_l2`` and ``best_x`` in place with every successful iterate that is
        closer than the best so far; returns ``(N,)`` bool: which samples succeeded.
        """
        n = x.shape[0]
        dev, dt = x.device, x.dtype
        check_every = max(1, self.max_iterations // 10)
        found = torch.zeros(n, dtype=torch.bool, device=dev)
        active = torch.arange(n, device=dev)
        delta = torch.zeros_like(x)
        m = torch.zeros_like(x)
        v = torch.zeros_like(x)
        prev = torch.full((n,), float("inf"), dtype=dt, device=dev)
        for it in range(self.max_iterations):
            d = delta[active].requires_grad_(True)
            xa = (torch.tanh(w0[active] + d) + 1) / 2
            logits = model(xa)
            ya = y[active]
            ta = None if target is None else target[active]
            margin = self._margin(logits, ya, ta)
            l2sq = (xa - x[active]).flatten(1).pow(2).sum(dim=1)
            loss = l2sq + const[active].to(dt) * margin.clamp(min=-self.confidence)
            (g,) = torch.autograd.grad(loss.sum(), d)
            with torch.no_grad():
                # Bookkeeping on this (pre-step) iterate, as the reference does.
                ok = margin.detach() < -self.confidence
                l2 = l2sq.detach().sqrt()
                found[active] |= ok
                improve = ok & (l2 < best_l2[active])
                idx = active[improve]
                best_l2[idx] = l2[improve]
                best_x[idx] = xa.detach()[improve]
                keep = torch.ones_like(ok)
                if self.abort_early and it % check_every == 0:
                    lo = loss.detach()
                    keep = ~(lo > prev[active] * 0.9999)
                    prev[active] = lo
                active = active[keep]
                if not active.numel():
                    break
                self._adam_step(delta, m, v, active, d.detach()[keep], g[keep], it + 1)
        return found

    def _adam_step(
        self, delta: torch.Tensor, m: torch.Tensor, v: torch.Tensor, active: torch.Tensor,
        d: torch.Tensor, g: torch.Tensor, t: int,
    ) -> None:  # fmt: skip
        """One bias-corrected Adam step (Kingma & Ba) on the rows ``active``, per element, in place."""
        b1, b2 = _ADAM_BETAS
        ma = m[active].mul_(b1).add_(g, alpha=1 - b1)
        va = v[active].mul_(b2).addcmul_(g, g, value=1 - b2)
        m[active], v[active] = ma, va
        step_size = self.learning_rate / (1 - b1**t)
        denom = (va / (1 - b2**t)).sqrt_().add_(_ADAM_EPS)
        delta[active] = d - step_size * ma / denom


def _search_const(
    found: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, const: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample binary search on c: success lowers the upper bound, failure raises the
    lower one; with no upper bound yet, c grows ×10. Returns ``(lower, upper, const)``."""
    upper = torch.where(found, torch.minimum(upper, const), upper)
    lower = torch.where(found, lower, torch.maximum(lower, const))
    bounded = upper < _NO_UPPER
    return lower, upper, torch.where(bounded, (lower + upper) / 2, const * 10)
