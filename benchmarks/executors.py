"""Benchmark: the reproduction sweep with the local executor against Ray, and Ray's cost per task.

1. Overhead per task: ``--tasks`` no-op tasks through each executor, first with a tiny
   shared object, then with the sweep's data set as the shared object (Ray ships it to
   its workers through the object store; each task deserialises it).
2. A sweep (the ``quick`` MNIST profile, reduced with the options below so that it runs
   twice in minutes) into two fresh directories: local executor, then Ray with
   ``--workers`` workers of one CPU each. Prints both wall times, the ratio, and whether
   both runs measured the same numbers.

    python benchmarks/executors.py [--workers 2] [--tasks 200] [--limit-train 10000]
        [--limit-test 1000] [--attack-samples 10] [--adaptive-samples 10] [--skip-sweep]

Run it with ``OMP_NUM_THREADS=1``: the local executor then trains and attacks on one
thread, as every Ray worker does, and the comparison is one core against ``--workers``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from defdistill.data.mnist import load_mnist
from defdistill.experiments.executors import Executor, LocalExecutor, RayExecutor
from defdistill.experiments.pipeline import reproduce_on
from defdistill.experiments.profiles import get_profile

TIMINGS = {"seconds", "attempts_per_second", "timings", "train_seconds", "teacher_train_seconds", "executor"}


def noop(shared: Any, task: int) -> int:
    """A task doing nothing: what is left is the executor's own cost."""
    return task


def per_task_seconds(executor: Executor, tasks: int, shared: Any) -> float:
    """Seconds per task of ``tasks`` no-op tasks (after one warm-up round)."""
    list(executor.map(noop, list(range(4)), shared))  # start workers, ship ``shared`` once
    start = time.perf_counter()
    assert list(executor.map(noop, list(range(tasks)), shared)) == list(range(tasks))
    return (time.perf_counter() - start) / tasks


def measured(result: dict) -> Any:
    """Everything a sweep measured, without timings."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in TIMINGS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(result["models"])


def sweep(executor: Executor, ds: Any, profile: Any, out: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    reproduce_on(ds, profile, out, progress=False, executor=executor)
    seconds = time.perf_counter() - start
    return seconds, json.loads((out / ds.name / "results.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="Ray CPUs (one per task)")
    parser.add_argument("--tasks", type=int, default=200, help="no-op tasks per overhead run")
    parser.add_argument("--limit-train", type=int, default=10000)
    parser.add_argument("--limit-test", type=int, default=1000)
    parser.add_argument("--attack-samples", type=int, default=10)
    parser.add_argument("--adaptive-samples", type=int, default=10)
    parser.add_argument("--skip-sweep", action="store_true", help="only the overhead per task")
    args = parser.parse_args()

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only (before import)
    import ray

    print(f"torch threads in this process: {torch.get_num_threads()}; CPUs: {os.cpu_count()}; "
          f"load average: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")  # fmt: skip
    start = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="WARNING")
    print(f"ray.init with {args.workers} CPUs: {time.perf_counter() - start:.2f} s")
    local, remote = LocalExecutor(), RayExecutor(cpus_per_task=1, max_retries=0)

    ds = load_mnist(limit_train=args.limit_train, limit_test=args.limit_test)
    mb = sum(t.numel() * t.element_size() for t in (ds.x_train, ds.y_train, ds.x_test, ds.y_test)) / 2**20
    print(f"\noverhead per task, {args.tasks} no-op tasks")
    print("| shared object | local ms/task | ray ms/task | ray - local |")
    print("|---|--:|--:|--:|")
    for label, shared in (("none", None), (f"the data set ({mb:.0f} MB)", ds)):
        ms_local = 1e3 * per_task_seconds(local, args.tasks, shared)
        ms_ray = 1e3 * per_task_seconds(remote, args.tasks, shared)
        print(f"| {label} | {ms_local:.4f} | {ms_ray:.2f} | {ms_ray - ms_local:.2f} |")

    if not args.skip_sweep:
        profile = get_profile("mnist", "quick").with_overrides(
            limit_train=args.limit_train, limit_test=args.limit_test,
            attack_samples=args.attack_samples, adaptive_samples=args.adaptive_samples,
        )  # fmt: skip
        n = 1 + 2 * len(profile.temperatures)
        print(f"\nsweep: quick MNIST profile, {args.limit_train} training / {args.limit_test} test "
              f"images, temperatures {profile.temperatures}, {n} networks trained, "
              f"{1 + len(profile.temperatures)} evaluated")  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            t_local, r_local = sweep(local, ds, profile, Path(tmp) / "local")
            t_ray, r_ray = sweep(remote, ds, profile, Path(tmp) / "ray")
        print("| executor | wall time s |")
        print("|---|--:|")
        print(f"| local (1 process, {torch.get_num_threads()} thread(s)) | {t_local:.1f} |")
        print(f"| ray ({args.workers} workers x 1 CPU) | {t_ray:.1f} |")
        print(f"speed-up local / ray: {t_local / t_ray:.2f}x; "
              f"same measurements: {measured(r_local) == measured(r_ray)}")  # fmt: skip
    print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    ray.shutdown()


if __name__ == "__main__":
    main()
