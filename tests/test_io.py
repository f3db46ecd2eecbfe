"""Atomic writes: a reader sees the old file or the new one, never part of either."""

from __future__ import annotations

import os

import pytest

from defdistill.io import atomic_write_bytes


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
