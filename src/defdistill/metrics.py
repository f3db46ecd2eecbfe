"""What the distillation paper measures (Papernot et al., IEEE S&P 2016, arXiv:1511.04508).

* Success rate with the paper's protocol (Section V-B): every correctly classified test
  sample is attacked toward each other class with the targeted JSMA; success rate =
  successful attempts / attempts (:func:`paper_success_rate`).
* Distortions of a perturbation ``delta = x_adv - x``, per sample over the flattened
  features: :func:`l0`, :func:`l0_fraction`, :func:`l1`, :func:`l2`, :func:`linf`.
* Adversarial robustness ``rho_adv(F) = E[Delta_adv(x, F)]`` (Section V-C): the mean over
  samples of the minimum perturbation that changes the prediction; for JSMA the smallest
  fraction of features changed over the targeted attempts, in % (:func:`rho_adv`).
* Gradient amplitude (Section V-B, Figure 7): per sample, the mean absolute value of the
  Jacobian of the deployed softmax w.r.t. the input (:func:`gradient_amplitude`), shown
  as a log-scale histogram (:func:`log_histogram`).

Models are run in eval mode; their mode is restored afterwards.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from defdistill.attacks.base import Attack
from defdistill.inference import eval_mode, predict
from defdistill.temperature import check_temperature

logger = logging.getLogger(__name__)

TARGET_MODES: tuple[str, ...] = ("all", "next", "random")


# --------------------------------------------------------------------------- predictions
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


def accuracy_under_attack(
    model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, batch_size: int | None = None
) -> float:
    """Accuracy on adversarial inputs ``x_adv`` w.r.t. the true labels ``y``."""
    return accuracy(model, x_adv, y, batch_size)


def success_rate(success: torch.Tensor) -> float:
    """Fraction of ``True`` in a bool tensor of attempts (``nan`` if there are none)."""
    return float(success.float().mean()) if success.numel() else math.nan


def scaled_copy_residual(z_a: torch.Tensor, z_b: torch.Tensor) -> float:
    """How far logits ``z_a`` are from a scaled copy of ``z_b``: 0.0 means ``z_a = c · z_b``.

    Both ``(N, K)`` are centred per sample (the softmax ignores a shift), ``c`` is the
    least-squares scale, and the result is ``||z_a - c z_b|| / ||z_a||``. Two distilled
    students that are one network with its logits multiplied by T (head scaling from a
    shared seed) give 0 up to float error; independently trained networks give tenths.
    """
    a = (z_a - z_a.mean(1, keepdim=True)).double().flatten()
    b = (z_b - z_b.mean(1, keepdim=True)).double().flatten()
    if float(b @ b) == 0.0 or float(a @ a) == 0.0:
        return 0.0 if float(a @ a) == float(b @ b) == 0.0 else 1.0
    c = (a @ b) / (b @ b)
    return float(torch.linalg.vector_norm(a - c * b) / torch.linalg.vector_norm(a))


# --------------------------------------------------------------------------- distortions
def _flat(delta: torch.Tensor) -> torch.Tensor:
    if delta.dim() < 2:
        raise ValueError(f"delta must have shape (N, ...), got {tuple(delta.shape)}")
    return delta.flatten(1)


def l0(delta: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
    """Number of features with ``|delta| > tol`` per sample, ``(N,)`` int64."""
    return (_flat(delta).abs() > tol).sum(dim=1)


def l0_fraction(delta: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
    """Fraction of features with ``|delta| > tol`` per sample, ``(N,)`` float in [0, 1]."""
    flat = _flat(delta)
    return (flat.abs() > tol).sum(dim=1).to(torch.float32) / max(1, flat.shape[1])


def l1(delta: torch.Tensor) -> torch.Tensor:
    """L1 norm of each sample of ``delta`` over its flattened features, ``(N,)``."""
    return torch.linalg.vector_norm(_flat(delta), ord=1, dim=1)


def l2(delta: torch.Tensor) -> torch.Tensor:
    """L2 norm of each sample of ``delta`` over its flattened features, ``(N,)``."""
    return torch.linalg.vector_norm(_flat(delta), ord=2, dim=1)


def linf(delta: torch.Tensor) -> torch.Tensor:
    """L∞ norm of each sample of ``delta`` over its flattened features, ``(N,)``."""
    return torch.linalg.vector_norm(_flat(delta), ord=math.inf, dim=1)


# --------------------------------------------------------------------------- protocol
def all_targets(
    x: torch.Tensor, y: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Expand a batch into one attempt per (sample, other class).

    Returns ``(x_rep, y_rep, target)`` with ``N * (num_classes - 1)`` rows, sample-major:
    the attempts of sample ``i`` are rows ``i*(K-1) .. (i+1)*(K-1) - 1`` with targets
    ``y_i + 1, y_i + 2, ... (mod K)``.

    Example:
        >>> import torch
        >>> _, yr, t = all_targets(torch.zeros(2, 1), torch.tensor([0, 2]), 3)
        >>> yr.tolist(), t.tolist()
        ([0, 0, 2, 2], [1, 2, 0, 1])
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if y.shape != (len(x),):
        raise ValueError(f"y must have shape ({len(x)},), got {tuple(y.shape)}")
    k = num_classes - 1
    offsets = torch.arange(1, num_classes, device=y.device)
    target = ((y[:, None] + offsets[None, :]) % num_classes).flatten()
    return x.repeat_interleave(k, dim=0), y.repeat_interleave(k), target


@dataclass
class Robustness:
    """``rho_adv``: mean over samples of the minimum adversarial perturbation.

    Attributes:
        value: mean of ``per_sample`` over the samples with at least one successful
            attempt (the paper's convention); ``nan`` if there are none.
        per_sample: ``(N,)`` minimum perturbation per sample, ``nan`` where no attempt
            succeeded.
        samples: number of samples ``N``.
        samples_without_success: samples not counted in ``value``. A robust model can
            look *less* robust when many samples are never broken (they drop out of the
            mean): always report this count next to ``value``.
    """

    value: float
    per_sample: torch.Tensor
    samples: int
    samples_without_success: int


def rho_adv(min_perturbation: torch.Tensor, budget: float | None = None) -> Robustness:
    """``rho_adv`` from per-sample minimum perturbations (``nan`` = never successful).

    For the paper's JSMA measure pass ``100 * min_l0_fraction`` (see
    :attr:`SuccessRateReport.min_l0_fraction`); for C&W pass the L2 of successful samples.

    ``budget=None`` averages over the samples with a success only. With ``budget``, the
    largest perturbation the attack can reach (JSMA: :meth:`JSMA.max_features_changed`,
    14.29 % of MNIST's pixels at gamma = 14.5 %), a sample never broken counts at that
    value: its minimum perturbation is *at least* that, so the mean is a lower bound
    (report it with ``≥`` and the number of censored samples). Robustness then cannot
    *fall* because a defence makes attacks fail, and a model that resists every attempt
    gets exactly ``budget``. Papernot et al.'s MNIST value at T = 100 (14.08 % with
    0.45 % success) lies just below this cap, as censoring at the cap gives; averaging
    over the broken samples only could give any value.
    """
    per_sample = min_perturbation.detach().double()
    ok = ~torch.isnan(per_sample)
    if budget is not None:  # never broken: needs at least what the attack could reach
        censored = torch.where(ok, per_sample, torch.full_like(per_sample, float(budget)))
        value = float(censored.mean()) if censored.numel() else math.nan
    else:
        value = float(per_sample[ok].mean()) if bool(ok.any()) else math.nan
    return Robustness(value, per_sample, int(per_sample.numel()), int((~ok).sum()))


@dataclass
class SuccessRateReport:
    """Result of :func:`paper_success_rate`. Per-attempt tensors have ``attempts`` rows.

    Attributes:
        samples: inputs given.
        correct: ``(samples,)`` bool, which were classified correctly (only those attacked).
        attempts: number of targeted attempts (= correct samples × targets per sample).
        successes: number of successful attempts.
        sample_index: ``(attempts,)`` index into the given ``x`` of each attempt.
        target: ``(attempts,)`` target class of each attempt.
        success: ``(attempts,)`` bool.
        l0_fraction: ``(attempts,)`` fraction of features changed by each attempt.
        x, x_adv: ``(attempts, ...)`` input and adversarial input of each attempt.
        min_l0_fraction: ``(correct samples,)`` smallest ``l0_fraction`` among the
            successful attempts of each correctly classified sample, ``nan`` if none.
        budget_fraction: the largest fraction of features the attack can change (JSMA:
            its cap, below gamma), where never-broken samples are censored; None if the
            attack has no such cap.
    """

    samples: int
    correct: torch.Tensor
    attempts: int
    successes: int
    sample_index: torch.Tensor
    target: torch.Tensor
    success: torch.Tensor
    l0_fraction: torch.Tensor
    x: torch.Tensor
    x_adv: torch.Tensor
    min_l0_fraction: torch.Tensor
    budget_fraction: float | None = None

    @property
    def success_rate(self) -> float:
        """Successful attempts / attempts (``nan`` without attempts)."""
        return self.successes / self.attempts if self.attempts else math.nan

    @property
    def rate(self) -> float:
        """Alias of :attr:`success_rate`."""
        return self.success_rate

    @property
    def mean_l0_percent(self) -> float:
        """Mean % of features changed over the *successful* attempts (``nan`` if none)."""
        changed = self.l0_fraction[self.success]
        return 100 * float(changed.double().mean()) if changed.numel() else math.nan

    def robustness(self, censored: bool = True) -> Robustness:
        """``rho_adv`` in %: mean over samples of the smallest % of features changed.

        ``censored=True`` counts a sample never broken at the largest fraction the attack
        can change (``budget_fraction``) when known; see :func:`rho_adv`.
        """
        budget = self.budget_fraction if censored else None
        return rho_adv(100 * self.min_l0_fraction.double(),
                       None if budget is None else 100 * budget)  # fmt: skip

    @property
    def rho_adv_percent(self) -> float:
        """``rho_adv`` (%) with never-broken samples counted at the attack's cap (if known)."""
        return self.robustness().value

    @property
    def rho_adv_successful_percent(self) -> float:
        """``rho_adv`` (%) over the samples with at least one successful attempt only."""
        return self.robustness(censored=False).value

    @property
    def samples_without_success(self) -> int:
        """Correctly classified samples for which no targeted attempt succeeded."""
        return self.robustness().samples_without_success


