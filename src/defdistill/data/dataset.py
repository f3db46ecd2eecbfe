"""The :class:`Dataset` every loader returns, its error type and the helpers they share.

Images are float32 tensors in [0, 1], NCHW; labels int64. Every problem with a file
raises :class:`DataError` with the file name and what to do.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from defdistill.data.names import DATASETS, DESCRIPTIONS
from defdistill.io import PARAMETER, InputError, ParameterError, read_bounded

__all__ = ["DATASETS", "DESCRIPTIONS", "DataError", "Dataset"]

class DataError(ParameterError):
    """A data file is missing, truncated, corrupt or of the wrong format."""


@dataclass(frozen=True)
class Dataset:
    """A train/test split: images ``(N, C, H, W)`` float32 in [0, 1], labels int64."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]

    @property
    def description(self) -> str:
        """A human-readable name, e.g. ``"CIFAR-10 subset (5,085 train / 1,017 test)"``."""
        return DESCRIPTIONS.get(self.name, self.name)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    @cached_property
    def content_sha256(self) -> str:
        """sha256 over the four tensors' dtypes, shapes and bytes: what a model saw, not its name.

        Computed once per :class:`Dataset` (one pass of sha256 over the bytes; timing in
        docs/reliability.md); reuse keys include it, so a model trained on other images or
        labels is never reused.
        """
        digest = hashlib.sha256()
        for tensor in (self.x_train, self.y_train, self.x_test, self.y_test):
            array = tensor.detach().cpu().contiguous().numpy()
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(array.data.cast("B"))
        return digest.hexdigest()


MAX_FILE_BYTES = 64 * 2**20  # the largest data file, MNIST's training images, is 47 MB


def read_file_bytes(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """Read a file, transparently decompressing gzip; corrupt archives raise DataError.

    Neither the file nor its decompressed content may exceed ``max_bytes``: a hostile
    "decompression bomb" is refused after reading ``max_bytes``, not after exhausting memory.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found; check {PARAMETER} or download the data set", "data_dir")
    try:
        raw = read_bounded(path, max_bytes, "data file of this set")
    except InputError as err:
        raise DataError(str(err)) from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            data = stream.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path}: corrupt or truncated gzip ({err}); delete it and download it again"
        ) from err
    except MemoryError:
        raise DataError(f"{path}: not enough memory to decompress it") from None
    if len(data) > max_bytes:
        raise DataError(f"{path}: decompresses to more than {max_bytes / 2**20:.0f} MiB; "
                        "not a data file of this set (delete it and download it again)")  # fmt: skip
    return data


def to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32) / 255.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return x.contiguous(), torch.from_numpy(labels.astype(np.int64))


def empty_like_split(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A split of no samples shaped like ``(images, labels)``: the training split of a data
    set loaded for evaluation only (``train=False``), which then reads no training file."""
    return images[:0].copy(), labels[:0].copy()


def _limit(n: int | None, name: str) -> int | None:
    if n is not None and n <= 0:
        raise DataError(f"{PARAMETER} must be a positive number of samples, got {n}", name)
    return n


def subset(ds: Dataset, limit_train: int | None, limit_test: int | None) -> Dataset:
    n_tr, n_te = _limit(limit_train, "limit_train"), _limit(limit_test, "limit_test")
    return Dataset(
        ds.name, ds.x_train[:n_tr], ds.y_train[:n_tr], ds.x_test[:n_te], ds.y_test[:n_te],
        ds.classes,
    )
