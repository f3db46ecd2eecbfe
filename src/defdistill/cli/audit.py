"""``defdistill audit``: the gradient-masking checks, the attack battery and a verdict."""

from __future__ import annotations

import argparse
from pathlib import Path

from defdistill.cli.options import (
    UsageError,
    add_common,
    add_data,
    load_for_data,
    nothing_to_attack,
    output_path,
    positive_float,
    positive_int,
    printable,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="gradient-masking checks, attack battery and a verdict")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path,
                       help="model to audit (defdistill's own): model directory or shipped name "
                            "(defdistill models)")
    which.add_argument("--factory", metavar="MODULE:CALLABLE",
                       help="a model you bring: CALLABLE() returns an nn.Module from (N, C, H, W) "
                            "in [0, 1] to logits; needs --weights and --dataset (see docs/guide/audit.md)")
    p.add_argument("--weights", type=Path, default=None,
                   help="with --factory: safetensors file of the module's state_dict")
    p.add_argument("--reference", type=Path, default=None,
                   help="undefended model of the same task (source of the transfer attack): model "
                        "directory or shipped name (defdistill models)")
    p.add_argument("--temperature", type=positive_float, default=None,
                   help="training temperature for the adaptive PGD (default: from meta.json)")
    p.add_argument("--samples", type=positive_int, default=100,
                   help="test images drawn at random with --seed (default 100); the correctly classified "
                        "ones are attacked, a clean error counts as a failure")
    p.add_argument("--jsma-samples", type=positive_int, default=20,
                   help="of which attacked by JSMA toward every other class (default 20)")
    p.add_argument("--cw-iterations", type=positive_int, default=1000,
                   help="C&W Adam steps per binary-search step (default 1000)")
    p.add_argument("--cw-search-steps", type=positive_int, default=6,
                   help="C&W binary-search steps over the constant (default 6)")
    p.add_argument("--apgd-steps", type=positive_int, default=100,
                   help="APGD iterations (default 100, as AutoAttack)")
    p.add_argument("--square-queries", type=positive_int, default=5000,
                   help="Square's query budget per image (default 5000)")
    p.add_argument("--preprocess", metavar="SUBMODULE", default=None,
                   help="name of a preprocessing submodule of the model (e.g. an input quantiser): adds "
                        "BPDA through it, taken as the identity (Athalye et al. 2018)")
    p.add_argument("--json", type=output_path, default=None, help="write the audit as JSON")
    add_data(p, for_model=True)
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defdistill.cli.outputs import check_output_file, model_files
    from defdistill.evaluation.audit import audit
    from defdistill.inference import correct_mask
    from defdistill.io import atomic_write_json

    inputs = [*model_files(args.model), *model_files(args.reference), *filter(None, [args.weights])]
    check_output_file(args.json, "--json", inputs)
    model, meta, ds = load_brought(args) if args.factory else load_for_data(args.model, args)
    reference = load_for_data(args.reference, args, ds.name)[0] if args.reference else None
    temperature = args.temperature or float(meta.get("temperature", 1.0))
    device = next(model.parameters()).device
    if not bool(correct_mask(model, ds.x_test.to(device), ds.y_test.to(device)).any()):
        raise nothing_to_attack(len(ds.x_test))
    report = audit(
        model, ds.x_test.to(device), ds.y_test.to(device), temperature=temperature,
        reference=reference, samples=args.samples, jsma_samples=args.jsma_samples,
        cw_iterations=args.cw_iterations, cw_search_steps=args.cw_search_steps,
        apgd_steps=args.apgd_steps, square_queries=args.square_queries, seed=args.seed,
        preprocess=args.preprocess,
    )  # fmt: skip
    config = report.config
    print(f"audit of {printable(args.model or args.factory)} ({printable(meta.get('role'))}, trained at "
          f"T={temperature:g}) on {config['samples']} correctly classified of {config['drawn']} test images "
          f"drawn at random (seed {config['sample_seed']})")
    print()
    print(f"{'check':<26} {'status':<9} finding")
    for f in report.findings:
        print(f"{f.check:<26} {f.severity:<9} {printable(f.message)}")
    print()
    print(f"{'id':<18} {'attack':<40} {'accuracy [95% CI]':>18}  success")
    for key, name, acc, succ in report.table():
        print(f"{key:<18} {name:<40} {acc:>18}  {succ}")
    print()
    robust = report.battery.robust_accuracy_dict()
    print(f"robust accuracy at L-inf eps {robust['eps']:.3g} (per image, no attack of "
          f"{', '.join(robust['attacks'])} fooled it):")
    for name, what in (("unconditional", "a clean error counts as a failure"),
                       ("conditional", "on the correctly classified images")):  # fmt: skip
        p = robust[f"{name}_interval"]
        print(f"  {name} ({what}): {100 * p['rate']:.1f}% [{100 * p['low']:.1f}, {100 * p['high']:.1f}] "
              f"of {p['n']} images")
    print(f"verdict: {report.verdict.text}")
    if args.json:
        atomic_write_json(args.json, {"model": str(args.model or args.factory), **report.to_dict()})
    return 0


def load_brought(args: argparse.Namespace):
    """``(model, meta, dataset)`` for ``--factory`` and ``--weights``, checked on one test image."""
    import torch

    from defdistill.checkpoint import load_factory_model
    from defdistill.data import load_dataset
    from defdistill.devices import resolve_device

    if args.weights is None:
        raise UsageError("--factory needs --weights, the safetensors file of the model's state_dict")
    if args.dataset is None:
        raise UsageError("--factory needs --dataset: the data set the model was trained on")
    model = load_factory_model(args.factory, args.weights, resolve_device(args.device))
    ds = load_dataset(args.dataset, args.data_dir, args.limit_train, args.limit_test, train=False)
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            out = model(ds.x_test[:2].to(device))
    except Exception as err:  # any failure of user code on our inputs
        raise UsageError(f"--factory {args.factory}: the model fails on {ds.name} inputs "
                         f"{list(ds.x_test.shape[1:])} ({type(err).__name__}: {err})"[:300]) from None
    if out.ndim != 2 or out.shape[1] != ds.num_classes:
        raise UsageError(f"--factory {args.factory}: outputs of shape {list(out.shape)}, expected "
                         f"(N, {ds.num_classes}) logits for {ds.name}")  # fmt: skip
    return model, {"role": "user model", "temperature": 1.0}, ds
