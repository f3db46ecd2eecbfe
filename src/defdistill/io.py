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
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class OutputError(Exception):
    """A result could not be written (read-only or full output directory, ...)."""


def _error(path: Path, err: OSError, hint: str) -> OutputError:
    return OutputError(f"{path}: cannot write ({err.strerror or err}); {hint}")


def _stage(path: Path, data: bytes) -> str:
    """Write ``data`` to a fsynced temporary file beside ``path``; return its name."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _error(path, err, "choose a writable --out") from err
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _error(path, err, "free space or change --out") from err
    return tmp


def _commit(tmp: str, path: Path) -> None:
    """Rename the temporary file ``tmp`` onto ``path`` (atomic on POSIX)."""
    try:
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _error(path, err, "free space or change --out") from err


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    path = Path(path)
    _commit(_stage(path, data), path)


def atomic_write_files(files: Mapping[str | Path, bytes]) -> None:
    """Write several files atomically, renaming them into place only once all are written.

    A write error (full disk, read-only directory) therefore leaves every previous file
    untouched. The renames happen in the given order; a crash between two of them leaves
    new files beside old ones, which the caller must be able to detect (a checkpoint's
    ``meta.json``, renamed last, records the sha256 of the weights).
    """
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            staged.append((_stage(Path(path), data), Path(path)))
        for tmp, path in staged:
            _commit(tmp, path)
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)  # only left over if something failed


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


def json_bytes(obj: Any) -> bytes:
    """``obj`` as indented, standard JSON (NaN -> null), UTF-8 encoded."""
    return (json.dumps(json_ready(obj), indent=2, allow_nan=False) + "\n").encode("utf-8")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented, standard JSON (NaN -> null) to ``path`` atomically."""
    atomic_write_bytes(path, json_bytes(obj))
