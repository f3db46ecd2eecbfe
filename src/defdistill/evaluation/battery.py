"""A battery of attacks described as data, run by one function, summarised in typed results.

``defdistill audit`` (:mod:`.audit`) and the reproduction's measurement
(:func:`defdistill.experiments.tasks.measure`) each build a list of :class:`AttackSpec` and
call :func:`run_battery`, which returns a :class:`BatteryResult` keyed by attack id
(:class:`~defdistill.names.AttackId`, AutoAttack's convention). From its per-image
outcomes (which images each attack fooled) come, in one place, each attack's accuracy,
the per-image worst case (robust accuracy, unconditional and conditional on clean-correct
images) and the evidence of the masking rule (:meth:`BatteryResult.evidence`).

The attacks:

* JSMA with the paper's protocol (Papernot et al. 2016, arXiv:1511.04508): toward every
  other class, on the probabilities ``F`` (the paper's attack), on the logits ``Z`` (the
  stronger of two saliency maps) or on ``softmax(Z / T)`` (:func:`jsma`, :func:`jsma_on_logits`);
* any untargeted attack at a fixed budget (PGD, Madry et al., arXiv:1706.06083; APGD and
  Square, :func:`untargeted`); APGD-T (Croce & Hein 2020, arXiv:2003.01690, :func:`apgd_t`);
* Carlini & Wagner L2 (arXiv:1608.04644, :func:`cw_l2`) and transfer from a reference
  model (:func:`transfer`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from defdistill.attacks import APGD, JSMA, PGD, Attack, CarliniWagnerL2
from defdistill.evaluation import checks
from defdistill.evaluation.distances import l2 as l2_norm
from defdistill.evaluation.distances import summary_stats
from defdistill.evaluation.protocol import paper_success_rate
from defdistill.evaluation.stats import MeanEstimate, Proportion
from defdistill.evaluation.threats import ThreatModel
from defdistill.inference import correct_mask, predict_logits
from defdistill.names import AttackId, JsmaOn, Loss, Norm, TargetMode

log = logging.getLogger(__name__)

EXAMPLE_DECIMALS = 4


@dataclass
class Outcome:
    """What one attack did to the images it attacked.

    Attributes:
        fooled: ``(n,)`` bool per attacked image: an untargeted attack misled the model;
            a targeted protocol succeeded toward at least one target.
        successes, attempts: successful attempts and attempts (= images, untargeted).
        details: attack-specific numbers (``rho_adv``, L2, parameters), JSON-ready.
    """

    fooled: torch.Tensor
    successes: int
    attempts: int
    details: dict[str, Any] = field(default_factory=dict)


Run = Callable[[nn.Module, torch.Tensor, torch.Tensor], Outcome]


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a battery: what it is, how it runs, what it counts toward.

    Attributes:
        id: its short id.
        label: a human-readable name (for tables and logs only, never a key).
        run: ``run(model, x, y) -> Outcome`` on correctly classified images.
        threat: its norm and budget; None for minimum-distortion attacks (JSMA, C&W).
        gradient: whether it differentiates the model.
        worst_case: whether it counts toward the per-image worst case (attacks at the
            primary budget); those attacks must all attack the same images.
        samples: attack only the first ``samples`` correctly classified images (None: all).
        key: its key in the results, when it differs from ``id`` (another budget).
    """

    id: AttackId
    label: str
    run: Run
    threat: ThreatModel | None = None
    gradient: bool = True
    worst_case: bool = False
    samples: int | None = None
    key: str | None = None

    @property
    def name(self) -> str:
        """The key of this attack in :attr:`BatteryResult.attacks`."""
        return self.key or str(self.id)


