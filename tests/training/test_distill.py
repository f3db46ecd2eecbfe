import json

import pytest
import torch

from defdistill.checkpoint import load_model
from defdistill.training.config import TrainConfig
from defdistill.training.distill import SOFT_LABELS, distill, soft_label_stats, soft_labels


def test_soft_labels_are_teacher_softmax_at_t():
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.rand(5, 1, 2, 2)
    expected = torch.softmax(teacher(x) / 7.0, dim=1)
    assert torch.allclose(soft_labels(teacher, x, 7.0), expected, atol=1e-6)
    stats = soft_label_stats(torch.full((2, 4), 0.25))
    assert stats["mean_entropy"] == pytest.approx(stats["max_entropy"])


def test_distillation_end_to_end_and_teacher_reuse(synthetic, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=32, temperature=20.0, lr=0.05)
    meta = distill(synthetic, "mnist_cnn", cfg, tmp_path / "d", progress=False)
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
    meta2 = distill(synthetic, "mnist_cnn", cfg, tmp_path / "d", progress=False)
    assert (tmp_path / "d" / "teacher" / "meta.json").read_text() == teacher_before
    assert (tmp_path / "d" / SOFT_LABELS).stat().st_mtime_ns == labels_before
    assert meta2["weights_sha256"] == meta["weights_sha256"]  # deterministic student
    assert json.loads((tmp_path / "d" / "meta.json").read_text())["teacher"]["path"] == "teacher"
