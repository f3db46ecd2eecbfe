"""``defdistill audit``: is this model robust, or does it only mask gradients?

For any model that returns logits; the training temperature, when known, adds the
adaptive attacks on distillation. At the standard budgets (:mod:`.threats`) it runs

* the attacks robustness evaluations are judged by: APGD with cross-entropy and APGD-T
  with the targeted DLR loss on the top classes (Croce & Hein 2020, arXiv:2003.01690),
  and Square, which never differentiates the model (Andriushchenko et al. 2020,
  arXiv:1912.00049);
* the pairs that showed defensive distillation is not robust (Carlini & Wagner,
  arXiv:1607.04311): JSMA on F vs on Z, PGD cross-entropy on F vs on Z / T and with the
  logit margin, Carlini & Wagner L2, and transfer from a reference model when given;
* the checks of Carlini et al., "On Evaluating Adversarial Robustness" (arXiv:1902.06705)
  that apply: a gradient-free attack beating the gradient ones, accuracy that does not
  fall to ~0 as ε grows (APGD at ε = 1), more steps and restarts still helping;

then gives the verdict of the one masking rule (:func:`.checks.assess`, which
``reproduce`` uses too). The attacks are a list of :class:`.battery.AttackSpec` run by
:func:`.battery.run_battery`, as the reproduction's. Robust accuracy is AutoAttack's: per
image, correctly classified and fooled by no L∞ attack at the standard budget;
unconditional (a clean error counts as a failure, the headline) and conditional on the
correctly classified images, beside each attack's own accuracy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from defdistill.attacks import APGD, Square
from defdistill.attacks.base import has_input_gradient
from defdistill.evaluation import battery as b
from defdistill.evaluation import checks, probes
from defdistill.evaluation.battery import AttackSpec, BatteryResult, run_battery
from defdistill.evaluation.checks import Finding, Verdict
from defdistill.evaluation.gradients import zero_gradient_fraction
from defdistill.evaluation.samples import random_indices
from defdistill.evaluation.threats import Budgets, ThreatModel, standard_budgets
from defdistill.inference import evaluate, predict_logits
from defdistill.names import AttackId, JsmaOn, Loss, Norm, TargetMode, attack_key
from defdistill.temperature import trained_at

log = logging.getLogger(__name__)

UNBOUNDED_EPS = 1.0  # L∞ over inputs in [0, 1]: any image can be turned into any other
EFFORT = 2  # the convergence check runs APGD with EFFORT x the steps and EFFORT x the restarts
APGD_T_MIN_CLASSES = 4  # the targeted DLR loss needs 4 classes


@dataclass
class AuditReport:
    """Checks, attacks and verdict of one audit (``to_dict`` is the JSON written)."""

    findings: list[Finding]
    battery: BatteryResult
    verdict: Verdict
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        battery = self.battery.to_dict()
        return {
            "config": self.config,
            "verdict": self.verdict.to_dict(),
            "robust_accuracy": battery["robust_accuracy"],
            "findings": [f.to_dict() for f in self.findings],
            "attacks": battery["attacks"],
        }

    def table(self) -> list[tuple[str, str, str, str]]:
        """Rows (attack id, its name, accuracy under attack, attack success) for the terminal."""
        rows = []
        for key, res in self.battery.attacks.items():
            accuracy, success = res.accuracy, res.success
            mean_l2 = res.details.get("mean_l2")
            rows.append((
                key, res.label,
                "–" if res.threat is None
                else f"{100 * accuracy.rate:.1f}% [{100 * accuracy.low:.0f}, {100 * accuracy.high:.0f}]",
                f"{100 * success.rate:.1f}% of {success.n}"
                + ("" if mean_l2 is None else f" (mean L2 {mean_l2:.2f})"),
            ))  # fmt: skip
        return rows


def audit_battery(
    budgets: Budgets, num_classes: int, temperature: float | None = None,
    reference: nn.Module | None = None, jsma_samples: int = 20, jsma_gamma: float = 0.145,
    cw_iterations: int = 1000, cw_search_steps: int = 6, apgd_steps: int = 100, apgd_targets: int = 3,
    square_queries: int = 5000, seed: int = 0,
) -> list[AttackSpec]:  # fmt: skip
    """The audit's attacks as data (see :func:`audit` for the arguments)."""
    primary = budgets.primary
    eps = primary.eps
    t = trained_at(temperature)
    hot = t != 1.0
    linf, l2 = f"L∞ {eps:.3g}", ThreatModel(Norm.L2, budgets.l2)

    def counted(attack: AttackId, label: str, run: b.Run, gradient: bool = True) -> AttackSpec:
        return AttackSpec(attack, label, run, primary, gradient=gradient, worst_case=True)

    specs = []
    for e in budgets.linf:  # PGD CE on F and on Z/T at every L∞ budget; the primary counts
        for attack, temp, on in ((AttackId.PGD_CE_F, 1.0, "F"), (AttackId.PGD_CE_ZT, t, "Z/T"))[: 1 + hot]:
            run = b.pgd(e, temperature=temp, seed=seed)
            key = None if e == eps else attack_key(attack, e)
            specs.append(AttackSpec(attack, f"PGD L∞ {e:.3g} CE on {on}", run, ThreatModel(Norm.LINF, e),
                                    worst_case=e == eps, key=key))  # fmt: skip
    apgd: dict[str, Any] = {"eps": eps, "norm": Norm.LINF, "steps": apgd_steps, "seed": seed}
    strong = APGD(**{**apgd, "steps": EFFORT * apgd_steps, "restarts": EFFORT})
    square = Square(eps=eps, queries=square_queries, seed=seed)
    specs += [
        counted(AttackId.PGD_MARGIN, f"PGD {linf} margin on Z", b.pgd(eps, loss=Loss.MARGIN, seed=seed)),
        counted(AttackId.APGD_CE, f"APGD-CE {linf}", b.untargeted(APGD(**apgd), steps=apgd_steps, loss="ce")),
    ]
    if num_classes >= APGD_T_MIN_CLASSES:
        specs.append(counted(AttackId.APGD_T, f"APGD-T (DLR, top {apgd_targets}) {linf}",
                             b.apgd_t(eps, apgd_steps, apgd_targets, seed)))  # fmt: skip
    jsma: dict[str, Any] = {"gamma": jsma_gamma, "targets": TargetMode.ALL, "seed": seed}
    gamma = f"(gamma {100 * jsma_gamma:.3g}%)"
    specs += [
        counted(AttackId.SQUARE, f"Square {linf} ({square_queries} queries)",
                b.untargeted(square, queries=square_queries), gradient=False),
        counted(AttackId.APGD_CE_EFFORT, f"APGD-CE {linf}, {EFFORT * EFFORT}x effort",
                b.untargeted(strong, steps=EFFORT * apgd_steps, restarts=EFFORT, effort=EFFORT * EFFORT)),
        AttackSpec(AttackId.APGD_CE_UNBOUNDED, f"APGD-CE L∞ {UNBOUNDED_EPS:g} (unbounded)",
                   b.untargeted(APGD(**{**apgd, "eps": UNBOUNDED_EPS}), steps=apgd_steps),
                   ThreatModel(Norm.LINF, UNBOUNDED_EPS)),
        AttackSpec(AttackId.APGD_CE_L2, f"APGD-CE {l2}",
                   b.untargeted(APGD(eps=l2.eps, norm=Norm.L2, steps=apgd_steps, seed=seed),
                                steps=apgd_steps), l2),
        AttackSpec(AttackId.PGD_L2, f"PGD {l2} on Z/T" if hot else f"PGD {l2}",
                   b.pgd(l2.eps, norm=Norm.L2, temperature=t, seed=seed), l2),
        AttackSpec(AttackId.JSMA_F, f"JSMA on F {gamma}", b.jsma(JsmaOn.PROBS, **jsma), samples=jsma_samples),
        AttackSpec(AttackId.JSMA_Z, f"JSMA on Z {gamma}", b.jsma_on_logits(**jsma), samples=jsma_samples),
    ]  # fmt: skip
    if hot:
        run = b.jsma(JsmaOn.PROBS, temperature=t, **jsma)
        specs.append(AttackSpec(AttackId.JSMA_ZT, f"JSMA on softmax(Z/T) {gamma}", run, samples=jsma_samples))
    specs.append(AttackSpec(AttackId.CW_L2, "C&W L2 (minimum L2)", b.cw_l2(cw_iterations, cw_search_steps)))
    if reference is not None:
        specs.append(counted(AttackId.TRANSFER, f"transfer PGD {linf} from reference",
                             b.transfer(reference, eps, seed=seed), gradient=False))  # fmt: skip
    return specs


