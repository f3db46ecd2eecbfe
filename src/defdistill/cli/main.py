"""The entry point: parse, run the sub-command, turn expected failures into one line.

Parsing imports no torch (``defdistill --help`` answers at once): each sub-command module
imports what it runs inside its ``run``, and the errors that are the user's to fix are
resolved only when a command fails.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Sequence

from defdistill.cli import attack, audit, download, evaluate, models, panel, reproduce, train
from defdistill.cli.options import Parser, UsageError

COMMANDS = (train, evaluate, download, attack, audit, reproduce, models, panel)  # in the order of --help


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that are the user's to fix: reported as one line and exit code 2.

    Imported when a command fails, not at start-up: they live beside the code that raises
    them, which imports torch (and by then the failed command has imported it).
    """
    from defdistill.checkpoint import CheckpointError
    from defdistill.data import DataError
    from defdistill.experiments.executors import ExecutorError
    from defdistill.io import OutputError
    from defdistill.training.loop import TrainingError

    return (DataError, CheckpointError, TrainingError, OutputError, ExecutorError, ValueError,
            UsageError)  # fmt: skip


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
    except KeyboardInterrupt:
        print("defdistill: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not isinstance(err, user_errors()):
            raise
        message = " ".join(str(err).split())  # always one line
        print(f"defdistill: error: {message}", file=sys.stderr)
        return 2


def entry() -> None:
    """The ``defdistill`` console script: :func:`main`, then exit.

    ``gc.freeze()`` first: the interpreter's last garbage collection would otherwise walk
    every object torch created, about 0.4 s of each command's wall time (measured on
    ``defdistill attack``; benchmarks/RESULTS.md).
    """
    code = main()
    gc.freeze()
    sys.exit(code)
