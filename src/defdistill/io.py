"""Atomic file writes, and the lock that keeps two runs out of one output directory.

A write goes to a temporary file in the same directory, is fsynced, then renamed: a
reader never sees a half-written file, and a crash (even ``kill -9``) leaves either the
old file or the new one, plus at most a temporary named by :data:`TEMPORARY` (a fixed
prefix, 8 random characters, a fixed suffix: short whatever the target's name, and a
pattern no user file has) that :func:`remove_temporaries` sweeps away. Files get the mode
the umask gives (``0644`` under ``umask 022``), as ``open`` would. Write errors (full
disk, read-only directory) raise :class:`OutputError` naming the path; the previous file
is left intact.

:func:`exclusive` takes an advisory lock (``flock``) on an output directory for the
duration of a run: a second run on the same directory stops at once with a clear
message instead of silently replacing the first one's files. The kernel releases the
lock when the process dies, even by ``kill -9``. The lock file is opened without following
links and must be a regular file holding at most a pid: a planted symlink, FIFO or
foreign file is refused, never written to.

:func:`read_bounded` is the one way the package reads a file it did not just write: the
size is checked before anything is read, with a cap per kind of file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

LOCK_FILE = ".defdistill.lock"
TEMPORARY_PREFIX, TEMPORARY_SUFFIX = ".defdistill-", ".partial"
# the writer's temporaries (mkstemp's 8 random characters between), and nothing else
TEMPORARY = re.compile(rf"{re.escape(TEMPORARY_PREFIX)}[a-z0-9_]{{8}}{re.escape(TEMPORARY_SUFFIX)}")
MAX_JSON_BYTES = 16 * 2**20  # results.json of a paper run is about 100 kB
MAX_LOCK_BYTES = 32


PARAMETER = "{parameter}"  # where a message names the parameter at fault


class ParameterError(Exception):
    """An error a caller can fix, naming the Python ``parameter`` at fault (None: no single one).

    ``message`` names it with the token :data:`PARAMETER`: ``str()`` shows the name the
    Python API spells (``limit_train``), the command line its flag (``--limit-train``,
    through :meth:`render` in :mod:`defdistill.cli`), so lower layers never speak CLI.
    """

    def __init__(self, message: str, parameter: str | None = None) -> None:
        self.template, self.parameter = message, parameter
        super().__init__(self.render(parameter or "argument"))

    def render(self, name: str) -> str:
        """The message with the parameter shown as ``name``."""
        return self.template.replace(PARAMETER, name)


class OutputError(ParameterError):
    """A result could not be written (read-only or full output directory, ...)."""


class InputError(ValueError):
    """A file could not be read within its size cap (too large, not a regular file, ...)."""


def _error(path: Path, err: OSError, hint: str, parameter: str | None = None) -> OutputError:
    return OutputError(f"{path}: cannot write ({err.strerror or err}); {hint}", parameter)


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
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMPORARY_PREFIX, suffix=TEMPORARY_SUFFIX)
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


def read_bounded(path: str | Path, max_bytes: int, what: str = "file", *, prefix: bool = False) -> bytes:
    """The bytes of regular file ``path``, refused before reading if larger than ``max_bytes``.

    A FIFO, a device or a directory is refused without blocking; a file that grows while it
    is read is refused after ``max_bytes + 1`` bytes. ``what`` names the kind of file in errors.
    ``prefix``: the first ``max_bytes`` bytes of a larger file instead (a header), all of a
    shorter one.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        InputError: not a regular file, larger than ``max_bytes``, unreadable, or too large
            for the memory available.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise InputError(f"{path}: cannot read {what} ({err.strerror or err})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{path}: not a regular file; expected a {what}")
        if info.st_size > max_bytes and not prefix:
            raise InputError(f"{path}: {info.st_size:,} bytes, more than any {what} "
                             f"({max_bytes:,} at most); is it the right file?")  # fmt: skip
        chunks, size, wanted = [], 0, max_bytes if prefix else max_bytes + 1
        while size < wanted and (chunk := os.read(fd, min(wanted - size, 2**24))):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise InputError(f"{path}: grew beyond {max_bytes:,} bytes while read; not a {what}")
        return b"".join(chunks)
    except MemoryError:
        raise InputError(f"{path}: not enough memory to read this {what}") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read {what} ({err.strerror or err})") from None
    finally:
        os.close(fd)


