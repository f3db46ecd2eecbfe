"""The ``defdistill`` command line. It owns the terminal: tables, progress bars, exit codes.

Every expected failure (bad data, bad checkpoint, bad argument, model that did not
learn, unwritable output) prints one line ``defdistill: error: ...`` and exits 2.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from defdistill.checkpoint import META, CheckpointError
from defdistill.data import DATASETS, DataError, download, load_dataset
from defdistill.experiments.executors import EXECUTORS, ExecutorError
from defdistill.io import OutputError
from defdistill.models import available_models
from defdistill.train import TrainingError, paper_config, role_seed

log = logging.getLogger("defdistill")

USER_ERRORS = (DataError, CheckpointError, TrainingError, OutputError, ExecutorError, ValueError)
DEFAULT_ARCH = {"mnist": "mnist_cnn", "cifar10": "cifar10_cnn"}


class UsageError(Exception):
    """A command-line argument that cannot work."""


class _Parser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line: what is wrong, and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options every command takes."""
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to compute (default auto: CUDA if present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")


def add_data(parser: argparse.ArgumentParser) -> None:
    """Options selecting the data."""
    parser.add_argument("--dataset", default="mnist", choices=DATASETS)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data directory (MNIST default: the embedded copy; CIFAR-10: required)")
    parser.add_argument("--limit-train", type=_positive_int, default=None,
                        help="use the first N training samples")
    parser.add_argument("--limit-test", type=_positive_int, default=None,
                        help="use the first N test samples")


def add_training(parser: argparse.ArgumentParser, default_temperature: float) -> None:
    """Hyper-parameters; unset ones take the paper's value for the data set."""
    parser.add_argument("--out", type=Path, required=True, help="output model directory")
    parser.add_argument("--arch", choices=available_models(), default=None,
                        help="architecture (default: the paper's network for the data set)")
    parser.add_argument("--temperature", type=_positive_float, default=default_temperature,
                        help=f"softmax temperature T of training (default {default_temperature:g})")
    parser.add_argument("--epochs", type=_positive_int, default=None, help="default: paper's 50")
    parser.add_argument("--batch-size", type=_positive_int, default=None, help="default 128")
    parser.add_argument("--lr", type=_positive_float, default=None,
                        help="learning rate (paper: MNIST 0.1, CIFAR-10 0.01)")
    parser.add_argument("--momentum", type=float, default=None,
                        help="SGD momentum (paper: MNIST 0.5, CIFAR-10 0.9)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default=None, help="default sgd")
    parser.add_argument("--head-scaling", action="store_true",
                        help="scale the output layer by T at initialisation and its learning rate "
                             "by T^2: training at T becomes training at 1 with logits x T (not the "
                             "paper's; default: plain training at T)")
    parser.add_argument("--allow-untrained", action="store_true",
                        help="save a model even if its accuracy is near chance")
    add_amp(parser)
    parser.add_argument("--force", action="store_true", help="overwrite an existing model in --out")
    add_data(parser)
    add_common(parser)


def add_amp(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--amp", action="store_true",
                        help="train in bfloat16 mixed precision, channels-last (faster on CPUs with "
                             "bfloat16 units and on GPUs; evaluation stays float32)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="defdistill",
        description="Defensive distillation (Papernot et al. 2016) and an honest evaluation of it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a network at temperature T on hard labels")
    add_training(p, default_temperature=1.0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("distill", help="teacher at T -> soft labels -> student at T, deployed at 1")
    add_training(p, default_temperature=100.0)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("evaluate", help="test accuracy and softmax saturation of a model")
    p.add_argument("--model", type=Path, required=True, help="model directory")
    add_data(p)
    add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("download", help="download a data set (needs the network)")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--data-dir", type=Path, required=True, help="destination directory")
    add_common(p)
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("attack", help="attack a model and report success and distortions")
    p.add_argument("--model", type=Path, required=True, help="model directory")
    p.add_argument("--attack", required=True, choices=["jsma", "fgsm", "pgd", "cw"])
    p.add_argument("--samples", type=_positive_int, default=100,
                   help="first N correctly classified test images (default 100)")
    p.add_argument("--targets", choices=["none", "all", "next", "random"], default=None,
                   help="targeted attempts per sample (default: all for jsma, none otherwise)")
    p.add_argument("--eps", type=float, default=0.3, help="FGSM/PGD budget (default 0.3)")
    p.add_argument("--norm", choices=["linf", "l2"], default="linf", help="PGD norm")
    p.add_argument("--steps", type=_positive_int, default=40, help="PGD steps (default 40)")
    p.add_argument("--loss", choices=["ce", "margin"], default="ce", help="FGSM/PGD loss")
    p.add_argument("--temperature", type=_positive_float, default=1.0,
                   help="attack softmax(logits / T) (FGSM/PGD/JSMA on probs; default 1)")
    p.add_argument("--theta", type=float, default=1.0, choices=[1.0, -1.0], help="JSMA theta")
    p.add_argument("--gamma", type=float, default=0.145, help="JSMA max fraction changed")
    p.add_argument("--on", choices=["probs", "logits"], default="probs",
                   help="JSMA on the softmax F (paper) or the logits Z (adaptive)")
    p.add_argument("--iterations", type=_positive_int, default=1000, help="C&W Adam steps")
    p.add_argument("--search-steps", type=_positive_int, default=9, help="C&W binary search")
    p.add_argument("--confidence", type=float, default=0.0, help="C&W confidence kappa")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="attack at most N inputs at once (bounds memory; default: all)")
    p.add_argument("--json", type=Path, default=None, help="write summary and per-sample results")
    p.add_argument("--save-examples", type=Path, default=None,
                   help="PNG grid of originals, adversarials and perturbations")
    add_data(p)
    add_common(p)
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser("audit", help="gradient-masking checks, attack battery and a verdict")
    p.add_argument("--model", type=Path, required=True, help="model directory to audit")
    p.add_argument("--reference", type=Path, default=None,
                   help="undefended model of the same task (source of the transfer attack)")
    p.add_argument("--temperature", type=_positive_float, default=None,
                   help="training temperature for the adaptive PGD (default: from meta.json)")
    p.add_argument("--samples", type=_positive_int, default=100,
                   help="correctly classified test images attacked (default 100)")
    p.add_argument("--jsma-samples", type=_positive_int, default=20,
                   help="of which attacked by JSMA toward every other class (default 20)")
    p.add_argument("--cw-iterations", type=_positive_int, default=1000,
                   help="C&W Adam steps per binary-search step (default 1000)")
    p.add_argument("--cw-search-steps", type=_positive_int, default=6,
                   help="C&W binary-search steps over the constant (default 6)")
    p.add_argument("--json", type=Path, default=None, help="write the audit as JSON")
    add_data(p)
    add_common(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser(
        "reproduce",
        help="the paper's temperature sweep, measurements, plots and report (resumable)",
    )
    p.add_argument("--profile", default="quick", choices=["quick", "paper"],
                   help="quick: minutes on a laptop CPU; paper: the paper's settings")
    p.add_argument("--temperatures", type=_temperature_list, default=None,
                   help="comma-separated distillation temperatures (default: the profile's)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="override the profile")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="override the profile")
    p.add_argument("--attack-samples", type=_positive_int, default=None,
                   help="correctly classified test images attacked by JSMA (per model)")
    p.add_argument("--adaptive-samples", type=_positive_int, default=None,
                   help="test images for the adaptive attacks (per model)")
    p.add_argument("--cw-iterations", type=_positive_int, default=None,
                   help="C&W Adam steps per binary-search step (override the profile)")
    p.add_argument("--cw-search-steps", type=_positive_int, default=None,
                   help="C&W binary-search steps (override the profile)")
    add_amp(p)
    p.add_argument("--out", type=Path, default=Path("results"), help="output directory")
    p.add_argument("--force", action="store_true", help="recompute every unit")
    p.add_argument("--seeds", type=_seed_list, default=None,
                   help="comma-separated seeds, e.g. 0,1,2: the sweep is repeated per seed and the "
                        "report shows mean ± std (default: --seed)")
    p.add_argument("--executor", default="local", choices=EXECUTORS,
                   help="local: every unit in this process (default); ray: units in parallel on "
                        "Ray workers (pip install 'defdistill[ray]')")
    p.add_argument("--address", default=None,
                   help="with --executor ray: auto (the cluster `ray start` runs on this machine) "
                        "or HOST:PORT; default: a private Ray instance on this machine")
    p.add_argument("--cpus-per-task", type=_positive_int, default=1,
                   help="with --executor ray: CPUs (and torch threads) per unit (default 1)")
    p.add_argument("--max-retries", type=_non_negative_int, default=2,
                   help="with --executor ray: retries of a unit that fails transiently (default 2)")
    add_data(p)
    add_common(p)
    p.set_defaults(func=cmd_reproduce, seed=None)  # None: --seed not given
    return parser


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def _seed_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"seeds must be integers >= 0, got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"a seed is repeated in {text!r}")
    return values


def _temperature_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,2,5,100, got {text!r}") from None
    if not values or any(not t > 0 for t in values):
        raise argparse.ArgumentTypeError(f"temperatures must be numbers > 0, got {text!r}")
    return values


def _config(args: argparse.Namespace):
    return paper_config(
        args.dataset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        momentum=args.momentum, optimizer=args.optimizer, temperature=args.temperature,
        head_scaling=args.head_scaling, seed=args.seed, amp=args.amp,
    )  # fmt: skip


def _check_out(args: argparse.Namespace) -> None:
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file, not a directory; choose another --out")
    if (args.out / META).exists() and not args.force:
        raise UsageError(f"{args.out} already holds a model; pass --force to overwrite it")


def cmd_train(args: argparse.Namespace) -> int:
    from defdistill.distill import train_model

    config = _config(args)
    _check_out(args)
    ds = load_dataset(args.dataset, args.data_dir, args.limit_train, args.limit_test)
    role = "baseline" if config.temperature == 1.0 else "trained_at_T"
    config = replace(config, seed=role_seed(args.seed, role, config.temperature))
    _, meta = train_model(
        ds, args.arch or DEFAULT_ARCH[args.dataset], config, args.out, role,
        device=args.device, progress=not args.quiet, allow_untrained=args.allow_untrained,
    )  # fmt: skip
    print(f"{role} T={config.temperature:g}: test accuracy {meta['test_accuracy']:.2%} "
          f"({meta['train_seconds']:.0f} s) -> {args.out}")  # fmt: skip
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from defdistill.distill import distill

    config = _config(args)
    _check_out(args)
    ds = load_dataset(args.dataset, args.data_dir, args.limit_train, args.limit_test)
    meta = distill(
        ds, args.arch or DEFAULT_ARCH[args.dataset], config, args.out, device=args.device,
        progress=not args.quiet, allow_untrained=args.allow_untrained,
    )  # fmt: skip
    soft = meta["soft_labels"]
    print(f"teacher  T={config.temperature:g}: test accuracy {meta['teacher']['test_accuracy']:.2%}")
    print(f"soft labels at T: mean max-probability {soft['mean_max_probability']:.4f}, "
          f"mean entropy {soft['mean_entropy']:.4f} nats (uniform {soft['max_entropy']:.4f})")
    print(f"student  T={config.temperature:g}: test accuracy {meta['test_accuracy']:.2%}, "
          f"deployed at T=1 mean max-probability {meta['mean_max_probability']:.6f} -> {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from defdistill.train import evaluate

    model, meta, ds = _load_for_data(args.model, args)
    dataset = ds.name
    result = evaluate(model, ds.x_test, ds.y_test, temperature=1.0)
    print(f"{args.model}: {meta.get('role')} trained at T={meta.get('temperature', 1):g}, "
          f"deployed at T=1 on {len(ds.x_test)} {dataset} test images")
    print(f"  accuracy              {result['accuracy']:.2%}")
    print(f"  mean max-probability  {result['mean_max_probability']:.6f}")
    print(f"  saturated (p_max==1)  {result['saturated_fraction']:.2%}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    path = download(args.dataset, args.data_dir)
    print(f"{args.dataset} verified in {path}")
    return 0


def _load_for_data(path: Path, args: argparse.Namespace):
    """Load a model and the test set it was trained for."""
    from defdistill.checkpoint import load_model
    from defdistill.train import resolve_device

    model, meta = load_model(path, resolve_device(args.device))
    dataset = meta.get("dataset", {}).get("name", args.dataset)
    ds = load_dataset(dataset, args.data_dir, args.limit_train, args.limit_test)
    if list(ds.input_shape) != meta["input_shape"]:
        raise UsageError(f"{path} expects inputs {meta['input_shape']}, "
                         f"the data has {list(ds.input_shape)}")  # fmt: skip
    return model, meta, ds


def cmd_attack(args: argparse.Namespace) -> int:
    from defdistill.attack_run import build_attack, run_attack, save_examples
    from defdistill.io import atomic_write_json

    attack = build_attack(args)
    model, meta, ds = _load_for_data(args.model, args)
    targets = args.targets or ("all" if args.attack == "jsma" else "none")
    device = next(model.parameters()).device
    run = run_attack(model, attack, ds.x_test.to(device), ds.y_test.to(device), args.samples,
                     targets, seed=args.seed)  # fmt: skip
    s = run.summary
    print(f"{attack!r} on {args.model} ({meta.get('role')}, T={meta.get('temperature', 1):g}): "
          f"{s['samples']} samples, {s['attempts']} attempts (targets: {targets})")
    if s["samples"] < args.samples:
        print(f"  note: only {s['samples']} of the {len(ds.x_test)} test images are classified "
              f"correctly, fewer than --samples {args.samples}")  # fmt: skip
    print(f"  success rate     {100 * s['success_rate']:.1f}%")
    for norm in ("l0_percent", "l2", "linf"):
        mean, median = s[f"mean_{norm}"], s[f"median_{norm}"]
        if mean is not None:
            print(f"  {norm:<16} mean {mean:.4g}, median {median:.4g} (successful attempts)")
    print(f"  speed            {s['attempts_per_second']:.1f} attempts/s ({s['seconds']:.1f} s)")
    if args.json:
        atomic_write_json(args.json, {"model": str(args.model), "attack": repr(attack),
                                      **run.to_dict()})  # fmt: skip
    if args.save_examples:
        save_examples(args.save_examples, run)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from defdistill.attack_run import nothing_to_attack
    from defdistill.audit import audit
    from defdistill.io import atomic_write_json
    from defdistill.metrics import correct_mask

    model, meta, ds = _load_for_data(args.model, args)
    reference = _load_for_data(args.reference, args)[0] if args.reference else None
    temperature = args.temperature or float(meta.get("temperature", 1.0))
    device = next(model.parameters()).device
    if not bool(correct_mask(model, ds.x_test.to(device), ds.y_test.to(device), 500).any()):
        raise nothing_to_attack(len(ds.x_test))
    report = audit(
        model, ds.x_test.to(device), ds.y_test.to(device), temperature=temperature,
        reference=reference, samples=args.samples, jsma_samples=args.jsma_samples,
        cw_iterations=args.cw_iterations, cw_search_steps=args.cw_search_steps, seed=args.seed,
    )  # fmt: skip
    print(f"audit of {args.model} ({meta.get('role')}, trained at T={temperature:g}) on "
          f"{report.config['samples']} correctly classified test images")
    print()
    print(f"{'check':<22} {'status':<9} finding")
    for f in report.findings:
        print(f"{f.check:<22} {f.severity.value:<9} {f.message}")
    print()
    print(f"{'attack':<38} {'accuracy':>9}  success")
    for name, acc, succ in report.table():
        print(f"{name:<38} {acc:>9}  {succ}")
    print()
    print(f"verdict: {report.verdict.text}")
    if args.json:
        atomic_write_json(args.json, {"model": str(args.model), **report.to_dict()})
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from defdistill.experiments.executors import make_executor
    from defdistill.experiments.pipeline import reproduce
    from defdistill.experiments.profiles import get_profile

    if args.seed is not None and args.seeds is not None:
        raise UsageError("give --seed N or --seeds N,M,..., not both")
    seeds = args.seeds or (0 if args.seed is None else args.seed,)
    if args.executor != "ray":
        given = [f"--{n.replace('_', '-')}" for n, default in
                 (("address", None), ("cpus_per_task", 1), ("max_retries", 2))
                 if getattr(args, n) != default]  # fmt: skip
        if given:
            raise UsageError(f"{', '.join(given)}: only used with --executor ray")

    profile = get_profile(args.dataset, args.profile).with_overrides(
        temperatures=args.temperatures, epochs=args.epochs, batch_size=args.batch_size,
        attack_samples=args.attack_samples,
        adaptive_samples=args.adaptive_samples, cw_iterations=args.cw_iterations,
        cw_search_steps=args.cw_search_steps, limit_train=args.limit_train,
        limit_test=args.limit_test, amp=args.amp or None,
    )  # fmt: skip
    executor = make_executor(args.executor, args.address, args.cpus_per_task, args.max_retries,
                             args.device)  # fmt: skip
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
    )  # fmt: skip
    try:
        return int(args.func(args) or 0)
    except (*USER_ERRORS, UsageError) as err:
        message = " ".join(str(err).split())  # always one line
        print(f"defdistill: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("defdistill: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
