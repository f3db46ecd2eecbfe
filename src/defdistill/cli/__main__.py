"""``python -m defdistill.cli``: the same entry point as the ``defdistill`` console script."""

from defdistill.cli.main import entry

entry()
