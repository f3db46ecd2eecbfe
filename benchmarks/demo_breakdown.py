"""Measurement: where an evaluation unit's time goes, and C&W's distance against its budget.

Runs the sweep's own measurements (:func:`defdistill.experiments.tasks.measure`, the
profile's sample counts) on saved MNIST models and prints each step's time and the
masking verdict the reproduction would give (:func:`defdistill.evaluation.checks.assess`), then, with
``--cw-budgets``, the mean L2 of Carlini & Wagner (arXiv:1608.04644) against the number of
Adam iterations per binary-search step, with a bootstrap interval over images.

Times are the process's CPU seconds (``time.process_time``): with ``OMP_NUM_THREADS=1``
that is what the step takes on one idle core, whatever else shares the machine.

    OMP_NUM_THREADS=1 python benchmarks/demo_breakdown.py BASELINE_DIR [MODEL_DIR[:T] ...] \\
        [--profile quick] [--seed 0] [--cw-budgets 25,50,100,200]

``MODEL_DIR:T`` is a student distilled at T; a ``MODEL_DIR`` without ``:T`` is measured as the
sweep measures the baseline and the positive control. The test images are drawn at random with
``--seed``, as the sweep draws them.
"""

from __future__ import annotations

import argparse
import time

import torch

from defdistill.attacks import CarliniWagnerL2
from defdistill.checkpoint import load_model
from defdistill.data.mnist import load_mnist
from defdistill.evaluation.battery import BatteryResult
from defdistill.evaluation.checks import assess
from defdistill.evaluation.distances import l2 as l2_norm
from defdistill.evaluation.samples import random_correct_indices
from defdistill.evaluation.stats import MeanEstimate
from defdistill.experiments import timing
from defdistill.experiments.profiles import get_profile
from defdistill.experiments.tasks import measure
from defdistill.experiments.timing import Stopwatch
from defdistill.inference import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline")
    parser.add_argument("models", nargs="*", help="DIR:T (a student distilled at T) or DIR")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--cw-budgets", default="", help="e.g. 25,50,100,200")
    parser.add_argument("--skip-measure", action="store_true", help="only the C&W budgets")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draw of images (default 0)")
    args = parser.parse_args()
    timing.time.perf_counter = time.process_time  # the Stopwatch books CPU seconds here
    profile = get_profile("mnist", args.profile)
    ds = load_mnist(limit_train=1, limit_test=profile.limit_test)
    baseline, _ = load_model(args.baseline, torch.device("cpu"))
    models = [(args.baseline, baseline, None)]
    for spec in args.models:
        path, _, t = spec.partition(":")
        models.append((path, load_model(path, torch.device("cpu"))[0], float(t) if t else None))
    print(f"profile {profile.name}: {profile.to_dict()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); CPU seconds")
    for path, model, temperature in models:
        if not args.skip_measure:
            clock = Stopwatch(path)
            row = measure(model, baseline, ds.x_test, ds.y_test, profile, temperature, args.seed, clock=clock)
            steps = "  ".join(f"{k} {v:.1f}" for k, v in clock.seconds.items())
            print(f"{path}: total {sum(clock.seconds.values()):.1f}  {steps}")
            saturated = evaluate(model, ds.x_test, ds.y_test)["saturated_fraction"]
            _, verdict = assess(BatteryResult.from_dict(row).evidence(
                zero_gradient_fraction=row["gradients"]["zero_fraction"], saturated_fraction=saturated))
            attacks = row["attacks"]
            pgd = {k: attacks[k]["accuracy"] for k in ("pgd-ce-f", "pgd-ce-zt", "pgd-margin") if k in attacks}
            print(f"{path}: JSMA on F {attacks['jsma-f']['success_rate']:.1%}, on Z "
                  f"{attacks['jsma-z']['success_rate']:.1%}, PGD accuracy {pgd}, C&W mean L2 "
                  f"{attacks['cw-l2']['mean_l2']:.3f}; verdict: {verdict.text}", flush=True)
        if args.cw_budgets:
            index = random_correct_indices(model, ds.x_test, ds.y_test, profile.adaptive_samples, args.seed)
            xs, ys = ds.x_test[index], ds.y_test[index]
            for budget in (int(b) for b in args.cw_budgets.split(",")):
                attack = CarliniWagnerL2(max_iterations=budget, binary_search_steps=profile.cw_search_steps)
                start = time.process_time()
                result = attack(model, xs, ys)
                seconds = time.process_time() - start
                l2 = MeanEstimate.of(l2_norm(result.x_adv - xs)[result.success])
                print(f"{path}: C&W {budget:4d} iterations x {profile.cw_search_steps}: success "
                      f"{result.success_rate:.1%} of {len(xs)}, mean L2 {l2.mean:.3f} "
                      f"[{l2.low:.3f}, {l2.high:.3f}] (n = {l2.n}), {seconds:.1f} s")


if __name__ == "__main__":
    main()
