"""The project's vocabulary: every name the library and the command line share, as enums.

Torch-free, so the command line's parsers offer these as choices without importing torch
(``defdistill --help`` stays fast); the library imports the same enums, so a name is
defined once (RobustBench's ``enums.py`` does the same for data sets and threat models).
Each enum is a :class:`~enum.StrEnum`: a member compares equal to its value, is written to
JSON as that value, and ``Enum("value")`` parses it back. The data sets' names live in
:mod:`defdistill.data.names` (also torch-free).

Attack ids are short and stable (AutoAttack's convention, ``apgd-ce``, ``apgd-t``,
``square``): results, evidence and reports are keyed by them, and human-readable names
appear only in what a person reads. An attack at a budget other than the primary one of
its threat model is keyed ``<id>@<eps>`` (:func:`attack_key`).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

__all__ = [
    "META",
    "UNTARGETED",
    "AdversarialMethod",
    "Architecture",
    "AttackId",
    "CheckId",
    "ExecutorKind",
    "JsmaOn",
    "Loss",
    "Norm",
    "Role",
    "StatementKind",
    "TargetMode",
    "attack_key",
    "values",
]


def values(members: Iterable[StrEnum]) -> tuple[str, ...]:
    """The values of an enum's members (or of a tuple of members), in order: a parser's ``choices``."""
    return tuple(member.value for member in members)


class Precision(StrEnum):
    """The number format training computes in (:func:`defdistill.devices.resolve_precision`)."""

    FP32 = "fp32"
    BF16 = "bf16"
    AUTO = "auto"  # bf16 where the hardware computes it natively, fp32 elsewhere


class Norm(StrEnum):
    """The norm that bounds a perturbation: half of a threat model (the other is its ε)."""

    LINF = "linf"
    L2 = "l2"


class Loss(StrEnum):
    """What a gradient attack ascends.

    ``ce``: cross-entropy on ``softmax(Z / T)``; ``margin``: the best other logit minus the
    true one (Carlini & Wagner, arXiv:1608.04644), which does not saturate; ``dlr``: the
    difference of logits ratio of APGD (Croce & Hein 2020, arXiv:2003.01690).
    """

    CE = "ce"
    MARGIN = "margin"
    DLR = "dlr"


PGD_LOSSES: tuple[Loss, ...] = (Loss.CE, Loss.MARGIN)  # FGSM and PGD
APGD_LOSSES: tuple[Loss, ...] = (Loss.CE, Loss.DLR)


class JsmaOn(StrEnum):
    """What JSMA differentiates (Papernot et al., arXiv:1511.07528).

    ``probs``: the softmax F, the paper's attack; ``logits``: the logits Z with the
    paper's pairwise saliency (the adaptive variant); ``target_logit``: the target logit
    alone, as ART's saliency map.
    """

    PROBS = "probs"
    LOGITS = "logits"
    TARGET_LOGIT = "target_logit"


class TargetMode(StrEnum):
    """Which classes a targeted evaluation aims at."""

    ALL = "all"  # every other class: the paper's protocol (Papernot et al. 2016, Section V-B)
    NEXT = "next"  # (y + 1) mod K
    RANDOM = "random"  # one uniformly drawn other class per sample

    @classmethod
    def parse(cls, value: str) -> TargetMode:
        """``value`` as a mode, or a ValueError naming the choices."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"targets must be one of {', '.join(values(cls))}, got {value!r}") from None


UNTARGETED = "none"  # what an attack aims at when no TargetMode applies: any other class


class Role(StrEnum):
    """What a trained network is in a run (``meta.json``'s ``role``)."""

    BASELINE = "baseline"
    TEACHER = "teacher"
    STUDENT = "student"
    TRAINED_AT_T = "trained_at_T"  # trained at T on hard labels, not distilled
    ADVERSARIAL = "adversarial"


class AdversarialMethod(StrEnum):
    """How adversarial training crafts its batches (:mod:`defdistill.training.adversarial`)."""

    PGD = "pgd"
    FGSM_RS = "fgsm-rs"
    TRADES = "trades"  # Zhang et al. 2019, arXiv:1901.08573: CE on x plus β KL(f(x) || f(x'))


class Architecture(StrEnum):
    """The built-in networks (:func:`defdistill.models.available_models` adds registered ones)."""

    CIFAR10_CNN = "cifar10_cnn"
    MNIST_CNN = "mnist_cnn"


class ExecutorKind(StrEnum):
    """Where the reproduction's units run."""

    LOCAL = "local"
    RAY = "ray"


