"""``defdistill status``: where a ``defdistill reproduce`` run stands, read from its ``--out``."""

from __future__ import annotations

import argparse
from pathlib import Path

from defdistill.cli.options import add_common, printable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="what a reproduce run has trained and measured so far (reads only)")
    p.add_argument("--out", type=Path, default=Path("results"),
                   help="the run's output directory (default results)")  # fmt: skip
    add_common(p)
    p.set_defaults(func=run)


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def run(args: argparse.Namespace) -> int:
    from defdistill.experiments.status import run_status

    found = run_status(args.out)
    print(f"{printable(found.out)}: " + ("a defdistill run is writing it now" if found.running
                                          else "no run is writing it now (rerun the same command to resume)"))
    for seed in found.seeds:
        trained = sum(n.trained for n in seed.networks)
        unreadable = sum(n.problem is not None for n in seed.networks)
        training = len(seed.networks) - trained - unreadable
        print(f"\n{seed.dataset}, seed {seed.seed}: {trained} network(s) trained, {training} in training"
              + (f", {unreadable} unreadable" if unreadable else "")
              + f"; {len(seed.measurements)} measurement(s) finished")
        width = max((len(printable(n.name)) for n in seed.networks), default=7)
        if seed.networks:
            print(f"  {'network':<{width}}  {'epochs':>7}  {'s/epoch':>7}  state")
        for n in seed.networks:
            epochs = f"{n.epoch}/{n.epochs}" if n.epochs else f"{n.epoch}/?"
            pace = f"{n.seconds / n.epoch:.0f}" if n.epoch else "–"
            if n.problem:
                state = f"unreadable: {n.problem}"
            elif n.test_accuracy is not None:
                state = f"trained, test accuracy {100 * n.test_accuracy:.2f} %"
            else:
                left = n.seconds_left
                state = "training" + ("" if left is None else f", about {_duration(left)} left at this pace")
            print(f"  {printable(n.name):<{width}}  {epochs:>7}  {pace:>7}  {printable(state)}")
        if seed.measurements:
            print("  measurements: " + ", ".join(printable(m) for m in seed.measurements))
        for name, done in seed.in_progress.items():
            state = "record unreadable" if done is None else f"{done} attack(s) finished"
            print(f"  measuring: {printable(name)} ({state}; a rerun resumes after them)")
    return 0
