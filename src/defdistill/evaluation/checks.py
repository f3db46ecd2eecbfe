"""Gradient-masking checks: cheap signs that an evaluation is fooled by the model.

In the spirit of AutoAttack's ``checks.py`` (Croce & Hein, arXiv:2003.01690) and of
Carlini & Wagner's analysis of defensive distillation (arXiv:1607.04311): a defence whose
softmax saturates, whose loss gradient vanishes, or against which a weaker attack beats a
stronger one is probably masking gradients rather than being robust. Each check returns
a :class:`Finding` with a severity and an explanation a user can act on.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import torch
from torch import nn

from defdistill.evaluation.stats import Proportion, share
from defdistill.inference import eval_mode
from defdistill.names import AttackId, CheckId


class Severity(StrEnum):
    """How much a finding should worry the evaluator."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Finding:
    """The outcome of one check.

    Attributes:
        check: which check.
        severity: ``ok`` when nothing suspicious was found.
        value: the measured quantity (a fraction, a ratio, ...).
        message: what was found and what it means, in plain words (for people; code reads
            ``check``, ``severity`` and ``attacks``).
        attacks: the ids of the attacks the check compares, if any.
    """

    check: CheckId
    severity: Severity
    value: float
    message: str
    attacks: tuple[AttackId, ...] = ()

    @property
    def flagged(self) -> bool:
        return self.severity is not Severity.OK

    def to_dict(self) -> dict[str, Any]:
        return {"check": str(self.check), "severity": str(self.severity), "value": self.value,
                "message": self.message, "attacks": [str(a) for a in self.attacks],
                "flagged": self.flagged}  # fmt: skip


def check_zero_gradients(zero_fraction: float, max_fraction: float = 0.1) -> Finding:
    """Flags a model whose softmax Jacobian is exactly zero on many inputs."""
    if zero_fraction > max_fraction:
        return Finding(
            CheckId.ZERO_GRADIENTS, Severity.CRITICAL, zero_fraction,
            f"{share(zero_fraction)} of inputs have an exactly zero softmax Jacobian in float32: "
            "gradient attacks on the softmax cannot move them. Attack the logits "
            "(C&W, JSMA on Z, PGD with the margin loss) before trusting any robustness number.",
        )  # fmt: skip
    return Finding(CheckId.ZERO_GRADIENTS, Severity.OK, zero_fraction,
                   f"{share(zero_fraction)} of inputs have an exactly zero softmax Jacobian.")  # fmt: skip


def check_softmax_saturation(saturated_fraction: float, max_fraction: float = 0.1) -> Finding:
    """Flags a deployed softmax giving a class probability of exactly 1.0 on many inputs."""
    if saturated_fraction > max_fraction:
        return Finding(
            CheckId.SOFTMAX_SATURATION, Severity.WARNING, saturated_fraction,
            f"the softmax is saturated (max probability == 1.0 in float32) on "
            f"{share(saturated_fraction)} of inputs: its Jacobian underflows, a hallmark of "
            "defensive distillation's gradient masking.",
        )  # fmt: skip
    return Finding(CheckId.SOFTMAX_SATURATION, Severity.OK, saturated_fraction,
                   f"the softmax is saturated on {share(saturated_fraction)} of inputs.")  # fmt: skip


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
            CheckId.OUTPUTS_ARE_LOGITS, Severity.CRITICAL, 1.0,
            "the model outputs probabilities, not logits: losses computed on them (and the "
            "C&W margin) attack a saturating function. Remove the final softmax.",
        )  # fmt: skip
    return Finding(CheckId.OUTPUTS_ARE_LOGITS, Severity.OK, 0.0, "the model outputs logits.")


def _gap(check: CheckId, gap: float, min_gap: float, text: str, meaning: str, ok: str = ".",
         attacks: tuple[AttackId, ...] = ()) -> Finding:  # fmt: skip
    """A critical finding when one attack beats another by ``min_gap`` or more."""
    if gap >= min_gap:
        return Finding(check, Severity.CRITICAL, gap, f"{text}: {meaning}", attacks)
    return Finding(check, Severity.OK, gap, f"{text}{ok}", attacks)


def check_probs_vs_logits(
    success_on_probs: float, success_on_logits: float, attack: str = "JSMA", min_gap: float = 0.3,
    adaptive: str | None = None, attacks: tuple[AttackId, ...] = (),
) -> Finding:
    """Flags an attack that fails on the probabilities where the same attack on logits works.

    ``adaptive`` names the logit-based variant (default ``"<attack> on Z"``); ``attacks``
    the ids of the two attacks compared.
    """
    adaptive = adaptive or f"{attack} on Z"
    return _gap(
        CheckId.PROBS_VS_LOGITS, success_on_logits - success_on_probs, min_gap,
        f"{attack} on F {success_on_probs:.1%} vs {adaptive} {success_on_logits:.1%}",
        "the same attack succeeds once it differentiates the logits instead of the softmax; the "
        "apparent robustness is gradient masking.", ok=": no gap.", attacks=attacks,
    )  # fmt: skip


