"""The entry point: parse, run the sub-command, turn expected failures into one line.

Parsing imports no torch (``defdistill --help`` answers at once): each sub-command module
imports what it runs inside its ``run``, and the errors that are the user's to fix are
resolved only when a command fails.

What the terminal sees, whatever happens: a user error is one line on stderr and exit
code 2 (the library's parameter names shown as flags, :func:`~defdistill.cli.options.flag`);
Ctrl-C, pressed once or several times, is ``defdistill: interrupted`` and 130 (a press a
second or more after the first interrupts again); a closed
pipe on stdout (``defdistill models | head -1``) ends quietly with 141 (128 + SIGPIPE),
as Unix tools do; any other failure to write stdout (a full device) is one line and 1.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from defdistill.cli import attack, audit, download, evaluate, models, panel, reproduce, status, train
from defdistill.cli.options import Parser, UsageError, flag, printable

# in the order of --help
COMMANDS = (train, evaluate, download, attack, audit, reproduce, status, models, panel)
INTERRUPTED, BROKEN_PIPE, STDOUT_FAILED, USER_ERROR = 130, 128 + signal.SIGPIPE, 1, 2


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


def describe(err: BaseException) -> str:
    """``err`` as one printable line, naming flags where the library names parameters."""
    from defdistill.io import ParameterError

    text = err.render(flag(err.parameter)) if isinstance(err, ParameterError) and err.parameter else str(err)
    return printable(" ".join(text.split()))


def build_parser() -> Parser:
    parser = Parser(
        prog="defdistill",
        description="Defensive distillation (Papernot et al. 2016) and an honest evaluation of it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


# Presses of Ctrl-C this soon after the one that interrupted are the same keystroke burst.
REPEAT_IGNORED_S = 1.0
_last_interrupt: float | None = None


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C raises KeyboardInterrupt; presses within :data:`REPEAT_IGNORED_S` of it are
    ignored, so that a burst does not interrupt the clean-up the first one started. A later
    press raises again: an interrupt can be lost. Python runs the handler wherever the main
    thread is, and one raised inside a callback that cannot propagate it (measured: the weakref
    callback of importlib's module locks, during torch's lazy imports as training starts) is
    printed as "Exception ignored" and dropped (1 of 94 tries under load, when every press
    after the first was ignored and the run trained on; docs/reliability.md)."""
    global _last_interrupt
    now = time.monotonic()
    if _last_interrupt is not None and now - _last_interrupt < REPEAT_IGNORED_S:
        return
    _last_interrupt = now
    raise KeyboardInterrupt


def _interrupted() -> int:
    """Report an interrupt; from here to the exit, Ctrl-C is ignored (when :func:`entry`
    installed the handler: :func:`main` called in a notebook leaves the kernel's alone)."""
    if signal.getsignal(signal.SIGINT) is _interrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("defdistill: interrupted", file=sys.stderr)
    # CPython (3.11) marks a KeyboardInterrupt raised in code executed from a string
    # (dataclasses build their methods so, during an import) as unhandled although it was
    # caught here, and `python -m defdistill.cli` then kills itself with SIGINT at exit
    # instead of returning 130; executing a string again clears the mark (pythonrun.c,
    # run_eval_code_obj). The empty string: nothing is evaluated.
    exec("")
    return INTERRUPTED


def _detach_stdout() -> None:
    """Point stdout at /dev/null: the interpreter's last flush must not fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class StdoutError(OSError):
    """Standard output cannot be written (a full device, an I/O error)."""


class _GuardedStdout:
    """``sys.stdout`` whose write errors are :class:`StdoutError`, told apart from file errors."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.failed: StdoutError | None = None  # kept: argparse swallows its own write errors

    def _guard(self, action: Callable[[], object]) -> object:
        try:
            return action()
        except BrokenPipeError:
            raise
        except OSError as err:
            self.failed = StdoutError(err.errno, err.strerror)
            raise self.failed from err

    def write(self, text: str) -> object:
        return self._guard(lambda: self._stream.write(text))

    def flush(self) -> object:
        return self._guard(self._stream.flush)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
    )  # fmt: skip
    code = int(args.func(args) or 0)
    sys.stdout.flush()  # a closed pipe or a full device shows here, not at exit
    return code


def _stdout_failed(err: StdoutError, stdout: TextIO) -> int:
    print(f"defdistill: error: cannot write to standard output ({err.strerror})", file=sys.stderr)
    sys.stdout = stdout
    _detach_stdout()
    return STDOUT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    stdout, guarded = sys.stdout, _GuardedStdout(sys.stdout)
    sys.stdout = guarded
    try:
        return _run(argv)
    except SystemExit:  # argparse: --help or a usage error, whose own write may have failed
        if guarded.failed is None:
            raise
        return _stdout_failed(guarded.failed, stdout)
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        _detach_stdout()
        return BROKEN_PIPE
    except StdoutError as err:
        return _stdout_failed(err, stdout)
    except MemoryError:
        print("defdistill: error: out of memory; use fewer samples (--limit-test, --samples) or a "
              "machine with more memory", file=sys.stderr)  # fmt: skip
        return USER_ERROR
    except Exception as err:
        if not isinstance(err, user_errors()):
            raise
        print(f"defdistill: error: {describe(err)}", file=sys.stderr)
        return USER_ERROR
    finally:
        sys.stdout = stdout


def entry() -> None:
    """The ``defdistill`` console script: :func:`main`, then exit.

    ``gc.freeze()`` first: the interpreter's last garbage collection would otherwise walk
    every object torch created, about 0.4 s of each command's wall time (measured on
    ``defdistill attack``; benchmarks/RESULTS.md).
    """
    signal.signal(signal.SIGINT, _interrupt)  # for the process's whole life, exit included
    try:
        code = main()
    except KeyboardInterrupt:  # pressed before main's handler was reached
        code = _interrupted()
    except SystemExit as stop:  # argparse: --help, or a usage error
        code = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else USER_ERROR
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            code = BROKEN_PIPE
            _detach_stdout()
        except OSError as err:
            print(f"defdistill: error: cannot write to standard output ({err.strerror})", file=sys.stderr)
            code = STDOUT_FAILED
            _detach_stdout()
    gc.freeze()
    sys.exit(code)
