"""Options and argument types shared by the sub-commands, and the loading they share.

Parsing imports nothing that imports torch (``defdistill --help`` stays fast): the
choices come from the torch-free :mod:`defdistill.names` and
:mod:`defdistill.data.names`, and what runs a command is imported when it runs.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from defdistill.data.names import DATASETS
from defdistill.names import META, Architecture, Precision, values

if TYPE_CHECKING:
    from defdistill.data import Dataset
    from defdistill.training.config import TrainConfig


def load_dataset(
    name: str, data_dir: Path | None = None, limit_train: int | None = None, limit_test: int | None = None,
    train: bool = True,
) -> Dataset:
    """:func:`defdistill.data.load_dataset`, imported when a command first loads data."""
    from defdistill.data import load_dataset as load

    return load(name, data_dir, limit_train, limit_test, train=train)


class UsageError(Exception):
    """A command-line argument that cannot work."""


class Parser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line: what is wrong, and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


FLOAT32_MAX = 3.4028234663852886e38  # the tensors these numbers become are float32
MIN_TRAINING_TEMPERATURE = 0.01  # below, logits / T and the loss's gradient leave float32's range


def flag(parameter: str) -> str:
    """The command-line flag of a library ``parameter`` (``limit_train`` -> ``--limit-train``):
    how the CLI shows the errors of a library that names Python parameters."""
    return "--" + parameter.replace("_", "-")


def _number(text: str, kind: type, expected: str) -> int | float:
    try:
        value = kind(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if kind is float and abs(value) > FLOAT32_MAX and math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is beyond float32's range (±{FLOAT32_MAX:.4g})")
    return value


def output_path(text: str) -> Path:
    """``argparse`` type of an output path: a non-empty path (``''`` is not ``.``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty; give a path")
    return Path(text)


def printable(text: object) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``): text read from a file
    never moves the cursor, clears the screen or fakes an output line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def positive_int(text: str) -> int:
    value = int(_number(text, int, "a positive integer"))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(_number(text, int, "an integer >= 0"))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(_number(text, float, "a number > 0"))
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


MAX_SEED = 2**63 - 1  # torch's generators take 64-bit seeds


def seed(text: str) -> int:
    value = int(_number(text, int, "an integer seed"))
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2^63), got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(_number(text, float, "a number >= 0"))
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def seed_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2, got {text!r}") from None
    if not values or any(not 0 <= v <= MAX_SEED for v in values):
        raise argparse.ArgumentTypeError(f"seeds must be integers in [0, 2^63), got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"a seed is repeated in {text!r}")
    return values


def training_temperature(text: str) -> float:
    """A temperature to train at: finite, within float32, at least :data:`MIN_TRAINING_TEMPERATURE`."""
    value = positive_float(text)
    if value < MIN_TRAINING_TEMPERATURE:
        raise argparse.ArgumentTypeError(
            f"{text} is too small to train at (at least {MIN_TRAINING_TEMPERATURE:g}): the logits "
            "divided by T leave float32's range; the paper trains at T = 1 to 100"
        )
    return value


def fraction(text: str) -> float:
    value = float(_number(text, float, "a number in (0, 1]"))
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text}")
    return value


def temperature_list(text: str) -> tuple[float, ...]:
    parts = [t for t in text.split(",") if t.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,2,5,100, got {text!r}")
    try:
        return tuple(training_temperature(t) for t in parts)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"temperatures like 1,2,5,100: {err}") from None


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options every command takes."""
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to compute (default auto: CUDA if present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")


def add_data(parser: argparse.ArgumentParser, for_model: bool = False) -> None:
    """Options selecting the data; ``for_model``: the data set defaults to the model's own."""
    parser.add_argument("--dataset", default=None if for_model else "mnist", choices=DATASETS,
                        help="the model's data set (default: read from its meta.json)" if for_model
                        else "default mnist")  # fmt: skip
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data directory (MNIST default: the embedded copy; CIFAR-10: required)")
    parser.add_argument("--limit-train", type=positive_int, default=None,
                        help="use the first N training samples")
    parser.add_argument("--limit-test", type=positive_int, default=None,
                        help="use the first N test samples")


def add_precision(parser: argparse.ArgumentParser, default: str | None = Precision.AUTO) -> None:
    """``--precision``: the number format of training (:mod:`defdistill.devices`)."""
    parser.add_argument("--precision", choices=values(Precision), default=default,
                        help="training arithmetic: auto (default: bf16 where the CPU or GPU computes "
                             "it natively, else fp32), fp32, or bf16 (bfloat16 autocast, channels-last; "
                             "evaluation, soft labels and attacks stay float32)")