def _max_fraction(attack: Attack, n_features: int) -> float | None:
    """The largest fraction of features ``attack`` can change, if it has such a cap."""
    cap = getattr(attack, "max_features_changed", None)
    return None if cap is None else cap(n_features) / n_features


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    with eval_mode(model), torch.no_grad():
        return int(model(x[:1]).shape[1])


def paper_success_rate(
    model: nn.Module,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int | None = None,
    targets: str = "all",
    seed: int = 0,
    tol: float = 0.0,
) -> SuccessRateReport:
    """The paper's success rate of a targeted attack (Papernot et al. 2016, Section V-B).

    Keeps the samples that ``model`` classifies correctly, attacks each toward the chosen
    targets in one batched call, and measures success (prediction == target) and the
    fraction of features changed (``|x_adv - x| > tol``).

    Args:
        model: classifier returning logits.
        attack: a targeted attack, e.g. :class:`defdistill.attacks.JSMA`.
        x: ``(N, ...)`` inputs in [0, 1].
        y: ``(N,)`` labels.
        num_classes: number of classes; default ``None`` = read from the model output.
        targets: ``"all"`` (every other class, the paper's protocol: attempts =
            correct × (classes - 1)), ``"next"`` (``(y + 1) mod K``) or ``"random"`` (one
            uniformly drawn other class per sample, from ``seed``).
        seed: seed for ``targets="random"``. Default 0.
        tol: tolerance of the L0 count. Default 0.0.

    Returns:
        :class:`SuccessRateReport`.
    """
    if targets not in TARGET_MODES:
        raise ValueError(f"targets must be one of {TARGET_MODES}, got {targets!r}")
    if len(x) == 0:
        raise ValueError("x is empty: nothing to attack")
    k = num_classes if num_classes is not None else _num_classes(model, x)
    correct = correct_mask(model, x, y)
    idx = correct.nonzero().flatten()
    xc, yc = x[idx], y[idx].to(x.device)
    if targets == "all":
        xr, yr, tr = all_targets(xc, yc, k)
        sample_index = idx.repeat_interleave(k - 1)
    else:
        if targets == "next":
            offset = torch.ones_like(yc)
        else:
            g = torch.Generator().manual_seed(seed)
            offset = torch.randint(1, k, (len(yc),), generator=g).to(yc.device)
        xr, yr, tr, sample_index = xc, yc, (yc + offset) % k, idx
    if len(xr):
        result = attack(model, xr, yr, tr)
        x_adv, success = result.x_adv, result.success
    else:
        x_adv, success = xr.clone(), torch.zeros(0, dtype=torch.bool, device=x.device)
    frac = l0_fraction(x_adv - xr, tol) if len(xr) else torch.zeros(0, device=x.device)
    per = len(xr) // max(1, len(xc))
    masked = torch.where(success, frac, torch.full_like(frac, math.inf)).view(len(xc), per)
    min_frac = masked.amin(dim=1) if per else torch.full((len(xc),), math.inf)
    min_frac = torch.where(torch.isinf(min_frac), torch.full_like(min_frac, math.nan), min_frac)
    report = SuccessRateReport(
        samples=len(x),
        correct=correct,
        attempts=len(xr),
        successes=int(success.sum()),
        sample_index=sample_index,
        target=tr,
        success=success,
        l0_fraction=frac,
        x=xr,
        x_adv=x_adv,
        min_l0_fraction=min_frac,
        budget_fraction=_max_fraction(attack, x[0].numel()),
    )
    logger.info(
        "%s: %d/%d attempts successful (%.1f %%), mean L0 %.2f %%",
        type(attack).__name__,
        report.successes,
        report.attempts,
        100 * report.success_rate if report.attempts else math.nan,
        report.mean_l0_percent,
    )
    return report


