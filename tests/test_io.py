"""Atomic writes (a reader sees the old file or the new one), file modes, the run lock, JSON read back."""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest

from defdistill.io import (
    OutputError,
    atomic_write_bytes,
    atomic_write_files,
    exclusive,
    read_json_object,
    remove_temporaries,
)


def test_atomic_write_never_exposes_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old" * 1000)

    class Boom(BaseException):
        pass

    def fsync(fd):  # the new bytes are written but the process dies before the rename
        raise Boom

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(Boom):
        atomic_write_bytes(path, b"new" * 5000)
    monkeypatch.undo()
    assert path.read_bytes() == b"old" * 1000


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    from defdistill import io

    io._file_mode.cache_clear()
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "a.json", b"{}")
        atomic_write_files({tmp_path / "b.bin": b"1", tmp_path / "c.json": b"2"})
    finally:
        os.umask(old)
        io._file_mode.cache_clear()
    for name in ("a.json", "b.bin", "c.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


FORK = multiprocessing.get_context("fork")


def _hold(path, started, release):
    with exclusive(path):
        started.set()
        release.wait(30)


def test_a_second_run_on_a_locked_directory_stops_with_the_holders_pid(tmp_path):
    started, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(tmp_path / "out", started, release))
    holder.start()
    try:
        assert started.wait(30)
        busy = rf"in use by another defdistill run \(pid {holder.pid}\).*choose another out$"
        with pytest.raises(OutputError, match=busy), exclusive(tmp_path / "out"):
            pass
    finally:
        release.set()
        holder.join(30)
    with exclusive(tmp_path / "out"):  # released when the holder ends
        (tmp_path / "out" / "model.json").write_text("{}")
    assert (tmp_path / "out" / "model.json").is_file()


def test_a_lock_is_released_by_a_killed_process(tmp_path):
    started, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(tmp_path, started, release))
    holder.start()
    assert started.wait(30)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(30)
    with exclusive(tmp_path):
        pass


def test_a_run_that_wrote_nothing_leaves_no_directory(tmp_path):
    with pytest.raises(RuntimeError), exclusive(tmp_path / "new" / "out"):
        raise RuntimeError("training refused")
    assert not (tmp_path / "new" / "out").exists()
    (tmp_path / "kept").mkdir()
    with exclusive(tmp_path / "kept"):
        pass
    assert (tmp_path / "kept").is_dir()  # it existed before: never removed


@pytest.mark.parametrize("where", ["open", "flock"])
def test_ctrl_c_before_the_lock_is_taken_leaves_no_directory(tmp_path, monkeypatch, where):
    """Ctrl-C after the lock file is created and before it is locked (or while it is being
    opened): the new directory is removed all the same."""
    import fcntl

    from defdistill import io

    module, name = (io, "_open_lock") if where == "open" else (fcntl, "flock")
    real, calls = getattr(module, name), []

    def interrupted(*args, **kwargs):  # the first call is interrupted, the others run
        calls.append(args)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, interrupted)
    with pytest.raises(KeyboardInterrupt), exclusive(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()


def test_remove_temporaries_takes_only_interrupted_writes(tmp_path):
    (tmp_path / "sub").mkdir()
    leftovers = [tmp_path / ".defdistill-k2j3_x9a.partial", tmp_path / "sub" / ".defdistill-abc12345.partial"]
    kept = [tmp_path / "results.json", tmp_path / "notes.tmp", tmp_path / ".hidden.tmp",
            tmp_path / ".draft.md.tmp", tmp_path / ".results.json.k2j3_x.tmp",
            tmp_path / ".defdistill-0123.partial", tmp_path / "sub" / "x.json"]  # fmt: skip
    for path in leftovers + kept:
        path.write_text("x")
    assert remove_temporaries(tmp_path) == 2
    assert not any(p.exists() for p in leftovers) and all(p.exists() for p in kept)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b'{"a": 1', "not readable JSON"), (b"[]", "expected a JSON object, found list"),
     (b"[1]", "found list"), (b"3", "found int"), (b"\xff\xfe", "not readable JSON"),
     (b"[" * 100_000 + b"]" * 100_000, "RecursionError"), (b"", "not readable JSON")],
)  # fmt: skip
def test_read_json_object_names_the_file_for_every_damage(tmp_path, content, fragment):
    path = tmp_path / "results.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=fragment) as info:
        read_json_object(path)
    assert str(path) in str(info.value)
    path.write_bytes(b'{"schema_version": 3}')
    assert read_json_object(path) == {"schema_version": 3}