def add_training(parser: argparse.ArgumentParser, default_temperature: float) -> None:
    """Hyper-parameters; unset ones take the paper's value for the data set."""
    parser.add_argument("--out", type=output_path, required=True, help="output model directory")
    parser.add_argument("--arch", choices=values(Architecture), default=None,
                        help="architecture (default: the paper's network for the data set)")
    parser.add_argument("--temperature", type=training_temperature, default=default_temperature,
                        help=f"softmax temperature T of training (default {default_temperature:g})")
    parser.add_argument("--epochs", type=positive_int, default=None, help="default: paper's 50")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default 128")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="learning rate (paper: MNIST 0.1, CIFAR-10 0.01)")
    parser.add_argument("--momentum", type=non_negative_float, default=None,
                        help="SGD momentum (paper: MNIST 0.5, CIFAR-10 0.9)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default=None, help="default sgd")
    parser.add_argument("--head-scaling", action="store_true",
                        help="scale the output layer by T at initialisation and its learning rate "
                             "by T^2: training at T becomes training at 1 with logits x T (not the "
                             "paper's; default: plain training at T)")
    parser.add_argument("--allow-untrained", action="store_true",
                        help="save a model even if its accuracy is near chance")
    add_precision(parser)
    parser.add_argument("--force", action="store_true", help="overwrite an existing model in --out")
    add_data(parser)
    add_common(parser)


def training_config(args: argparse.Namespace) -> TrainConfig:
    """The paper's configuration for ``--dataset`` with the options given."""
    from defdistill.training.config import paper_config

    return paper_config(
        args.dataset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        momentum=args.momentum, optimizer=args.optimizer, temperature=args.temperature,
        head_scaling=args.head_scaling, seed=args.seed, precision=args.precision,
        adversarial=getattr(args, "adversarial", None), adversarial_eps=getattr(args, "adv_eps", None),
        adversarial_steps=getattr(args, "adv_steps", None),
        adversarial_warmup=getattr(args, "adv_warmup", None), trades_beta=getattr(args, "trades_beta", None),
    )  # fmt: skip


def check_out(args: argparse.Namespace) -> None:
    """``--out`` is a writable directory that holds no model, or ``--force`` was given."""
    from defdistill.cli.outputs import check_output_dir

    check_output_dir(args.out, "--out", directories=("teacher",),
                     files=(META, "model.safetensors", "soft_labels.safetensors"))  # fmt: skip
    if (args.out / META).exists() and not args.force:
        raise UsageError(f"{args.out} already holds a model; pass --force to overwrite it")


def model_dataset(path: Path, args: argparse.Namespace, meta: dict) -> str:
    """The data set the model at ``path`` was trained on; ``--dataset``, if given, must agree."""
    trained_on = meta.get("dataset", {}).get("name") or args.dataset or "mnist"
    if args.dataset is not None and args.dataset != trained_on:
        raise UsageError(f"{path} was trained on {trained_on}, not --dataset {args.dataset}; "
                         "omit --dataset or give the model's")  # fmt: skip
    return trained_on


def load_for_data(path: Path, args: argparse.Namespace, dataset: str | None = None):
    """Load a model and the test set it was trained for (``dataset``: the one it must match).

    ``path`` is a model directory or the name of a shipped model (``defdistill models``).
    """
    from defdistill.checkpoint import load_model
    from defdistill.devices import resolve_device
    from defdistill.pretrained import resolve_model

    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} is a file; give a model directory (with meta.json)")
    model, meta = load_model(resolve_model(path), resolve_device(args.device))
    name = model_dataset(path, args, meta)
    if dataset is not None and name != dataset:
        raise UsageError(f"{path} was trained on {name}, the audited model on {dataset}; "
                         "give a reference model of the same data set")  # fmt: skip
    ds = load_dataset(name, args.data_dir, args.limit_train, args.limit_test, train=False)  # test only
    if list(ds.input_shape) != meta["input_shape"]:
        raise UsageError(f"{path} expects inputs {meta['input_shape']}, "
                         f"the data has {list(ds.input_shape)}")  # fmt: skip
    return model, meta, ds


def nothing_to_attack(n: int) -> ValueError:
    """The error when no test image is classified correctly (an attack would report 0 %)."""
    return ValueError(
        f"the model classifies none of the {n} test images correctly: nothing to attack; "
        "check it with `defdistill evaluate` (wrong data set, or an untrained model?)"
    )
