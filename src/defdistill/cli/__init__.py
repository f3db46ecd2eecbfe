"""The ``defdistill`` command line. It owns the terminal: tables, progress bars, exit codes.

One module per sub-command (or pair of sub-commands sharing their options), each with a
``register(subparsers)`` that adds its parser and a ``run(args)`` that executes it;
:mod:`.options` holds the options and argument types they share, :mod:`.main` the entry
point. Every expected failure prints one line ``defdistill: error: ...`` and exits 2.
"""

from defdistill.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
