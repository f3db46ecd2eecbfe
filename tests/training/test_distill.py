"""Distillation: soft labels, the student, teacher reuse, and resuming after a crash."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from kill_helpers import (
    SMALL,
    assert_trusted_or_rejected,
    crash_runner,
    killed,
    run_until,
    sha_file,
    sigkill_when,
    stable_meta,
)
from synthetic import make_synthetic

from defdistill.checkpoint import META, WEIGHTS, CheckpointError, load_model, save_model
from defdistill.models import build_model
from defdistill.training.config import TrainConfig
from defdistill.training.distill import SOFT_LABELS, distill, soft_label_stats, soft_labels


def test_soft_labels_are_teacher_softmax_at_t():
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.rand(5, 1, 2, 2)
    expected = torch.softmax(teacher(x) / 7.0, dim=1)
    assert torch.allclose(soft_labels(teacher, x, 7.0), expected, atol=1e-6)
    stats = soft_label_stats(torch.full((2, 4), 0.25))
    assert stats["mean_entropy"] == pytest.approx(stats["max_entropy"])


@pytest.mark.heavy
def test_distillation_end_to_end_and_teacher_reuse(synthetic, tmp_path, caplog):
    cfg = TrainConfig(epochs=2, batch_size=32, temperature=20.0, lr=0.05)
    with caplog.at_level(logging.INFO, logger="defdistill.training.distill"):
        meta = distill(synthetic, "mnist_cnn", cfg, tmp_path / "d", progress=False)
    # a first run: no teacher yet is the normal case, said plainly (no checkpoint error)
    assert f"no teacher at {tmp_path / 'd' / 'teacher'}: training it" in caplog.messages
    assert not any("not found" in m or "model directory" in m for m in caplog.messages), caplog.messages
    assert meta["role"] == "student" and meta["temperature"] == 20.0
    assert meta["teacher"]["test_accuracy"] > 0.9 and meta["test_accuracy"] > 0.9
    assert 1 / 3 < meta["soft_labels"]["mean_max_probability"] < 1.0
    assert meta["mean_max_probability"] > 0.999  # deployed at T = 1: saturated
    student, _ = load_model(tmp_path / "d")
    teacher, teacher_meta = load_model(tmp_path / "d" / "teacher")
    assert teacher_meta["role"] == "teacher"
    assert student.head.weight.shape == teacher.head.weight.shape

    # a second run with the same teacher configuration reuses teacher and soft labels
    labels_before = (tmp_path / "d" / SOFT_LABELS).stat().st_mtime_ns
    teacher_before = (tmp_path / "d" / "teacher" / "meta.json").read_text()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="defdistill.training.distill"):
        meta2 = distill(synthetic, "mnist_cnn", cfg, tmp_path / "d", progress=False)
    assert f"reusing teacher {tmp_path / 'd' / 'teacher'}" in caplog.text
    assert not any("training it" in m or "training the teacher" in m for m in caplog.messages)
    assert (tmp_path / "d" / "teacher" / "meta.json").read_text() == teacher_before
    assert (tmp_path / "d" / SOFT_LABELS).stat().st_mtime_ns == labels_before
    assert meta2["weights_sha256"] == meta["weights_sha256"]  # deterministic student
    assert json.loads((tmp_path / "d" / "meta.json").read_text())["teacher"]["path"] == "teacher"


# --------------------------------------------------------------------------- interrupted runs
#
# Training or distillation interrupted at any write, then rerun, gives bit-identical
# weights to an uninterrupted run; before the rerun, every checkpoint either loads with the
# right weights or is rejected. In-process (fast) with an exception raised at each write,
# and with real SIGKILLs of `defdistill distill` subprocesses (-m slow).

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


def test_truncated_soft_labels_are_recomputed(tiny, reference, tmp_path):
    out = tmp_path / "d"
    shutil.copytree(reference["dir"], out)
    blob = (out / SOFT_LABELS).read_bytes()
    (out / SOFT_LABELS).write_bytes(blob[: len(blob) // 3])
    (out / META).unlink()
    run_distill(tiny, out)
    assert_matches_reference(out, reference)


def test_teacher_whose_weights_do_not_match_its_meta_is_retrained(tiny, reference, tmp_path, caplog):
    """A crash while replacing a teacher (same configuration) leaves other weights."""
    out = tmp_path / "d"
    shutil.copytree(reference["dir"], out)
    torch.manual_seed(9)
    foreign = build_model("mnist_cnn", 1, 28, 3)
    save_model(tmp_path / "x", foreign, ARCH)
    shutil.copy(tmp_path / "x" / WEIGHTS, out / "teacher" / WEIGHTS)
    with pytest.raises(CheckpointError):
        load_model(out / "teacher")
    with caplog.at_level(logging.INFO, logger="defdistill.training.distill"):
        run_distill(tiny, out)
    assert_matches_reference(out, reference)
    # a teacher directory that cannot be reused: the log says why
    assert any(m.startswith(f"{out / 'teacher' / WEIGHTS}") and m.endswith("; training the teacher")
               for m in caplog.messages), caplog.messages  # fmt: skip


@pytest.mark.slow
def test_sigkilled_distill_then_rerun_is_bit_identical(tmp_path):
    ref = tmp_path / "ref"
    assert run_until("none", "distill", *SMALL, "--out", ref).returncode == 0
    expected, expected_teacher = stable_meta(ref), stable_meta(ref / "teacher")
    # 256 samples / 32 = 8 steps per network: steps 1-8 teacher, 9-16 student
    points = ("step:2", "replaced:2", "replace:3", "replaced:3", "step:12", "replaced:4")
    for point in points:
        out = tmp_path / point.replace(":", "-")
        assert killed(run_until(point, "distill", *SMALL, "--out", out)), point
        teacher_done = (out / "teacher" / META).exists()
        teacher_meta = (out / "teacher" / META).read_bytes() if teacher_done else None
        assert_trusted_or_rejected(out / "teacher", expected_teacher["weights_sha256"])
        assert_trusted_or_rejected(out, expected["weights_sha256"])
        assert not (out / META).exists()  # no --force needed: the student never finished
        assert run_until("none", "distill", *SMALL, "--out", out).returncode == 0
        assert stable_meta(out) == expected, point
        assert stable_meta(out / "teacher") == expected_teacher, point
        if teacher_done:  # the teacher-reuse path: the finished teacher was not retrained
            assert (out / "teacher" / META).read_bytes() == teacher_meta, point
    # and an external kill -9 at an arbitrary moment after the teacher is saved
    out = tmp_path / "external"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sigkill_when(crash_runner("none", "distill", *SMALL, "--out", out), out / "teacher" / META, 240, env)
    force = ["--force"] if (out / META).exists() else []
    assert run_until("none", "distill", *SMALL, *force, "--out", out).returncode == 0
    assert stable_meta(out) == expected and stable_meta(out / "teacher") == expected_teacher


@pytest.mark.heavy
def test_soft_labels_stay_float32_after_bfloat16_training(tmp_path):
    """bf16 trains the teacher; its soft labels are still computed in float32, on the saved
    float32 weights (a bfloat16 forward pass would be off by about 1e-2)."""
    from safetensors.torch import load as load_safetensors

    ds = make_synthetic(n_train=128, n_test=64)
    cfg = TrainConfig(epochs=1, batch_size=32, temperature=5.0, lr=0.05, precision="bf16", min_accuracy=0.0)
    meta = distill(ds, "mnist_cnn", cfg, tmp_path / "d", progress=False)
    teacher, teacher_meta = load_model(tmp_path / "d" / "teacher")
    assert meta["precision"] == teacher_meta["precision"] == "bf16"
    stored = load_safetensors((tmp_path / "d" / SOFT_LABELS).read_bytes())["soft_labels"]
    with torch.no_grad():
        exact = torch.softmax(teacher.double()(ds.x_train.double()) / 5.0, dim=1)
    assert stored.dtype == torch.float32
    assert torch.allclose(stored.double(), exact, atol=1e-5)