# --------------------------------------------------------------------------- gradients
def gradient_amplitude(
    model: nn.Module, x: torch.Tensor, temperature: float = 1.0, batch_size: int = 256
) -> torch.Tensor:
    """Per-sample mean ``|dF_c/dx_i|`` over all classes ``c`` and features ``i``.

    ``F = softmax(logits / temperature)`` is the deployed softmax (``temperature = 1`` for
    a distilled network at test time). The Jacobian is computed class by class (one
    backward pass per class, vectorised over the batch) from the closed-form softmax
    derivative ``dF_c/dz_k = F_c (δ_ck - F_k) / T``, with ``1 - F_c`` evaluated as
    ``sum_{k != c} F_k``: autograd through the softmax rounds it to 0 when ``F_c`` is
    within float32 precision of 1, which would turn tiny gradients into exact zeros.
    Values below the float32 range still underflow to 0 (count them with
    :func:`log_histogram`).

    Args:
        model: classifier returning logits.
        x: ``(N, ...)`` inputs.
        temperature: softmax temperature. Default 1.0.
        batch_size: samples per backward pass. Default 256.

    Returns:
        ``(N,)`` float tensor.
    """
    t = check_temperature(temperature)
    if len(x) == 0:
        return torch.zeros(0, dtype=x.dtype, device=x.device)
    out: list[torch.Tensor] = []
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].detach().clone().requires_grad_(True)
            z = model(xb)
            k = z.shape[1]
            with torch.no_grad():
                s = F.softmax(z / t, dim=1)
            total = torch.zeros(len(xb), dtype=torch.float64, device=x.device)
            for c in range(k):
                s_c = s[:, c : c + 1]
                cot = -s_c * s
                cot[:, c] = s_c[:, 0] * torch.cat([s[:, :c], s[:, c + 1 :]], dim=1).sum(dim=1)
                (g,) = torch.autograd.grad(z, xb, grad_outputs=cot / t, retain_graph=c < k - 1)
                total += g.flatten(1).abs().sum(dim=1, dtype=torch.float64)
            out.append((total / (k * xb[0].numel())).to(x.dtype))
    return torch.cat(out)


