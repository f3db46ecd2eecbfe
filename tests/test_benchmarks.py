"""Every benchmark script still imports and parses its arguments (``--help``).

The benchmarks are scripts, run by hand and by ``make bench``, outside the test suite: an
API change that breaks one (an import that no longer exists) would otherwise go unseen until
someone needs its figure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))

# one interpreter for all of them (torch is imported once): each runs as __main__ with --help,
# which argparse answers with its usage and exit code 0
RUNNER = """
import runpy, sys
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise
    print("OK", path, flush=True)
"""


def test_every_benchmark_imports_and_answers_help():
    assert len(BENCHMARKS) >= 5
    done = subprocess.run([sys.executable, "-c", RUNNER, *map(str, BENCHMARKS)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    finished = [line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("OK ")]
    assert finished == [str(p) for p in BENCHMARKS]
