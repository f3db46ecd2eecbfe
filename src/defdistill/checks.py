"""Gradient-masking checks: cheap signs that an evaluation is fooled by the model.

In the spirit of AutoAttack's ``checks.py`` (Croce & Hein, arXiv:2003.01690) and of
Carlini & Wagner's analysis of defensive distillation (arXiv:1607.04311): a defence whose
softmax saturates, whose loss gradient vanishes, or against which a weaker attack beats a
stronger one is probably masking gradients rather than being robust. Each check returns
a :class:`Finding` with a severity and an explanation a user can act on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from defdistill.attacks.base import eval_mode


class Severity(StrEnum):
    """How much a finding should worry the evaluator."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Finding:
    """The outcome of one check.

    Attributes:
        check: name of the check.
        severity: ``ok`` when nothing suspicious was found.
        value: the measured quantity (a fraction, a ratio, ...).
        message: what was found and what it means, in plain words.
    """

    check: str
    severity: Severity
    value: float
    message: str

    @property
    def flagged(self) -> bool:
        return self.severity is not Severity.OK

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "severity": self.severity.value, "flagged": self.flagged}


def _loss_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with eval_mode(model):
        x = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad.flatten(1)


def check_zero_gradients(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, tiny: float = 1e-12,
    max_fraction: float = 0.1,
) -> Finding:  # fmt: skip
    """Fraction of inputs whose cross-entropy gradient (deployed softmax) is zero or tiny.

    ``tiny`` bounds the largest absolute gradient entry counted as numerically zero.
    """
    grad = _loss_gradients(model, x, y)
    peak = grad.abs().max(1).values
    zero = float((peak <= tiny).float().mean())
    exact = float((peak == 0).float().mean())
    if zero > max_fraction:
        return Finding(
            "zero_gradients", Severity.CRITICAL, zero,
            f"{zero:.0%} of inputs have a numerically zero loss gradient ({exact:.0%} exactly "
            "zero): gradient attacks on the softmax cannot move them. Attack the logits "
            "(C&W, JSMA on Z, PGD on Z/T) before trusting any robustness number.",
        )  # fmt: skip
    return Finding("zero_gradients", Severity.OK, zero,
                   f"{zero:.0%} of inputs have a numerically zero loss gradient.")  # fmt: skip


def check_softmax_saturation(
    model: nn.Module, x: torch.Tensor, max_fraction: float = 0.1
) -> Finding:
    """Fraction of inputs whose deployed softmax gives a class probability of exactly 1.0."""
    with eval_mode(model), torch.no_grad():
        probs = torch.softmax(model(x).float(), dim=1)
    saturated = float((probs.max(1).values == 1.0).float().mean())
    if saturated > max_fraction:
        return Finding(
            "softmax_saturation", Severity.WARNING, saturated,
            f"the softmax is saturated (max probability == 1.0 in float32) on {saturated:.0%} "
            "of inputs: its Jacobian underflows, a hallmark of defensive distillation's "
            "gradient masking.",
        )  # fmt: skip
    return Finding("softmax_saturation", Severity.OK, saturated,
                   f"the softmax is saturated on {saturated:.0%} of inputs.")  # fmt: skip


def check_outputs_are_logits(model: nn.Module, x: torch.Tensor) -> Finding:
    """Flags a model whose outputs look like probabilities (in [0, 1], rows summing to 1)."""
    with eval_mode(model), torch.no_grad():
        out = model(x).float()
    looks_like_probs = bool(
        (out >= 0).all() and (out <= 1).all() and torch.allclose(out.sum(1), torch.ones(len(out)),
                                                                 atol=1e-3)
    )  # fmt: skip
    if looks_like_probs:
        return Finding(
            "outputs_are_logits", Severity.CRITICAL, 1.0,
            "the model outputs probabilities, not logits: losses computed on them (and the "
            "C&W margin) attack a saturating function. Remove the final softmax.",
        )  # fmt: skip
    return Finding("outputs_are_logits", Severity.OK, 0.0, "the model outputs logits.")


def check_probs_vs_logits(
    success_on_probs: float, success_on_logits: float, attack: str = "JSMA", min_gap: float = 0.3,
    adaptive: str | None = None,
) -> Finding:
    """Flags an attack that fails on the probabilities where the same attack on logits works.

    ``adaptive`` names the logit-based variant (default ``"<attack> on Z"``).
    """
    gap = success_on_logits - success_on_probs
    adaptive = adaptive or f"{attack} on Z"
    text = f"{attack} on F {success_on_probs:.1%} vs {adaptive} {success_on_logits:.1%}"
    if gap >= min_gap:
        return Finding(
            "probs_vs_logits", Severity.CRITICAL, gap,
            f"{text}: the same attack succeeds once it differentiates the logits instead of "
            "the softmax; the apparent robustness is gradient masking.",
        )  # fmt: skip
    return Finding("probs_vs_logits", Severity.OK, gap, f"{text}: no gap.")


def check_transfer_vs_whitebox(
    transfer_success: float, whitebox_success: float, min_gap: float = 0.1
) -> Finding:
    """Flags a black-box (transfer) attack that beats the white-box attack at the same budget."""
    gap = transfer_success - whitebox_success
    text = f"transfer {transfer_success:.1%} vs white-box {whitebox_success:.1%}"
    if gap >= min_gap:
        return Finding(
            "transfer_vs_whitebox", Severity.CRITICAL, gap,
            f"{text}: examples crafted on another model fool this one more often than "
            "attacks using its own gradients, which therefore are uninformative (masked).",
        )  # fmt: skip
    return Finding("transfer_vs_whitebox", Severity.OK, gap, f"{text}.")


@dataclass(frozen=True)
class Verdict:
    """Overall conclusion of an audit."""

    masking: bool
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(findings: list[Finding], robust_accuracy: float | None = None) -> Verdict:
    """Gradient masking if any critical finding; otherwise report the strongest attack's result."""
    critical = [f for f in findings if f.severity is Severity.CRITICAL]
    if critical:
        reasons = "; ".join(f.message.split(":")[0] for f in critical)
        return Verdict(True, f"apparent robustness is gradient masking: {reasons}")
    if robust_accuracy is not None:
        return Verdict(False, f"no sign of gradient masking; accuracy under the strongest "
                              f"attack at the standard budget: {robust_accuracy:.1%}")  # fmt: skip
    return Verdict(False, "no sign of gradient masking")
