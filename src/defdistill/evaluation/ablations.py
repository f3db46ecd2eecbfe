"""Two ablations that isolate how defensive distillation stops the paper's attack.

Papernot et al. 2016 (arXiv:1511.04508, Section V) explain the defence by smoother
models; Carlini & Wagner 2016 (arXiv:1607.04311) show instead that the student's logits
grow by about the factor T, so the deployed softmax saturates, its float32 Jacobian
underflows to exactly 0, and attacks on the probabilities (JSMA on F) stall while attacks
on the logits still succeed. Two experiments test that mechanism without training:

* **Scale alone** (:class:`ScaledLogits`): the undistilled baseline with its logits
  multiplied by T. Its decisions are the baseline's; if JSMA on F fails on it as on the
  student at T while JSMA on Z still succeeds, scaling the logits is enough.
* **Precision alone** (:class:`InFloat64`): the T = 100 student run in float64, where the
  softmax underflows only for logit gaps above ~745 instead of ~104. If the paper's attack
  succeeds again, what stopped it was the arithmetic, not the model. Where the gaps exceed
  even float64's range, :class:`ExactJSMA` makes the pair choice JSMA on F would make in
  exact arithmetic.

:func:`run_ablations` measures both (JSMA success rates with Wilson intervals, zero-Jacobian
fractions and gradient amplitudes) and returns a JSON-ready dict.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from defdistill.attacks.jsma import JSMA
from defdistill.evaluation.gradients import gradient_amplitude, log10_gradient_amplitude
from defdistill.evaluation.protocol import paper_success_rate
from defdistill.evaluation.stats import MeanEstimate, Proportion
from defdistill.inference import predict_logits

logger = logging.getLogger(__name__)


class ScaledLogits(nn.Module):
    """``factor × model(x)``: a network's logits multiplied by a constant, no training.

    With ``factor = T`` this is what defensive distillation at temperature T does to the
    logits, by Carlini & Wagner's account (arXiv:1607.04311), without its training: the
    predictions (``argmax``) are the model's own, the deployed softmax ``softmax(factor·z)``
    saturates as the student's does (Papernot et al. 2016, arXiv:1511.04508).

    Args:
        model: classifier returning logits.
        factor: the multiplier, finite and > 0.
    """

    def __init__(self, model: nn.Module, factor: float) -> None:
        super().__init__()
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not (
            math.isfinite(factor) and factor > 0
        ):
            raise ValueError(f"factor must be a finite number > 0, got {factor!r}")
        self.model = model
        self.factor = float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * self.model(x)


class InFloat64(nn.Module):
    """A float64 copy of ``model`` (the original is left in its own precision).

    Inputs are cast to float64 and the logits come back in float64. Give it float64 inputs
    (``x.double()``) when differentiating w.r.t. the input: a float32 input would receive
    its gradient rounded back to float32, where a saturated softmax's derivatives
    (Papernot et al. 2016, arXiv:1511.04508, Section V-B) underflow again. The attacks and
    :func:`defdistill.evaluation.gradients.gradient_amplitude` keep float64 inputs in
    float64 throughout.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.double())


