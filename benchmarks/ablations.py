"""The mechanism, isolated on the shipped models; and PGD's per-image worst case on CIFAR-10.

* ``mnist``: the two ablations of :mod:`defdistill.evaluation.ablations` (Papernot et al.
  2016, arXiv:1511.04508; Carlini & Wagner 2016, arXiv:1607.04311) on ``mnist-baseline``
  and ``mnist-distilled-T100``: scale alone (the baseline's logits × 100) and precision
  alone (both in float64). ``--images`` test images drawn at random with ``--seed`` among
  those both models classify correctly; JSMA toward all 9 other classes on the first
  ``--jsma-images`` of them, gradients on all.
* ``cifar``: ``cifar10-subset-distilled-T20`` under untargeted PGD at L∞ 8/255 (40 steps,
  random start, seed 0; Madry et al. 2018, arXiv:1706.06083) with three losses: CE on F,
  CE on Z / 20 and the logit margin. ``--images`` random correctly classified test images
  of the embedded subset (seeded). Each attack's accuracy, and the per-image worst case
  (an image counts as robust only if no attack fooled it, AutoAttack's convention) beside
  the smallest single accuracy.

Every rate carries ``n`` and a 95 % Wilson interval; the drawn indices and the seed are
stored in the JSON::

    OMP_NUM_THREADS=1 python benchmarks/ablations.py [--only mnist cifar] [--images 100]
        [--jsma-images 100] [--seed 0] [--out docs/ablations/ablations.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

import defdistill
from defdistill.attacks import PGD
from defdistill.data import load_dataset
from defdistill.evaluation.ablations import run_ablations
from defdistill.evaluation.samples import random_common_correct, random_correct_indices
from defdistill.evaluation.stats import Proportion
from defdistill.inference import correct_mask

CIFAR_EPS = 8 / 255
CIFAR_T = 20.0


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mnist(images: int, jsma_images: int, seed: int) -> dict[str, Any]:
    """The two ablations on the shipped MNIST baseline and T = 100 student."""
    baseline, _ = defdistill.load_pretrained("mnist-baseline")
    student, meta = defdistill.load_pretrained("mnist-distilled-T100")
    temperature = float(meta.get("temperature", 100.0))
    ds = load_dataset("mnist", train=False)
    idx = random_common_correct([baseline, student], ds.x_test, ds.y_test, images, seed)
    start = time.perf_counter()
    out = run_ablations(baseline, student, ds.x_test[idx], ds.y_test[idx], temperature, jsma_images,
                        seed=seed)  # fmt: skip
    return {"models": ["mnist-baseline", "mnist-distilled-T100"], "seed": seed,
            "indices": idx.tolist(), **out, "seconds": time.perf_counter() - start}  # fmt: skip


def cifar(images: int, seed: int) -> dict[str, Any]:
    """Per image, which PGD variant fools the shipped CIFAR-10-subset student at T = 20."""
    model, _ = defdistill.load_pretrained("cifar10-subset-distilled-T20")
    ds = load_dataset("cifar10-subset", train=False)
    idx = random_correct_indices(model, ds.x_test, ds.y_test, images, seed)
    x, y = ds.x_test[idx], ds.y_test[idx]
    variants = {"pgd_ce_f": {"loss": "ce", "temperature": 1.0},
                "pgd_ce_z_over_t": {"loss": "ce", "temperature": CIFAR_T},
                "pgd_margin": {"loss": "margin", "temperature": 1.0}}  # fmt: skip
    start = time.perf_counter()
    fooled: dict[str, torch.Tensor] = {}
    for name, kwargs in variants.items():
        result = PGD(eps=CIFAR_EPS, steps=40, seed=0, **kwargs)(model, x, y)
        fooled[name] = ~correct_mask(model, result.x_adv, y)
    union = torch.stack(list(fooled.values())).any(dim=0)
    accuracy = {name: Proportion.from_mask(~mask) for name, mask in fooled.items()}
    worst = Proportion.from_mask(~union)
    only = {name: int((mask & ~torch.stack([m for k, m in fooled.items() if k != name]).any(0)).sum())
            for name, mask in fooled.items()}  # fmt: skip
    return {
        "model": "cifar10-subset-distilled-T20", "seed": seed, "indices": idx.tolist(),
        "eps": CIFAR_EPS, "norm": "linf", "steps": 40, "random_start": True, "attack_seed": 0,
        "variants": variants,
        "accuracy": {name: p.to_dict() for name, p in accuracy.items()},
        "worst_case": worst.to_dict(),
        "smallest_single": min(p.rate for p in accuracy.values()),
        "fooled_only_by": only,
        "fooled": {name: mask.nonzero().flatten().tolist() for name, mask in fooled.items()},
        "seconds": time.perf_counter() - start,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=("mnist", "cifar"), default=["mnist", "cifar"])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--jsma-images", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/ablations/ablations.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result: dict[str, Any] = {
        "command": "python benchmarks/ablations.py " + " ".join(sys.argv[1:]),
        "cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
    }  # fmt: skip
    if "mnist" in args.only:
        result["mnist"] = mnist(args.images, args.jsma_images, args.seed)
    if "cifar" in args.only:
        result["cifar10_subset"] = cifar(args.images, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
