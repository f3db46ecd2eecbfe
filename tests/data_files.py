"""Data set files on disk (MNIST IDX, CIFAR-10 python batches) for the loader and CLI tests."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from synthetic import cifar_batch

from defdistill.data.cifar10 import CIFAR10_CLASSES, CIFAR10_META, CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES
from defdistill.data.mnist import MNIST_FILES


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """``array`` as an IDX file (header, then the raw bytes)."""
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return bytes([0, 0, type_code, array.ndim]) + dims + array.tobytes()


def write_mnist(
    root: Path, n_train: int = 20, n_test: int = 10, compress: bool = True, seed: int = 0,
    **override: bytes,
) -> dict[str, np.ndarray]:  # fmt: skip
    """The four IDX files with the official names (random content: fails the checksum).

    ``override`` maps a key of ``MNIST_FILES`` to the bytes to write instead; returns the
    arrays written.
    """
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        stem = MNIST_FILES[key][0]
        blob = override.get(key, idx_bytes(array))
        if compress:
            (root / f"{stem}.gz").write_bytes(gzip.compress(blob))
        else:
            (root / stem).write_bytes(blob)
    return arrays


def write_cifar(root: Path, n: int = 4, test_batch: bytes | None = None) -> dict[str, dict]:
    """Six CIFAR-10 python batches of ``n`` random images and ``batches.meta``.

    ``test_batch`` replaces the bytes of the test batch; returns the batches written.
    """
    root.mkdir(parents=True, exist_ok=True)
    batches = {name: cifar_batch(n, i) for i, name in enumerate(CIFAR10_TRAIN_BATCHES)}
    batches[CIFAR10_TEST_BATCH] = cifar_batch(n, 99)
    for name, batch in batches.items():
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    if test_batch is not None:
        (root / CIFAR10_TEST_BATCH).write_bytes(test_batch)
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072}
    (root / CIFAR10_META).write_bytes(pickle.dumps(meta, protocol=2))
    return batches