def logit_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``dZ/dx``: the Jacobian of the logits, ``(N, K, n_features)`` (one backward per class)."""
    with eval_mode(model):
        xb = x.detach().clone().requires_grad_(True)
        z = model(xb)
        k = z.shape[1]
        rows = []
        for c in range(k):
            (g,) = torch.autograd.grad(z[:, c].sum(), xb, retain_graph=c < k - 1)
            rows.append(g.flatten(1))
    return torch.stack(rows, dim=1)


def log10_gradient_amplitude(
    model: nn.Module, x: torch.Tensor, temperature: float = 1.0, batch_size: int = 64
) -> torch.Tensor:
    """``log10`` of :func:`gradient_amplitude`, exact where float arithmetic underflows.

    With ``l = log_softmax(z / T)`` and ``g_c = dz_c/dx``, the softmax Jacobian is
    ``dF_i/dx = F_i · Σ_j F_j (g_i - g_j) / T``. Factoring out ``exp(l*_i)``, with
    ``l*_i = max_{j≠i} l_j``, every factor stays representable, so the amplitude of a
    saturated softmax (defensive distillation at high T: ``10^-300`` and below, where
    float32 and even float64 give exactly 0) is still measured. Papernot et al. 2016
    (arXiv:1511.04508, Section V) report gradient amplitudes over many orders of
    magnitude; this is how to see them.

    Returns:
        ``(N,)`` float64: ``log10(mean_{i,p} |dF_i/dx_p|)`` (``-inf`` only if exactly 0).
    """
    t = check_temperature(temperature)
    out: list[torch.Tensor] = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        g = logit_jacobian(model, xb).double()  # (B, K, n)
        with eval_mode(model), torch.no_grad():
            logp = F.log_softmax(model(xb).double() / t, dim=1)  # (B, K)
        k, n = g.shape[1], g.shape[2]
        eye = torch.eye(k, dtype=torch.bool, device=x.device)
        others = logp[:, None, :].masked_fill(eye[None], -math.inf)  # (B, i, j), j != i
        top = others.max(dim=2, keepdim=True).values  # l*_i
        weights = (others - top).exp()  # exp(l_j - l*_i), 0 for j == i
        diff = g[:, :, None, :] - g[:, None, :, :]  # (B, i, j, n): g_i - g_j
        inner = (weights[..., None] * diff).sum(dim=2).abs()  # (B, i, n)
        log_abs = logp[:, :, None] + top + inner.log() - math.log(t)  # natural log
        log_mean = torch.logsumexp(log_abs.flatten(1), dim=1) - math.log(k * n)
        out.append(log_mean / math.log(10))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


class LogHistogram(TypedDict):
    """JSON-ready histogram of non-negative values on a log10 scale."""

    log10_edges: list[float]
    counts: list[int]
    zeros: int
    nonfinite: int


def log_histogram(
    values: torch.Tensor,
    bins: int = 40,
    low: float | None = None,
    high: float | None = None,
) -> LogHistogram:
    """Histogram of ``values >= 0`` with log-spaced bins; exact zeros counted apart.

    Args:
        values: non-negative values (any shape).
        bins: number of bins, >= 1. Default 40.
        low, high: range of the positive values (default: their min and max). Values
            outside are clipped into the first/last bin.

    Returns:
        ``{"log10_edges": bins + 1 floats, "counts": bins ints, "zeros": int,
        "nonfinite": int}``; ``sum(counts) + zeros + nonfinite == values.numel()``.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be an int >= 1, got {bins!r}")
    v = values.detach().flatten().double()
    finite = torch.isfinite(v)
    if bool((v[finite] < 0).any()):
        raise ValueError("log_histogram needs non-negative values (e.g. gradient amplitudes)")
    zeros = int((v == 0).sum())
    pos = v[finite & (v > 0)]
    if pos.numel() == 0 and (low is None or high is None):
        edges = torch.linspace(-1.0, 0.0, bins + 1, dtype=torch.float64)
        return LogHistogram(
            log10_edges=edges.tolist(),
            counts=[0] * bins,
            zeros=zeros,
            nonfinite=int((~finite).sum()),
        )
    lo = math.log10(low) if low is not None else float(pos.log10().min())
    hi = math.log10(high) if high is not None else float(pos.log10().max())
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    idx = ((pos.log10() - lo) / (hi - lo) * bins).floor().long().clamp_(0, bins - 1)
    counts = torch.bincount(idx, minlength=bins)
    return LogHistogram(
        log10_edges=edges.tolist(),
        counts=[int(c) for c in counts],
        zeros=zeros,
        nonfinite=int((~finite).sum()),
    )
