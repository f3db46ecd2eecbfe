"""``defdistill reproduce``: the paper's temperature sweep, measured and reported (resumable)."""

from __future__ import annotations

import argparse
from pathlib import Path

from defdistill.cli.options import (
    UsageError,
    add_common,
    add_data,
    add_precision,
    fraction,
    non_negative_int,
    output_path,
    positive_int,
    seed_list,
    temperature_list,
)
from defdistill.names import ExecutorKind, values

# the Ray executor's options, each with its default
RAY_ONLY = (("address", None), ("cpus_per_task", 1), ("max_retries", 2), ("gpus_per_task", 1.0))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="the paper's temperature sweep, measurements, plots and report (resumable)",
    )
    p.add_argument("--profile", default="quick", choices=["quick", "paper"],
                   help="quick: three temperatures, four epochs, fewer attacked images, the shipped "
                        "positive control (13-27 min on two CPU cores, README); paper: the paper's settings")
    p.add_argument("--temperatures", type=temperature_list, default=None,
                   help="comma-separated distillation temperatures (default: the profile's)")
    p.add_argument("--epochs", type=positive_int, default=None, help="override the profile")
    p.add_argument("--batch-size", type=positive_int, default=None, help="override the profile")
    p.add_argument("--attack-samples", type=positive_int, default=None,
                   help="correctly classified test images attacked by JSMA (per model)")
    p.add_argument("--adaptive-samples", type=positive_int, default=None,
                   help="test images for the adaptive attacks (per model)")
    p.add_argument("--cw-iterations", type=positive_int, default=None,
                   help="C&W Adam steps per binary-search step (override the profile)")
    p.add_argument("--cw-search-steps", type=positive_int, default=None,
                   help="C&W binary-search steps (override the profile)")
    add_precision(p, default=None)
    p.add_argument("--out", type=output_path, default=Path("results"), help="output directory")
    p.add_argument("--force", action="store_true", help="recompute every unit")
    p.add_argument("--seeds", type=seed_list, default=None,
                   help="comma-separated seeds, e.g. 0,1,2: the sweep is repeated per seed and the "
                        "report shows mean ± std (default: --seed)")
    p.add_argument("--executor", default=ExecutorKind.LOCAL, choices=values(ExecutorKind),
                   help="local: every unit in this process (default); ray: units in parallel on "
                        "Ray workers (pip install 'defdistill[ray]')")
    p.add_argument("--address", default=None,
                   help="with --executor ray: auto (the cluster `ray start` runs on this machine) "
                        "or HOST:PORT; default: a private Ray instance on this machine")
    p.add_argument("--cpus-per-task", type=positive_int, default=1,
                   help="with --executor ray: CPUs (and torch threads) per unit (default 1)")
    p.add_argument("--gpus-per-task", type=fraction, default=1.0,
                   help="with --executor ray on GPUs: the share of one GPU per unit, in (0, 1]; "
                        "0.25 trains four of the sweep's networks at once on each GPU (default 1)")
    p.add_argument("--max-retries", type=non_negative_int, default=2,
                   help="with --executor ray: retries of a unit that fails transiently (default 2)")
    add_data(p)
    add_common(p)
    p.set_defaults(func=run, seed=None)  # None: --seed not given


def run(args: argparse.Namespace) -> int:
    from defdistill.cli.outputs import check_output_dir
    from defdistill.experiments.executors import make_executor
    from defdistill.experiments.pipeline import reproduce
    from defdistill.experiments.profiles import get_profile

    if args.seed is not None and args.seeds is not None:
        raise UsageError("give --seed N or --seeds N,M,..., not both")
    # what the run writes, checked before any training: D/<dataset>/... and the combined report
    check_output_dir(args.out, "--out", directories=(args.dataset, f"{args.dataset}/models",
                                                     f"{args.dataset}/units", "figures"),
                     files=("results.json", "results.csv", "report.md", "report.html",
                            f"{args.dataset}/results.json"))  # fmt: skip
    seeds = args.seeds or (0 if args.seed is None else args.seed,)
    if args.executor != ExecutorKind.RAY:
        given = [f"--{n.replace('_', '-')}" for n, default in RAY_ONLY if getattr(args, n) != default]
        if given:
            raise UsageError(f"{', '.join(given)}: only used with --executor ray")

    profile = get_profile(args.dataset, args.profile).with_overrides(
        temperatures=args.temperatures, epochs=args.epochs, batch_size=args.batch_size,
        attack_samples=args.attack_samples,
        adaptive_samples=args.adaptive_samples, cw_iterations=args.cw_iterations,
        cw_search_steps=args.cw_search_steps, limit_train=args.limit_train,
        limit_test=args.limit_test, precision=args.precision,
    )  # fmt: skip
    executor = make_executor(args.executor, args.address, args.cpus_per_task, args.max_retries,
                             args.device, args.gpus_per_task)  # fmt: skip
    try:
        executor.start()  # a cluster that cannot be reached fails before any work
        paths = reproduce(
            args.dataset, profile, args.out, data_dir=args.data_dir, seeds=seeds,
            device=args.device, force=args.force, progress=not args.quiet, executor=executor,
        )  # fmt: skip
    finally:
        executor.close()
    print(paths["summary"])
    print(f"report: {paths['report']}  (html: {paths['html']}, data: {paths['json']})")
    return 0