class ExactJSMA(JSMA):
    """JSMA on the probabilities F with the pair chosen as in exact arithmetic.

    ``dF_t/dx = F_t · d(log F_t)/dx``, and ``F_t > 0`` for every finite logit: a positive
    factor per image changes neither the sign nor the ranking of the features that JSMA's
    saliency map on F uses (Papernot et al., arXiv:1511.07528; on F, the best pair is the
    two features with the largest ``θ·dF_t/dx``), only whether floating point can
    represent them. This attack ranks the features by ``d(log F_t)/dx`` (the log-softmax
    derivative ``(δ_tc - F_c) / T`` w.r.t. the logits, with ``1 - F_t`` summed as
    ``Σ_{c≠t} F_c``), so it makes the choice JSMA on F (``on="probs"``) makes where ``F_t``
    does not underflow (up to rounding ties), and the choice exact arithmetic would make
    where it does. Same arguments as :class:`~defdistill.attacks.jsma.JSMA` (``on`` is ``"probs"``).
    """

    def __init__(self, theta: float = 1.0, gamma: float = 0.145, temperature: float = 1.0,
                 *, batch_size: int | None = None) -> None:  # fmt: skip
        super().__init__(theta, gamma, "probs", temperature, batch_size=batch_size)

    def _forward_derivatives(
        self, logits: torch.Tensor, t: torch.Tensor, xa: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        is_t = F.one_hot(t, logits.shape[1]).bool()
        with torch.no_grad():
            s = F.softmax(logits / self.temperature, dim=1)
            s_other = s.masked_fill(is_t, 0.0).sum(dim=1, keepdim=True)
            cot = torch.where(is_t, s_other, -s) / self.temperature  # d log F_t / dz
        (alpha,) = torch.autograd.grad((logits * cot).sum(), xa)
        return alpha, -alpha


def jsma_success(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, on: str, targets: str = "all", gamma: float = 0.145
) -> Proportion:
    """The paper's success rate of JSMA (θ = +1, at most ``gamma`` of the features, default
    the paper's 14.5 %, deployed at T = 1) toward every other class (Papernot et al. 2016,
    arXiv:1511.04508, Section V-B), with its interval.

    ``on="probs"`` is the paper's attack on ``F``, ``on="logits"`` the one on ``Z``,
    ``on="exact"`` the paper's attack with the pair chosen in exact arithmetic
    (:class:`ExactJSMA`). The
    interval counts attempts as independent trials (the 9 attempts of one image are not:
    read it as a lower bound on the uncertainty).
    """
    attack = ExactJSMA(gamma=gamma) if on == "exact" else JSMA(gamma=gamma, on=on)
    report = paper_success_rate(model, attack, x, y, targets=targets)
    return Proportion.of(report.successes, report.attempts)


def gradient_row(model: nn.Module, x: torch.Tensor, seed: int = 0) -> dict[str, Any]:
    """The deployed softmax's Jacobian (T = 1) in ``x``'s precision as an attack sees it.

    Per image, the mean ``|dF_c/dx_i|`` (:func:`gradient_amplitude`) in the dtype of ``x``
    and the model, its mean over images with a bootstrap interval, and the fraction of
    images where it is exactly 0 with a Wilson interval; beside them the median exact
    ``log10`` amplitude (:func:`log10_gradient_amplitude`, the same in any precision) and
    the median gap between the two largest logits: ``exp`` of minus the gap underflows
    beyond about 104 in float32 and 745 in float64, and the softmax Jacobian with it.
    """
    amplitude = gradient_amplitude(model, x).double()
    top = predict_logits(model, x).double().topk(2, dim=1).values
    exact = log10_gradient_amplitude(model, x.float() if x.dtype == torch.float64 else x)
    return {
        "dtype": str(x.dtype).removeprefix("torch."),
        "zero_jacobian": Proportion.from_mask(amplitude == 0).to_dict(),
        "amplitude": MeanEstimate.of(amplitude, seed=seed).to_dict(),
        "median_log10_exact": float(exact.median()) if len(exact) else None,
        "median_logit_gap": float((top[:, 0] - top[:, 1]).median()) if len(x) else None,
    }


def run_ablations(
    baseline: nn.Module,
    student: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    temperature: float,
    jsma_images: int | None = None,
    targets: str = "all",
    seed: int = 0,
) -> dict[str, Any]:
    """Both ablations on the same correctly classified images (float32 inputs in [0, 1]).

    Rows, each measured on the first ``jsma_images`` images for JSMA (all by default) and on
    all of ``x`` for the gradients:

    * ``baseline``: the undistilled network (float32), the reference;
    * ``baseline_scaled``: :class:`ScaledLogits` ``(baseline, temperature)`` in float32
      (scale alone) and in float64 (scale without underflow);
    * ``student``: the distilled network at ``temperature`` in float32, and in float64
      (precision alone, :class:`InFloat64`).

    Each row has JSMA on F (``jsma_f``) and, in float32, JSMA on Z (``jsma_z``) and (but
    for the baseline) JSMA on F in exact arithmetic (``jsma_f_exact``, :class:`ExactJSMA`)
    as :class:`Proportion` dicts, and :func:`gradient_row`. ``comparisons`` says whether the
    intervals of the rates the two questions compare separate.
    """
    k = len(x) if jsma_images is None else min(jsma_images, len(x))
    xj, yj = x[:k], y[:k]
    scaled = ScaledLogits(baseline, temperature)
    models = {
        "baseline": (baseline, torch.float32),
        "baseline_scaled": (scaled, torch.float32),
        "baseline_scaled_float64": (InFloat64(scaled), torch.float64),
        "student": (student, torch.float32),
        "student_float64": (InFloat64(student), torch.float64),
    }
    rates: dict[str, dict[str, Proportion]] = {}
    rows: dict[str, dict[str, Any]] = {}
    for name, (model, dtype) in models.items():
        logger.info("ablation row %s (%s)", name, dtype)
        rate = {"jsma_f": jsma_success(model, xj.to(dtype), yj, "probs", targets)}
        if dtype == torch.float32:
            rate["jsma_z"] = jsma_success(model, xj, yj, "logits", targets)
            if name != "baseline":
                rate["jsma_f_exact"] = jsma_success(model, xj, yj, "exact", targets)
        rates[name] = rate
        rows[name] = {key: p.to_dict() for key, p in rate.items()}
        rows[name].update(gradient_row(model, x.to(dtype), seed))

    def below(low: str, high: str, key: str, high_key: str | None = None) -> bool:
        """Whether ``rates[low][key]``'s interval lies below ``rates[high][high_key or key]``'s."""
        return rates[low][key].high < rates[high][high_key or key].low

    def separated(a: str, b: str, key: str) -> bool:
        return rates[a][key].separated_from(rates[b][key])

    comparisons = {
        # scale alone: does F fail on the scaled baseline where it succeeds on the baseline,
        # as on the student, and does Z still succeed?
        "scaled_f_below_baseline_f": below("baseline_scaled", "baseline", "jsma_f"),
        "scaled_f_separated_from_student_f": separated("baseline_scaled", "student", "jsma_f"),
        "scaled_z_separated_from_baseline_z": separated("baseline_scaled", "baseline", "jsma_z"),
        # precision alone: does F succeed again once the softmax no longer underflows?
        "student_float64_f_above_float32_f": below("student", "student_float64", "jsma_f"),
        "scaled_float64_f_above_float32_f": below("baseline_scaled", "baseline_scaled_float64", "jsma_f"),
        # and in exact arithmetic, where even float64 underflows?
        "student_exact_f_above_float32_f": below("student", "student", "jsma_f", "jsma_f_exact"),
    }
    return {
        "temperature": float(temperature),
        "images": len(x),
        "jsma_images": k,
        "targets": targets,
        "jsma": {"gamma": 0.145, "theta": 1.0, "deployed_temperature": 1.0},
        "rows": rows,
        "comparisons": comparisons,
    }

