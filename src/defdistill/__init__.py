"""defdistill: defensive distillation (Papernot et al. 2016, arXiv:1511.04508) in PyTorch,
with the attacks and checks that show whether it is robust.

The names below are imported on first use (PEP 562), not with the package: ``import
defdistill.cli`` (the ``defdistill`` command) must not pay for importing torch before it
knows the command needs it. ``from defdistill import load_model`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "CheckpointError": "defdistill.checkpoint",
    "load_model": "defdistill.checkpoint",
    "save_model": "defdistill.checkpoint",
    "DataError": "defdistill.data",
    "Dataset": "defdistill.data",
    "load_dataset": "defdistill.data",
    "build_model": "defdistill.models",
    "register_model": "defdistill.models",
    "load_pretrained": "defdistill.pretrained",
    "softmax_at": "defdistill.temperature",
    "temperature_loss": "defdistill.temperature",
}
# sub-modules that ``import defdistill`` used to import, still reachable as attributes
_SUBMODULES = ("checkpoint", "data", "io", "models", "temperature")

__all__ = [
    "CheckpointError",
    "DataError",
    "Dataset",
    "__version__",
    "build_model",
    "load_dataset",
    "load_model",
    "load_pretrained",
    "register_model",
    "save_model",
    "softmax_at",
    "temperature_loss",
]

if TYPE_CHECKING:
    from defdistill.checkpoint import CheckpointError, load_model, save_model
    from defdistill.data import DataError, Dataset, load_dataset
    from defdistill.models import build_model, register_model
    from defdistill.pretrained import load_pretrained
    from defdistill.temperature import softmax_at, temperature_loss


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # imported once: later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})