class AttackId(StrEnum):
    """The attacks of the batteries (:mod:`defdistill.evaluation.battery`), by short id.

    ``f``: on the softmax F; ``z``: on the logits Z; ``zt``: on ``Z / T`` with the training
    temperature. Every L∞ id is at the data's primary budget unless keyed ``<id>@<eps>``.
    """

    PGD_CE_F = "pgd-ce-f"  # PGD L∞, cross-entropy on F (Madry et al., arXiv:1706.06083)
    PGD_CE_ZT = "pgd-ce-zt"  # the same on softmax(Z / T): the adaptive attack on distillation
    PGD_MARGIN = "pgd-margin"  # PGD L∞ on the logit margin
    APGD_CE = "apgd-ce"  # APGD, cross-entropy (Croce & Hein 2020, arXiv:2003.01690)
    APGD_T = "apgd-t"  # APGD, targeted DLR toward the most likely other classes
    SQUARE = "square"  # Square, gradient-free (Andriushchenko et al., arXiv:1912.00049)
    APGD_CE_EFFORT = "apgd-ce-effort"  # APGD-CE with more steps and restarts (convergence)
    APGD_CE_UNBOUNDED = "apgd-ce-unbounded"  # APGD-CE at an ε covering the input range
    APGD_CE_L2 = "apgd-ce-l2"  # APGD-CE at the L2 budget
    PGD_L2 = "pgd-l2"  # PGD at the L2 budget (on Z / T for a distilled model)
    JSMA_F = "jsma-f"  # the paper's attack, toward every other class
    JSMA_Z = "jsma-z"  # JSMA on the logits (the stronger of the two logit saliencies)
    JSMA_ZT = "jsma-zt"  # JSMA on softmax(Z / T)
    CW_L2 = "cw-l2"  # Carlini & Wagner L2 (arXiv:1608.04644), minimum distortion
    TRANSFER = "transfer"  # PGD L∞ crafted on an undefended reference model
    # the structure-blind probes' attacks (defdistill.evaluation.probes)
    EOT_APGD_CE = "eot-apgd-ce"  # APGD-CE on the expectation over a random model's draws
    SMOOTHED_APGD_CE = "smoothed-apgd-ce"  # APGD-CE on the gradient of the Gaussian smoothing (EOT or NES)
    SURROGATE_TRANSFER = "transfer-surrogate"  # PGD crafted on a surrogate trained on the model's labels
    BPDA_APGD_CE = "bpda-apgd-ce"  # APGD-CE through a named preprocessing layer taken as the identity


def attack_key(attack: AttackId, eps: float | None = None) -> str:
    """The key of ``attack`` in a battery's results: its id, ``<id>@<eps>`` off the primary budget."""
    return str(attack) if eps is None else f"{attack}@{eps:.3g}"


class CheckId(StrEnum):
    """The gradient-masking checks (:mod:`defdistill.evaluation.checks`)."""

    OUTPUTS_ARE_LOGITS = "outputs_are_logits"
    SOFTMAX_SATURATION = "softmax_saturation"
    ZERO_GRADIENTS = "zero_gradients"
    PROBS_VS_LOGITS = "probs_vs_logits"
    TRANSFER_VS_WHITEBOX = "transfer_vs_whitebox"
    GRADIENT_FREE_VS_GRADIENT = "gradient_free_vs_gradient"
    ACCURACY_VS_EPS = "accuracy_vs_eps"
    MORE_EFFORT = "more_effort"
    # the structure-blind probes (defdistill.evaluation.probes; Pintor et al. 2022's indicators)
    UNSTABLE_PREDICTIONS = "unstable_predictions"
    STOCHASTIC_GRADIENTS = "stochastic_gradients"
    EOT_VS_SINGLE_DRAW = "eot_vs_single_draw"
    UNAVAILABLE_GRADIENTS = "unavailable_gradients"
    SHATTERED_GRADIENTS = "shattered_gradients"
    SURROGATE_TRANSFER_VS_WHITEBOX = "surrogate_transfer_vs_whitebox"


class StatementKind(StrEnum):
    """What a statement of the reproduction's report is about (:mod:`defdistill.experiments.report`)."""

    PAPER_ATTACK = "paper_attack"  # JSMA on F against the baseline and the hottest student
    VERDICT = "verdict"  # the masking rule's verdict on the hottest student
    MASKING = "masking"  # why the verdict is masking: the adaptive attacks' numbers
    ADAPTIVE = "adaptive"  # the adaptive attacks' numbers when there is no masking
    ROBUST_ACCURACY = "robust_accuracy"  # per-image worst case, unconditional and conditional
    GRADIENTS = "gradients"  # the softmax Jacobian's amplitude
    SOFT_LABELS = "soft_labels"  # the teachers' soft labels' entropy
    SCALED_COPY = "scaled_copy"  # whether two students are one network with scaled logits
    POSITIVE_CONTROL = "positive_control"  # the adversarially trained model
    ACCURACY = "accuracy"  # distilled models' accuracy against the baseline's
    DATASET_COMPARISON = "dataset_comparison"  # MNIST beside CIFAR-10: established or not, and why
    ABLATION_SCALE = "ablation_scale"  # the baseline with logits ×T: is scale alone enough?
    ABLATION_PRECISION = "ablation_precision"  # the hottest student in float64: is it the arithmetic?


META = "meta.json"  # the file that makes a directory a model (defdistill.checkpoint.META)