def audit(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, temperature: float | None = None,
    reference: nn.Module | None = None, samples: int = 100, jsma_samples: int = 20,
    jsma_gamma: float = 0.145, cw_iterations: int = 1000, cw_search_steps: int = 6,
    apgd_steps: int = 100, apgd_targets: int = 3, square_queries: int = 5000, seed: int = 0,
    preprocess: str | None = None, pool: torch.Tensor | None = None,
) -> AuditReport:  # fmt: skip
    """Audit ``model`` on ``samples`` test images drawn at random with ``seed``.

    The draw (:func:`defdistill.evaluation.samples.random_indices`) does not depend on the
    model, so two models audited with the same seed on the same test set face the same
    images. The attacks run on the correctly classified ones; the clean errors count as
    failures in the unconditional robust accuracy. The indices and the seed are in
    ``config`` (``sample_indices``, ``sample_seed``).

    Args:
        model: the network to audit, returning logits.
        x: test inputs in [0, 1], ``(N, C, H, W)``; the budgets follow from their channels.
        y: their labels, ``(N,)``.
        temperature: the training (distillation) temperature, if known: adds PGD and JSMA
            on ``softmax(Z / T)``. ``None`` or 1: no such attack (any defence).
        reference: an undefended model of the same task (transfer attack source).
        samples: test images drawn at random (correct or not).
        jsma_samples: of which attacked by JSMA toward every other class.
        jsma_gamma: JSMA's maximum fraction of features changed (the paper's 14.5 %).
        cw_iterations: Carlini & Wagner's Adam steps per binary-search step.
        cw_search_steps: its binary-search steps over the constant.
        apgd_steps: APGD's iterations.
        apgd_targets: the number of target classes of APGD-T (the most likely other ones).
        square_queries: Square's query budget per sample.
        seed: seeds the draw of the images and every randomised attack.
        preprocess: the name of a preprocessing submodule, if the user knows one: adds BPDA
            with the identity through it (:mod:`.probes`).
        pool: further inputs, never attacked, that the structure-blind surrogate may learn the
            model's labels on besides ``x`` (to audit exactly the images of ``x`` with
            ``samples=len(x)`` and still give the surrogate enough to learn from).

    Returns:
        The findings, the battery's typed results (robust accuracy included) and the verdict.
    """
    if preprocess is not None and preprocess not in dict(model.named_modules()):
        raise ValueError(f"preprocess: the model has no submodule {preprocess!r} (see model.named_modules())")
    index, _ = random_indices([model], x, y, samples, seed)
    budgets = standard_budgets(x)
    num_classes = predict_logits(model, x[:1]).shape[1]
    specs = audit_battery(budgets, num_classes, temperature, reference, jsma_samples, jsma_gamma,
                          cw_iterations, cw_search_steps, apgd_steps, apgd_targets, square_queries,
                          seed)  # fmt: skip
    differentiable = has_input_gradient(model, x[:1])
    if not differentiable:  # a layer outside autograd: only the attacks that never differentiate it
        log.warning("the model has no input gradient: the gradient attacks are skipped; the probes "
                    "and the gradient-free attacks decide")  # fmt: skip
        specs = [spec for spec in specs if not spec.gradient]
    result = run_battery(model, specs, x[index], y[index.to(y.device)])
    correct = index[result.clean.to(index.device)]
    xs, ys = x[correct], y[correct.to(y.device)]
    # structure-blind probes (issue 29): randomness -> EOT; unavailable or shattered gradients ->
    # smoothed gradients, transfer from a surrogate, BPDA through a named preprocessing layer
    gradient = [a.success.rate for a in result.worst_case_attacks() if a.gradient]
    white_box = result.get(AttackId.APGD_CE)
    probed = probes.probe(model, xs, ys, x if pool is None else torch.cat([x, pool.to(x.device)]),
                          budgets.primary.eps,
                          white_box_accuracy=None if white_box is None else white_box.accuracy.rate,
                          gradient_success=max(gradient) if gradient else None, preprocess=preprocess,
                          steps=apgd_steps, seed=seed)  # fmt: skip
    result.attacks.update(probed.attacks)
    evidence = result.evidence(
        zero_gradient_fraction=zero_gradient_fraction(model, xs) if differentiable else None,
        saturated_fraction=evaluate(model, xs, ys)["saturated_fraction"],
        outputs_are_logits=checks.check_outputs_are_logits(model, xs),
    )  # fmt: skip
    findings, _ = checks.assess(evidence)
    findings += probed.findings
    decision = checks.verdict(findings, evidence.robust_accuracy, evidence.robust_accuracy_conditional)
    config = {"samples": len(xs), "drawn": len(index), "sampling": "random", "sample_seed": seed,
              "sample_indices": index.tolist(), "jsma_samples": jsma_samples, "temperature": temperature,
              "budgets": budgets.to_dict(), "seed": seed, "apgd_steps": apgd_steps,
              "square_queries": square_queries, "probes": probed.measurements}  # fmt: skip
    return AuditReport(findings, result, decision, config)
