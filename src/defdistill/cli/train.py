"""``defdistill train`` and ``defdistill distill``: one network at T, or distillation at T."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from defdistill.cli.options import (
    UsageError,
    add_training,
    check_out,
    load_dataset,
    non_negative_float,
    positive_float,
    positive_int,
    training_config,
)
from defdistill.names import AdversarialMethod, values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a network at temperature T on hard labels")
    add_training(p, default_temperature=1.0)
    p.add_argument("--adversarial", choices=values(AdversarialMethod), default=None,
                   help="adversarial training: pgd (Madry et al. 2018), fgsm-rs (Wong et al. 2020) "
                        "or trades (Zhang et al. 2019)")
    p.add_argument("--adv-eps", type=non_negative_float, default=None,
                   help="L-inf budget of adversarial training (default 0.3)")
    p.add_argument("--adv-steps", type=positive_int, default=None,
                   help="gradient steps per batch with --adversarial pgd or trades (default 40)")
    p.add_argument("--adv-warmup", type=positive_int, default=None,
                   help="epochs over which eps grows linearly to --adv-eps (default: none)")
    p.add_argument("--trades-beta", type=positive_float, default=None,
                   help="weight beta = 1/lambda of the KL term with --adversarial trades (default 6, "
                        "the paper's MNIST value; larger: more robust, less accurate)")
    p.set_defaults(func=run_train)
    p = sub.add_parser("distill", help="teacher at T -> soft labels -> student at T, deployed at 1")
    add_training(p, default_temperature=100.0)
    p.set_defaults(func=run_distill)


def run_train(args: argparse.Namespace) -> int:
    from defdistill.io import exclusive, remove_temporaries
    from defdistill.models import paper_architecture
    from defdistill.training.config import role_seed
    from defdistill.training.runs import train_model

    config = training_config(args)
    check_out(args)
    ds = load_dataset(args.dataset, args.data_dir, args.limit_train, args.limit_test)
    if config.adversarial is None and any(v is not None for v in (args.adv_eps, args.adv_steps,
                                                                   args.adv_warmup)):  # fmt: skip
        raise UsageError("--adv-eps, --adv-steps and --adv-warmup need --adversarial pgd|fgsm-rs|trades")
    if args.trades_beta is not None and config.adversarial != AdversarialMethod.TRADES:
        raise UsageError("--trades-beta needs --adversarial trades")
    role = ("adversarial" if config.adversarial else
            "baseline" if config.temperature == 1.0 else "trained_at_T")  # fmt: skip
    config = replace(config, seed=role_seed(args.seed, role, config.temperature))
    with exclusive(args.out):
        check_out(args)  # again: another run may have finished into --out meanwhile
        remove_temporaries(args.out)
        with as_flags():
            _, meta = train_model(
                ds, args.arch or paper_architecture(ds.input_shape[0]), config, args.out, role,
                device=args.device, progress=not args.quiet, allow_untrained=args.allow_untrained,
            )  # fmt: skip
    print(f"{role} T={config.temperature:g}: test accuracy {meta['test_accuracy']:.2%} "
          f"({meta['train_seconds']:.0f} s) -> {args.out}")  # fmt: skip
    return 0


def run_distill(args: argparse.Namespace) -> int:
    from defdistill.io import exclusive, remove_temporaries
    from defdistill.models import paper_architecture
    from defdistill.training.distill import distill

    config = training_config(args)
    check_out(args)
    ds = load_dataset(args.dataset, args.data_dir, args.limit_train, args.limit_test)
    with exclusive(args.out):
        check_out(args)  # again: another run may have finished into --out meanwhile
        remove_temporaries(args.out)
        with as_flags():
            meta = distill(
                ds, args.arch or paper_architecture(ds.input_shape[0]), config, args.out,
                device=args.device, progress=not args.quiet, allow_untrained=args.allow_untrained,
            )  # fmt: skip
    soft = meta["soft_labels"]
    print(f"teacher  T={config.temperature:g}: test accuracy {meta['teacher']['test_accuracy']:.2%}")
    print(f"soft labels at T: mean max-probability {soft['mean_max_probability']:.4f}, "
          f"mean entropy {soft['mean_entropy']:.4f} nats (uniform {soft['max_entropy']:.4f})")
    print(f"student  T={config.temperature:g}: test accuracy {meta['test_accuracy']:.2%}, "
          f"deployed at T=1 mean max-probability {meta['mean_max_probability']:.6f} -> {args.out}")
    return 0


# the library's parameter names in a training error, and the flags that set them
FLAGS = (("allow_untrained=True", "--allow-untrained"), ("more epochs", "more --epochs"))


@contextmanager
def as_flags() -> Iterator[None]:
    """Re-raise a :class:`~defdistill.training.loop.TrainingError` with the command line's
    flags in place of the library's parameter names."""
    from defdistill.training.loop import TrainingError

    try:
        yield
    except TrainingError as err:
        message = str(err)
        for name, flag in FLAGS:
            message = message.replace(name, flag)
        raise TrainingError(message) from None
