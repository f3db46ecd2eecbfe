"""Is a distilled student's larger C&W distance its decision boundary, or C&W on large logits?

Carlini & Wagner L2 (arXiv:1608.04644) needs a larger mean L2 on the MNIST paper profile's
T = 100 student than on its baseline (1.46 against 1.12, `docs/paper`). The student's
logits are about 76 times the baseline's, and C&W weighs its logit margin by a constant it
searches from 1e-3: scale changes the optimisation, not the decision boundary. Four arms on
the same images, each with the predictions (argmax) of its unscaled network: the baseline,
the baseline × T, the student, the student ÷ T (``ScaledLogits``). If the student ÷ T needs
the student's L2, the distance is the boundary's; if it needs the baseline's, the scale.

``--images`` test images drawn at random with ``--seed`` among those both networks classify
correctly; untargeted C&W L2, 9 binary-search steps of up to ``--iterations`` Adam steps.
Each arm's success (Wilson interval) and mean L2 over the fooled images (bootstrap), and
the paired mean difference of L2 over the images both arms of a pair fooled::

    OMP_NUM_THREADS=1 python benchmarks/cw_scale.py [--baseline mnist-baseline]
        [--student mnist-distilled-T100] [--images 100] [--iterations 1000] [--seed 0]
        [--out docs/ablations/cw_scale.json]

``--baseline`` and ``--student`` are shipped model names or model directories.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import defdistill
from defdistill.attacks import CarliniWagnerL2
from defdistill.checkpoint import load_model
from defdistill.data import load_dataset
from defdistill.devices import machine_label
from defdistill.evaluation import distances
from defdistill.evaluation.ablations import ScaledLogits
from defdistill.evaluation.samples import random_common_correct
from defdistill.evaluation.stats import MeanEstimate, Proportion
from defdistill.inference import correct_mask


def load(name: str) -> tuple[nn.Module, dict[str, Any]]:
    """A shipped model by name, or a model directory."""
    return load_model(name) if Path(name).is_dir() else defdistill.load_pretrained(name)


def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, iterations: int) -> dict[str, Any]:
    """Untargeted C&W L2 on ``model``: which images it fooled and every image's L2."""
    start = time.perf_counter()
    x_adv = CarliniWagnerL2(max_iterations=iterations, binary_search_steps=9)(model, x, y).x_adv
    fooled = ~correct_mask(model, x_adv, y)
    l2 = distances.l2(x_adv - x)
    return {"success": Proportion.from_mask(fooled).to_dict(),
            "mean_l2": MeanEstimate.of(l2[fooled]).to_dict(),
            "fooled": fooled.tolist(), "l2": l2.tolist(), "seconds": time.perf_counter() - start}  # fmt: skip


def paired(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Mean of ``b``'s L2 minus ``a``'s over the images both fooled, with its bootstrap interval."""
    both = torch.tensor(a["fooled"]) & torch.tensor(b["fooled"])
    difference = (torch.tensor(b["l2"]) - torch.tensor(a["l2"]))[both]
    means = a["mean_l2"]["mean"], b["mean_l2"]["mean"]
    return {"images": int(both.sum()), "mean_difference": MeanEstimate.of(difference).to_dict(),
            "ratio_of_means": None if None in means else means[1] / means[0]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--baseline", default="mnist-baseline")
    parser.add_argument("--student", default="mnist-distilled-T100")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/ablations/cw_scale.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    baseline, base_meta = load(args.baseline)
    student, meta = load(args.student)
    temperature = float(meta["temperature"])
    ds = load_dataset("mnist", train=False)
    idx = random_common_correct([baseline, student], ds.x_test, ds.y_test, args.images, args.seed)
    x, y = ds.x_test[idx], ds.y_test[idx]
    arms = {"baseline": baseline, "baseline x T": ScaledLogits(baseline, temperature),
            "student": student, "student / T": ScaledLogits(student, 1 / temperature)}  # fmt: skip
    out: dict[str, Any] = {
        "baseline": args.baseline, "student": args.student, "temperature": temperature,
        "weights_sha256": {"baseline": base_meta["weights_sha256"], "student": meta["weights_sha256"]},
        "seed": args.seed, "indices": idx.tolist(), "iterations": args.iterations, "search_steps": 9,
        "machine": machine_label(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "arms": {},
    }  # fmt: skip
    for name, model in arms.items():
        out["arms"][name] = found = attack(model.eval(), x, y, args.iterations)
        logging.info("%s: fooled %d/%d, mean L2 %s, %.0f s", name, found["success"]["k"],
                     found["success"]["n"], found["mean_l2"]["mean"], found["seconds"])  # fmt: skip
    out["scale_on_the_baseline"] = paired(out["arms"]["baseline"], out["arms"]["baseline x T"])
    out["scale_on_the_student"] = paired(out["arms"]["student / T"], out["arms"]["student"])
    out["student_against_baseline"] = paired(out["arms"]["baseline"], out["arms"]["student / T"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    logging.info("%s", json.dumps({k: out[k] for k in ("scale_on_the_baseline", "scale_on_the_student",
                                                       "student_against_baseline")}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
