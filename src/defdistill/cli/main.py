"""The entry point: parse, run the sub-command, turn expected failures into one line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from defdistill.checkpoint import CheckpointError
from defdistill.cli import attack, audit, download, evaluate, reproduce, train
from defdistill.cli.options import Parser, UsageError
from defdistill.data import DataError
from defdistill.experiments.executors import ExecutorError
from defdistill.io import OutputError
from defdistill.training.loop import TrainingError

USER_ERRORS = (DataError, CheckpointError, TrainingError, OutputError, ExecutorError, ValueError,
               UsageError)  # fmt: skip
COMMANDS = (train, evaluate, download, attack, audit, reproduce)  # in the order of --help


def build_parser() -> Parser:
    parser = Parser(
        prog="defdistill",
        description="Defensive distillation (Papernot et al. 2016) and an honest evaluation of it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
    )  # fmt: skip
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        message = " ".join(str(err).split())  # always one line
        print(f"defdistill: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("defdistill: interrupted", file=sys.stderr)
        return 130
