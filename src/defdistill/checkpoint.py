"""Checkpoints: one directory per model, ``model.safetensors`` + ``meta.json``.

No pickle is ever loaded: weights are safetensors, metadata is JSON. Both files are
written atomically, weights first; ``meta.json`` records the sha256 of the weights, so a
checkpoint whose weights were tampered with or half-replaced is rejected on load.
"""

from __future__ import annotations

import hashlib
import math
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from defdistill.io import atomic_write_files, json_bytes, read_json_object
from defdistill.models import available_models, build_model

WEIGHTS = "model.safetensors"
META = "meta.json"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, tampered with or does not match its metadata."""


def environment() -> dict[str, str]:
    """Library versions recorded with every artefact."""
    import numpy

    from defdistill import __version__

    return {
        "defdistill": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def save_model(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    """Save ``model``'s weights and ``meta`` to directory ``path`` atomically.

    ``meta`` must hold ``architecture``, ``input_shape`` and ``num_classes`` so that
    :func:`load_model` can rebuild the network. Returns the metadata as written.
    """
    for key in ("architecture", "input_shape", "num_classes"):
        if key not in meta:
            raise ValueError(f"checkpoint metadata needs {key!r}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save_safetensors(state)
    full = {
        "format_version": FORMAT_VERSION,
        **meta,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "environment": environment(),
    }
    path = Path(path)
    # both files are fully written before either replaces an older one; meta.json last
    atomic_write_files({path / WEIGHTS: blob, path / META: json_bytes(full)})
    return full


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read and validate ``meta.json`` of checkpoint directory ``path``."""
    meta_path = Path(path) / META
    if not meta_path.is_file():
        raise CheckpointError(f"{meta_path}: not found; is {path} a defdistill model directory?")
    try:
        meta = read_json_object(meta_path)
    except (ValueError, OSError) as err:
        raise CheckpointError(f"{err}; retrain the model") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{meta_path}: unknown checkpoint format; retrain the model")
    shape, classes = meta.get("input_shape"), meta.get("num_classes")
    if (
        not isinstance(shape, list) or len(shape) != 3 or not all(_positive_int(v) for v in shape)
        or not _positive_int(classes) or not isinstance(meta.get("weights_sha256"), str)
    ):  # fmt: skip
        raise CheckpointError(
            f"{meta_path}: input_shape, num_classes or weights_sha256 missing or invalid "
            f"(input_shape {shape!r}, num_classes {classes!r}); retrain the model"
        )
    problem = _optional_field_problem(meta)
    if problem:
        raise CheckpointError(f"{meta_path}: {problem}; retrain the model or restore meta.json")
    return meta


def _optional_field_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with the fields that commands read from ``meta.json``, if anything."""
    dataset, temperature, role = meta.get("dataset", {}), meta.get("temperature", 1.0), meta.get("role", "")
    if not isinstance(dataset, dict) or not isinstance(dataset.get("name", ""), str):
        return f"dataset must be an object with a name, found {dataset!r:.60}"
    if (isinstance(temperature, bool) or not isinstance(temperature, int | float)
            or not 0 < temperature < math.inf):  # fmt: skip
        return f"temperature must be a finite number > 0, found {temperature!r:.60}"
    if not isinstance(role, str):
        return f"role must be a string, found {role!r:.60}"
    return None


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a checkpoint directory; return ``(model, meta)`` with the model in eval mode.

    The model outputs logits; it is a plain ``nn.Module`` usable by any library.

    Raises:
        CheckpointError: missing files, sha256 mismatch, unknown or mismatched architecture.
    """
    path = Path(path)
    meta = read_meta(path)
    weights_path = path / WEIGHTS
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: not found; the checkpoint is incomplete")
    blob = weights_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta.get("weights_sha256"):
        raise CheckpointError(
            f"{weights_path}: sha256 does not match meta.json; the weights were modified or "
            "partially written: retrain or restore the model"
        )
    arch = meta.get("architecture")
    if arch not in available_models():
        raise CheckpointError(f"{path}: unknown architecture {arch!r}; known: {available_models()}")
    c, h, _ = meta["input_shape"]
    try:
        state = load_safetensors(blob)
        _check_shapes(arch, c, h, int(meta["num_classes"]), state)
        model = build_model(arch, c, h, int(meta["num_classes"]))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, ValueError) as err:
        detail = " ".join(str(err).split())[:200]  # one line: load_state_dict lists mismatches
        raise CheckpointError(
            f"{weights_path}: weights do not fit architecture {arch!r} with inputs "
            f"{meta['input_shape']} ({detail}); retrain the model"
        ) from err
    return model.to(device).eval(), meta


