"""One attack on correctly classified test images drawn at random, per attempt and summarised.

What ``defdistill attack`` measures: an untargeted run, or targeted attempts with the
paper's protocol (Papernot et al. 2016, arXiv:1511.04508, :func:`.protocol.paper_success_rate`),
with the L0, L2 and L∞ distortion of every attempt. The images are drawn at random with a
recorded seed (:func:`.samples.random_correct_indices`), as the audit and the reproduction
draw theirs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from defdistill.attacks import Attack
from defdistill.evaluation.distances import l0_fraction, l2, linf, summary_stats
from defdistill.evaluation.protocol import paper_success_rate
from defdistill.evaluation.samples import random_correct_indices
from defdistill.names import UNTARGETED


class NothingToAttackError(ValueError):
    """No input is classified correctly, so there is nothing to attack."""


@dataclass
class AttackRun:
    """Per-attempt tensors and the summary of one run; ``sample_index``: each attempt's
    image, as its index in the test set; ``draw``: how the images were drawn (the seed and
    the indices of the attacked images, in draw order)."""

    x: torch.Tensor
    x_adv: torch.Tensor
    label: torch.Tensor
    target: torch.Tensor | None
    success: torch.Tensor
    sample_index: torch.Tensor
    summary: dict[str, Any]
    draw: dict[str, Any]

    def per_attempt(self) -> list[dict[str, Any]]:
        delta = self.x_adv - self.x
        l0s, l2s, linfs = 100 * l0_fraction(delta), l2(delta), linf(delta)
        return [
            {
                "sample_index": int(self.sample_index[i]),
                "label": int(self.label[i]),
                "target": None if self.target is None else int(self.target[i]),
                "success": bool(self.success[i]),
                "l0_percent": float(l0s[i]),
                "l2": float(l2s[i]),
                "linf": float(linfs[i]),
            }
            for i in range(len(self.x))
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "samples": self.draw, "attempts": self.per_attempt()}


def run_attack(
    model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, samples: int,
    targets: str = UNTARGETED, seed: int = 0,
) -> AttackRun:  # fmt: skip
    """Attack ``samples`` correctly classified inputs drawn at random with ``seed``.

    ``targets="none"`` (:data:`~defdistill.names.UNTARGETED`) runs the attack untargeted;
    ``all``/``next``/``random`` run targeted attempts with the paper's protocol
    (:func:`defdistill.evaluation.paper_success_rate`). The draw is
    :func:`defdistill.evaluation.samples.random_correct_indices`: the test set is predicted
    only until ``samples`` correct images are found; the run records the seed and the drawn
    indices (:attr:`AttackRun.draw`). ``seed`` also seeds the choice of ``random`` targets.

    Raises:
        NothingToAttackError: no input is classified correctly.
    """
    start = time.perf_counter()
    correct = random_correct_indices(model, x, y, samples, seed)
    if not len(correct):
        raise NothingToAttackError(f"none of the {len(x)} images is classified correctly: nothing to attack")
    xs, ys = x[correct], y[correct]
    draw = {"sampling": "random", "seed": seed, "n": len(correct), "test_images": len(x),
            "indices": correct.tolist()}  # fmt: skip
    if targets == UNTARGETED:
        result = attack(model, xs, ys)
        run = AttackRun(xs, result.x_adv, ys, None, result.success, correct, {}, draw)
    else:
        report = paper_success_rate(model, attack, xs, ys, targets=targets, seed=seed)
        run = AttackRun(report.x, report.x_adv, ys[report.sample_index], report.target,
                        report.success, correct[report.sample_index], {}, draw)  # fmt: skip
    seconds = time.perf_counter() - start
    delta = (run.x_adv - run.x)[run.success]
    summary: dict[str, Any] = {
        "samples": len(xs),
        "attempts": len(run.x),
        "success_rate": float(run.success.float().mean()) if len(run.x) else float("nan"),
        "seconds": seconds,
        "attempts_per_second": len(run.x) / seconds if seconds > 0 else float("nan"),
    }
    for name, found in (("l0_percent", 100 * l0_fraction(delta)),
                         ("l2", l2(delta)), ("linf", linf(delta))):  # fmt: skip
        stats = summary_stats(found)
        summary[f"mean_{name}"], summary[f"median_{name}"] = stats["mean"], stats["median"]
    run.summary = summary
    return run
