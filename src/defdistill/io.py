"""Atomic file writes: a temporary file in the same directory, fsync, then rename.

A reader never sees a half-written file, and a crash (even ``kill -9``) leaves either
the old file or the new one. Write errors (full disk, read-only directory) raise
:class:`OutputError` naming the path; the previous file is left intact.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


class OutputError(Exception):
    """A result could not be written (read-only or full output directory, ...)."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OutputError(f"{path}: cannot write ({err.strerror}); choose a writable --out") from err
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({err.strerror}); free space or change --out") from err


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_ready(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by None (standard JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented, standard JSON (NaN -> null) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(json_ready(obj), indent=2, allow_nan=False) + "\n")
