"""Nothing is lost or trusted half-written on a crash; an unwritable output is a clear error.

* Every file is written atomically (``defdistill.io``): a temporary file, fsync, rename.
  A checkpoint's two files are both staged before either replaces an older one, and
  ``meta.json`` (renamed last) records the sha256 of the weights.
* Training or distillation interrupted at any write, then rerun, gives bit-identical
  weights to an uninterrupted run; before the rerun, every checkpoint either loads with
  the right weights or is rejected with a ``CheckpointError``. In-process (fast) with an
  exception raised at each write, and with real SIGKILLs of ``defdistill train`` /
  ``distill`` subprocesses (``-m slow``, ``tests/crash_runner.py``).
* Planted half-written files (truncated weights, truncated or foreign ``meta.json``,
  truncated soft labels, a teacher whose weights do not match its metadata, leftover
  temporary files) are rejected or recomputed, never used.
* A read-only or full output directory (simulated: the tests run as root, for whom
  ``chmod`` does not bite) is a one-line ``OutputError`` (exit 2) that leaves every
  earlier file byte for byte intact and no temporary file behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from kill_helpers import sigkill_when
from synthetic import make_synthetic

from defdistill import cli
from defdistill.checkpoint import META, WEIGHTS, CheckpointError, load_model, save_model
from defdistill.experiments.units import UnitStore
from defdistill.io import OutputError, atomic_write_bytes
from defdistill.models import build_model
from defdistill.training.config import TrainConfig
from defdistill.training.distill import SOFT_LABELS, distill

TESTS = Path(__file__).resolve().parent
CONFIG = TrainConfig(epochs=1, batch_size=32, lr=0.05, temperature=20.0)
ARCH = {"architecture": "mnist_cnn", "input_shape": [1, 28, 28], "num_classes": 3}


class Crash(BaseException):
    """Stands for the process dying (not an ``OSError``: nothing handles it)."""


@contextmanager
def crash_at_replace(n: int, after: bool) -> Iterator[None]:
    """Raise :class:`Crash` at the ``n``-th ``os.replace`` (before or after it renames)."""
    real, calls = os.replace, [0]

    def replace(src, dst, *args, **kwargs):
        calls[0] += 1
        if calls[0] == n and not after:
            raise Crash
        real(src, dst, *args, **kwargs)
        if calls[0] == n and after:
            raise Crash

    os.replace = replace
    try:
        yield
    finally:
        os.replace = real


def sha_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def no_temporary_files(root: Path) -> bool:
    return not [p for p in root.rglob(".*.tmp")]


def assert_trusted_or_rejected(path: Path, expected_sha: str) -> None:
    """A checkpoint directory either loads with exactly the expected weights or is rejected."""
    try:
        _, meta = load_model(path)
    except CheckpointError:
        return
    assert meta["weights_sha256"] == expected_sha == sha_file(path / WEIGHTS)


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(n_train=96, n_test=48, seed=5)


def run_distill(ds, out: Path) -> dict:
    return distill(ds, "mnist_cnn", CONFIG, out, progress=False, allow_untrained=True)


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory) -> dict[str, str]:
    """Digests of an uninterrupted distillation."""
    out = tmp_path_factory.mktemp("reference") / "d"
    meta = run_distill(tiny, out)
    return {
        "student": meta["weights_sha256"],
        "teacher": meta["teacher"]["weights_sha256"],
        "soft_labels": sha_file(out / SOFT_LABELS),
        "dir": str(out),
    }


def assert_matches_reference(out: Path, reference: dict[str, str]) -> None:
    _, student_meta = load_model(out)
    _, teacher_meta = load_model(out / "teacher")
    assert student_meta["weights_sha256"] == reference["student"]
    assert teacher_meta["weights_sha256"] == reference["teacher"]
    assert sha_file(out / SOFT_LABELS) == reference["soft_labels"]
    assert student_meta["soft_labels"]["sha256"] == reference["soft_labels"]


# --------------------------------------------------------------------------- interrupted runs

# distill writes: 1 teacher weights, 2 teacher meta, 3 soft labels, 4 student weights, 5 student meta
POINTS = [(n, False) for n in range(1, 6)] + [(n, True) for n in range(1, 5)]


@pytest.mark.parametrize("n, after", POINTS, ids=[f"{'after' if a else 'before'}-{n}" for n, a in POINTS])
def test_distill_interrupted_at_every_write_then_rerun(tiny, reference, tmp_path, n, after):
    out = tmp_path / "d"
    with crash_at_replace(n, after), pytest.raises(Crash):
        run_distill(tiny, out)
    assert not (out / META).exists()  # the student never finished
    assert_trusted_or_rejected(out / "teacher", reference["teacher"])
    assert_trusted_or_rejected(out, reference["student"])
    if (out / SOFT_LABELS).exists():
        assert sha_file(out / SOFT_LABELS) == reference["soft_labels"]
    teacher_meta = (out / "teacher" / META).read_bytes() if (out / "teacher" / META).exists() else None
    run_distill(tiny, out)
    assert_matches_reference(out, reference)
    if teacher_meta is not None:  # a complete teacher was reused, not trained again
        assert (out / "teacher" / META).read_bytes() == teacher_meta
    # a crash may leave a hidden temporary file (never read); nothing else is extra
    visible = {str(p.relative_to(out)) for p in out.rglob("*") if not p.name.startswith(".")}
    assert visible == {"teacher", "teacher/" + WEIGHTS, "teacher/" + META, SOFT_LABELS, WEIGHTS, META}


# --------------------------------------------------------------------------- planted files


def saved_model(path: Path, seed: int) -> str:
    torch.manual_seed(seed)
    model = build_model("mnist_cnn", 1, 28, 3)
    meta = save_model(path, model, ARCH)
    return meta["weights_sha256"]


@pytest.mark.parametrize("keep", [0, 8, 100, -1])
def test_truncated_weights_are_rejected(tmp_path, keep):
    saved_model(tmp_path / "m", 0)
    blob = (tmp_path / "m" / WEIGHTS).read_bytes()
    (tmp_path / "m" / WEIGHTS).write_bytes(blob[:keep] if keep >= 0 else blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="sha256 does not match meta.json"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("keep", [0, 1, 50, -1])
def test_truncated_meta_is_rejected(tmp_path, keep):
    saved_model(tmp_path / "m", 0)
    text = (tmp_path / "m" / META).read_bytes()
    (tmp_path / "m" / META).write_bytes(text[:keep] if keep >= 0 else text[: len(text) // 2])
    with pytest.raises(CheckpointError, match=r"meta.json: (not valid JSON|unknown checkpoint format)"):
        load_model(tmp_path / "m")


def test_new_weights_beside_old_meta_are_rejected(tmp_path):
    """What a crash between the two renames of a re-save would leave."""
    saved_model(tmp_path / "old", 0)
    saved_model(tmp_path / "new", 1)
    shutil.copy(tmp_path / "new" / WEIGHTS, tmp_path / "old" / WEIGHTS)
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_model(tmp_path / "old")


def test_leftover_temporary_files_are_ignored(tmp_path):
    sha = saved_model(tmp_path / "m", 0)
    blob = (tmp_path / "m" / WEIGHTS).read_bytes()
    (tmp_path / "m" / f".{WEIGHTS}.abc123.tmp").write_bytes(blob[:1000])  # a SIGKILLed write
    (tmp_path / "m" / f".{META}.def456.tmp").write_text('{"format_version": 1, "architec')
    assert load_model(tmp_path / "m")[1]["weights_sha256"] == sha


def test_truncated_soft_labels_are_recomputed(tiny, reference, tmp_path):
    out = tmp_path / "d"
    shutil.copytree(reference["dir"], out)
    blob = (out / SOFT_LABELS).read_bytes()
    (out / SOFT_LABELS).write_bytes(blob[: len(blob) // 3])
    (out / META).unlink()
    run_distill(tiny, out)
    assert_matches_reference(out, reference)


def test_teacher_whose_weights_do_not_match_its_meta_is_retrained(tiny, reference, tmp_path):
    """A crash while replacing a teacher (same configuration) leaves other weights."""
    out = tmp_path / "d"
    shutil.copytree(reference["dir"], out)
    torch.manual_seed(9)
    foreign = build_model("mnist_cnn", 1, 28, 3)
    save_model(tmp_path / "x", foreign, ARCH)
    shutil.copy(tmp_path / "x" / WEIGHTS, out / "teacher" / WEIGHTS)
    with pytest.raises(CheckpointError):
        load_model(out / "teacher")
    run_distill(tiny, out)
    assert_matches_reference(out, reference)


def test_truncated_unit_result_is_recomputed(tmp_path):
    store = UnitStore(tmp_path)
    store.run("eval-a", {"k": 1}, lambda: {"v": 1})
    path = tmp_path / "units" / "eval-a.json"
    path.write_bytes(path.read_bytes()[:20])
    again = UnitStore(tmp_path)
    assert again.run("eval-a", {"k": 1}, lambda: {"v": 2}) == {"v": 2}
    assert again.computed == ["eval-a"]


# --------------------------------------------------------------------------- unwritable output


@pytest.fixture
def synthetic_cli(monkeypatch):
    """The CLI with a tiny synthetic data set instead of MNIST (speed only)."""
    ds = make_synthetic(n_train=64, n_test=32, seed=6)
    monkeypatch.setattr(cli, "load_dataset", lambda *args, **kwargs: ds)


TRAIN = ["train", "--epochs", "1", "--batch-size", "32", "--allow-untrained", "--quiet"]


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
    assert cli.main([*TRAIN, "--out", str(out)]) == 0
    capsys.readouterr()
    before = snapshot(out)
    check = fail_inside(out, error)
    calls = {"mkstemp": 0, "replace": 0}
    real_mkstemp, real_replace, real_fsync = tempfile.mkstemp, os.replace, os.fsync

    def mkstemp(*args, **kwargs):
        calls["mkstemp"] += 1
        if where == "mkstemp" or (where == "second-mkstemp" and calls["mkstemp"] == 2):
            check(kwargs.get("dir", "."))
        return real_mkstemp(*args, **kwargs)

    def replace(src, dst, *args, **kwargs):
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
    code = cli.main([*TRAIN, "--seed", "1", "--force", "--out", str(out)])
    err = capsys.readouterr().err
    monkeypatch.undo()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"defdistill: error: {out}/")
    assert f"cannot write ({os.strerror(error)})" in lines[0] and "--out" in lines[0]
    if where != "second-replace":  # every earlier file intact, byte for byte
        assert snapshot(out) == before
    else:  # the weights were renamed, meta.json not: detected, never trusted
        with pytest.raises(CheckpointError, match="sha256 does not match"):
            load_model(out)
    assert no_temporary_files(out)


def test_read_only_directory_for_real(tmp_path, capsys, synthetic_cli):
    out = tmp_path / "model"
    assert cli.main([*TRAIN, "--out", str(out)]) == 0
    before = snapshot(out)
    out.chmod(0o500)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("chmod does not bite (running as root): see the simulated test above")
        code = cli.main([*TRAIN, "--seed", "1", "--force", "--out", str(out)])
        assert code == 2 and "cannot write (Permission denied)" in capsys.readouterr().err
        assert snapshot(out) == before
    finally:
        out.chmod(0o700)


def test_unit_store_write_failure_keeps_the_previous_result(tmp_path, monkeypatch):
    store = UnitStore(tmp_path)
    store.run("eval-a", {"k": 1}, lambda: {"v": 1})
    before = (tmp_path / "units" / "eval-a.json").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(OutputError, match=r"eval-a.json: cannot write \(No space left on device\)"):
        UnitStore(tmp_path).run("eval-a", {"k": 2}, lambda: {"v": 2})
    monkeypatch.undo()
    assert (tmp_path / "units" / "eval-a.json").read_bytes() == before


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


# --------------------------------------------------------------------------- SIGKILL (slow)

SMALL = ["--limit-train", "256", "--limit-test", "100", "--epochs", "1", "--batch-size", "32",
         "--lr", "0.05", "--allow-untrained", "--quiet"]  # fmt: skip


def runner(point: str, *args) -> list[str]:
    return [sys.executable, str(TESTS / "crash_runner.py"), point, *map(str, args)]


def run(point: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(runner(point, *args), capture_output=True, text=True, timeout=300, env=env)


def killed(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode == -signal.SIGKILL


def stable_meta(path: Path) -> dict:
    """meta.json without wall-clock times."""
    meta = json.loads((path / META).read_text())
    return {k: v for k, v in meta.items() if k not in ("train_seconds", "environment")}


def test_sigkilled_train_then_rerun_is_bit_identical(tmp_path):
    """Runs in the default suite (about 30 s): training killed at several points."""
    ref = tmp_path / "ref"
    assert run("none", "train", *SMALL, "--out", ref).returncode == 0
    expected = stable_meta(ref)
    # mid-training; new weights complete but not renamed; weights renamed, no meta.json;
    # meta.json complete but not renamed
    for point in ("step:3", "replace:1", "replaced:1", "replace:2"):
        out = tmp_path / point.replace(":", "-")
        proc = run(point, "train", *SMALL, "--out", out)
        assert killed(proc), (point, proc.returncode, proc.stderr)
        assert_trusted_or_rejected(out, expected["weights_sha256"])
        force = ["--force"] if (out / META).exists() else []
        assert run("none", "train", *SMALL, *force, "--out", out).returncode == 0
        assert stable_meta(out) == expected, point
    # a --force retrain over an older model, killed between its two renames: the directory
    # holds the new weights beside the old meta.json; rejected, then the rerun repairs it
    out = tmp_path / "over-older"
    assert run("none", "train", *SMALL, "--seed", "1", "--out", out).returncode == 0
    assert killed(run("replaced:1", "train", *SMALL, "--force", "--out", out))
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_model(out)
    assert run("none", "train", *SMALL, "--force", "--out", out).returncode == 0
    assert stable_meta(out) == expected


@pytest.mark.slow
def test_sigkilled_distill_then_rerun_is_bit_identical(tmp_path):
    ref = tmp_path / "ref"
    assert run("none", "distill", *SMALL, "--out", ref).returncode == 0
    expected, expected_teacher = stable_meta(ref), stable_meta(ref / "teacher")
    # 256 samples / 32 = 8 steps per network: steps 1-8 teacher, 9-16 student
    points = ("step:2", "replaced:2", "replace:3", "replaced:3", "step:12", "replaced:4")
    for point in points:
        out = tmp_path / point.replace(":", "-")
        assert killed(run(point, "distill", *SMALL, "--out", out)), point
        teacher_done = (out / "teacher" / META).exists()
        teacher_meta = (out / "teacher" / META).read_bytes() if teacher_done else None
        assert_trusted_or_rejected(out / "teacher", expected_teacher["weights_sha256"])
        assert_trusted_or_rejected(out, expected["weights_sha256"])
        assert not (out / META).exists()  # no --force needed: the student never finished
        assert run("none", "distill", *SMALL, "--out", out).returncode == 0
        assert stable_meta(out) == expected, point
        assert stable_meta(out / "teacher") == expected_teacher, point
        if teacher_done:  # the teacher-reuse path: the finished teacher was not retrained
            assert (out / "teacher" / META).read_bytes() == teacher_meta, point
    # and an external kill -9 at an arbitrary moment after the teacher is saved
    out = tmp_path / "external"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sigkill_when(runner("none", "distill", *SMALL, "--out", out), out / "teacher" / META, 240, env)
    force = ["--force"] if (out / META).exists() else []
    assert run("none", "distill", *SMALL, *force, "--out", out).returncode == 0
    assert stable_meta(out) == expected and stable_meta(out / "teacher") == expected_teacher
