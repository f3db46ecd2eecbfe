"""Jacobian-based Saliency Map Attack (Papernot et al., EuroS&P 2016, arXiv:1511.07528).

The attack used by the defensive-distillation paper (Papernot et al., IEEE S&P 2016,
arXiv:1511.04508) to measure success rates and adversarial robustness on MNIST/CIFAR-10.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from defdistill.attacks.base import (
    Attack,
    check_choice,
    check_nonnegative,
    check_positive_int,
)
from defdistill.names import JsmaOn
from defdistill.temperature import check_temperature

logger = logging.getLogger(__name__)

TOP_PAIR = (JsmaOn.PROBS, JsmaOn.TARGET_LOGIT)  # beta = -alpha: the best pair is a top-2


def select_pairs(
    alpha: torch.Tensor,
    beta: torch.Tensor,
    domain: torch.Tensor,
    theta: float,
    pair_chunk: int = 2**24,
    top: int = 128,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The JSMA pair ``(p, q)`` maximising the saliency map, for each row of a batch.

    With ``a = alpha_p + alpha_q`` and ``b = beta_p + beta_q`` over features ``p != q`` of the
    search domain: for ``theta > 0`` admissible pairs have ``a > 0, b < 0`` and score
    ``a * |b|``; for ``theta < 0`` they have ``a < 0, b > 0`` and score ``|a| * b``.

    Exact, and much cheaper than scoring all ``n²`` pairs. Writing ``u = θ·alpha`` and
    ``v = -θ·beta``, the score is ``(u_p + u_q)⁺ (v_p + v_q)⁺``, non-decreasing in
    ``(u_p, v_p)``: a pair member dominated (``u`` and ``v`` both >=, one >) by a third
    feature can be swapped for it without lowering the score, so an optimal pair always
    exists among the features with at most one strict dominator. A superset of those is
    found without a full sort: among the ``top`` features with the largest ``u`` (taken
    in decreasing ``u``), those with fewer than two larger ``v`` before them; outside
    them, those whose ``v`` reaches the second largest ``v`` of the top ones. Candidates
    that cannot beat a pair already scored (bound ``(u_p + max u)⁺ (v_p + max v)⁺``) are
    dropped. The remaining ones (a handful in practice: on probabilities
    ``beta = -alpha`` and there are two) are then
    scored pairwise, exhaustively, in float64 (so tiny gradients, e.g. of a distilled
    network, do not underflow when multiplied) and in blocks of at most ``pair_chunk``
    scores. The worst case (strongly anti-correlated ``alpha`` and ``beta``, where
    almost no pair is admissible) is still all ``n²`` pairs, with bounded memory.

    Args:
        alpha: ``(B, n)`` derivative of the target output.
        beta: ``(B, n)`` derivative of the sum of the other outputs.
        domain: ``(B, n)`` bool, features still in the search domain.
        theta: sign of the perturbation, ``+1`` or ``-1``.
        pair_chunk: maximum number of pair scores held at once. Default ``2**24``.
        top: number of features with the largest ``u`` examined first. Default 128.

    Returns:
        ``(p, q, found)``: ``(B,)`` int64 feature indices and ``(B,)`` bool, ``False`` where
        no admissible pair exists (``p``, ``q`` are then meaningless).
    """
    b, n = alpha.shape
    dev = alpha.device
    if n < 2:
        zero = torch.zeros(b, dtype=torch.long, device=dev)
        return zero, zero, torch.zeros(b, dtype=torch.bool, device=dev)
    sign = 1.0 if theta > 0 else -1.0
    u = (sign * alpha).masked_fill_(~domain, float("-inf"))
    v = (-sign * beta).masked_fill_(~domain, float("-inf"))

    # Inside: the `m` largest u, in decreasing order; keep those with < 2 larger v before.
    m = min(n, top)
    us, inside = u.topk(m, dim=1)
    vs = v.gather(1, inside)
    pad = torch.full_like(vs[:, :1], float("-inf"))
    prev_max = torch.cat([pad, vs.cummax(dim=1).values[:, :-1]], dim=1)
    prev_second = torch.cat([pad, torch.minimum(vs, prev_max).cummax(dim=1).values[:, :-1]], dim=1)
    feat = inside
    valid = (vs >= prev_second) & torch.isfinite(us)
    # Outside: dominated by the two largest-v inside features unless v reaches the second.
    if m < n:
        second_v = vs.topk(2, dim=1).values[:, 1:]
        outside = (v >= second_v) & domain
        outside.scatter_(1, inside, False)
        extra = int(outside.sum(dim=1).max())
        if extra:
            out_idx = outside.to(torch.float32).topk(extra, dim=1).indices
            feat = torch.cat([feat, out_idx], dim=1)
            valid = torch.cat([valid, outside.gather(1, out_idx)], dim=1)
    # Prune with a bound: a pair holding p scores at most (u_p + max u)⁺ (v_p + max v)⁺,
    # useless if below the score of a pair already known (from a few promising features).
    neg_inf = torch.tensor(float("-inf"), dtype=torch.float64, device=dev)
    u64, v64 = u.double(), v.double()
    few = min(n, 16)
    seed_feat = torch.cat([inside[:, :few], v.topk(few, dim=1).indices], dim=1)
    seed_ok = domain.gather(1, seed_feat)
    known, _, _ = _best_pair(
        torch.where(seed_ok, u64.gather(1, seed_feat), neg_inf),
        torch.where(seed_ok, v64.gather(1, seed_feat), neg_inf),
        seed_feat,
        pair_chunk,
    )
    bound = (u64.gather(1, feat) + u64.amax(dim=1, keepdim=True)).clamp_(min=0)
    bound.mul_((v64.gather(1, feat) + v64.amax(dim=1, keepdim=True)).clamp_(min=0))
    valid &= bound >= known[:, None]
    # Compact the candidates to k columns and score all their pairs.
    k = max(int(valid.sum(dim=1).max()), 1)
    pick = valid.to(torch.float32).topk(k, dim=1).indices
    valid = valid.gather(1, pick)
    feat = feat.gather(1, pick)
    cu = torch.where(valid, u64.gather(1, feat), neg_inf)
    cv = torch.where(valid, v64.gather(1, feat), neg_inf)
    best, best_i, best_j = _best_pair(cu, cv, feat, pair_chunk)
    p = feat.gather(1, best_i[:, None])[:, 0]
    q = feat.gather(1, best_j[:, None])[:, 0]
    return p, q, best > 0