def _check_shapes(arch: str, c: int, h: int, num_classes: int, state: dict[str, torch.Tensor]) -> None:
    """``ValueError`` unless ``state`` has exactly the tensors ``arch`` has, shape for shape.

    The architecture is built on the ``meta`` device (no memory), so a ``meta.json`` that
    claims millions of classes or huge images is rejected before anything is allocated.
    """
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_model(arch, c, h, num_classes).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        diff = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        raise ValueError(f"tensors differ: {', '.join(diff[:4])}"
                         f"{'' if len(diff) <= 4 else f' and {len(diff) - 4} more'}")  # fmt: skip


def load_reusable(
    path: str | Path, wanted: dict[str, Any], device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Load the checkpoint at ``path`` if its metadata matches every item of ``wanted``.

    ``wanted`` maps ``meta.json`` keys (typically ``config``, ``dataset`` and
    ``architecture``) to the values a reusable model must have been trained with.

    Raises:
        CheckpointError: no valid checkpoint, another configuration, or weights that do not
            match ``meta.json``.
    """
    meta = read_meta(path)
    if any(meta.get(k) != v for k, v in wanted.items()):
        raise CheckpointError(f"{path} was trained with another configuration")
    return load_model(path, device)


def load_factory_model(factory: str, weights: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A model the user brings: ``factory`` ``"module:callable"`` and a safetensors file.

    The contract: ``module`` is importable (the current directory is searched first, so a
    local ``my_net.py`` works as ``my_net:build``); ``callable()`` takes no argument and
    returns an ``nn.Module`` mapping ``(N, C, H, W)`` floats in [0, 1] to logits ``(N, K)``
    (no final softmax: the audit flags probabilities); ``weights`` is a safetensors file
    of that module's ``state_dict()``, loaded with ``strict=True``. No pickle is loaded.
    Returns the module on ``device``, in eval mode.

    Raises:
        CheckpointError: a malformed spec, a module or callable that cannot be found, a
            callable that does not return an ``nn.Module``, or weights that are missing,
            not safetensors, or do not fit the module.
    """
    import importlib
    import sys

    module_name, sep, attr = factory.partition(":")
    if not sep or not module_name or not attr:
        raise CheckpointError(f"--factory {factory!r}: expected module:callable, e.g. my_net:build")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        build = importlib.import_module(module_name)
        for part in attr.split("."):
            build = getattr(build, part)
    except (ImportError, AttributeError) as err:
        raise CheckpointError(f"--factory {factory!r}: {err}; check the module path and name") from None
    if not callable(build):
        raise CheckpointError(f"--factory {factory!r}: {attr} is not callable")
    try:
        model = build()
    except Exception as err:  # user code: report it in one line
        raise CheckpointError(f"--factory {factory!r} raised {type(err).__name__}: {err}"[:300]) from None
    if not isinstance(model, nn.Module):
        raise CheckpointError(f"--factory {factory!r} returned {type(model).__name__}, not an nn.Module")
    path = Path(weights)
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; give the safetensors file of the model's state_dict")
    try:
        model.load_state_dict(load_safetensors(path.read_bytes()), strict=True)
    except (SafetensorError, RuntimeError, ValueError) as err:
        detail = " ".join(str(err).split())[:200]
        raise CheckpointError(f"{path}: does not hold {factory}'s weights ({detail})") from err
    return model.to(device).eval()
