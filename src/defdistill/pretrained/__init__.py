"""Pretrained models shipped with the package, addressed by name (as RobustBench's ``load_model``).

Each shipped model is an ordinary checkpoint directory in this package's directory,
``defdistill/pretrained/<name>/{meta.json,model.safetensors}``, whose ``meta.json`` also
holds a ``provenance`` object with :data:`PROVENANCE_FIELDS`. To ship one, save it with
``save_model(REGISTRY / name, model, {**meta, "provenance": {...}})`` (``meta`` as
``defdistill train`` wrote it) and commit both files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from defdistill.checkpoint import META, CheckpointError, load_model, read_meta

log = logging.getLogger(__name__)

REGISTRY = Path(__file__).parent
# what a shipped model's ``meta.json`` ``provenance`` records: how to train it again, from
# which commit, its test accuracy, how long it trained on which CPU, sha256 of its weights
PROVENANCE_FIELDS = ("command", "commit", "test_accuracy", "training_seconds", "cpu", "sha256")


def available() -> list[str]:
    """Sorted names of the shipped models (the registry's directories holding ``meta.json``)."""
    if not REGISTRY.is_dir():
        return []
    return sorted(p.name for p in REGISTRY.iterdir() if (p / META).is_file())


def resolve_model(spec: str | Path) -> Path:
    """The model directory ``spec`` names: an existing directory wins, else a shipped name.

    Raises:
        CheckpointError: ``spec`` is neither a directory nor a shipped model's name.
    """
    path = Path(spec)
    names = available()
    if path.is_dir() and str(spec) in names and not (path / META).exists():
        raise CheckpointError(
            f"{spec}: a local directory without {META} hides the shipped model of that name; "
            f"remove or rename the directory, or run from another directory to use the shipped {spec}"
        )
    if path.is_dir():
        return path
    if str(spec) in names:
        return REGISTRY / str(spec)
    raise CheckpointError(
        f"{spec}: neither a shipped model (shipped: {', '.join(names) or 'none'}) nor a defdistill "
        f"model directory ({path / META}: not found); give a shipped name (see `defdistill models`) "
        "or give a model directory"
    )


def _shipped(name: str) -> Path:
    if name not in available():
        raise CheckpointError(f"{name!r} is not a shipped model; shipped: {', '.join(available()) or 'none'}")
    return REGISTRY / name


def describe(name: str) -> dict[str, Any]:
    """Name, role, temperature, data set, test accuracy and provenance of shipped model ``name``."""
    meta = read_meta(_shipped(name))
    return {
        "name": name,
        "role": meta.get("role", ""),
        "temperature": float(meta.get("temperature", 1.0)),
        "dataset": meta.get("dataset", {}).get("name", ""),
        "test_accuracy": meta.get("test_accuracy"),
        "provenance": meta.get("provenance", {}),
    }


def load_pretrained(name: str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load shipped model ``name``: ``(model, meta)``, weights checked against their sha256.

    Raises:
        CheckpointError: an unknown name, or files that do not match ``meta.json``.
    """
    path = _shipped(name)
    log.info("loading shipped model %s from %s", name, path)
    return load_model(path, device)
