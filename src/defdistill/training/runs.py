"""One training run that ends as a saved model directory (weights + ``meta.json``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from defdistill.checkpoint import save_model
from defdistill.data import Dataset
from defdistill.inference import evaluate
from defdistill.models import build_model
from defdistill.training.config import TrainConfig
from defdistill.training.loop import TrainingError, train
from defdistill.training.resume import STATE_FILE


def dataset_signature(ds: Dataset) -> dict[str, Any]:
    """What identifies the data a model was trained on (for safe reuse of artefacts).

    The name and sizes for the reader, and the sha256 of the images and labels themselves
    (:attr:`Dataset.content_sha256`, computed once per data set): another ``--data-dir``
    with the same counts, or one changed label, is other data and is never reused.
    """
    return {
        "name": ds.name,
        "n_train": len(ds.x_train),
        "n_test": len(ds.x_test),
        "input_shape": list(ds.input_shape),
        "num_classes": ds.num_classes,
        "sha256": ds.content_sha256,
    }


def train_model(
    ds: Dataset,
    architecture: str,
    config: TrainConfig,
    out: str | Path,
    role: str,
    targets: torch.Tensor | None = None,
    device: str = "auto",
    progress: bool = True,
    allow_untrained: bool = False,
    extra_meta: dict[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build ``architecture``, train it on ``targets`` (hard labels by default), save it.

    Resumable: a run killed after some epochs continues after the last finished one when
    called again with the same arguments (:mod:`defdistill.training.resume`).
    """
    c, h, _ = ds.input_shape
    config = config.resolved(device)  # meta.json and the resume key record fp32 or bf16
    torch.manual_seed(config.seed)  # the initialisation is part of the seeded run
    model = build_model(architecture, c, h, ds.num_classes)
    state, created = Path(out) / STATE_FILE, not Path(out).exists()
    try:
        result = train(
            model, ds.x_train, ds.y_train if targets is None else targets, ds.x_test, ds.y_test,
            config, device=device, progress=progress, allow_untrained=allow_untrained, desc=role,
            state_path=state,
        )  # fmt: skip
    except TrainingError:  # refused (did not learn): there is nothing to resume
        state.unlink(missing_ok=True)
        if created and not any(Path(out).iterdir()):
            Path(out).rmdir()
        raise
    deployed = evaluate(result.model, ds.x_test, ds.y_test, temperature=1.0)
    meta = {
        "architecture": architecture,
        "input_shape": list(ds.input_shape),
        "num_classes": ds.num_classes,
        "dataset": dataset_signature(ds),
        "role": role,
        "temperature": config.temperature,
        "deploy_temperature": 1.0,
        "config": config.to_dict(),
        "test_accuracy": result.test_accuracy,
        "mean_max_probability": deployed["mean_max_probability"],
        "saturated_fraction": deployed["saturated_fraction"],
        "mean_max_logit": deployed["mean_max_logit"],
        "history": result.history,
        "train_seconds": result.seconds,
        "train_machines": result.machines,
        "precision": result.precision,
        "memory_format": result.memory_format,
        **(extra_meta or {}),
    }
    saved = save_model(out, result.model, meta)
    (Path(out) / STATE_FILE).unlink(missing_ok=True)  # the model is saved: nothing to resume
    return result.model, saved
