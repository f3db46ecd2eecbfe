"""``defdistill evaluate``: test accuracy and softmax saturation of a saved model."""

from __future__ import annotations

import argparse
from pathlib import Path

from defdistill.cli.options import add_common, add_data, load_for_data, printable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="test accuracy and softmax saturation of a model")
    p.add_argument("--model", type=Path, required=True,
                   help="model directory or shipped name (defdistill models)")
    add_data(p, for_model=True)
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defdistill.inference import evaluate

    model, meta, ds = load_for_data(args.model, args)
    result = evaluate(model, ds.x_test, ds.y_test, temperature=1.0)
    print(f"{printable(args.model)}: {printable(meta.get('role'))} trained at "
          f"T={meta.get('temperature', 1):g}, "
          f"deployed at T=1 on {len(ds.x_test)} {ds.name} test images")
    print(f"  accuracy              {result['accuracy']:.2%}")
    print(f"  mean max-probability  {result['mean_max_probability']:.6f}")
    print(f"  saturated (p_max==1)  {result['saturated_fraction']:.2%}")
    return 0
