"""Training that resumes after the last finished epoch.

A 50-epoch network of the paper profile takes most of an hour on one CPU core; a run killed
in its 49th epoch would start again from the first. After every epoch the training loop
writes its whole state to one file (``.training-state.safetensors`` in the model's
directory), with the sha256 of what the run depends on (configuration, training inputs,
labels or soft labels, architecture); a rerun with the same key continues after that epoch
and ends with the same weights, bit for bit, as an uninterrupted run on the same machine. A
state of another run, or an unreadable one, is ignored with a log line and overwritten. The
file is removed once the model is saved. The state also lists the machines that trained it
(:func:`defdistill.devices.machine_label`), so a run resumed elsewhere says where its time went.

The state is a safetensors file: its tensors (weights, optimiser buffers, random generator
states) and, in its header, JSON for the rest (epoch, history, optimiser hyper-parameters).
Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from defdistill.io import atomic_write_bytes, read_bounded

log = logging.getLogger(__name__)

STATE_FILE = ".training-state.safetensors"
UNRECORDED = "unrecorded"  # the machine of epochs a state written before the record existed holds


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
    machines: list[str] = field(default_factory=list)
    epochs: int = 0  # how many the run trains for (0: a state written before the record)

    def save(self, path: Path) -> None:
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.items()}
        tensors |= {f"generator.{k}": v for k, v in self.generators.items()}
        buffers: dict[str, dict[str, Any]] = {}
        for index, values in self.optimizer["state"].items():
            buffers[str(index)] = {}
            for name, value in values.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
                else:
                    buffers[str(index)][name] = value
        header = {"key": self.key, "epoch": self.epoch, "epochs": self.epochs, "history": self.history,
                  "seconds": self.seconds, "extra": self.extra, "machines": self.machines,
                  "param_groups": self.optimizer["param_groups"], "buffers": buffers}  # fmt: skip
        atomic_write_bytes(path, save_safetensors(tensors, metadata={"state": json.dumps(header)}))


def _parse(blob: bytes) -> TrainingState:
    """The state in a safetensors file's bytes (``ValueError``/``KeyError`` when malformed).

    The JSON part is read from the header's metadata (safetensors' ``load`` returns only the
    tensors): 8 bytes of little-endian header length, then the header."""
    tensors = load_safetensors(blob)  # validates the whole file first
    header_size = int.from_bytes(blob[:8], "little")
    found = json.loads(json.loads(blob[8 : 8 + header_size])["__metadata__"]["state"])
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in found["buffers"].items()}
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, buffer = name.split(".", 2)
            state.setdefault(int(index), {})[buffer] = tensor
    return TrainingState(
        key=found["key"], epoch=int(found["epoch"]),
        model={k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
        optimizer={"state": state, "param_groups": found["param_groups"]},
        generators={k[len("generator."):]: v for k, v in tensors.items() if k.startswith("generator.")},
        history=found["history"], seconds=float(found["seconds"]), extra=found["extra"],
        machines=[str(m) for m in found.get("machines", [UNRECORDED])], epochs=int(found.get("epochs", 0)),
    )  # fmt: skip


MAX_HEADER_BYTES = 2**22  # a state's header (history, optimiser settings) is a few kilobytes


@dataclass(frozen=True)
class Progress:
    """How far a training run got, read from its state's header alone."""

    epoch: int  # finished epochs
    epochs: int  # the run's total; 0 when the state was written before the record
    seconds: float  # training wall time over the finished epochs


def read_progress(path: Path) -> Progress:
    """The :class:`Progress` recorded in the state at ``path``, without reading its tensors
    (a status view of a run that may be writing it: states are replaced atomically).

    Raises:
        ValueError: not a training state (truncated, foreign, or a header beyond
            :data:`MAX_HEADER_BYTES`).
    """
    head = read_bounded(path, 8, "training state", prefix=True)
    if len(head) < 8:
        raise ValueError(f"{path}: not a training state ({len(head)} bytes)")
    size = int.from_bytes(head, "little")
    if not 0 < size <= MAX_HEADER_BYTES:
        raise ValueError(f"{path}: not a training state (a header of {size:,} bytes)")
    blob = read_bounded(path, 8 + size, "training state", prefix=True)
    try:
        found = json.loads(json.loads(blob[8:])["__metadata__"]["state"])
        return Progress(int(found["epoch"]), int(found.get("epochs", 0)), float(found["seconds"]))
    except (ValueError, KeyError, TypeError, RecursionError) as err:
        raise ValueError(f"{path}: not a training state ({type(err).__name__})") from None


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
        state = _parse(read_bounded(path, max_bytes, "training state"))
    except Exception as err:  # damaged, truncated or foreign: train from the start
        log.warning("%s is unreadable (%s); training from the first epoch", path, type(err).__name__)
        return None
    if state.key != key:
        log.info("%s belongs to another run; training from the first epoch", path)
        return None
    log.info("%s: resuming after epoch %d", path, state.epoch)
    return state