def read_json_object(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The JSON object in ``path``; ``ValueError`` naming the file if it is anything else.

    Truncated, non-UTF-8, absurdly nested or oversized JSON (more than ``max_bytes``), or
    valid JSON of another shape (a list, a number) are all the same error, so every caller
    handles a damaged file in one place.
    """
    path = Path(path)
    try:
        data = json.loads(read_bounded(path, max_bytes, "JSON file"))
    except InputError:
        raise
    except (ValueError, RecursionError, MemoryError) as err:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path}: not readable JSON ({type(err).__name__}: {err})"[:300]) from None
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


def held_by_another(directory: Path) -> bool:
    """Whether another process holds :func:`exclusive` on ``directory`` (never blocks)."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file (or not one of ours): nobody holds it through us
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False  # closing the descriptor drops the shared lock just taken
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_temporaries(directory: str | Path) -> int:
    """Delete the temporary files that interrupted writes of this package left below ``directory``.

    Only regular files named exactly as the writer names its temporaries (:data:`TEMPORARY`)
    are removed; symbolic links are not followed, and a subdirectory that another run holds
    with :func:`exclusive` is not entered (its pending writes are that run's). Call it while
    holding :func:`exclusive` on ``directory``. Returns how many files were removed.
    """
    removed = 0
    for root, dirs, files in os.walk(directory):
        here = Path(root)
        dirs[:] = [d for d in dirs if not held_by_another(here / d)]
        for name in files:
            if TEMPORARY.fullmatch(name) and stat.S_ISREG((here / name).lstat().st_mode):
                with contextlib.suppress(OSError):
                    (here / name).unlink()
                    removed += 1
    return removed


def _open_lock(lock: Path, parameter: str) -> tuple[int, bool]:
    """``(descriptor, created)`` of lock file ``lock``, opened without following links.

    A lock file this run did not create is used only if it is a regular file of one link
    holding at most a pid: anything else (a symlink, a FIFO, a device, a user's file) is
    refused and left as it is.
    """
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        return os.open(lock, flags | os.O_CREAT | os.O_EXCL, _file_mode()), True
    except FileExistsError:
        pass
    except OSError as err:
        raise _error(lock.parent, err, f"choose a writable {PARAMETER}", parameter) from err
    def refuse(problem: str) -> OutputError:
        return OutputError(f"{lock}: not a defdistill lock file ({problem}); remove it or choose "
                           f"another {PARAMETER}", parameter)  # fmt: skip

    try:
        fd = os.open(lock, flags)
    except OSError as err:
        kind = "a symbolic link" if err.errno == errno.ELOOP else err.strerror or str(err)
        raise refuse(kind) from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "not a regular file"
    elif info.st_nlink != 1:
        problem = "a file with several links"
    elif info.st_size > MAX_LOCK_BYTES or (
        info.st_size and not os.pread(fd, MAX_LOCK_BYTES, 0).strip().isdigit()
    ):
        problem = "a file that holds something else than a pid"
    if problem:
        os.close(fd)
        raise refuse(problem)
    return fd, False


@contextlib.contextmanager
def exclusive(directory: str | Path, parameter: str = "out") -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` (created if needed) for the ``with`` block.

    Raises:
        OutputError: another process holds it (names that process and ``parameter``), the
            directory cannot be created, or its lock file is not one this package wrote.
    """
    directory = Path(directory)
    lock = directory / LOCK_FILE
    if directory.is_symlink() and not directory.exists():
        raise OutputError(f"{directory} is a dangling symbolic link (to {os.readlink(directory)}); "
                          f"remove it or choose another {PARAMETER}", parameter)  # fmt: skip
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _error(directory, err, f"choose a writable {PARAMETER}", parameter) from err
    fd: int | None = None
    locked = False
    try:
        fd, _ = _open_lock(lock, parameter)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, MAX_LOCK_BYTES, 0).decode(errors="replace").strip() or "?"
            raise OutputError(
                f"{directory} is in use by another defdistill run (pid {holder}); wait for it to "
                f"finish or choose another {PARAMETER}", parameter
            ) from None
        locked = True
        os.ftruncate(fd, 0)  # a regular file of ours (checked above), now locked
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield directory
    finally:
        if fd is not None:
            # a run that wrote nothing leaves nothing behind; interrupted (Ctrl-C) between
            # opening the lock file and locking it, it locks it now, unless another run has
            if created and (locked or _lock_now(fd)):
                with contextlib.suppress(OSError):
                    if [p.name for p in directory.iterdir()] == [LOCK_FILE]:
                        lock.unlink()
                        directory.rmdir()
            os.close(fd)  # releases the lock
        elif created:  # stopped before the lock file was opened: the directory is empty
            with contextlib.suppress(OSError):
                directory.rmdir()


def _lock_now(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True
