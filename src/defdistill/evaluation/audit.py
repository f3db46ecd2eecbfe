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
``reproduce`` uses too). Robust accuracy is AutoAttack's: the fraction of samples that no
L∞ attack at the standard budget fools, reported beside each attack's own accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from defdistill.attacks import APGD, PGD, Square
from defdistill.evaluation import checks, probes
from defdistill.evaluation.battery import (
    run_apgd_targeted,
    run_cw,
    run_jsma,
    run_jsma_on_logits,
    run_pgd,
    run_transfer,
    run_untargeted,
)
from defdistill.evaluation.checks import Finding, Verdict
from defdistill.evaluation.gradients import zero_gradient_fraction
from defdistill.evaluation.samples import first_correct
from defdistill.evaluation.threats import Norm, standard_budgets
from defdistill.inference import predict_logits
from defdistill.training.loop import evaluate

UNBOUNDED_EPS = 1.0  # L∞ over inputs in [0, 1]: any image can be turned into any other
EFFORT = 2  # the convergence check runs APGD with EFFORT x the steps and EFFORT x the restarts


@dataclass
class AuditReport:
    """Checks, attacks and verdict of one audit (``to_dict`` is the JSON written)."""

    findings: list[Finding]
    attacks: dict[str, dict[str, Any]]
    verdict: Verdict
    config: dict[str, Any] = field(default_factory=dict)
    worst_case: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "verdict": self.verdict.to_dict(),
            "robust_accuracy": self.worst_case,
            "findings": [f.to_dict() for f in self.findings],
            "attacks": self.attacks,
        }

    def table(self) -> list[tuple[str, str, str]]:
        """Rows (attack, accuracy under attack, attack success) for the terminal."""
        rows = []
        for name, res in self.attacks.items():
            acc = res.get("accuracy")
            rows.append((
                name,
                "–" if acc is None else f"{100 * acc:.1f}%",
                f"{100 * res['success_rate']:.1f}%"
                + (f" (mean L2 {res['mean_l2']:.2f})" if res.get("mean_l2") is not None else ""),
            ))  # fmt: skip
        return rows


