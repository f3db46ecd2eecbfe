"""``defdistill attack``: run one attack on a model's test images and summarise it."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from defdistill import metrics
from defdistill.attacks import FGSM, JSMA, PGD, Attack, CarliniWagnerL2
from defdistill.battery import first_correct, summary_stats
from defdistill.io import atomic_write_bytes


def build_attack(args: argparse.Namespace) -> Attack:
    """The attack object for the command-line options (raises ValueError on bad values)."""
    batch = {"batch_size": args.batch_size}
    if args.attack == "fgsm":
        return FGSM(eps=args.eps, loss=args.loss, temperature=args.temperature, **batch)
    if args.attack == "pgd":
        return PGD(eps=args.eps, norm=args.norm, steps=args.steps, loss=args.loss,
                   temperature=args.temperature, seed=args.seed, **batch)  # fmt: skip
    if args.attack == "jsma":
        return JSMA(theta=args.theta, gamma=args.gamma, on=args.on, temperature=args.temperature,
                    **batch)  # fmt: skip
    return CarliniWagnerL2(confidence=args.confidence, max_iterations=args.iterations,
                           binary_search_steps=args.search_steps, **batch)  # fmt: skip


def nothing_to_attack(n: int) -> ValueError:
    """The error when no test image is classified correctly (an attack would report 0 %)."""
    return ValueError(
        f"the model classifies none of the {n} test images correctly: nothing to attack; "
        "check it with `defdistill evaluate` (wrong data set, or an untrained model?)"
    )


@dataclass
class AttackRun:
    """Per-attempt tensors and the summary of one run."""

    x: torch.Tensor
    x_adv: torch.Tensor
    label: torch.Tensor
    target: torch.Tensor | None
    success: torch.Tensor
    sample_index: torch.Tensor
    summary: dict[str, Any]

    def per_attempt(self) -> list[dict[str, Any]]:
        delta = self.x_adv - self.x
        l0, l2, linf = 100 * metrics.l0_fraction(delta), metrics.l2(delta), metrics.linf(delta)
        return [
            {
                "sample_index": int(self.sample_index[i]),
                "label": int(self.label[i]),
                "target": None if self.target is None else int(self.target[i]),
                "success": bool(self.success[i]),
                "l0_percent": float(l0[i]),
                "l2": float(l2[i]),
                "linf": float(linf[i]),
            }
            for i in range(len(self.x))
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "attempts": self.per_attempt()}


def run_attack(
    model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, samples: int,
    targets: str = "none", seed: int = 0,
) -> AttackRun:  # fmt: skip
    """Attack the first ``samples`` correctly classified inputs.

    ``targets="none"`` runs the attack untargeted; ``all``/``next``/``random`` run targeted
    attempts with the paper's protocol (:func:`defdistill.metrics.paper_success_rate`).
    """
    start = time.perf_counter()
    if targets == "none":
        correct = metrics.correct_mask(model, x, y).nonzero().flatten()[:samples]
        if not len(correct):
            raise nothing_to_attack(len(x))
        xs, ys = x[correct], y[correct]
        result = attack(model, xs, ys)
        run = AttackRun(xs, result.x_adv, ys, None, result.success, correct, {})
    else:
        xs, ys = first_correct(model, x, y, samples)
        if not len(xs):
            raise nothing_to_attack(len(x))
        report = metrics.paper_success_rate(model, attack, xs, ys, targets=targets, seed=seed)
        run = AttackRun(report.x, report.x_adv, ys[report.sample_index], report.target,
                        report.success, report.sample_index, {})  # fmt: skip
    seconds = time.perf_counter() - start
    delta = (run.x_adv - run.x)[run.success]
    summary: dict[str, Any] = {
        "samples": len(xs),
        "attempts": len(run.x),
        "success_rate": float(run.success.float().mean()) if len(run.x) else float("nan"),
        "seconds": seconds,
        "attempts_per_second": len(run.x) / seconds if seconds > 0 else float("nan"),
    }
    for name, values in (("l0_percent", 100 * metrics.l0_fraction(delta)),
                         ("l2", metrics.l2(delta)), ("linf", metrics.linf(delta))):  # fmt: skip
        stats = summary_stats(values)
        summary[f"mean_{name}"], summary[f"median_{name}"] = stats["mean"], stats["median"]
    run.summary = summary
    return run


def save_examples(path: str | Path, run: AttackRun, count: int = 8) -> None:
    """PNG grid of the first ``count`` successful attempts (original, adversarial, change)."""
    from defdistill.experiments.report import examples_grid

    hits = run.success.nonzero().flatten()[:count]
    panels = {
        f"#{int(run.sample_index[i])} label {int(run.label[i])} ({n})": {
            "x": run.x[i].tolist(), "x_adv": run.x_adv[i].tolist(),
            "target": "≠label" if run.target is None else int(run.target[i]),
        }
        for n, i in enumerate(hits)
    }  # fmt: skip
    png = examples_grid(panels)
    if png is None:
        raise ValueError("no successful attempt to draw; --save-examples wrote nothing")
    atomic_write_bytes(path, png)
