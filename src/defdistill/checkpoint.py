"""Checkpoints: one directory per model, ``model.safetensors`` + ``meta.json``.

No pickle is ever loaded: weights are safetensors, metadata is JSON. Both files are
written atomically, weights first; ``meta.json`` records the sha256 of the weights, so a
checkpoint whose weights were tampered with or half-replaced is rejected on load.
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from defdistill.io import (
    PARAMETER,
    InputError,
    ParameterError,
    atomic_write_files,
    json_bytes,
    read_bounded,
    read_json_object,
)
from defdistill.models import available_models, build_model

WEIGHTS = "model.safetensors"
META = "meta.json"
FORMAT_VERSION = 1
MAX_META_BYTES = 2**20  # a meta.json is a few kB
HEADER_BYTES = 2**20  # safetensors' JSON header, beyond the tensors' own bytes
MAX_CLASSES = 100_000
MAX_CHANNELS, MAX_SIDE = 64, 4096
FLOAT32_MAX = 3.4028234663852886e38


class CheckpointError(ParameterError):
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
        meta = read_json_object(meta_path, MAX_META_BYTES)
    except (ValueError, OSError) as err:
        raise CheckpointError(f"{err}; retrain the model") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{meta_path}: unknown checkpoint format; retrain the model")
    shape, classes = meta.get("input_shape"), meta.get("num_classes")
    if (
        not isinstance(shape, list) or len(shape) != 3 or not _int_in(shape[0], 1, MAX_CHANNELS)
        or not all(_int_in(v, 1, MAX_SIDE) for v in shape[1:]) or not _int_in(classes, 2, MAX_CLASSES)
        or not isinstance(meta.get("weights_sha256"), str)
    ):  # fmt: skip
        raise CheckpointError(
            f"{meta_path}: input_shape, num_classes or weights_sha256 missing or invalid "
            f"(input_shape {shape!r:.60}, num_classes {classes!r:.30}; expected [C <= {MAX_CHANNELS}, "
            f"H, W <= {MAX_SIDE}] and 2 <= num_classes <= {MAX_CLASSES:,}); retrain the model"
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
            or not 0 < temperature <= FLOAT32_MAX):  # fmt: skip
        return f"temperature must be a number in (0, {FLOAT32_MAX:.4g}], found {temperature!r:.60}"
    if not isinstance(role, str):
        return f"role must be a string, found {role!r:.60}"
    return None


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def state_bytes(model: nn.Module) -> int:
    """The bytes ``model``'s ``state_dict`` takes: with :data:`HEADER_BYTES`, the cap on its file."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def read_weights(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of safetensors file ``path``, read within the size ``model``'s weights take.

    Raises:
        CheckpointError: the file is missing, larger than such weights can be, not
            safetensors, or holds tensors that are not finite floats of ``model``'s dtypes.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; the checkpoint is incomplete")
    try:
        blob = read_bounded(path, state_bytes(model) + HEADER_BYTES, "weights file of this model")
    except InputError as err:
        raise CheckpointError(f"{err}; retrain or restore the model") from None
    try:
        return check_weights(path, model, load_safetensors(blob))
    except (SafetensorError, RuntimeError, ValueError) as err:
        detail = " ".join(str(err).split())[:200]  # one line: load_state_dict lists mismatches
        raise CheckpointError(f"{path}: not weights of this model ({detail}); retrain the model") from err


def check_weights(path: Path, model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` if it holds ``model``'s tensors with their dtypes, every value finite.

    One check for every way a model is loaded, so ``evaluate``, ``attack`` and ``audit``
    refuse the same damaged weights (an int8 tensor is never cast silently).
    """
    expected = model.state_dict()
    for name, tensor in state.items():
        want = expected.get(name)
        if want is not None and tensor.dtype != want.dtype:
            raise CheckpointError(f"{path}: tensor {name} is {tensor.dtype}, the model's is {want.dtype}; "
                                  "convert the weights or retrain the model")  # fmt: skip
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values; the model is "
                                  "damaged: retrain or restore it")  # fmt: skip
    return state


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
    arch = meta.get("architecture")
    if arch not in available_models():
        raise CheckpointError(f"{path}: unknown architecture {arch!r}; known: {available_models()}")
    c, h, _ = meta["input_shape"]
    try:
        with torch.device("meta"):  # the size of the weights, without allocating them
            cap = state_bytes(build_model(arch, c, h, int(meta["num_classes"]))) + HEADER_BYTES
    except ValueError as err:
        raise _unfit(weights_path, meta, err) from err
    try:
        blob = read_bounded(weights_path, cap, f"weights file of a {arch}")
    except InputError as err:
        raise CheckpointError(f"{err}; retrain or restore the model") from None
    if hashlib.sha256(blob).hexdigest() != meta.get("weights_sha256"):
        raise CheckpointError(
            f"{weights_path}: sha256 does not match meta.json; the weights were modified or "
            "partially written: retrain or restore the model"
        )
    try:
        state = load_safetensors(blob)
        _check_shapes(arch, c, h, int(meta["num_classes"]), state)
        model = build_model(arch, c, h, int(meta["num_classes"]))
        model.load_state_dict(check_weights(weights_path, model, state), strict=True)
    except (SafetensorError, RuntimeError, ValueError) as err:
        raise _unfit(weights_path, meta, err) from err
    return model.to(device).eval(), meta


def _unfit(weights_path: Path, meta: dict[str, Any], err: Exception) -> CheckpointError:
    detail = " ".join(str(err).split())[:200]  # one line: load_state_dict lists mismatches
    return CheckpointError(f"{weights_path}: weights do not fit architecture {meta['architecture']!r} "
                           f"with inputs {meta['input_shape']} ({detail}); retrain the model")  # fmt: skip


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

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{PARAMETER} {factory!r}: {problem}"[:300], "factory")

    module_name, sep, attr = factory.partition(":")
    if not sep or not module_name or not attr:
        raise fail("expected module:callable, e.g. my_net:build")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        build = importlib.import_module(module_name)
        for part in attr.split("."):
            build = getattr(build, part)
    except (ImportError, AttributeError) as err:
        raise fail(f"{err}; check the module path and name") from None
    except (Exception, SystemExit) as err:  # importing runs user code
        raise fail(f"importing {module_name} raised {type(err).__name__}: {err}") from None
    if not callable(build):
        raise fail(f"{attr} is not callable")
    try:
        model = build()
    except (Exception, SystemExit) as err:  # user code, sys.exit() included: one line
        raise fail(f"raised {type(err).__name__}: {err}") from None
    if not isinstance(model, nn.Module):
        raise fail(f"returned {type(model).__name__}, not an nn.Module")
    if next(iter(model.parameters()), None) is None:
        raise fail("returned a module without parameters; nothing to load weights into")
    path = Path(weights)
    if not path.is_file():
        raise CheckpointError(f"{PARAMETER} {path}: not found; give the safetensors file of the "
                              "model's state_dict", "weights")  # fmt: skip
    try:
        model.load_state_dict(read_weights(path, model), strict=True)
    except (CheckpointError, RuntimeError, ValueError) as err:
        detail = " ".join(str(err).removeprefix(f"{path}: ").split())[:200]
        raise CheckpointError(f"{path}: does not hold {factory}'s weights ({detail})", "weights") from err
    return model.to(device).eval()