def check_transfer_vs_whitebox(
    transfer_success: float, whitebox_success: float, min_gap: float = 0.1
) -> Finding:  # fmt: skip
    """Flags a black-box (transfer) attack that beats the white-box attack at the same budget."""
    return _gap(
        CheckId.TRANSFER_VS_WHITEBOX, transfer_success - whitebox_success, min_gap,
        f"transfer {transfer_success:.1%} vs white-box {whitebox_success:.1%}",
        "examples crafted on another model fool this one more often than attacks using its own "
        "gradients, which therefore are uninformative (masked).",
        attacks=(AttackId.TRANSFER, AttackId.PGD_CE_F),
    )  # fmt: skip


def check_gradient_free_vs_gradient(
    gradient_free_success: float, gradient_success: float, min_gap: float = 0.1
) -> Finding:
    """Flags a gradient-free attack (Square) beating every gradient attack at the same budget
    (Carlini et al. 2019, arXiv:1902.06705, Section 5: gradient-free attacks as a sanity check)."""
    return _gap(
        CheckId.GRADIENT_FREE_VS_GRADIENT, gradient_free_success - gradient_success, min_gap,
        f"gradient-free {gradient_free_success:.1%} vs best gradient attack {gradient_success:.1%}",
        "an attack that never differentiates the model succeeds more often than those that "
        "follow its gradients, which are therefore uninformative (masked).", attacks=(AttackId.SQUARE,),
    )  # fmt: skip


def check_accuracy_falls_with_eps(accuracy: float, eps: float, max_accuracy: float = 0.1) -> Finding:
    """Flags accuracy that does not reach ~0 under an attack with an unbounded budget
    (Carlini et al. 2019, Section 5: with ε covering the whole input range, any input can be
    turned into any other, so a sound attack must succeed)."""
    text = f"accuracy {accuracy:.1%} under APGD at L∞ ε = {eps:g}"
    if accuracy > max_accuracy:
        return Finding(
            CheckId.ACCURACY_VS_EPS, Severity.CRITICAL, accuracy,
            f"{text}: an attack allowed to change every pixel arbitrarily should reach ~0 %; "
            "if it does not, its gradients lead nowhere (masked), whatever it reports at small ε.",
            (AttackId.APGD_CE_UNBOUNDED,),
        )  # fmt: skip
    return Finding(CheckId.ACCURACY_VS_EPS, Severity.OK, accuracy, f"{text}: falls to ~0 as ε grows.",
                   (AttackId.APGD_CE_UNBOUNDED,))  # fmt: skip


def check_more_effort(gain: float, factor: float, max_gain: float = 0.05) -> Finding:
    """Warns when a stronger run of the same attack (``factor`` times the steps × restarts)
    still lowers the accuracy (Carlini et al. 2019, Section 5: report attacks run to
    convergence)."""
    text = f"{factor:g}x the APGD effort lowers accuracy by {gain:.1%}"
    if gain > max_gain:
        return Finding(
            CheckId.MORE_EFFORT, Severity.WARNING, gain,
            f"{text}: the attacks had not converged; the robust accuracy is an upper bound "
            "that more steps or restarts would lower further.", (AttackId.APGD_CE, AttackId.APGD_CE_EFFORT),
        )  # fmt: skip
    return Finding(CheckId.MORE_EFFORT, Severity.OK, gain, f"{text}: converged.",
                   (AttackId.APGD_CE, AttackId.APGD_CE_EFFORT))  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """Overall conclusion of an audit."""

    masking: bool
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"masking": self.masking, "text": self.text}


def _with_interval(p: Proportion) -> str:
    """``90.0 % [85.1, 93.4]``: the rate and its 95 % Wilson interval, in percent."""
    if not p.n:
        return "– (no image)"
    return f"{100 * p.rate:.1f} % [{100 * p.low:.1f}, {100 * p.high:.1f}]"


def verdict(findings: list[Finding], robust_accuracy: Proportion | None = None,
            conditional: Proportion | None = None) -> Verdict:  # fmt: skip
    """Gradient masking if any critical finding; otherwise the robust accuracy: unconditional
    (clean errors count as failures) and, when given, ``conditional`` on clean-correct images,
    each with its sample size and 95 % Wilson interval, e.g. "90.0 % [85.1, 93.4] of 200
    images (94.7 % [90.6, 97.1] of the 190 correctly classified)"."""
    critical = [f for f in findings if f.severity is Severity.CRITICAL]
    if critical:
        reasons = "; ".join(f.message.split(":")[0] for f in critical)
        return Verdict(True, f"apparent robustness is gradient masking: {reasons}")
    if robust_accuracy is not None:
        beside = ("" if conditional is None
                  else f" ({_with_interval(conditional)} of the {conditional.n} correctly classified)")
        return Verdict(False, "no sign of gradient masking; robust accuracy at the standard budget "
                              f"(per image, no attack fooled it): {_with_interval(robust_accuracy)} "
                              f"of {robust_accuracy.n} images{beside}")  # fmt: skip
    return Verdict(False, "no sign of gradient masking")


