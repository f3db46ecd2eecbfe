"""``defdistill attack``: run one attack on a model's test images and summarise it."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from defdistill.cli.choices import NORMS, TARGET_MODES
from defdistill.cli.options import (
    add_common,
    add_data,
    fraction,
    load_for_data,
    non_negative_float,
    nothing_to_attack,
    output_path,
    positive_float,
    positive_int,
    printable,
)

if TYPE_CHECKING:  # imported where used: parsing stays torch-free
    import torch
    from torch import nn

    from defdistill.attacks import Attack

UNTARGETED = "none"
ALL_TARGETS = "all"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attack", help="attack a model and report success and distortions")
    p.add_argument("--model", type=Path, required=True,
                   help="model directory or shipped name (defdistill models)")
    p.add_argument("--attack", required=True, choices=["jsma", "fgsm", "pgd", "cw"])
    p.add_argument("--samples", type=positive_int, default=100,
                   help="first N correctly classified test images (default 100)")
    p.add_argument("--targets", choices=[UNTARGETED, *TARGET_MODES], default=None,
                   help="targeted attempts per sample (default: all for jsma, none otherwise)")
    p.add_argument("--eps", type=non_negative_float, default=0.3, help="FGSM/PGD budget (default 0.3)")
    p.add_argument("--norm", choices=NORMS, default=NORMS[0], help="PGD norm")
    p.add_argument("--steps", type=positive_int, default=40, help="PGD steps (default 40)")
    p.add_argument("--loss", choices=["ce", "margin"], default="ce", help="FGSM/PGD loss")
    p.add_argument("--temperature", type=positive_float, default=1.0,
                   help="attack softmax(logits / T) (FGSM/PGD/JSMA on probs; default 1)")
    p.add_argument("--theta", type=float, default=1.0, choices=[1.0, -1.0], help="JSMA theta")
    p.add_argument("--gamma", type=fraction, default=0.145, help="JSMA max fraction changed")
    p.add_argument("--on", choices=["probs", "logits"], default="probs",
                   help="JSMA on the softmax F (paper) or the logits Z (adaptive)")
    p.add_argument("--iterations", type=positive_int, default=1000, help="C&W Adam steps")
    p.add_argument("--search-steps", type=positive_int, default=9, help="C&W binary search")
    p.add_argument("--confidence", type=non_negative_float, default=0.0, help="C&W confidence kappa")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="attack at most N inputs at once (bounds memory; default: all)")
    p.add_argument("--json", type=output_path, default=None, help="write summary and per-sample results")
    p.add_argument("--save-examples", type=output_path, default=None,
                   help="PNG grid of originals, adversarials and perturbations")
    add_data(p, for_model=True)
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defdistill.cli.outputs import check_output_file, model_files
    from defdistill.io import atomic_write_json

    inputs = model_files(args.model)
    check_output_file(args.json, "--json", inputs)
    check_output_file(args.save_examples, "--save-examples", [*inputs, *([args.json] if args.json else [])])
    attack = build_attack(args)
    model, meta, ds = load_for_data(args.model, args)
    targets = args.targets or (ALL_TARGETS if args.attack == "jsma" else UNTARGETED)
    device = next(model.parameters()).device
    run = run_attack(model, attack, ds.x_test.to(device), ds.y_test.to(device), args.samples,
                     targets, seed=args.seed)  # fmt: skip
    s = run.summary
    print(f"{attack!r} on {printable(args.model)} ({printable(meta.get('role'))}, "
          f"T={meta.get('temperature', 1):g}): "
          f"{s['samples']} samples, {s['attempts']} attempts (targets: {targets})")
    if s["samples"] < args.samples:
        print(f"  note: only {s['samples']} of the {len(ds.x_test)} test images are classified "
              f"correctly, fewer than --samples {args.samples}")  # fmt: skip
    print(f"  success rate     {100 * s['success_rate']:.1f}%")
    for norm in ("l0_percent", "l2", "linf"):
        mean, median = s[f"mean_{norm}"], s[f"median_{norm}"]
        if mean is not None:
            print(f"  {norm:<16} mean {mean:.4g}, median {median:.4g} (successful attempts)")
    print(f"  speed            {s['attempts_per_second']:.1f} attempts/s ({s['seconds']:.1f} s)")
    if args.json:
        atomic_write_json(args.json, {"model": str(args.model), "attack": repr(attack),
                                      **run.to_dict()})  # fmt: skip
    if args.save_examples:
        save_examples(args.save_examples, run)
    return 0


def build_attack(args: argparse.Namespace) -> Attack:
    """The attack object for the command-line options (raises ValueError on bad values)."""
    from defdistill.attacks import FGSM, JSMA, PGD, CarliniWagnerL2

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


@dataclass
class AttackRun:
    """Per-attempt tensors and the summary of one run; ``sample_index``: each attempt's
    image, as its index in the test set."""

    x: torch.Tensor
    x_adv: torch.Tensor
    label: torch.Tensor
    target: torch.Tensor | None
    success: torch.Tensor
    sample_index: torch.Tensor
    summary: dict[str, Any]

    def per_attempt(self) -> list[dict[str, Any]]:
        from defdistill.evaluation.distances import l0_fraction, l2, linf

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
        return {"summary": self.summary, "attempts": self.per_attempt()}


def run_attack(
    model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, samples: int,
    targets: str = UNTARGETED, seed: int = 0,
) -> AttackRun:  # fmt: skip
    """Attack the first ``samples`` correctly classified inputs.

    ``targets="none"`` runs the attack untargeted; ``all``/``next``/``random`` run targeted
    attempts with the paper's protocol (:func:`defdistill.evaluation.paper_success_rate`).
    The test set is predicted only until ``samples`` correct images are found.
    """
    from defdistill.evaluation.distances import l0_fraction, l2, linf, summary_stats
    from defdistill.evaluation.protocol import paper_success_rate
    from defdistill.evaluation.samples import first_correct_indices

    start = time.perf_counter()
    correct = first_correct_indices(model, x, y, samples)
    if not len(correct):
        raise nothing_to_attack(len(x))
    xs, ys = x[correct], y[correct]
    if targets == UNTARGETED:
        result = attack(model, xs, ys)
        run = AttackRun(xs, result.x_adv, ys, None, result.success, correct, {})
    else:
        report = paper_success_rate(model, attack, xs, ys, targets=targets, seed=seed)
        run = AttackRun(report.x, report.x_adv, ys[report.sample_index], report.target,
                        report.success, correct[report.sample_index], {})  # fmt: skip
    seconds = time.perf_counter() - start
    delta = (run.x_adv - run.x)[run.success]
    summary: dict[str, Any] = {
        "samples": len(xs),
        "attempts": len(run.x),
        "success_rate": float(run.success.float().mean()) if len(run.x) else float("nan"),
        "seconds": seconds,
        "attempts_per_second": len(run.x) / seconds if seconds > 0 else float("nan"),
    }
    for name, values in (("l0_percent", 100 * l0_fraction(delta)),
                         ("l2", l2(delta)), ("linf", linf(delta))):  # fmt: skip
        stats = summary_stats(values)
        summary[f"mean_{name}"], summary[f"median_{name}"] = stats["mean"], stats["median"]
    run.summary = summary
    return run


def save_examples(path: str | Path, run: AttackRun, count: int = 8) -> None:
    """PNG grid of the first ``count`` successful attempts (original, adversarial, change)."""
    from defdistill.experiments.report import examples_grid
    from defdistill.io import atomic_write_bytes

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
