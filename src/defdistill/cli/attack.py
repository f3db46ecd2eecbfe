"""``defdistill attack``: run one attack on a model's test images and summarise it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

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
from defdistill.names import PGD_LOSSES, UNTARGETED, JsmaOn, Norm, TargetMode, values

if TYPE_CHECKING:  # imported where used: parsing stays torch-free
    from defdistill.attacks import Attack
    from defdistill.evaluation.attack_run import AttackRun



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attack", help="attack a model and report success and distortions")
    p.add_argument("--model", type=Path, required=True,
                   help="model directory or shipped name (defdistill models)")
    p.add_argument("--attack", required=True, choices=["jsma", "fgsm", "pgd", "cw"])
    p.add_argument("--samples", type=positive_int, default=100,
                   help="N correctly classified test images, drawn at random with --seed (default 100)")
    p.add_argument("--targets", choices=[UNTARGETED, *values(TargetMode)], default=None,
                   help="targeted attempts per sample (default: all for jsma, none otherwise)")
    p.add_argument("--eps", type=non_negative_float, default=0.3, help="FGSM/PGD budget (default 0.3)")
    p.add_argument("--norm", choices=values(Norm), default=Norm.LINF, help="PGD norm")
    p.add_argument("--steps", type=positive_int, default=40, help="PGD steps (default 40)")
    p.add_argument("--loss", choices=values(PGD_LOSSES), default=PGD_LOSSES[0], help="FGSM/PGD loss")
    p.add_argument("--temperature", type=positive_float, default=1.0,
                   help="attack softmax(logits / T) (FGSM/PGD/JSMA on probs; default 1)")
    p.add_argument("--theta", type=float, default=1.0, choices=[1.0, -1.0], help="JSMA theta")
    p.add_argument("--gamma", type=fraction, default=0.145, help="JSMA max fraction changed")
    p.add_argument("--on", choices=[JsmaOn.PROBS, JsmaOn.LOGITS], default=JsmaOn.PROBS,
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
    from defdistill.evaluation.attack_run import NothingToAttackError, run_attack
    from defdistill.io import atomic_write_json

    inputs = model_files(args.model)
    check_output_file(args.json, "--json", inputs)
    check_output_file(args.save_examples, "--save-examples", [*inputs, *([args.json] if args.json else [])])
    attack = build_attack(args)
    model, meta, ds = load_for_data(args.model, args)
    targets = args.targets or (TargetMode.ALL if args.attack == "jsma" else UNTARGETED)
    device = next(model.parameters()).device
    try:
        run = run_attack(model, attack, ds.x_test.to(device), ds.y_test.to(device), args.samples,
                         targets, seed=args.seed)  # fmt: skip
    except NothingToAttackError:
        raise nothing_to_attack(len(ds.x_test)) from None
    s = run.summary
    print(f"{attack!r} on {printable(args.model)} ({printable(meta.get('role'))}, "
          f"T={meta.get('temperature', 1):g}): "
          f"{s['samples']} samples, {s['attempts']} attempts (targets: {targets}; "
          f"images drawn at random with seed {args.seed})")
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
