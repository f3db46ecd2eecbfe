"""Output paths checked before a command does any work, and text from files made printable.

Every path a command writes (``--out``, ``--json``, ``--save-examples``, ``--data-dir`` of
``download``) is checked when the command starts: not empty, not a dangling link, a file
where a file is written and a directory where a directory is, under a directory this user
can write, and never one of the command's own inputs. A failure is a :class:`UsageError`,
before minutes of training or attacks are spent.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from defdistill.cli.options import UsageError

NAME_MAX = 255  # bytes in one file name on Linux and macOS file systems


def _dangling(path: Path, flag: str) -> None:
    if path.is_symlink() and not path.exists():
        raise UsageError(f"{flag} {path} is a symbolic link to {os.readlink(path)}, which does not "
                         f"exist; remove the link or choose another {flag}")  # fmt: skip


def _writable_below(path: Path, flag: str) -> None:
    """The nearest existing ancestor of ``path`` (itself included) is a writable directory."""
    existing = path
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    _dangling(existing, flag)
    if not existing.is_dir():
        raise UsageError(f"{flag} {path}: {existing} is a file, not a directory; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: {existing} is not writable; choose another {flag}")
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise UsageError(f"{flag}: the name {part[:40]}... is longer than {NAME_MAX} bytes")


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_file(path: Path | None, flag: str, inputs: Iterable[Path] = ()) -> None:
    """``path`` can receive a file that is none of ``inputs`` (``None``: nothing to check)."""
    if path is None:
        return
    _dangling(path, flag)
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a directory; give a file name")
    _writable_below(path.parent, flag)
    if len(os.fsencode(path.name)) > NAME_MAX:
        raise UsageError(f"{flag}: the name {path.name[:40]}... is longer than {NAME_MAX} bytes")
    for source in inputs:
        if _same(path, source) or path.resolve() == source.resolve():
            raise UsageError(f"{flag} {path} is an input of this command ({source}); writing it would "
                             f"destroy it: choose another {flag}")  # fmt: skip


def check_output_dir(
    path: Path, flag: str, directories: Iterable[str] = (), files: Iterable[str] = ()
) -> None:
    """``path`` is, or can become, a writable directory; below it, each of ``directories``
    that exists is a directory and each of ``files`` that exists is not one."""
    _dangling(path, flag)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file, not a directory; choose another {flag}")
    _writable_below(path, flag)
    for sub in directories:
        _dangling(path / sub, flag)
        if (path / sub).exists() and not (path / sub).is_dir():
            raise UsageError(f"{flag} {path}: {path / sub} is a file where a directory is written; "
                             f"move it or choose another {flag}")  # fmt: skip
    for name in files:
        if (path / name).is_dir():
            raise UsageError(f"{flag} {path}: {path / name} is a directory where a file is written; "
                             f"move it or choose another {flag}")  # fmt: skip


def model_files(spec: Path | None) -> list[Path]:
    """The files a ``--model``/``--reference`` reads (none if ``spec`` names no model yet)."""
    if spec is None:
        return []
    from defdistill.checkpoint import META, WEIGHTS, CheckpointError
    from defdistill.pretrained import resolve_model

    try:
        directory = resolve_model(spec)
    except CheckpointError:
        return []  # loading will report it
    return [directory / META, directory / WEIGHTS]
