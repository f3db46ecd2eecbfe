"""Killing a subprocess with SIGKILL at the moment a file appears (crash-safety tests)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def sigkill_when(
    cmd: Sequence[str | Path], marker: Path, timeout: float, env: dict[str, str] | None = None,
    poll: float = 0.02,
) -> None:  # fmt: skip
    """Run ``cmd``; SIGKILL it as soon as ``marker`` exists (or let it end first).

    Fails the test if neither happens within ``timeout`` seconds.
    """
    proc = subprocess.Popen([str(c) for c in cmd], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + timeout
    while not marker.exists() and proc.poll() is None:
        assert time.monotonic() < deadline, f"{cmd[0]} did not reach the kill point {marker}"
        time.sleep(poll)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
