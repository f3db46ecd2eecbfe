"""The paper's measurements of a targeted attack (Papernot et al., IEEE S&P 2016, arXiv:1511.04508).

* Success rate (Section V-B): every correctly classified test sample is attacked toward
  each other class with the targeted JSMA; success rate = successful attempts / attempts
  (:func:`paper_success_rate`).
* Adversarial robustness ``rho_adv(F) = E[Delta_adv(x, F)]`` (Section V-C): the mean over
  samples of the minimum perturbation that changes the prediction; for JSMA the smallest
  fraction of features changed over the targeted attempts, in % (:func:`rho_adv`).

Models are run in eval mode; their mode is restored afterwards.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from defdistill.attacks.base import Attack
from defdistill.evaluation.distances import l0_fraction
from defdistill.evaluation.threats import TargetMode
from defdistill.inference import correct_mask, eval_mode

logger = logging.getLogger(__name__)


def all_targets(
    x: torch.Tensor, y: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Expand a batch into one attempt per (sample, other class).

    Returns ``(x_rep, y_rep, target)`` with ``N * (num_classes - 1)`` rows, sample-major:
    the attempts of sample ``i`` are rows ``i*(K-1) .. (i+1)*(K-1) - 1`` with targets
    ``y_i + 1, y_i + 2, ... (mod K)``.

    Examples:
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

    def describe(self) -> str:
        """One line for a log: attempts, successes and their mean L0 (``–`` without success)."""
        if not self.attempts:
            return "no attempt (no sample classified correctly)"
        l0 = f"{self.mean_l0_percent:.2f} %" if self.successes else "– (no success)"
        return (f"{self.successes}/{self.attempts} attempts successful "
                f"({100 * self.success_rate:.1f} %), mean L0 {l0}")  # fmt: skip

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


def expand_targets(
    x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, num_classes: int, mode: TargetMode,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """The targeted attempts of a batch: ``(x_rep, y_rep, target, sample_index)``.

    ``ALL`` gives ``K - 1`` attempts per sample (:func:`all_targets`), ``NEXT`` and
    ``RANDOM`` one each. ``index`` (``(N,)``, the samples' positions in the caller's
    batch) is repeated alongside, so each attempt knows its sample.
    """
    if mode is TargetMode.ALL:
        xr, yr, tr = all_targets(x, y, num_classes)
        return xr, yr, tr, index.repeat_interleave(num_classes - 1)
    if mode is TargetMode.NEXT:
        offset = torch.ones_like(y)
    else:
        g = torch.Generator().manual_seed(seed)
        offset = torch.randint(1, num_classes, (len(y),), generator=g).to(y.device)
    return x, y, (y + offset) % num_classes, index


def min_per_sample(values: torch.Tensor, success: torch.Tensor, samples: int) -> torch.Tensor:
    """Per sample, the smallest of ``values`` over its *successful* attempts (``nan`` if none).

    Attempts are sample-major with the same count per sample (:func:`expand_targets`).
    """
    per = len(values) // max(1, samples)
    masked = torch.where(success, values, torch.full_like(values, math.inf)).view(samples, per)
    smallest = masked.amin(dim=1) if per else torch.full((samples,), math.inf)
    return torch.where(torch.isinf(smallest), torch.full_like(smallest, math.nan), smallest)


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
    mode = TargetMode.parse(targets)
    if len(x) == 0:
        raise ValueError("x is empty: nothing to attack")
    k = num_classes if num_classes is not None else _num_classes(model, x)
    correct = correct_mask(model, x, y)
    idx = correct.nonzero().flatten()
    xc, yc = x[idx], y[idx].to(x.device)
    xr, yr, tr, sample_index = expand_targets(xc, yc, idx, k, mode, seed)
    if len(xr):
        result = attack(model, xr, yr, tr)
        x_adv, success = result.x_adv, result.success
    else:
        x_adv, success = xr.clone(), torch.zeros(0, dtype=torch.bool, device=x.device)
    frac = l0_fraction(x_adv - xr, tol) if len(xr) else torch.zeros(0, device=x.device)
    min_frac = min_per_sample(frac, success, len(xc))
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
    logger.info("%s: %s", type(attack).__name__, report.describe())
    return report
