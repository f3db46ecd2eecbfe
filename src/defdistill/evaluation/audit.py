"""``defdistill audit``: is this model robust, or does it only mask gradients?

Runs the gradient-masking checks (:mod:`.checks`) and a fixed battery of attacks at the
standard budgets (:mod:`.battery`, :mod:`.threats`), then gives the verdict of the one
masking rule (:func:`.checks.assess`, which ``reproduce`` uses too). The battery pairs
each attack on the softmax with its adaptive counterpart on the logits, as Carlini &
Wagner did to show that defensive distillation is not robust (arXiv:1607.04311):
JSMA on F vs on Z, PGD on the cross-entropy vs on the logits divided by the training
temperature, plus Carlini & Wagner L2 and, given a reference model, a transfer attack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from defdistill.evaluation import checks
from defdistill.evaluation.battery import run_cw, run_jsma, run_pgd, run_transfer
from defdistill.evaluation.checks import Finding, Verdict
from defdistill.evaluation.gradients import zero_gradient_fraction
from defdistill.evaluation.samples import first_correct
from defdistill.evaluation.threats import Norm, standard_budgets
from defdistill.training.loop import evaluate


@dataclass
class AuditReport:
    """Checks, attacks and verdict of one audit (``to_dict`` is the JSON written)."""

    findings: list[Finding]
    attacks: dict[str, dict[str, Any]]
    verdict: Verdict
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "verdict": self.verdict.to_dict(),
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
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, temperature: float = 1.0,
    reference: nn.Module | None = None, samples: int = 100, jsma_samples: int = 20,
    jsma_gamma: float = 0.145,
    cw_iterations: int = 1000, cw_search_steps: int = 6, seed: int = 0,
) -> AuditReport:  # fmt: skip
    """Audit ``model`` on the first ``samples`` correctly classified ``(x, y)``.

    Args:
        temperature: the training (distillation) temperature, used by the adaptive PGD on
            ``logits / temperature``; 1 for an undistilled model.
        reference: an undefended model of the same task (transfer attack source).
        jsma_samples: samples attacked by JSMA toward every other class.
        jsma_gamma: JSMA's maximum fraction of features changed (the paper's 14.5 %).
    """
    xs, ys = first_correct(model, x, y, samples)
    budgets = standard_budgets(x)
    attacks: dict[str, dict[str, Any]] = {}
    strongest = budgets.primary.eps
    for eps in budgets.linf:
        attacks[f"PGD Linf {eps:.3g} on F"] = run_pgd(model, xs, ys, eps=eps, seed=seed)
        attacks[f"PGD Linf {eps:.3g} on Z/T"] = run_pgd(
            model, xs, ys, eps=eps, temperature=temperature, seed=seed
        )
    attacks[f"PGD Linf {strongest:.3g} margin on Z"] = run_pgd(
        model, xs, ys, eps=strongest, loss="margin", seed=seed
    )
    l2 = budgets.l2
    attacks[f"PGD L2 {l2:g} on Z/T"] = run_pgd(
        model, xs, ys, eps=l2, norm=Norm.L2, temperature=temperature, seed=seed
    )
    jsma = {"samples": jsma_samples, "targets": "all", "gamma": jsma_gamma, "seed": seed}
    jsma_f, jsma_z, jsma_t = (f"JSMA on {on} (gamma {100 * jsma_gamma:.3g}%)"
                              for on in ("F", "Z", "softmax(Z/T)"))  # fmt: skip
    attacks[jsma_f] = run_jsma(model, xs, ys, on="probs", **jsma)
    attacks[jsma_z] = run_jsma(model, xs, ys, on="logits", **jsma)
    if temperature != 1.0:
        attacks[jsma_t] = run_jsma(model, xs, ys, on="probs", temperature=temperature, **jsma)
    attacks["C&W L2 (minimum L2)"] = run_cw(
        model, xs, ys, iterations=cw_iterations, search_steps=cw_search_steps
    )
    for res in attacks.values():
        res.pop("example", None)

    strong = f"PGD Linf {strongest:.3g}"
    transfer = None
    if reference is not None:
        transfer = run_transfer(reference, model, xs, ys, eps=strongest, seed=seed)
        attacks[f"transfer {strong} from reference"] = transfer
    robust = min(
        (r["accuracy"] for r in attacks.values() if r.get("accuracy") is not None), default=None
    )
    evidence = checks.Evidence(
        jsma_f=attacks[jsma_f]["success_rate"], jsma_z=attacks[jsma_z]["success_rate"],
        jsma_t=attacks[jsma_t]["success_rate"] if jsma_t in attacks else None,
        pgd_f=attacks[f"{strong} on F"]["success_rate"],
        pgd_zt=attacks[f"{strong} on Z/T"]["success_rate"] if temperature != 1.0 else None,
        pgd_margin=attacks[f"{strong} margin on Z"]["success_rate"],
        transfer=None if transfer is None else transfer["success_rate"],
        zero_gradient_fraction=zero_gradient_fraction(model, xs),
        saturated_fraction=evaluate(model, xs, ys)["saturated_fraction"],
        outputs_are_logits=checks.check_outputs_are_logits(model, xs),
        robust_accuracy=robust,
    )  # fmt: skip
    findings, decision = checks.assess(evidence)
    config = {"samples": len(xs), "jsma_samples": jsma_samples, "temperature": temperature,
              "budgets": budgets.to_dict(), "seed": seed}  # fmt: skip
    return AuditReport(findings, attacks, decision, config)