@dataclass(frozen=True)
class Evidence:
    """What the masking rule looks at, measured by ``audit`` or by the reproduction.

    Success rates are fractions of attempts (the robust accuracies, which the verdict states,
    are counts with their intervals); PGD is at the standard L∞ budget of the data
    (MNIST 0.3, colour 8/255). ``None`` means not measured, and its check is skipped.

    Attributes:
        jsma_f, jsma_z, jsma_t: JSMA on the softmax F, on the logits Z (the stronger of
            the two logit saliencies, :func:`.battery.jsma_on_logits`), and on
            softmax(Z / T) with the training temperature (distilled models only).
        pgd_f, pgd_zt, pgd_margin: PGD with cross-entropy on F, with cross-entropy on
            Z / T, and with the logit margin.
        transfer: examples crafted on an undefended reference, success on this model.
        zero_gradient_fraction: :func:`zero_gradient_fraction`.
        saturated_fraction: inputs whose deployed softmax has a probability of exactly 1.
        outputs_are_logits: :func:`check_outputs_are_logits`'s finding, when it was run.
        gradient_free: success of a gradient-free attack (Square) at the standard budget;
            compared with ``gradient``, the best success of the gradient attacks there.
        accuracy_unbounded, unbounded_eps: accuracy under APGD at an ε covering the input range.
        effort_gain, effort_factor: accuracy lost when APGD runs with ``effort_factor``
            times the steps × restarts.
        robust_accuracy, robust_accuracy_conditional: the per-image worst case over the
            attacks at the standard budget, unconditional (clean errors count as failures)
            and on the correctly classified images: how many of how many, with their
            Wilson intervals.
    """

    jsma_f: float | None = None
    jsma_z: float | None = None
    jsma_t: float | None = None
    pgd_f: float | None = None
    pgd_zt: float | None = None
    pgd_margin: float | None = None
    transfer: float | None = None
    zero_gradient_fraction: float | None = None
    saturated_fraction: float | None = None
    outputs_are_logits: Finding | None = None
    gradient_free: float | None = None
    gradient: float | None = None
    accuracy_unbounded: float | None = None
    unbounded_eps: float | None = None
    effort_gain: float | None = None
    effort_factor: float | None = None
    robust_accuracy: Proportion | None = None
    robust_accuracy_conditional: Proportion | None = None


def assess(evidence: Evidence) -> tuple[list[Finding], Verdict]:
    """The one masking rule: every applicable check, then :func:`verdict`.

    ``defdistill audit`` and ``defdistill reproduce`` both decide with it, so the same
    measurements of the same model always get the same verdict.
    """
    e = evidence
    findings = [] if e.outputs_are_logits is None else [e.outputs_are_logits]
    if e.saturated_fraction is not None:
        findings.append(check_softmax_saturation(e.saturated_fraction))
    if e.zero_gradient_fraction is not None:
        findings.append(check_zero_gradients(e.zero_gradient_fraction))
    pairs = [
        (e.jsma_f, e.jsma_z, "JSMA", "JSMA on Z", (AttackId.JSMA_F, AttackId.JSMA_Z)),
        (e.jsma_f, e.jsma_t, "JSMA", "JSMA on softmax(Z/T)", (AttackId.JSMA_F, AttackId.JSMA_ZT)),
        (e.pgd_f, e.pgd_zt, "PGD", "PGD CE on Z/T", (AttackId.PGD_CE_F, AttackId.PGD_CE_ZT)),
        (e.pgd_f, e.pgd_margin, "PGD", "PGD margin on Z", (AttackId.PGD_CE_F, AttackId.PGD_MARGIN)),
    ]
    for on_probs, on_logits, attack, adaptive, ids in pairs:
        if on_probs is not None and on_logits is not None:
            findings.append(check_probs_vs_logits(on_probs, on_logits, attack, adaptive=adaptive,
                                                  attacks=ids))  # fmt: skip
    if e.transfer is not None and e.pgd_f is not None:
        findings.append(check_transfer_vs_whitebox(e.transfer, e.pgd_f))
    if e.gradient_free is not None and e.gradient is not None:
        findings.append(check_gradient_free_vs_gradient(e.gradient_free, e.gradient))
    if e.accuracy_unbounded is not None and e.unbounded_eps is not None:
        findings.append(check_accuracy_falls_with_eps(e.accuracy_unbounded, e.unbounded_eps))
    if e.effort_gain is not None and e.effort_factor is not None:
        findings.append(check_more_effort(e.effort_gain, e.effort_factor))
    return findings, verdict(findings, e.robust_accuracy, e.robust_accuracy_conditional)