@dataclass
class AttackSummary:
    """One attack's typed result.

    Attributes:
        id, label, threat, gradient, worst_case: as in :class:`AttackSpec`.
        fooled: ``(n,)`` bool over the attacked images (the first ``n`` correctly
            classified ones of the battery).
        success: successful attempts of all attempts, with its Wilson interval.
        details: attack-specific numbers.
        seconds: wall-clock time.
    """

    id: AttackId
    label: str
    threat: ThreatModel | None
    gradient: bool
    worst_case: bool
    fooled: torch.Tensor
    success: Proportion
    details: dict[str, Any]
    seconds: float

    @property
    def accuracy(self) -> Proportion:
        """Attacked images the attack did not fool (accuracy under attack, on clean-correct images)."""
        return Proportion.from_mask(~self.fooled)

    def to_dict(self) -> dict[str, Any]:
        accuracy, success = self.accuracy.to_dict(), self.success.to_dict()
        return {
            "id": str(self.id),
            "label": self.label,
            "norm": None if self.threat is None else str(self.threat.norm),
            "eps": None if self.threat is None else self.threat.eps,
            "gradient": self.gradient,
            "worst_case": self.worst_case,
            "samples": len(self.fooled),
            "attempts": self.success.n,
            "successes": self.success.k,
            "success_rate": success["rate"],
            "success_interval": success,
            "accuracy": accuracy["rate"],
            "accuracy_interval": accuracy,
            "fooled_images": self.fooled.nonzero().flatten().tolist(),
            **self.details,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttackSummary:
        fooled = torch.zeros(d["samples"], dtype=torch.bool)
        fooled[torch.tensor(d["fooled_images"], dtype=torch.long)] = True
        threat = None if d["norm"] is None else ThreatModel(Norm(d["norm"]), d["eps"])
        known = {"id", "label", "norm", "eps", "gradient", "worst_case", "samples", "attempts",
                 "successes", "success_rate", "success_interval", "accuracy", "accuracy_interval",
                 "fooled_images", "seconds"}  # fmt: skip
        return cls(AttackId(d["id"]), d["label"], threat, d["gradient"], d["worst_case"], fooled,
                   Proportion.of(d["successes"], d["attempts"]),
                   {k: v for k, v in d.items() if k not in known}, d["seconds"])  # fmt: skip


@dataclass
class BatteryResult:
    """Every attack of a battery on one model, and what follows from them.

    Attributes:
        clean: ``(N,)`` bool over the drawn images: which the model classifies correctly.
        attacks: attack key -> :class:`AttackSummary`, in the order they ran.
    """

    clean: torch.Tensor
    attacks: dict[str, AttackSummary]

    def __getitem__(self, key: str) -> AttackSummary:
        return self.attacks[str(key)]

    def get(self, key: str) -> AttackSummary | None:
        return self.attacks.get(str(key))

    def worst_case_attacks(self) -> list[AttackSummary]:
        return [a for a in self.attacks.values() if a.worst_case]

    def fooled_by_any(self) -> torch.Tensor:
        """``(n,)`` bool over the images the worst-case attacks attacked: fooled by at least one
        of them (the union of their fooled images; AutoAttack's per-image worst case)."""
        masks = [a.fooled for a in self.worst_case_attacks()]
        if not masks:
            return torch.zeros(0, dtype=torch.bool)
        if len({len(m) for m in masks}) != 1:
            raise ValueError("the worst-case attacks must attack the same images")
        return torch.stack(masks).any(0)

    def robust(self) -> torch.Tensor:
        """``(M,)`` bool over the drawn images: correctly classified and fooled by none of the
        worst-case attacks. ``M`` is every drawn image when the attacks attacked every
        correctly classified one (the clean errors after the last correct image count as
        failures too), else the images up to the last one they attacked."""
        fooled = self.fooled_by_any()
        correct = self.clean.nonzero().flatten()[: len(fooled)]
        everything = len(fooled) == int(self.clean.sum())
        drawn = len(self.clean) if everything else int(correct[-1]) + 1 if len(correct) else 0
        robust = self.clean[:drawn].clone()
        robust[correct] = ~fooled
        return robust

    def robust_accuracy(self) -> Proportion:
        """Unconditional robust accuracy (the headline, AutoAttack's and RobustBench's): the
        drawn images classified correctly and fooled by no worst-case attack; a clean error
        counts as a failure."""
        return Proportion.from_mask(self.robust())

    def robust_accuracy_conditional(self) -> Proportion:
        """Robust accuracy on the correctly classified images only (what each attack's
        accuracy is relative to)."""
        return Proportion.from_mask(~self.fooled_by_any())

    def threat(self) -> ThreatModel | None:
        """The primary budget the worst case is taken at."""
        found = {a.threat for a in self.worst_case_attacks()}
        return found.pop() if len(found) == 1 else None

    def robust_accuracy_dict(self) -> dict[str, Any]:
        unconditional = self.robust_accuracy().to_dict()
        conditional = self.robust_accuracy_conditional().to_dict()
        threat = self.threat()
        return {
            "unconditional": unconditional["rate"], "unconditional_interval": unconditional,
            "conditional": conditional["rate"], "conditional_interval": conditional,
            "norm": None if threat is None else str(threat.norm),
            "eps": None if threat is None else threat.eps,
            "attacks": [str(a.id) for a in self.worst_case_attacks()],
        }  # fmt: skip

    def evidence(self, **measured: Any) -> checks.Evidence:
        """The masking rule's evidence: every attack's part, plus ``measured`` (the
        non-attack fields of :class:`~defdistill.evaluation.checks.Evidence`)."""

        def success(attack: AttackId) -> float | None:
            found = self.get(attack)
            return None if found is None else found.success.rate

        def accuracy(attack: AttackId) -> float | None:
            found = self.get(attack)
            return None if found is None else found.accuracy.rate

        gradient = [a.success.rate for a in self.worst_case_attacks() if a.gradient]
        unbounded, effort, plain = (self.get(a) for a in (AttackId.APGD_CE_UNBOUNDED, AttackId.APGD_CE_EFFORT,
                                                          AttackId.APGD_CE))  # fmt: skip
        worst = self.worst_case_attacks()
        return checks.Evidence(
            jsma_f=success(AttackId.JSMA_F), jsma_z=success(AttackId.JSMA_Z),
            jsma_t=success(AttackId.JSMA_ZT), pgd_f=success(AttackId.PGD_CE_F),
            pgd_zt=success(AttackId.PGD_CE_ZT), pgd_margin=success(AttackId.PGD_MARGIN),
            transfer=success(AttackId.TRANSFER), gradient_free=success(AttackId.SQUARE),
            gradient=max(gradient) if gradient else None,
            accuracy_unbounded=accuracy(AttackId.APGD_CE_UNBOUNDED),
            unbounded_eps=None if unbounded is None or unbounded.threat is None else unbounded.threat.eps,
            effort_gain=None if effort is None or plain is None
            else plain.accuracy.rate - effort.accuracy.rate,
            effort_factor=None if effort is None else effort.details.get("effort"),
            robust_accuracy=self.robust_accuracy() if worst else None,
            robust_accuracy_conditional=self.robust_accuracy_conditional() if worst else None,
            **measured,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "drawn": len(self.clean),
            "clean_correct": int(self.clean.sum()),
            "clean_images": self.clean.nonzero().flatten().tolist(),
            "robust_accuracy": self.robust_accuracy_dict(),
            "attacks": {key: a.to_dict() for key, a in self.attacks.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BatteryResult:
        clean = torch.zeros(d["drawn"], dtype=torch.bool)
        clean[torch.tensor(d["clean_images"], dtype=torch.long)] = True
        return cls(clean, {k: AttackSummary.from_dict(a) for k, a in d["attacks"].items()})


class StepRecord(Protocol):
    """Where a battery records each finished attack, so that an interrupted one resumes
    (:class:`defdistill.experiments.units.StepLog`)."""

    def load(self, step: str) -> dict[str, Any] | None: ...

    def save(self, step: str, result: dict[str, Any]) -> None: ...


def run_battery(
    model: nn.Module, specs: list[AttackSpec], x: torch.Tensor, y: torch.Tensor,
    record: StepRecord | None = None,
) -> BatteryResult:  # fmt: skip
    """Run every attack of ``specs`` on the images of ``(x, y)`` that ``model`` classifies correctly.

    Args:
        model: the network, returning logits.
        specs: the attacks; each attacks the first ``spec.samples`` correctly classified
            images (all of them when None), in the order of ``x``.
        x: the drawn images in [0, 1], ``(N, C, H, W)``, correct or not: the clean errors
            count as failures in the unconditional robust accuracy.
        y: their labels, ``(N,)``.
        record: records each attack's summary as it finishes; an attack it already holds
            for the same images is reused, not run again (each attack draws from a generator
            of its own seed, so skipping one does not change the others).
    """
    clean = correct_mask(model, x, y).cpu() if len(x) else torch.zeros(0, dtype=torch.bool)
    order = clean.nonzero().flatten()
    attacks: dict[str, AttackSummary] = {}
    for spec in specs:
        idx = (order if spec.samples is None else order[: spec.samples]).to(x.device)
        reused = _reusable(record.load(spec.name) if record is not None else None, len(idx))
        if reused is not None:
            attacks[spec.name] = reused
            log.info("%s: finished before the interruption (%.1f s then)", spec.label, reused.seconds)
            continue
        start = time.perf_counter()
        # no correctly classified image (a network at chance, few drawn): nothing to attack
        out = (spec.run(model, x[idx], y[idx.to(y.device)]) if len(idx)
               else Outcome(torch.zeros(0, dtype=torch.bool), 0, 0, {}))  # fmt: skip
        seconds = time.perf_counter() - start
        attacks[spec.name] = AttackSummary(
            spec.id, spec.label, spec.threat, spec.gradient, spec.worst_case, out.fooled.cpu(),
            Proportion.of(out.successes, out.attempts), out.details, seconds,
        )  # fmt: skip
        log.info("%s: %.1f s on %d images", spec.label, seconds, len(idx))
        if record is not None:
            record.save(spec.name, attacks[spec.name].to_dict())
    return BatteryResult(clean, attacks)


def _reusable(stored: dict[str, Any] | None, samples: int) -> AttackSummary | None:
    """A recorded attack's summary if it attacked ``samples`` images and reads back whole."""
    if not isinstance(stored, dict) or stored.get("samples") != samples:
        return None
    try:
        return AttackSummary.from_dict(stored)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
        log.warning("a recorded attack does not read back (%s); running it again", err)
        return None


# ----------------------------------------------------------------------------- the attacks
def _fooled(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ~correct_mask(model, x_adv, y).cpu() if len(x_adv) else torch.zeros(0, dtype=torch.bool)


def untargeted(attack: Attack, **details: Any) -> Run:
    """Accuracy under one untargeted ``attack`` (PGD, APGD, Square, ...)."""

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Outcome:
        fooled = _fooled(model, attack(model, x, y).x_adv, y) if len(x) else torch.zeros(0, dtype=torch.bool)
        return Outcome(fooled, int(fooled.sum()), len(fooled), details)

    return run


def pgd(eps: float, norm: Norm = Norm.LINF, steps: int = 40, loss: Loss = Loss.CE,
        temperature: float = 1.0, seed: int = 0) -> Run:  # fmt: skip
    """Untargeted PGD at budget ``eps`` on ``logits / temperature``."""
    attack = PGD(eps=eps, norm=norm, steps=steps, loss=loss, temperature=temperature, seed=seed)
    return untargeted(attack, steps=steps, loss=str(loss), temperature=temperature)


def apgd_targeted(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: Norm = Norm.LINF,
    steps: int = 100, targets: int = 3, seed: int = 0,
) -> torch.Tensor:  # fmt: skip
    """Adversarial examples of APGD with the targeted DLR loss toward each of the ``targets``
    most likely other classes in turn, on the samples not yet fooled (AutoAttack's APGD-T,
    Croce & Hein 2020, arXiv:2003.01690, with fewer target classes). Needs >= 4 classes."""
    with torch.no_grad():
        ranked = predict_logits(model, x).argsort(dim=1, descending=True).to(y.device)
    others = ranked[ranked != y[:, None]].view(len(x), -1)
    x_adv, fooled = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    attack = APGD(eps=eps, norm=norm, loss=Loss.DLR, steps=steps, seed=seed)
    for k in range(min(targets, others.shape[1])):
        todo = (~fooled).nonzero().flatten()
        if not len(todo):
            break
        x_adv[todo] = attack.perturb(model, x[todo], y[todo], others[todo, k])
        fooled = ~correct_mask(model, x_adv, y)
    return x_adv


def apgd_t(eps: float, steps: int = 100, targets: int = 3, seed: int = 0) -> Run:
    """Accuracy under :func:`apgd_targeted` at L∞ ``eps``."""

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Outcome:
        fooled = _fooled(model, apgd_targeted(model, x, y, eps, steps=steps, targets=targets, seed=seed), y)
        return Outcome(fooled, int(fooled.sum()), len(fooled),
                       {"steps": steps, "targets": targets, "loss": "dlr-targeted"})  # fmt: skip

    return run


def _example(x: torch.Tensor, x_adv: torch.Tensor, target: int) -> dict[str, Any]:
    return {
        "x": x.double().round(decimals=EXAMPLE_DECIMALS).tolist(),
        "x_adv": x_adv.double().round(decimals=EXAMPLE_DECIMALS).tolist(),
        "target": int(target),
    }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def jsma(on: JsmaOn = JsmaOn.PROBS, temperature: float = 1.0, gamma: float = 0.145, theta: float = 1.0,
         targets: TargetMode = TargetMode.ALL, seed: int = 0, example: bool = False) -> Run:  # fmt: skip
    """JSMA with the paper's protocol: a targeted attempt toward every other class (``targets``)."""

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Outcome:
        attack = JSMA(theta=theta, gamma=gamma, on=on, temperature=temperature)
        report = paper_success_rate(model, attack, x, y, targets=targets, seed=seed)
        # per image: the smallest % of features changed, a never-broken image at the cap
        per_image = report.robustness().per_sample
        if report.budget_fraction is not None:
            per_image = per_image.nan_to_num(nan=100 * report.budget_fraction)
        fooled = torch.zeros(len(x), dtype=torch.bool)
        fooled[report.sample_index[report.success].cpu()] = True
        details: dict[str, Any] = {
            "on": str(on), "gamma": gamma, "theta": theta, "temperature": temperature,
            # None (JSON null), not NaN, when no attempt succeeded: there is no L0 to average
            "mean_l0_percent": _finite_or_none(report.mean_l0_percent),
            "rho_adv_percent": report.rho_adv_percent,
            "rho_adv_interval": MeanEstimate.of(per_image[~per_image.isnan()], seed=seed).to_dict(),
            "rho_adv_successful_percent": _finite_or_none(report.rho_adv_successful_percent),
            # never-broken samples, counted in rho_adv_percent at the attack's cap: when > 0,
            # rho_adv_percent is a lower bound (reported with ">=")
            "samples_without_success": report.samples_without_success,
            "rho_adv_censored_at_percent": None if report.budget_fraction is None
            else 100 * report.budget_fraction,
        }  # fmt: skip
        if example:
            hit = report.success.nonzero().flatten()
            first = int(hit[0]) if len(hit) else None
            details["example"] = None if first is None else _example(report.x[first], report.x_adv[first],
                                                                     int(report.target[first]))  # fmt: skip
        return Outcome(fooled, report.successes, report.attempts, details)

    return run


LOGIT_SALIENCIES = (JsmaOn.LOGITS, JsmaOn.TARGET_LOGIT)


def jsma_on_logits(**fields: Any) -> Run:
    """JSMA on Z, the strongest variant: :func:`jsma` with each saliency map of
    ``LOGIT_SALIENCIES`` on the same samples and targets, and the outcome of the one with
    the higher success rate (ties: the paper's pairwise map), with every variant's rate
    under ``"variants"``. Which map is stronger depends on the model, so both run."""

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Outcome:
        runs = {on: jsma(on=on, **fields)(model, x, y) for on in LOGIT_SALIENCIES}

        def rate(o: Outcome) -> float:
            return o.successes / o.attempts if o.attempts else math.nan

        best = max(runs.values(), key=rate)  # the first maximum: the pairwise map
        best.details = best.details | {"variants": {str(on): rate(o) for on, o in runs.items()}}
        return best

    return run


def cw_l2(iterations: int = 1000, search_steps: int = 9, confidence: float = 0.0) -> Run:
    """Untargeted Carlini & Wagner L2: success and the L2 of the successful examples."""

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Outcome:
        attack = CarliniWagnerL2(confidence=confidence, max_iterations=iterations,
                                 binary_search_steps=search_steps)  # fmt: skip
        result = attack(model, x, y)
        fooled = _fooled(model, result.x_adv, y)
        distances = l2_norm(result.x_adv - x)[fooled.to(x.device)]
        stats = summary_stats(distances)
        return Outcome(fooled, int(fooled.sum()), len(fooled),
                       {"iterations": iterations, "search_steps": search_steps,
                        "mean_l2": stats["mean"], "median_l2": stats["median"],
                        "mean_l2_interval": MeanEstimate.of(distances).to_dict()})  # fmt: skip

    return run


def transfer(source: nn.Module, eps: float, steps: int = 40, seed: int = 0) -> Run:
    """PGD L∞ examples crafted on ``source`` (all steps, no early stop, so they lie deep in
    the source's adversarial region); fooled = misclassified by the attacked model."""

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Outcome:
        dev = next(source.parameters()).device
        adv = PGD(eps=eps, steps=steps, seed=seed, early_stop=False)(source, x.to(dev), y.to(dev)).x_adv
        fooled = _fooled(model, adv.to(x.device), y)
        return Outcome(fooled, int(fooled.sum()), len(fooled), {"steps": steps})

    return run
