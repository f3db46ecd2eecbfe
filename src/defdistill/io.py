"""Atomic file writes, and the lock that keeps two runs out of one output directory.

A write goes to a temporary file in the same directory, is fsynced, then renamed: a
reader never sees a half-written file, and a crash (even ``kill -9``) leaves either the
old file or the new one, plus at most a ``.<name>.*.tmp`` that
:func:`remove_temporaries` sweeps away. Files get the mode the umask gives (``0644``
under ``umask 022``), as ``open`` would. Write errors (full disk, read-only directory)
raise :class:`OutputError` naming the path; the previous file is left intact.

:func:`exclusive` takes an advisory lock (``flock``) on an output directory for the
duration of a run: a second run on the same directory stops at once with a clear
message instead of silently replacing the first one's files. The kernel releases the
lock when the process dies, even by ``kill -9``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

LOCK_FILE = ".defdistill.lock"


class OutputError(Exception):
    """A result could not be written (read-only or full output directory, ...)."""


def _error(path: Path, err: OSError, hint: str) -> OutputError:
    return OutputError(f"{path}: cannot write ({err.strerror or err}); {hint}")


@cache
def _file_mode() -> int:
    """``0o666`` less the process's umask: the mode ``open()`` would give a new file."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _stage(path: Path, data: bytes) -> str:
    """Write ``data`` to a fsynced temporary file beside ``path``; return its name."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _error(path, err, "choose a writable location") from err
    try:
        os.fchmod(fd, _file_mode())  # mkstemp creates 0600 whatever the umask
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _error(path, err, "free space or write somewhere else") from err
    return tmp


def _commit(tmp: str, path: Path) -> None:
    """Rename the temporary file ``tmp`` onto ``path`` (atomic on POSIX)."""
    try:
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _error(path, err, "free space or write somewhere else") from err


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


def read_json_object(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``ValueError`` naming the file if it is anything else.

    Truncated, non-UTF-8, absurdly nested JSON, or valid JSON of another shape (a list, a
    number) are all the same error, so every caller handles a damaged file in one place.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{path}: not readable JSON ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


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


def remove_temporaries(directory: str | Path) -> int:
    """Delete the temporary files that interrupted writes left below ``directory``.

    Only files named as :func:`atomic_write_bytes` names them (``.<name>.<random>.tmp``)
    are removed. Call it while holding :func:`exclusive` on ``directory``: another run's
    write in progress would otherwise lose its temporary file. Returns how many were removed.
    """
    removed = 0
    for tmp in Path(directory).rglob(".*.tmp"):
        if tmp.is_file() and tmp.name.count(".") >= 3:
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


@contextlib.contextmanager
def exclusive(directory: str | Path, option: str = "--out") -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` (created if needed) for the ``with`` block.

    Raises:
        OutputError: another process holds it (names that process and ``option``), or the
            directory cannot be created.
    """
    directory = Path(directory)
    lock = directory / LOCK_FILE
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, _file_mode())
    except OSError as err:
        raise _error(directory, err, f"choose a writable {option}") from err
    locked = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise OutputError(
                f"{directory} is in use by another defdistill run (pid {holder}); wait for it to "
                f"finish or choose another {option}"
            ) from None
        locked = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield directory
    finally:
        if locked and created:  # a run that wrote nothing leaves nothing behind
            with contextlib.suppress(OSError):
                if [p.name for p in directory.iterdir()] == [LOCK_FILE]:
                    lock.unlink()
                    directory.rmdir()
        os.close(fd)  # releases the lock
