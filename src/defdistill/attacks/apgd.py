"""Auto-PGD (APGD): PGD with momentum and a step size that adapts itself at checkpoints.

Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", ICML, arXiv:2003.01690 (Section 3, Algorithm 1; the DLR
loss of Section 4). Written after the paper and checked against the authors' reference
implementation (github.com/fra31/auto-attack, ``autoattack/autopgd_base.py``); the places
where it follows the paper rather than that code are listed in :class:`APGD`.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from defdistill.attacks.base import (
    Attack,
    check_choice,
    check_nonnegative,
    check_positive_int,
    input_gradient,
    is_adversarial,
    other_max,
    per_sample_norm,
    project,
    view_per_sample,
)
from defdistill.names import APGD_LOSSES, Loss, Norm
from defdistill.temperature import check_temperature

logger = logging.getLogger(__name__)

MOMENTUM = 0.75  # α of the paper (fixed there, not a parameter)
INITIAL_STEP = 2.0  # η⁽⁰⁾ = 2ε (paper for L∞; the reference uses 2ε for L2 too)
_DLR_EPS = 1e-12  # keeps the DLR denominator positive when the top logits tie (reference)


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations ``w_j = ceil(p_j · steps)`` where APGD may halve its step size.

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` while
    ``p_j <= 1`` (Croce & Hein 2020, Section 3.2): 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87,
    0.93, 0.99, i.e. ``[0, 22, 41, 57, 70, 80, 87, 93, 99]`` for 100 steps. Computed in
    exact integer hundredths: in floating point the recursion gives ``p_3 =
    0.5700000000000001`` and ``ceil(100 · p_3)`` would be 58. For small ``steps`` several
    ``p_j`` round up to the same iteration; each appears once.

    Returns:
        Strictly increasing ``[w_0 = 0, w_1, ...]``, all ``<= steps``.
    """
    check_positive_int("steps", steps)
    ws = [0]
    p_prev, p = 0, 22  # hundredths
    while p <= 100:
        w = -(-p * steps // 100)  # ceil(p · steps / 100) in integers
        if w > ws[-1]:
            ws.append(w)
        p_prev, p = p, p + max(p - p_prev - 3, 6)
    return ws


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Difference of Logits Ratio, per sample ``(N,)``, to be *ascended* by the attack.

    With ``π`` sorting the logits ``z`` in decreasing order (Croce & Hein 2020, Eq. 6 and
    Section 4): untargeted ``-(z_y - max_{i != y} z_i) / (z_π1 - z_π3)``; targeted
    ``-(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2)``. Invariant to shifting and (positively)
    scaling the logits, so a softmax that saturates (defensive distillation) does not hide
    the gradient. ``1e-12`` is added to the denominator (reference implementation).
    Needs at least 3 classes (4 targeted).
    """
    top = logits.topk(3 if target is None else 4, dim=1).values
    z_y = logits.gather(1, y[:, None])[:, 0]
    if target is None:
        return -(z_y - other_max(logits, y)) / (top[:, 0] - top[:, 2] + _DLR_EPS)
    z_t = logits.gather(1, target[:, None])[:, 0]
    return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DLR_EPS)


@dataclass
class _Run:
    """State of the samples still attacked in one restart (first dimension = sample)."""

    idx: torch.Tensor  # positions in the chunk
    x: torch.Tensor  # clean inputs
    y: torch.Tensor
    target: torch.Tensor | None
    x_cur: torch.Tensor  # x⁽ᵏ⁾
    x_prev: torch.Tensor  # x⁽ᵏ⁻¹⁾
    grad_cur: torch.Tensor | None  # ∇f(x⁽ᵏ⁾)
    loss_cur: torch.Tensor  # f(x⁽ᵏ⁾)
    x_best: torch.Tensor  # x_max
    grad_best: torch.Tensor | None  # ∇f(x_max)
    loss_best: torch.Tensor  # f_max
    eta: torch.Tensor  # step size η per sample
    increases: torch.Tensor  # successful steps since the last checkpoint
    loss_best_ck: torch.Tensor  # f_max at the last checkpoint
    reduced_ck: torch.Tensor  # η was halved at the last checkpoint

    def keep(self, mask: torch.Tensor) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                setattr(self, f.name, value[mask])


class APGD(Attack):
    """Auto-PGD: momentum PGD whose per-sample step size halves when progress stalls.

    Algorithm (Croce & Hein 2020, Algorithm 1), per sample, maximising ``f`` over the
    ``eps``-ball ∩ [0, 1] with projection ``P``, ``η = 2·eps``, ``α = 0.75``::

        x⁽⁰⁾ = random point of the ball;  x⁽¹⁾ = P(x⁽⁰⁾ + η·s(∇f(x⁽⁰⁾)))
        for k = 1 … steps-1:
            z = P(x⁽ᵏ⁾ + η·s(∇f(x⁽ᵏ⁾)))
            x⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + α(z - x⁽ᵏ⁾) + (1 - α)(x⁽ᵏ⁾ - x⁽ᵏ⁻¹⁾))
        keeping x_max, f_max = the best point so far. At each checkpoint
        w_j (:func:`apgd_checkpoints`) halve η and continue from x_max if
          (1) fewer than rho·(w_j - w_{j-1}) of the steps since w_{j-1} increased f, or
          (2) η was not halved at w_{j-1} and f_max has not grown since w_{j-1}.

    ``s(g) = sign(g)`` for L∞ and ``g / ||g||₂`` for L2; ``P`` clamps ``x' - x`` to
    ``[-eps, eps]`` (L∞) or rescales it onto the L2 ball, then clips to [0, 1] (as
    :class:`~defdistill.attacks.PGD`). ``f`` is, on ``z = logits / temperature``:
    ``loss="ce"`` the cross-entropy on ``y`` (untargeted) or minus the cross-entropy on
    ``target`` (targeted); ``loss="dlr"`` the DLR loss (:func:`dlr_loss`, targeted variant
    with a target), which needs >= 3 classes (>= 4 targeted) and ignores ``temperature``.
    The targeted DLR loss compares ``z_t`` with ``z_y`` only (the paper's APGD-T, built to
    cause *any* misclassification): it can grow while a third class stays on top, so a
    targeted DLR run may end misclassified but off target.

    Success and restarts: a sample already misclassified (untargeted) or classified as the
    target is returned unchanged. Otherwise each sample stops at its **first adversarial
    iterate** (the random start included), which is returned; it leaves the batch, so each
    iteration is one forward and one backward pass over the samples still robust (the last
    iterate needs no backward). ``restarts`` runs from independent random starts (uniform
    in the ball; for L2 a Gaussian direction and radius ``eps·u^(1/d)``) attack only the
    samples no earlier run broke. A sample never broken returns the point of highest ``f``
    over all runs. Distance measure: the chosen norm, ``||x_adv - x|| <= eps``.

    Where it departs from the reference implementation, it follows the paper:
    checkpoints ``ceil(p_j · steps)`` for any ``steps`` (the code uses intervals
    ``int(0.22·steps)`` shrinking by ``int(0.03·steps)``: the same for multiples of
    100); condition (1) is the strict ``<`` and counts, at the first checkpoint, the step
    from ``x⁽⁰⁾`` (the code compares that step with a zero-initialised buffer and uses
    ``<=``); a step after a restart from ``x_max`` counts as an increase if it beats
    ``f_max`` (the code compares with the loss of the point that was replaced); condition
    (2) can hold at the first checkpoint (the code disables it there). The random start is
    uniform in the ball (the code puts it at a corner-scaled L∞ point or on the L2 sphere).

    Args:
        eps: radius of the ball, finite and >= 0. ``eps = 0`` returns ``x`` exactly.
        norm: ``"linf"`` (default) or ``"l2"``.
        loss: ``"ce"`` (default) or ``"dlr"``.
        steps: iterations per run, >= 1. Default 100 (the paper).
        restarts: number of runs from random starts, >= 1. Default 1.
        rho: threshold of condition (1), in (0, 1). Default 0.75 (the paper).
        seed: seed of the random starts (local generator). Default 0.
        temperature: ``f`` is computed on ``logits / temperature``. Default 1.0.
        batch_size: process at most this many samples at once. Default ``None`` (all).

    Determinism: all random starts of a chunk are drawn at once, sample-major
    (``restarts`` times the size of ``x`` in memory; ``2·d + 1`` numbers per sample and
    run for L2), so on CPU a sample's starts do not depend on ``batch_size``, and neither
    does the result, up to the model's own rounding (matrix products of other batch sizes
    may round differently, and in float32 a near-tie between two candidate points can then
    go the other way). On CUDA the generator's stream depends on the draw sizes: there the
    starts depend on ``batch_size`` too.

    Shapes:
        ``x``: ``(N, ...)`` float in [0, 1]; ``y``, ``target``: ``(N,)`` int64;
        ``x_adv``: ``(N, ...)``; ``success``: ``(N,)`` bool;
        ``info["iterations"]``: ``(N,)`` gradient steps taken, summed over runs;
        ``info["restarts"]``: ``(N,)`` runs started (0 if ``x`` was already adversarial
        or ``eps = 0``); ``info["loss"]``: ``(N,)`` highest ``f`` reached (at ``x`` for
        ``eps = 0``).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from defdistill.attacks import APGD
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
        >>> res = APGD(eps=0.5, norm="l2", loss="dlr", steps=10)(model, x, y)
        >>> bool(((res.x_adv - x).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all())
        True
    """

    def __init__(
        self,
        eps: float,
        norm: str = Norm.LINF,
        loss: str = Loss.CE,
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        seed: int = 0,
        *,
        temperature: float = 1.0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed)
        self.eps = check_nonnegative("eps", eps)
        self.norm = check_choice("norm", norm, tuple(Norm))
        self.loss = check_choice("loss", loss, APGD_LOSSES)
        self.steps = check_positive_int("steps", steps)
        self.restarts = check_positive_int("restarts", restarts)
        r = check_nonnegative("rho", rho)
        if not 0.0 < r < 1.0:
            raise ValueError(f"rho must lie in (0, 1), got {rho!r}")
        self.rho = r
        self.temperature = check_temperature(temperature)

    # ------------------------------------------------------------------ pieces
    def _objective(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        z = logits / self.temperature
        if self.loss == Loss.DLR:
            return dlr_loss(z, y, target)
        if target is None:
            return F.cross_entropy(z, y, reduction="none")
        return -F.cross_entropy(z, target, reduction="none")

    def _check_classes(self, num_classes: int, targeted: bool) -> None:
        need = 4 if targeted else 3
        if self.loss == Loss.DLR and num_classes < need:
            kind = "targeted DLR" if targeted else "DLR"
            raise ValueError(
                f"loss='dlr': the {kind} loss needs logits of at least {need} classes (its "
                f"denominator uses the {need - 1} largest after the top), the model has "
                f"{num_classes}; use loss='ce'"
            )

    def _project(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        return project(x, x_adv, self.eps, self.norm)

    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        if self.norm == Norm.LINF:
            return grad.sign()
        return grad / view_per_sample(per_sample_norm(grad).clamp_min(1e-12), grad)

    def _uniforms_per_start(self, x: torch.Tensor) -> int:
        d = x[0].numel()
        return d if self.norm == Norm.LINF else 2 * d + 1

    def _start(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """A point uniform in the ball around ``x`` (then clipped to [0, 1]) from uniforms ``u``."""
        d = x[0].numel()
        if self.norm == Norm.LINF:
            delta = (2 * u - 1) * self.eps
        else:
            # Box-Muller on the uniforms (torch.randn's stream depends on the draw sizes), in
            # float64: vectorised and scalar log/cos/pow differ in the last bit, and which
            # elements take which path depends on the chunk; rounded to float32 they agree.
            u = u if u.device.type == "mps" else u.double()  # MPS has no float64
            gauss = torch.sqrt(-2 * torch.log1p(-u[:, :d])) * torch.cos(2 * math.pi * u[:, d : 2 * d])
            direction = gauss / per_sample_norm(gauss).clamp_min(1e-12)[:, None]
            delta = (direction * (self.eps * u[:, 2 * d] ** (1.0 / d))[:, None]).to(x.dtype)
        return self._project(x, x + delta.view_as(x))

    def _evaluate(
        self,
        model: nn.Module,
        x_in: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        need_grad: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``f``, ``∇f`` (or ``None``) and adversarial flags at ``x_in``: one forward (+ backward)."""
        if need_grad:
            with torch.enable_grad():
                xg = x_in.detach().requires_grad_(True)
                logits = model(xg)
                objective = self._objective(logits, y, target)
                grad = input_gradient(objective, xg)
        else:
            with torch.no_grad():
                logits = model(x_in)
                objective = self._objective(logits, y, target)
            grad = None
        logits = logits.detach()
        return objective.detach(), grad, is_adversarial(logits, y, target)

    # ------------------------------------------------------------------ algorithm
    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = x.shape[0]
        with torch.no_grad():
            logits = model(x)
        self._check_classes(logits.shape[1], target is not None)
        with torch.no_grad():
            best_loss = self._objective(logits, y, target)
        success = is_adversarial(logits, y, target)
        x_adv = x.clone()
        iterations = torch.zeros(n, dtype=torch.long, device=x.device)
        restarts = torch.zeros(n, dtype=torch.long, device=x.device)
        info = {"iterations": iterations, "restarts": restarts, "loss": best_loss}
        if self.eps == 0:
            return x_adv, info
        # Every start of every sample, drawn sample-major (see "Determinism").
        shape = (n, self.restarts, self._uniforms_per_start(x))
        uniforms = torch.rand(shape, generator=generator, device=x.device, dtype=x.dtype)
        for r in range(self.restarts):
            todo = (~success).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            restarts[todo] += 1
            self._single_run(model, x, y, target, todo, uniforms[todo, r], x_adv, success,
                             best_loss, iterations)  # fmt: skip
            logger.debug("APGD run %d: %d of %d samples still robust", r + 1,
                         int((~success).sum()), n)  # fmt: skip
        return x_adv, info

    def _single_run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        idx: torch.Tensor,
        uniforms: torch.Tensor,
        x_adv: torch.Tensor,
        success: torch.Tensor,
        best_loss: torch.Tensor,
        iterations: torch.Tensor,
    ) -> None:
        """One run of Algorithm 1 on the samples ``idx``; writes into the last four tensors."""
        xs, ys = x[idx], y[idx]
        ts = None if target is None else target[idx]
        x0 = self._start(xs, uniforms)
        loss0, grad0, adv = self._evaluate(model, x0, ys, ts, need_grad=True)
        m = len(idx)
        st = _Run(
            idx=idx, x=xs, y=ys, target=ts,
            x_cur=x0, x_prev=x0, grad_cur=grad0, loss_cur=loss0,
            x_best=x0, grad_best=grad0, loss_best=loss0,
            eta=torch.full((m,), INITIAL_STEP * self.eps, dtype=x.dtype, device=x.device),
            increases=torch.zeros(m, dtype=torch.long, device=x.device),
            loss_best_ck=loss0, reduced_ck=torch.zeros(m, dtype=torch.bool, device=x.device),
        )  # fmt: skip
        self._finish(st, adv, x0, x_adv, success, best_loss)
        windows = {w: w - w_prev for w_prev, w in itertools.pairwise(apgd_checkpoints(self.steps))}
        for k in range(1, self.steps + 1):
            if st.idx.numel() == 0:
                return
            assert st.grad_cur is not None  # only the last iterate has no gradient
            z = self._project(st.x, st.x_cur + view_per_sample(st.eta, st.x) * self._direction(st.grad_cur))
            if k > 1:
                z = st.x_cur + MOMENTUM * (z - st.x_cur) + (1 - MOMENTUM) * (st.x_cur - st.x_prev)
                z = self._project(st.x, z)
            loss, grad, adv = self._evaluate(model, z, st.y, st.target, need_grad=k < self.steps)
            iterations[st.idx] += 1
            st.increases += loss > st.loss_cur
            better = loss > st.loss_best
            st.loss_best = torch.where(better, loss, st.loss_best)
            st.x_best = torch.where(view_per_sample(better, z), z, st.x_best)
            if grad is not None:
                assert st.grad_best is not None
                st.grad_best = torch.where(view_per_sample(better, grad), grad, st.grad_best)
            st.x_prev, st.x_cur, st.loss_cur, st.grad_cur = st.x_cur, z, loss, grad
            if bool(adv.any()):
                self._finish(st, adv, z, x_adv, success, best_loss)
            window = windows.get(k)
            if window is not None and k < self.steps:
                cond1 = st.increases < self.rho * window
                cond2 = ~st.reduced_ck & (st.loss_best <= st.loss_best_ck)
                reduce = cond1 | cond2
                st.eta = torch.where(reduce, st.eta / 2, st.eta)
                back = view_per_sample(reduce, st.x)
                st.x_cur = torch.where(back, st.x_best, st.x_cur)
                st.grad_cur = torch.where(back, st.grad_best, st.grad_cur)  # type: ignore[arg-type]
                st.loss_cur = torch.where(reduce, st.loss_best, st.loss_cur)
                st.reduced_ck, st.loss_best_ck = reduce, st.loss_best
                st.increases = torch.zeros_like(st.increases)
        # Samples this run did not break: keep the highest-loss point over all runs.
        higher = st.loss_best > best_loss[st.idx]
        x_adv[st.idx[higher]] = st.x_best[higher]
        best_loss[st.idx] = torch.maximum(best_loss[st.idx], st.loss_best)

    @staticmethod
    def _finish(
        st: _Run,
        adv: torch.Tensor,
        x_new: torch.Tensor,
        x_adv: torch.Tensor,
        success: torch.Tensor,
        best_loss: torch.Tensor,
    ) -> None:
        """Record the samples whose iterate ``x_new`` is adversarial and drop them from ``st``."""
        if not bool(adv.any()):
            return
        done = st.idx[adv]
        x_adv[done] = x_new[adv]
        success[done] = True
        best_loss[done] = torch.maximum(best_loss[done], st.loss_best[adv])
        st.keep(~adv)
