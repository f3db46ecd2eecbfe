"""Run the ``defdistill`` command line and SIGKILL this very process at a chosen point.

    python tests/crash_runner.py POINT ARGS...

POINT is one of

* ``none``: run to the end;
* ``replace:N``: just before the N-th ``os.replace`` of a model's file (the new file is
  complete and fsynced under its temporary name, not yet renamed); the resumable state
  written after each epoch (``.training-state.safetensors``) is not counted;
* ``replaced:N``: just after the N-th such ``os.replace``;
* ``step:N``: at the start of the N-th optimiser step (in the middle of training).

SIGKILL cannot be caught: no ``finally`` block, no cleanup, exactly what ``kill -9`` or
the out-of-memory killer does. Used by ``tests/training/test_runs.py`` and
``tests/training/test_distill.py`` (through ``kill_helpers.run_until``).
"""

from __future__ import annotations

import os
import signal
import sys

import torch

from defdistill.training.resume import STATE_FILE


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str) -> None:
    """Arrange for SIGKILL at ``point``."""
    kind, _, number = point.partition(":")
    calls = 0
    if kind in ("replace", "replaced"):
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            nonlocal calls
            if os.path.basename(dst) == STATE_FILE:
                return real_replace(src, dst, *args, **kwargs)
            calls += 1
            if kind == "replace" and calls == int(number):
                _die()
            real_replace(src, dst, *args, **kwargs)
            if kind == "replaced" and calls == int(number):
                _die()

        os.replace = replace
    elif kind == "step":
        for optimizer in (torch.optim.SGD, torch.optim.Adam):
            real_step = optimizer.step

            def step(self, *args, _real=real_step, **kwargs):
                nonlocal calls
                calls += 1
                if calls == int(number):
                    _die()
                return _real(self, *args, **kwargs)

            optimizer.step = step
    elif kind != "none":
        raise SystemExit(f"unknown crash point {point!r}")


if __name__ == "__main__":
    torch.set_num_threads(1)  # as the test session does: identical arithmetic
    install(sys.argv[1])
    from defdistill.cli import main

    sys.exit(main(sys.argv[2:]))
