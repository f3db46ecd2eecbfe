"""Square Attack: a score-based black-box attack by random search (L∞ and L2).

Andriushchenko, Croce, Flammarion, Hein 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020, arXiv:1912.00049. Reference code:
https://github.com/max-andr/square-attack (``attack.py``).
"""

from __future__ import annotations

import bisect
import logging
import math

import torch
from torch import nn

from defdistill.attacks.base import (
    Attack,
    check_choice,
    check_nonnegative,
    check_positive_int,
    is_adversarial,
    other_max,
)
from defdistill.names import Norm

logger = logging.getLogger(__name__)


# Iterations (out of 10,000) after which the fraction p of pixels changed per step is halved.
_HALVINGS: tuple[int, ...] = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
# L∞: sign vectors tried per step, so that a proposal changes the current image (see _propose_linf).
_SIGN_TRIES = 8


def p_schedule(p_init: float, iteration: int, n_iters: int) -> float:
    """The paper's piecewise-constant schedule of ``p``, rescaled to a budget of ``n_iters``.

    ``it = int(iteration / n_iters * 10000)``; ``p = p_init / 2**k`` where ``k`` is the
    number of the thresholds 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 that ``it``
    exceeds (so ``p_init`` for ``it <= 10`` and ``p_init / 512`` for ``it > 8000``).
    """
    it = int(iteration / n_iters * 10000)
    return p_init / 2 ** bisect.bisect_left(_HALVINGS, it)


