"""Run the reproduction pipeline on the tiny synthetic data set (used by the kill test).

    python tests/pipeline_runner.py OUT_DIR

Also the tiny profile and the comparisons the pipeline and executor tests share.
"""

import sys

import torch
from synthetic import make_synthetic

from defdistill.experiments.pipeline import reproduce_on
from defdistill.experiments.profiles import Profile

TINY = Profile(
    "tiny", (5.0, 50.0), epochs=2, batch_size=16, attack_samples=4, gradient_samples=16,
    adaptive_samples=4, cw_iterations=30, cw_search_steps=2,
    adversarial={"adversarial": "pgd", "adversarial_steps": 2, "optimizer": "adam", "lr": 1e-3},
)


TIMING_KEYS = {"seconds", "attempts_per_second", "timings", "train_seconds", "teacher_train_seconds"}


def tiny_dataset():
    return make_synthetic(n_train=320, n_test=64, num_classes=3, size=28, seed=1)


def without_timings(value):
    """``value`` without wall-clock times (nested dicts and lists)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def comparable(results: dict) -> dict:
    """A data set's ``results.json`` without timings, the library versions and the executor."""
    config = {k: v for k, v in results["config"].items() if k != "executor"}
    return without_timings({**{k: v for k, v in results.items() if k != "environment"}, "config": config})


if __name__ == "__main__":
    torch.set_num_threads(1)  # as the test session does: identical arithmetic
    reproduce_on(tiny_dataset(), TINY, sys.argv[1], progress=False)
