"""Data sets as float32 tensors in [0, 1], NCHW, with int64 labels.

* :mod:`.mnist`: MNIST from its IDX files; the full set is embedded in the package.
* :mod:`.cifar10`: CIFAR-10 from the official python batches or their tar.gz.
* :mod:`.safe_pickle`: the restricted unpickler CIFAR-10's batches are read with.
* :mod:`.download`: fetch either data set and verify it before writing.
* :mod:`.names`: the names and descriptions, without torch.

The names below are imported on first use (PEP 562), so that ``defdistill.data.names``
can be read without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from defdistill.data.names import DATASETS

_EXPORTS = {"DataError": "defdistill.data.dataset", "Dataset": "defdistill.data.dataset",
            "load_dataset": "defdistill.data.load"}  # fmt: skip

__all__ = ["DATASETS", "DataError", "Dataset", "load_dataset"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'defdistill.data' has no attribute {name!r}")
