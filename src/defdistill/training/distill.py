"""Defensive distillation (Papernot et al. 2016, arXiv:1511.04508, Section IV.B).

1. A *teacher* is trained at temperature T on the hard labels.
2. Its soft labels ``softmax(teacher(x) / T)`` are computed once, in eval mode, for the
   training set.
3. A *student* of the same architecture is trained at T on those soft labels.
4. The student is deployed at T = 1.

The *baseline* is the same network trained normally (T = 1, hard labels).

On disk, a distillation directory holds the deployed student itself (``model.safetensors``
+ ``meta.json``, so ``load_model(dir)`` returns it), ``teacher/`` and
``soft_labels.safetensors``. A rerun with the same teacher configuration reuses the
teacher and its soft labels, so the student can be retrained alone.
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from defdistill.checkpoint import CheckpointError, load_reusable
from defdistill.data import Dataset
from defdistill.devices import resolve_device
from defdistill.inference import predict_logits
from defdistill.io import atomic_write_bytes
from defdistill.temperature import check_temperature, softmax_at
from defdistill.training.config import TrainConfig, role_seed
from defdistill.training.loop import mean_entropy
from defdistill.training.runs import dataset_signature, train_model

log = logging.getLogger(__name__)

SOFT_LABELS = "soft_labels.safetensors"


def soft_labels(
    teacher: nn.Module, x: torch.Tensor, temperature: float, batch_size: int | None = None
) -> torch.Tensor:
    """The teacher's probabilities ``softmax(teacher(x) / T)`` (eval mode), ``(N, K)`` float32."""
    logits = predict_logits(teacher, x, batch_size)
    return softmax_at(logits.double(), check_temperature(temperature)).float()


def soft_label_stats(labels: torch.Tensor) -> dict[str, float]:
    """Mean max-probability and mean entropy (nats; uniform = ln K) of soft labels."""
    return {
        "mean_max_probability": float(labels.max(1).values.mean()),
        "mean_entropy": mean_entropy(labels),
        "max_entropy": math.log(labels.shape[1]),
    }


def role_configs(config: TrainConfig) -> tuple[TrainConfig, TrainConfig]:
    """The teacher's and the student's configurations for a run with ``config``.

    Both are ``config`` (at its temperature T) with their own seed derived from the run's
    seed ``config.seed`` (:func:`defdistill.training.config.role_seed`): the teacher is not the
    baseline's twin and the student is not initialised like its teacher.
    """
    t, seed = config.temperature, config.seed
    return (replace(config, seed=role_seed(seed, "teacher", t)),
            replace(config, seed=role_seed(seed, "student", t)))  # fmt: skip


def train_teacher(
    ds: Dataset,
    architecture: str,
    config: TrainConfig,
    out: str | Path,
    device: str = "auto",
    progress: bool = True,
    allow_untrained: bool = False,
    reuse: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Step 1 of distillation: the teacher at ``config.temperature`` in ``out/teacher``, and its
    ``meta.json``. ``config.seed`` is the run's seed (the teacher's own is derived from it,
    :func:`role_configs`). A teacher already there with this configuration is reused unless
    ``reuse`` is False (``--force``)."""
    out, dev = Path(out), resolve_device(device)
    config = role_configs(config.resolved(dev))[0]
    teacher_dir = out / "teacher"
    wanted = {"config": config.to_dict(), "dataset": dataset_signature(ds), "architecture": architecture}
    if reuse and not teacher_dir.exists():  # the normal case of a first run
        log.info("no teacher at %s: training it", teacher_dir)
    elif reuse:
        try:  # an unfinished teacher, another configuration, or weights not matching meta.json
            teacher, meta = load_reusable(teacher_dir, wanted, dev)
            log.info("reusing teacher %s (accuracy %.4f)", teacher_dir, meta["test_accuracy"])
            return teacher, meta
        except CheckpointError as err:
            log.info("%s; training the teacher", err)
    return train_model(ds, architecture, config, teacher_dir, "teacher", device=str(dev),
                       progress=progress, allow_untrained=allow_untrained)  # fmt: skip


def distill(
    ds: Dataset,
    architecture: str,
    config: TrainConfig,
    out: str | Path,
    device: str = "auto",
    progress: bool = True,
    allow_untrained: bool = False,
    reuse_teacher: bool = True,
) -> dict[str, Any]:
    """Run defensive distillation at ``config.temperature``; return the student's metadata.

    ``config.seed`` is the run's seed; the teacher and the student train from seeds
    derived from it (:func:`role_configs`). A teacher already in ``out/teacher`` with its
    configuration is reused unless ``reuse_teacher`` is False (``--force``).
    """
    out = Path(out)
    temperature = config.temperature
    student_config = role_configs(config)[1]
    dev = resolve_device(device)
    teacher, teacher_meta = train_teacher(ds, architecture, config, out, str(dev), progress,
                                          allow_untrained, reuse=reuse_teacher)  # fmt: skip

    labels = _load_soft_labels(out / SOFT_LABELS, teacher_meta["weights_sha256"])
    if labels is None or len(labels) != len(ds.x_train):
        labels = soft_labels(teacher, ds.x_train, temperature)
        # One metadata key only: safetensors writes several in a random order, and the file's
        # sha256 (recorded in the student's meta.json) must not change from run to run.
        blob = save_safetensors(
            {"soft_labels": labels.contiguous()},
            metadata={"teacher_sha256": teacher_meta["weights_sha256"]},
        )  # fmt: skip
        atomic_write_bytes(out / SOFT_LABELS, blob)
    stats = soft_label_stats(labels)
    log.info("soft labels at T=%g: mean max-probability %.4f, mean entropy %.4f nats",
             temperature, stats["mean_max_probability"], stats["mean_entropy"])  # fmt: skip

    _, student_meta = train_model(
        ds, architecture, student_config, out, "student", targets=labels, device=str(dev),
        progress=progress, allow_untrained=allow_untrained,
        extra_meta={
            "teacher": {"path": "teacher", "weights_sha256": teacher_meta["weights_sha256"],
                        "test_accuracy": teacher_meta["test_accuracy"]},
            "soft_labels": {**stats, "sha256": hashlib.sha256((out / SOFT_LABELS).read_bytes())
                            .hexdigest()},
        },
    )  # fmt: skip
    return student_meta


def _load_soft_labels(path: Path, teacher_sha: str) -> torch.Tensor | None:
    """Soft labels saved for exactly this teacher, or None."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            if (handle.metadata() or {}).get("teacher_sha256") != teacher_sha:
                return None
        return load_safetensors(path.read_bytes())["soft_labels"]
    except Exception:  # a corrupt file is recomputed, never trusted
        log.warning("%s is unreadable; recomputing the soft labels", path)
        return None
