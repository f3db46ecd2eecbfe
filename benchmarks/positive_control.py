"""Measurement: does an adversarially trained MNIST model hold at ε = 0.3?

The audit's positive control must stay robust (Madry et al. 2018, arXiv:1706.06083): this
script measures a saved model's accuracy on ``--samples`` test images drawn at random
(seeded) under PGD-40 with a random start, APGD-CE and APGD-DLR (Croce & Hein 2020,
arXiv:2003.01690, 100 steps each), and the per-image worst case over the three, each with
its 95 % Wilson interval. Used to choose the quick profile's control (docs/training.md).

    python benchmarks/positive_control.py MODEL_DIR [--samples 200] [--eps 0.3] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import torch

from defdistill.attacks import APGD, PGD
from defdistill.checkpoint import load_model
from defdistill.data.mnist import load_mnist
from defdistill.evaluation.stats import Proportion


def show(name: str, p: Proportion) -> None:
    print(f"{name:<22} {p.rate:7.2%}  [{p.low:.2%}, {p.high:.2%}]  ({p.k}/{p.n})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model, meta = load_model(args.model, torch.device("cpu"))
    ds = load_mnist(limit_train=1)
    index = torch.randperm(len(ds.x_test), generator=torch.Generator().manual_seed(args.seed))
    x, y = ds.x_test[index[: args.samples]], ds.y_test[index[: args.samples]]
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    robust = clean.clone()
    print(f"{args.model}: {meta['config']}, trained in {meta['train_seconds']:.0f} s")
    show("clean", Proportion.from_mask(clean))
    attacks = {
        "PGD-40": PGD(eps=args.eps, steps=40, seed=args.seed),
        "APGD-CE": APGD(eps=args.eps, loss="ce", seed=args.seed),
        "APGD-DLR": APGD(eps=args.eps, loss="dlr", seed=args.seed),
    }
    for name, attack in attacks.items():
        start = time.perf_counter()
        fooled = attack(model, x, y).success
        show(f"{name} ({time.perf_counter() - start:.0f} s)", Proportion.from_mask(clean & ~fooled))
        robust &= ~fooled
    show("worst case", Proportion.from_mask(robust))


if __name__ == "__main__":
    main()
