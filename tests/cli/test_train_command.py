"""``defdistill train`` / ``distill``: a model directory is never overwritten by accident, and
an unwritable one is a one-line error that keeps what was there.

A read-only or full output directory is simulated (the tests may run as root, for whom
``chmod`` does not bite): an ``OSError`` at each step of the atomic write of a checkpoint
(``defdistill.io``). Each is a one-line ``OutputError`` (exit 2) that leaves every earlier
file byte for byte intact and no temporary file behind.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
from cli_helpers import run_cli, snapshot

from defdistill.checkpoint import WEIGHTS, CheckpointError, load_model
from defdistill.cli import main
from defdistill.io import exclusive
from defdistill.training.resume import STATE_FILE, TrainingState

TRAIN = ["train", "--epochs", "1", "--batch-size", "32", "--allow-untrained", "--quiet"]


def test_train_then_refuse_to_overwrite_without_force(tmp_path, capsys, synthetic_cli):
    out = tmp_path / "m"
    code, text, err = run_cli([*TRAIN, "--out", out], capsys)
    assert code == 0, err
    assert "test accuracy" in text and str(out) in text
    weights = (out / WEIGHTS).read_bytes()
    code, _, err = run_cli([*TRAIN, "--seed", "1", "--out", out], capsys)
    assert code == 2 and "already holds a model; pass --force to overwrite it" in err
    assert (out / WEIGHTS).read_bytes() == weights
    assert run_cli([*TRAIN, "--seed", "1", "--force", "--out", out], capsys)[0] == 0
    assert (out / WEIGHTS).read_bytes() != weights


def no_temporary_files(root: Path) -> bool:
    return not [p for p in root.rglob(".defdistill-*.partial")]


def fail_inside(root: Path, error: int):
    """An OSError with ``error`` for any path inside ``root`` (others work normally)."""

    def check(path) -> None:
        if Path(path).resolve().is_relative_to(root.resolve()):
            raise OSError(error, os.strerror(error), str(path))

    return check


@pytest.mark.parametrize("where, error", [
    ("replace", errno.EROFS), ("mkstemp", errno.ENOSPC), ("mkstemp", errno.EROFS),
    ("fsync", errno.ENOSPC), ("second-mkstemp", errno.ENOSPC), ("second-replace", errno.EIO),
])  # fmt: skip
def test_unwritable_output_is_one_line_and_keeps_earlier_files(
    tmp_path, capsys, monkeypatch, synthetic_cli, where, error
):
    out = tmp_path / "model"
    assert main([*TRAIN, "--out", str(out)]) == 0
    capsys.readouterr()
    before = snapshot(out)
    check = fail_inside(out, error)
    calls = {"mkstemp": 0, "replace": 0}
    real_mkstemp, real_replace, real_fsync = tempfile.mkstemp, os.replace, os.fsync
    # "second-*" count the writes of the model itself, not the resumable state of each epoch
    real_save, in_state = TrainingState.save, []

    def save(self, path):
        in_state.append(1)
        try:
            return real_save(self, path)
        finally:
            in_state.pop()

    def uncounted() -> bool:
        return bool(in_state) and where.startswith("second")

    def mkstemp(*args, **kwargs):
        if uncounted():
            return real_mkstemp(*args, **kwargs)
        calls["mkstemp"] += 1
        if where == "mkstemp" or (where == "second-mkstemp" and calls["mkstemp"] == 2):
            check(kwargs.get("dir", "."))
        return real_mkstemp(*args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        if uncounted():
            return real_replace(src, dst, *args, **kwargs)
        calls["replace"] += 1
        if where == "replace" or (where == "second-replace" and calls["replace"] == 2):
            check(dst)
        return real_replace(src, dst, *args, **kwargs)

    def fsync(fd):
        if where == "fsync":
            check(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(TrainingState, "save", save)
    code = main([*TRAIN, "--seed", "1", "--force", "--out", str(out)])
    err = capsys.readouterr().err
    monkeypatch.undo()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"defdistill: error: {out}/")
    assert f"cannot write ({os.strerror(error)}); " in lines[0]  # then what to do
    assert "free space or write somewhere else" in lines[0] or "choose a writable" in lines[0]
    if where != "second-replace":  # every earlier file intact, byte for byte (and the epochs'
        # state, written before the model's save failed, left to resume from)
        assert {k: v for k, v in snapshot(out).items() if not k.endswith(STATE_FILE)} == before
    else:  # the weights were renamed, meta.json not: detected, never trusted
        with pytest.raises(CheckpointError, match="sha256 does not match"):
            load_model(out)
    assert no_temporary_files(out)


def test_read_only_directory_for_real(tmp_path, capsys, synthetic_cli):
    out = tmp_path / "model"
    assert main([*TRAIN, "--out", str(out)]) == 0
    before = snapshot(out)
    out.chmod(0o500)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("chmod does not bite (running as root): see the simulated test above")
        code = main([*TRAIN, "--seed", "1", "--force", "--out", str(out)])
        assert code == 2 and "cannot write (Permission denied)" in capsys.readouterr().err
        assert snapshot(out) == before
    finally:
        out.chmod(0o700)


def test_a_second_run_on_the_same_out_stops_and_replaces_nothing(tmp_path, capsys, synthetic_cli):
    """Another run holding --out (here: this process, through a second lock) makes train and
    distill stop at once, before training, with the holder named; nothing is written."""
    out = tmp_path / "m"
    with exclusive(out):
        for command in (TRAIN, ["distill", *TRAIN[1:]]):
            code, _, err = run_cli([*command, "--out", out], capsys)
            assert code == 2 and f"{out} is in use by another defdistill run (pid {os.getpid()})" in err
            assert sorted(p.name for p in out.iterdir()) == [".defdistill.lock"]


def test_train_sweeps_temporaries_left_by_an_interrupted_run(tmp_path, capsys, synthetic_cli):
    out = tmp_path / "m"
    out.mkdir()
    (out / ".defdistill-x81k2abc.partial").write_bytes(b"\0" * 1000)  # what kill -9 mid-write leaves
    assert run_cli([*TRAIN, "--out", out], capsys)[0] == 0
    assert no_temporary_files(out) and (out / WEIGHTS).is_file()


def test_a_refused_training_leaves_no_output_directory(tmp_path, capsys, synthetic_cli):
    out = tmp_path / "never"
    code, _, err = run_cli([t for t in TRAIN if t != "--allow-untrained"] + ["--lr", "1e-9", "--out", out],
                           capsys)  # fmt: skip
    assert code == 2 and "near chance" in err and "--allow-untrained" in err  # the flag, not the parameter
    assert not out.exists()


def test_train_with_trades_records_its_recipe(tmp_path, capsys, synthetic_cli):
    """``--adversarial trades --trades-beta`` (Zhang et al. 2019) reaches the model's meta.json."""
    import json

    out = tmp_path / "trades"
    code, text, err = run_cli([*TRAIN, "--adversarial", "trades", "--trades-beta", "3", "--adv-steps", "2",
                               "--adv-eps", "0.1", "--out", out], capsys)  # fmt: skip
    assert code == 0, err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["role"] == "adversarial" and "adversarial T=1" in text
    recipe = {"adversarial": "trades", "trades_beta": 3.0, "adversarial_steps": 2, "adversarial_eps": 0.1}
    assert {k: meta["config"][k] for k in recipe} == recipe