def top_pair(
    alpha: torch.Tensor, domain: torch.Tensor, theta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`select_pairs` when ``beta = -alpha`` exactly (JSMA on probabilities).

    Then ``u = θ·alpha = v`` and the score of a pair is ``((u_p + u_q)⁺)²``, maximised by
    the two largest ``u`` of the search domain: one ``topk(2)`` instead of a pair search.
    The same pair as :func:`select_pairs` up to exact ties of ``u``.

    Args:
        alpha: ``(B, n)`` derivative of the target output, ``n >= 2``.
        domain: ``(B, n)`` bool, features still in the search domain.
        theta: sign of the perturbation, ``+1`` or ``-1``.

    Returns:
        ``(p, q, found)`` as :func:`select_pairs`.
    """
    u = (alpha if theta > 0 else -alpha).masked_fill(~domain, float("-inf"))
    top, idx = u.topk(2, dim=1)
    found = top.double().sum(dim=1) > 0  # False if a member is outside the domain (-inf)
    return idx[:, 0], idx[:, 1], found


def _best_pair(
    cu: torch.Tensor, cv: torch.Tensor, feat: torch.Tensor, pair_chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Max over columns i, j with ``feat_i != feat_j`` of ``(cu_i + cu_j)⁺ (cv_i + cv_j)⁺``.

    Returns the best score (0 if no pair is admissible) and the column indices ``i, j``.
    Rows of at most ``pair_chunk`` scores are evaluated at once.
    """
    b, k = cu.shape
    rows = max(1, pair_chunk // max(1, b * k))
    best = torch.zeros(b, dtype=cu.dtype, device=cu.device)
    best_i = torch.zeros(b, dtype=torch.long, device=cu.device)
    best_j = torch.zeros(b, dtype=torch.long, device=cu.device)
    for r0 in range(0, k, rows):
        r1 = min(k, r0 + rows)
        s = (cu[:, r0:r1, None] + cu[:, None, :]).clamp_(min=0)
        s.mul_((cv[:, r0:r1, None] + cv[:, None, :]).clamp_(min=0))
        s.masked_fill_(feat[:, r0:r1, None] == feat[:, None, :], 0.0)  # p == q is no pair
        val, flat = s.flatten(1).max(dim=1)
        better = val > best
        best = torch.where(better, val, best)
        best_i = torch.where(better, flat // k + r0, best_i)
        best_j = torch.where(better, flat % k, best_j)
    return best, best_i, best_j


class JSMA(Attack):
    """Targeted L0 attack that saturates pairs of features chosen by a saliency map.

    Each iteration computes the forward derivative of ``F_t`` (target output) and of
    ``sum_{j != t} F_j`` w.r.t. the input, picks the pair of
    search-domain features maximising the pairwise saliency map (see
    :func:`select_pairs`), sets both to the bound (1 for ``theta = +1``, 0 for
    ``theta = -1``) and removes them from the search domain. ``F = softmax(logits / T)``
    (``on="probs"``, the paper's setting, ``T`` = deploy temperature) or ``F = logits``
    (``on="logits"``, the adaptive variant that defeats distillation's saturation), or the
    saliency of the target logit alone (``on="target_logit"``: ``alpha = dZ_t/dx`` and
    ``beta = -alpha``, the variant of ART's ``SaliencyMapMethod`` on a logit model, often
    stronger than the pairwise map on Z because it does not require the other logits to
    fall). On logits the two derivatives take two backward passes; on the target logit, one. On probabilities
    ``sum_{j != t} F_j = 1 - F_t``, so its derivative is exactly minus that of ``F_t``; both
    come from one backward pass of a closed-form logit cotangent (``s_t s_c / T`` for
    ``c != t``, ``-s_t sum_{j != t} s_j / T`` for ``c = t``), which stays accurate whether
    ``F_t`` is close to 0 or to 1, where autograd through the softmax cancels
    catastrophically (``1 - sum_{j != t} s_j``, or ``1 - s_t``). The saliency map then
    reduces to picking the two admissible features with the largest ``θ·dF_t/dx``, which
    is what is done (:func:`top_pair`) instead of the general pair search.

    The search domain starts as the features that can move in direction ``theta``
    (``x < 1`` for ``+1``, ``x > 0`` for ``-1``). A sample stops on success
    (``argmax logits == target``), when one more pair would take the number of changed
    features above ``max_changed = floor(gamma * n_features)``, or when no admissible pair
    is left. Hence JSMA never changes more than ``floor(γ·n) <= ceil(γ·n)`` features.
    Distance measure: L0 (number of features changed). The batch is fully vectorised
    over samples and feature pairs, and finished samples leave the active batch: to
    attack every target class, pass ``x`` repeated with the targets
    (:func:`defdistill.evaluation.protocol.all_targets`).

    Args:
        theta: +1.0 (increase features, default) or -1.0 (decrease them).
        gamma: maximum fraction of features changed, in (0, 1]. Default 0.145 (the
            paper's 14.5 %).
        on: ``"probs"`` (default), ``"logits"`` or ``"target_logit"``.
        temperature: ``T`` of ``softmax(logits / T)`` for ``on="probs"``. Default 1.0.
        pair_chunk: maximum number of pair scores held in memory at once (``on="logits"``;
            on probabilities the pair is a top-2). Default 2**24.
        batch_size: process at most this many samples at once. Default ``None`` (all).

    Shapes:
        ``x``: ``(N, ...)`` float in [0, 1]; ``y``, ``target`` (required): ``(N,)`` int64;
        ``x_adv``: ``(N, ...)``; ``success``: ``(N,)`` bool;
        ``info["features_changed"]``, ``info["iterations"]``: ``(N,)`` int64.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from defdistill.attacks import JSMA
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> x, y = torch.rand(4, 1, 4, 4) * 0.5, torch.tensor([0, 1, 2, 0])
        >>> res = JSMA(gamma=0.5)(model, x, y, target=(y + 1) % 3)
        >>> bool((res.info["features_changed"] <= 8).all())
        True
    """

    requires_target = True

    def __init__(
        self,
        theta: float = 1.0,
        gamma: float = 0.145,
        on: str = JsmaOn.PROBS,
        temperature: float = 1.0,
        pair_chunk: int = 2**24,
        *,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size)
        if theta not in (1, -1):
            raise ValueError(f"theta must be +1.0 or -1.0, got {theta!r}")
        self.theta = float(theta)
        self.gamma = check_nonnegative("gamma", gamma, allow_zero=False)
        if self.gamma > 1:
            raise ValueError(f"gamma is a fraction of the features, in (0, 1]; got {gamma}")
        self.on = check_choice("on", on, tuple(JsmaOn))
        self.temperature = check_temperature(temperature)
        self.pair_chunk = check_positive_int("pair_chunk", pair_chunk)

    def max_features_changed(self, n_features: int) -> int:
        """The largest L0 this attack can reach on ``n_features`` features.

        Pairs are added while the count stays within ``floor(gamma * n)``, so the cap is
        the largest even number not above it: 112 of 784 MNIST pixels (14.29 %) at the
        paper's gamma = 14.5 %, 444 of 3,072 CIFAR-10 channel values (14.45 %).
        """
        return 2 * (math.floor(self.gamma * n_features + 1e-9) // 2)

    def _forward_derivatives(
        self, logits: torch.Tensor, t: torch.Tensor, xa: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(dF_t/dx, d(sum_{j != t} F_j)/dx)``, each ``(B, n)``."""
        is_t = F.one_hot(t, logits.shape[1]).bool()
        if self.on == JsmaOn.TARGET_LOGIT:
            (alpha,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), xa)
            return alpha, -alpha
        if self.on == JsmaOn.LOGITS:
            (alpha,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), xa, retain_graph=True)
            (beta,) = torch.autograd.grad(logits.masked_fill(is_t, 0.0).sum(), xa)
            return alpha, beta
        # Probabilities s = softmax(z / T). Autograd through softmax computes the derivative
        # of sum_{j != t} s_j as s_c * (1 - sum_{j != t} s_j), which cancels catastrophically
        # when s_t is small, and the derivative of s_t as s_t * (1 - s_t), which does when
        # s_t is close to 1. The closed form is accurate in both regimes:
        # d(sum_{j != t} s_j)/dz_c = s_t * s_c / T (c != t), -s_t * sum_{j != t} s_j / T (c = t),
        # and it is exactly minus d s_t / dz, so a single backward pass gives both.
        with torch.no_grad():
            s = F.softmax(logits / self.temperature, dim=1)
            s_t = s.gather(1, t[:, None])
            s_other = s.masked_fill(is_t, 0.0).sum(dim=1, keepdim=True)
            cot_beta = torch.where(is_t, -s_t * s_other, s_t * s) / self.temperature
        # a vector-Jacobian product written as a scalar's gradient: the same numbers, and
        # unlike grad_outputs= it does not import torch's symbolic shapes (sympy, 0.6 s)
        (beta,) = torch.autograd.grad((logits * cot_beta).sum(), xa)
        return -beta, beta

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert target is not None  # guaranteed by requires_target
        shape = x.shape[1:]
        flat = x.flatten(1).clone()
        n, n_features = flat.shape
        max_changed = self.max_features_changed(n_features)
        bound = 1.0 if self.theta > 0 else 0.0
        domain = flat < 1.0 if self.theta > 0 else flat > 0.0
        changed = torch.zeros(n, dtype=torch.long, device=x.device)
        iterations = torch.zeros(n, dtype=torch.long, device=x.device)
        active = torch.arange(n, device=x.device)
        while active.numel():
            # Drop samples that cannot take another pair before paying for a forward pass.
            room = (changed[active] + 2 <= max_changed) & (domain[active].sum(dim=1) >= 2)
            active = active[room]
            if not active.numel():
                break
            xa = flat[active].requires_grad_(True)
            t = target[active]
            logits = model(xa.view(-1, *shape))
            alpha, beta = self._forward_derivatives(logits, t, xa)
            todo = logits.detach().argmax(dim=1) != t
            active, alpha, beta = active[todo], alpha[todo], beta[todo]
            if not active.numel():
                break
            if self.on in TOP_PAIR:
                p, q, found = top_pair(alpha, domain[active], self.theta)
            else:
                p, q, found = select_pairs(alpha, beta, domain[active], self.theta, self.pair_chunk)
            active, p, q = active[found], p[found], q[found]
            flat[active, p] = bound
            flat[active, q] = bound
            domain[active, p] = False
            domain[active, q] = False
            changed[active] += 2
            iterations[active] += 1
            logger.debug("JSMA: %d samples still active", active.numel())
        x_adv = flat.view(x.shape)
        features_changed = (flat != x.flatten(1)).sum(dim=1)
        return x_adv, {"features_changed": features_changed, "iterations": iterations}