def audit(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, temperature: float | None = None,
    reference: nn.Module | None = None, samples: int = 100, jsma_samples: int = 20,
    jsma_gamma: float = 0.145, cw_iterations: int = 1000, cw_search_steps: int = 6,
    apgd_steps: int = 100, apgd_targets: int = 3, square_queries: int = 5000, seed: int = 0,
    preprocess: str | None = None,
) -> AuditReport:  # fmt: skip
    """Audit ``model`` on the first ``samples`` correctly classified ``(x, y)``.

    Args:
        model: the network to audit, returning logits.
        x: test inputs in [0, 1], ``(N, C, H, W)``; the budgets follow from their channels.
        y: their labels, ``(N,)``.
        temperature: the training (distillation) temperature, if known: adds PGD and JSMA
            on ``softmax(Z / T)``. ``None`` or 1: no such attack (any defence).
        reference: an undefended model of the same task (transfer attack source).
        samples: correctly classified inputs attacked (the first ones).
        jsma_samples: of which attacked by JSMA toward every other class.
        jsma_gamma: JSMA's maximum fraction of features changed (the paper's 14.5 %).
        cw_iterations: Carlini & Wagner's Adam steps per binary-search step.
        cw_search_steps: its binary-search steps over the constant.
        apgd_steps: APGD's iterations.
        apgd_targets: the number of target classes of APGD-T (the most likely other ones).
        square_queries: Square's query budget per sample.
        seed: seeds every randomised attack.
        preprocess: the name of a preprocessing submodule, if the user knows one: adds BPDA
            with the identity through it (:mod:`.probes`).

    Returns:
        The findings, every attack's summary, the verdict and the worst-case robust accuracy.
    """
    xs, ys = first_correct(model, x, y, samples)
    budgets = standard_budgets(x)
    eps = budgets.primary.eps
    hot = temperature is not None and temperature != 1.0
    attacks: dict[str, dict[str, Any]] = {}
    fooled: dict[str, torch.Tensor] = {}  # per sample, the L∞ attacks at the primary budget

    def untargeted(name: str, attack: Any, **fields: Any) -> dict[str, Any]:
        attacks[name], mask = run_untargeted(model, attack, xs, ys, **fields)
        return attacks[name] | {"fooled": mask}

    linf = f"Linf {eps:.3g}"
    for e in budgets.linf:
        for on, t in (("F", 1.0), ("Z/T", temperature)) if hot else (("F", 1.0),):
            run = untargeted(f"PGD Linf {e:.3g} on {on}", PGD(eps=e, temperature=t, seed=seed),
                             eps=e, norm="linf", steps=40, loss="ce", temperature=t)  # fmt: skip
            if e == eps:
                fooled[f"PGD {linf} on {on}"] = run["fooled"]
    fooled[f"PGD {linf} margin on Z"] = untargeted(
        f"PGD {linf} margin on Z", PGD(eps=eps, loss="margin", seed=seed), eps=eps, loss="margin"
    )["fooled"]
    apgd = {"eps": eps, "norm": Norm.LINF, "steps": apgd_steps, "seed": seed}
    fooled[f"APGD-CE {linf}"] = untargeted(f"APGD-CE {linf}", APGD(**apgd), **apgd, loss="ce")["fooled"]
    if predict_logits(model, xs[:1]).shape[1] >= 4:  # the targeted DLR loss needs 4 classes
        name = f"APGD-T (DLR, top {apgd_targets}) {linf}"
        attacks[name], fooled[name] = run_apgd_targeted(model, xs, ys, eps, steps=apgd_steps,
                                                        targets=apgd_targets, seed=seed)  # fmt: skip
    square = f"Square {linf} ({square_queries} queries)"
    fooled[square] = untargeted(square, Square(eps=eps, queries=square_queries, seed=seed), eps=eps,
                                queries=square_queries)["fooled"]  # fmt: skip
    strong = {**apgd, "steps": EFFORT * apgd_steps, "restarts": EFFORT}
    effort = untargeted(f"APGD-CE {linf}, {EFFORT * EFFORT}x effort", APGD(**strong), **strong)
    fooled[f"APGD-CE {linf}, {EFFORT * EFFORT}x effort"] = effort["fooled"]
    wide = {**apgd, "eps": UNBOUNDED_EPS}
    unbounded = untargeted(f"APGD-CE Linf {UNBOUNDED_EPS:g} (unbounded)", APGD(**wide), **wide)
    l2 = budgets.l2
    untargeted(f"APGD-CE L2 {l2:g}", APGD(eps=l2, norm=Norm.L2, steps=apgd_steps, seed=seed),
               eps=l2, norm=Norm.L2, steps=apgd_steps)  # fmt: skip
    attacks[f"PGD L2 {l2:g} on Z/T" if hot else f"PGD L2 {l2:g}"] = run_pgd(
        model, xs, ys, eps=l2, norm=Norm.L2, temperature=temperature if hot else 1.0, seed=seed
    )
    jsma = {"samples": jsma_samples, "targets": "all", "gamma": jsma_gamma, "seed": seed}
    jsma_f, jsma_z, jsma_t = (f"JSMA on {on} (gamma {100 * jsma_gamma:.3g}%)"
                              for on in ("F", "Z", "softmax(Z/T)"))  # fmt: skip
    attacks[jsma_f] = run_jsma(model, xs, ys, on="probs", **jsma)
    attacks[jsma_z] = run_jsma_on_logits(model, xs, ys, **jsma)
    if hot:
        attacks[jsma_t] = run_jsma(model, xs, ys, on="probs", temperature=temperature, **jsma)
    attacks["C&W L2 (minimum L2)"] = run_cw(
        model, xs, ys, iterations=cw_iterations, search_steps=cw_search_steps
    )
    for res in attacks.values():
        res.pop("example", None)
    transfer = None
    if reference is not None:
        name = f"transfer PGD {linf} from reference"
        transfer, fooled[name] = run_transfer(reference, model, xs, ys, eps=eps, seed=seed)
        attacks[name] = transfer
    # structure-blind probes (issue 29): randomness -> EOT, shattered gradients -> transfer, BPDA
    blind_gradient = max(attacks[k]["success_rate"] for k in fooled
                         if not k.startswith(("Square", "transfer")))  # fmt: skip
    probed = probes.probe(model, xs, ys, x, eps, white_box_accuracy=attacks[f"APGD-CE {linf}"]["accuracy"],
                          gradient_success=blind_gradient, preprocess=preprocess, steps=apgd_steps, seed=seed)
    attacks.update(probed.attacks)
    fooled.update(probed.fooled)
    worst = torch.stack(list(fooled.values())).any(0) if len(xs) else torch.zeros(0, dtype=torch.bool)
    robust = 1 - float(worst.float().mean()) if len(xs) else None
    gradient_names = [k for k in fooled if not k.startswith(("Square", "transfer"))]
    gradient_best = max(attacks[k]["success_rate"] for k in gradient_names if k in attacks)
    evidence = checks.Evidence(
        jsma_f=attacks[jsma_f]["success_rate"], jsma_z=attacks[jsma_z]["success_rate"],
        jsma_t=attacks[jsma_t]["success_rate"] if hot else None,
        pgd_f=attacks[f"PGD {linf} on F"]["success_rate"],
        pgd_zt=attacks[f"PGD {linf} on Z/T"]["success_rate"] if hot else None,
        pgd_margin=attacks[f"PGD {linf} margin on Z"]["success_rate"],
        transfer=None if transfer is None else transfer["success_rate"],
        zero_gradient_fraction=zero_gradient_fraction(model, xs),
        saturated_fraction=evaluate(model, xs, ys)["saturated_fraction"],
        outputs_are_logits=checks.check_outputs_are_logits(model, xs),
        gradient_free=attacks[square]["success_rate"], gradient=gradient_best,
        accuracy_unbounded=unbounded["accuracy"], unbounded_eps=UNBOUNDED_EPS,
        effort_gain=attacks[f"APGD-CE {linf}"]["accuracy"] - effort["accuracy"],
        robust_accuracy=robust,
    )  # fmt: skip
    findings, decision = checks.assess(evidence)
    findings += probed.findings
    decision = checks.verdict(findings, robust)
    config = {"samples": len(xs), "jsma_samples": jsma_samples, "temperature": temperature,
              "budgets": budgets.to_dict(), "seed": seed, "apgd_steps": apgd_steps,
              "square_queries": square_queries, "probes": probed.measurements}  # fmt: skip
    worst_case = {"robust_accuracy": robust, "eps": eps, "norm": "linf", "attacks": sorted(fooled)}
    return AuditReport(findings, attacks, decision, config, worst_case)