def signed_margin(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """The loss Square minimises, ``(N,)``; ``<= 0`` once the sample is adversarial.

    Untargeted: ``z_y - max_{i != y} z_i``; targeted: ``max_{i != t} z_i - z_t``.
    """
    label = y if target is None else target
    gap = logits.gather(1, label[:, None])[:, 0] - other_max(logits, label)
    return gap if target is None else -gap


def _rectangle_bump(rows: int, cols: int) -> torch.Tensor:
    """Concentric rectangles around the centre ``(rows // 2, cols // 2)``, unit L2 norm.

    Ring ``r`` (Chebyshev distance ``r`` from the centre) holds ``sum_{k=r}^{R-1} 1/(k+1)^2``
    with ``R = max(rows // 2, cols // 2) + 1``: the paper's pseudo-Gaussian bump (eq. 3).
    """
    if rows == 0 or cols == 0:
        return torch.zeros(rows, cols)
    n_rings = max(rows // 2, cols // 2) + 1
    weights = 1.0 / torch.arange(1, n_rings + 1, dtype=torch.float64) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[r] = sum_{k >= r} weights[k]
    di = (torch.arange(rows) - rows // 2).abs()
    dj = (torch.arange(cols) - cols // 2).abs()
    bump = tail[torch.maximum(di[:, None], dj[None, :])]
    return (bump / bump.norm()).float()


def square_bump(s: int, generator: torch.Generator) -> torch.Tensor:
    """``η`` of the L2 attack, ``(s, s)``: a positive bump on one half of the square, a
    negative one on the other half, unit L2 norm, transposed with probability 1/2."""
    eta = torch.cat([_rectangle_bump(s // 2, s), -_rectangle_bump(s - s // 2, s)])
    eta = eta / eta.norm()
    if bool(torch.rand(1, generator=generator) < 0.5):
        eta = eta.T.contiguous()
    return eta


def _random_signs(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=generator).float() * 2 - 1


def _random_position(h: int, w: int, s: int, generator: torch.Generator) -> tuple[int, int]:
    """Top-left corner of an ``s × s`` window, uniform over the ``(h-s+1) × (w-s+1)`` positions."""
    r = int(torch.randint(0, h - s + 1, (1,), generator=generator))
    c = int(torch.randint(0, w - s + 1, (1,), generator=generator))
    return r, c


def _l2(v: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return v.square().sum(dim=dims, keepdim=True).sqrt()


class Square(Attack):
    """Square Attack (Andriushchenko et al. 2020, arXiv:1912.00049): random search that only
    reads the model's logits (no gradient, every forward pass under ``torch.no_grad()``).

    Each sample keeps its best point ``x̂`` and the margin loss there (untargeted
    ``z_y - max_{i≠y} z_i``, targeted ``max_{i≠t} z_i - z_t``). Algorithm:

    1. Initialise. L∞: vertical stripes, every column of every channel set to ``x ± eps``.
       L2: a grid of ``⌊min(H, W)/5⌋``-sized squares, each holding the pseudo-Gaussian bump
       ``η`` with a random sign per channel, rescaled to L2 norm ``eps``.
    2. At iteration ``i`` take ``p_i`` from the schedule (``p_init`` halved at iterations
       10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10,000, rescaled to the budget:
       ``it = int(i / queries * 10000)``) and a square side
       ``s = round(sqrt(p_i · H · W))`` (L∞: at least 1; L2: at least 3 and odd), at a random
       position. L∞: the square is set to ``x ± eps`` with one random sign per channel (a
       sign that would leave ``x̂`` unchanged is redrawn). L2: the perturbation inside a second
       random window ``W2`` is removed and its mass, with the unused budget
       ``eps² - ||x̂ - x||²`` split over the channels, is put into the first window ``W1`` as
       ``±η`` plus the old content of ``W1``; the whole perturbation is rescaled to norm ``eps``.
    3. The proposal is clipped to [0, 1] and queried; it replaces ``x̂`` if its margin loss is
       lower (or it is adversarial).
    4. A sample stops being queried once it is adversarial (``argmax`` criterion, the one the
       base class uses to report success); the others go on until the budget is spent.

    Queries: ``info["queries"]`` counts, as the paper does, the queries of the search: the
    initial point is query 1, each iteration one more, at most ``queries`` per sample. The
    forward pass on the clean inputs that finds the samples already misclassified (or
    already on the target), which are returned unchanged with 0 queries, is not counted
    (the paper attacks only correctly classified points).

    Randomness: the square positions, signs and ``η`` transpositions of iteration ``i`` are
    drawn once per iteration and shared by all the samples of a batch (the reference code
    shares the L2 windows across the batch the same way), from a stream restarted from the
    seed for every chunk. A sample's search therefore depends only on its own queries and
    the seed: ``batch_size`` and the other samples of the batch do not change its result.
    Each sample still sees independent uniform draws from one iteration to the next, which is
    what the search needs; only the samples of a batch are correlated with each other.

    Differences from the reference code (max-andr/square-attack): window corners are uniform
    over all ``(H-s+1)·(W-s+1)`` positions, as in the paper (the reference draws them from
    ``randint(0, H-s)``, which never reaches the last row and column); the L∞ redraw takes
    the first of 8 shared sign draws that changes the sample (exactly the reference's
    distribution for 1 channel, up to probability ``2^{-8C}`` otherwise); the targeted
    attack minimises the margin loss (the reference's script uses cross-entropy there); the
    L2 initial grid has ``⌊H/s⌋ × ⌊W/s⌋`` centred squares, which is the reference's 5 × 5
    for the usual image sizes and stays inside images smaller than 10 pixels.

    Args:
        eps: radius of the ball, finite and >= 0. ``eps = 0`` returns ``x`` exactly.
        norm: ``"linf"`` (default) or ``"l2"``.
        queries: query budget per sample, >= 1 (the initialisation is the first). Default
            5000.
        p_init: initial fraction of the pixels in the square, in (0, 1]. Default 0.8 (the
            torchattacks / AutoAttack default for both norms; the paper tunes it per model,
            e.g. 0.05 for L∞ and 0.1 for L2 on undefended ImageNet models).
        seed: seed of the random search. Default 0.
        batch_size: process at most this many samples at once. Default ``None`` (all).

    Shapes:
        ``x``: ``(N, C, H, W)`` float in [0, 1]; ``y``, ``target``: ``(N,)`` int64;
        ``x_adv``: ``(N, C, H, W)``; ``success``: ``(N,)`` bool;
        ``info["queries"]``: ``(N,)`` int64; ``info["margin"]``: ``(N,)`` float, the margin
        loss at ``x_adv`` (``<= 0`` when adversarial).

    Raises:
        ValueError: invalid parameters; inputs that are not ``(N, C, H, W)`` images.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from defdistill.attacks import Square
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> x, y = torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
        >>> res = Square(eps=0.1, queries=50)(model, x, y)
        >>> bool(((res.x_adv - x).abs() <= 0.1 + 1e-6).all()), bool((res.info["queries"] <= 50).all())
        (True, True)
    """

    uses_gradients = False

    def __init__(
        self,
        eps: float,
        norm: str = Norm.LINF,
        queries: int = 5000,
        p_init: float = 0.8,
        seed: int = 0,
        *,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed)
        self.eps = check_nonnegative("eps", eps)
        self.norm = check_choice("norm", norm, tuple(Norm))
        self.queries = check_positive_int("queries", queries)
        self.p_init = check_nonnegative("p_init", p_init, allow_zero=False)
        if self.p_init > 1:
            raise ValueError(f"p_init must be in (0, 1], got {p_init!r}")

    # ------------------------------------------------------------------ initialisation
    def _init_linf(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        _, c, _, w = x.shape
        stripes = _random_signs((1, c, 1, w), g).to(x)
        return (x + self.eps * stripes).clamp(0.0, 1.0)

    def _init_l2(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        _, c, h, w = x.shape
        s = max(min(h, w) // 5, 1)
        rows, cols = h // s, w // s
        top, left = (h - rows * s) // 2, (w - cols * s) // 2
        delta = torch.zeros(1, c, h, w)
        for r in range(rows):
            for q in range(cols):
                bump = square_bump(s, g) * _random_signs((c, 1, 1), g)
                delta[0, :, top + r * s : top + (r + 1) * s, left + q * s : left + (q + 1) * s] = bump
        delta = delta.to(x)
        return (x + self.eps * delta / _l2(delta, (1, 2, 3)).clamp_min(1e-12)).clamp(0.0, 1.0)

    # ------------------------------------------------------------------ proposals
    def _propose_linf(
        self, x: torch.Tensor, best: torch.Tensor, p: float, g: torch.Generator
    ) -> torch.Tensor:
        _, c, h, w = x.shape
        s = min(max(round(math.sqrt(p * h * w)), 1), h, w)
        r, q = _random_position(h, w, s, g)
        tries = _random_signs((_SIGN_TRIES, c), g).to(x)
        win = (slice(None), slice(None), slice(r, r + s), slice(q, q + s))
        x_win, best_win = x[win], best[win]

        def proposal(signs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return (x_win[rows] + self.eps * signs[:, :, None, None]).clamp(0.0, 1.0)

        def unchanged(cand: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return (cand == best_win[rows]).flatten(1).all(1)

        # The reference redraws the signs of a sample until its window changes; with the
        # draws shared by the batch, each sample takes the first of _SIGN_TRIES draws that
        # changes it (if none does, every draw equals its window: the opposite signs do).
        everyone = torch.arange(len(x), device=x.device)
        new_win = proposal(tries[:1].expand(len(x), c), everyone)
        stuck = everyone[unchanged(new_win, everyone)]
        for k in [*range(1, _SIGN_TRIES), None]:
            if stuck.numel() == 0:
                break
            signs = (tries[k] if k is not None else -tries[0]).expand(len(stuck), c)
            cand = proposal(signs, stuck)
            moved = ~unchanged(cand, stuck) if k is not None else torch.ones_like(stuck, dtype=torch.bool)
            new_win[stuck[moved]] = cand[moved]
            stuck = stuck[~moved]
        new = best.clone()
        new[win] = new_win
        return new

    def _propose_l2(self, x: torch.Tensor, best: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
        _, c, h, w = x.shape
        s = max(round(math.sqrt(p * h * w)), 3)
        s = min(s + 1 - s % 2, h, w)  # odd, as in the reference, and inside the image
        r1, q1 = _random_position(h, w, s, g)
        r2, q2 = _random_position(h, w, s, g)
        eta = (square_bump(s, g)[None, None] * _random_signs((1, c, 1, 1), g)).to(x)
        win1 = (slice(None), slice(None), slice(r1, r1 + s), slice(q1, q1 + s))
        win2 = (slice(None), slice(None), slice(r2, r2 + s), slice(q2, q2 + s))

        delta = best - x
        union = torch.zeros(1, 1, h, w, dtype=torch.bool, device=x.device)
        union[win1] = True
        union[win2] = True
        mass_windows = (delta * union).square().sum(dim=(2, 3), keepdim=True)  # per channel
        unused = (self.eps**2 - delta.square().sum(dim=(1, 2, 3), keepdim=True)).clamp_min(0.0)
        available = (mass_windows + unused / c).sqrt()
        old = delta[win1]
        new = eta + old / _l2(old, (2, 3)).clamp_min(1e-12)
        new = new / _l2(new, (2, 3)).clamp_min(1e-12) * available
        delta[win2] = 0.0
        delta[win1] = new
        delta = self.eps * delta / _l2(delta, (1, 2, 3)).clamp_min(1e-12)
        return (x + delta).clamp(0.0, 1.0)

    # ------------------------------------------------------------------ search
    @torch.no_grad()
    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if x.dim() != 4:
            raise ValueError(f"Square attacks images: x must have shape (N, C, H, W), got {tuple(x.shape)}")
        n = x.shape[0]
        queries = torch.zeros(n, dtype=torch.long, device=x.device)
        logits = model(x)
        margin = signed_margin(logits, y, target)
        done = is_adversarial(logits, y, target)
        if self.eps == 0:
            return x.clone(), {"queries": queries, "margin": margin}
        # Small draws on the CPU (no device sync for positions); restarted for every chunk.
        g = torch.Generator().manual_seed(generator.initial_seed())
        propose = self._propose_linf if self.norm == Norm.LINF else self._propose_l2
        init = self._init_linf if self.norm == Norm.LINF else self._init_l2

        best = x.clone()
        for i in range(self.queries):
            active = (~done).nonzero()[:, 0]
            if active.numel() == 0:
                break
            ta = None if target is None else target[active]
            if i == 0:  # the initial point is accepted whatever its loss, as in the paper
                cand = init(x[active], g)
            else:
                cand = propose(x[active], best[active], p_schedule(self.p_init, i - 1, self.queries), g)
            logits = model(cand)
            m = signed_margin(logits, y[active], ta)
            adv = is_adversarial(logits, y[active], ta)
            take = torch.ones_like(adv) if i == 0 else (m < margin[active]) | adv
            idx = active[take]
            best[idx] = cand[take]
            margin[idx] = m[take]
            done[idx] = adv[take]
            queries[active] += 1
        logger.debug(
            "Square %s eps=%g: %d/%d adversarial, mean queries %.1f",
            self.norm, self.eps, int(done.sum()), n, float(queries.float().mean()),
        )  # fmt: skip
        return best, {"queries": queries, "margin": margin}
