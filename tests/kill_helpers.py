"""Crash-safety helpers: SIGKILL a subprocess when a file appears, or at a chosen point of a
``defdistill`` run (``tests/crash_runner.py``), and judge what the killed run left behind."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from defdistill.checkpoint import META, WEIGHTS, CheckpointError, load_model


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


# --------------------------------------------------------------------------- crash_runner.py

TESTS = Path(__file__).resolve().parent
# `defdistill train` / `distill` options for a run of seconds on real MNIST
SMALL = ["--limit-train", "256", "--limit-test", "100", "--epochs", "1", "--batch-size", "32",
         "--lr", "0.05", "--allow-untrained", "--quiet"]  # fmt: skip


def crash_runner(point: str, *args: object) -> list[str]:
    """The command running ``defdistill ARGS`` under ``tests/crash_runner.py`` (SIGKILL at ``point``)."""
    return [sys.executable, str(TESTS / "crash_runner.py"), point, *map(str, args)]


def run_until(point: str, *args: object) -> subprocess.CompletedProcess:
    """Run ``defdistill ARGS``, SIGKILLed at ``point`` (``none``: to the end)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(crash_runner(point, *args), capture_output=True, text=True, timeout=300, env=env)


def killed(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode == -signal.SIGKILL


def sha_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stable_meta(path: Path) -> dict:
    """A checkpoint's meta.json without wall-clock times."""
    meta = json.loads((path / META).read_text())
    return {k: v for k, v in meta.items() if k not in ("train_seconds", "environment")}


def assert_trusted_or_rejected(path: Path, expected_sha: str) -> None:
    """A checkpoint directory either loads with exactly the expected weights or is rejected."""
    try:
        _, meta = load_model(path)
    except CheckpointError:
        return
    assert meta["weights_sha256"] == expected_sha == sha_file(path / WEIGHTS)
