"""Training that resumes after the last finished epoch.

A 50-epoch network of the paper profile takes most of an hour on one CPU core; a run killed
in its 49th epoch would start again from the first. After every epoch the training loop
writes its whole state to one file (``training-state.pt`` in the model's directory), with the
sha256 of what the run depends on (configuration, training inputs, labels or soft labels,
architecture); a rerun with the same key continues after that epoch and ends with the same
weights, bit for bit, as an uninterrupted run on the same machine. A state of another run, or
an unreadable one, is ignored with a log line and overwritten. The file is removed once the
model is trained.

The state is read with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists and
dicts only, never arbitrary pickled objects.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from defdistill.io import atomic_write_bytes, read_bounded

log = logging.getLogger(__name__)

STATE_FILE = "training-state.pt"


def run_key(model: nn.Module, config: dict[str, Any], x_train: torch.Tensor, targets: torch.Tensor) -> str:
    """The sha256 of what a training run depends on: its configuration, the training inputs
    and targets (hard or soft labels), and the model's parameter names and shapes."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for tensor in (x_train, targets):
        digest.update(str((tuple(tensor.shape), tensor.dtype)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(str([(k, tuple(v.shape)) for k, v in model.state_dict().items()]).encode())
    return digest.hexdigest()


@dataclass
class TrainingState:
    """Where a run stands after ``epoch`` finished epochs, with everything random included."""

    key: str
    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    generators: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    seconds: float
    extra: dict[str, float]

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        torch.save(self.__dict__, buffer)
        atomic_write_bytes(path, buffer.getvalue())


def max_state_bytes(model: nn.Module) -> int:
    """A bound on the state's size: the weights and up to three optimiser buffers of their
    size (Adam's two moments, SGD's momentum), plus 1 MiB for the history and generators."""
    return 4 * sum(p.numel() * p.element_size() for p in model.state_dict().values()) + 2**20


def load_state(path: Path | None, key: str, max_bytes: int) -> TrainingState | None:
    """The state at ``path`` if it was written by the run with ``key``; None otherwise (a
    file larger than ``max_bytes`` is refused before it is read)."""
    if path is None or not path.is_file():
        return None
    try:
        found = torch.load(io.BytesIO(read_bounded(path, max_bytes, "training state")), map_location="cpu",
                           weights_only=True)  # fmt: skip
        state = TrainingState(**found)
    except Exception as err:  # damaged, truncated or foreign: train from the start
        log.warning("%s is unreadable (%s); training from the first epoch", path, type(err).__name__)
        return None
    if state.key != key:
        log.info("%s belongs to another run; training from the first epoch", path)
        return None
    log.info("%s: resuming after epoch %d", path, state.epoch)
    return state
