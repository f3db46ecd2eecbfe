"""CIFAR-10 from the official "python version" batches (Krizhevsky 2009).

Read from a directory of batches or straight from ``cifar-10-python.tar.gz``, with the
restricted unpickler of :mod:`defdistill.data.safe_pickle`.
"""
from __future__ import annotations

import logging
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from defdistill.data.dataset import (
    MAX_FILE_BYTES,
    DataError,
    Dataset,
    empty_like_split,
    read_file_bytes,
    subset,
    to_tensors,
)
from defdistill.data.safe_pickle import safe_unpickle

log = logging.getLogger(__name__)

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"


CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"


CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


CIFAR10_TEST_BATCH = "test_batch"


CIFAR10_META = "batches.meta"


CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def _decode_keys(obj: object, source: str) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise DataError(f"{source}: expected a dict in a CIFAR-10 batch, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def parse_cifar_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one CIFAR-10 python batch into uint8 images ``(N, 3, 32, 32)`` and labels."""
    batch = _decode_keys(safe_unpickle(data, source), source)
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{source}: missing 'data' or 'labels'; not a CIFAR-10 batch")
    try:
        images, labels = np.asarray(batch["data"]), np.asarray(batch["labels"])
    except (TypeError, ValueError) as err:
        raise DataError(
            f"{source}: 'data' or 'labels' is not an array ({err}); not a CIFAR-10 batch"
        ) from err
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise DataError(
            f"{source}: 'labels' must be a list of integer class indices, found "
            f"{labels.dtype} {labels.shape}"
        )
    labels = labels.astype(np.int64)
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{source}: 'data' must be uint8 of shape (N, 3072), found "
            f"{images.dtype} {images.shape}"
        )
    if len(images) != len(labels):
        raise DataError(f"{source}: {len(images)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{source}: labels outside 0..9")
    return images.reshape(-1, 3, 32, 32), labels


def _cifar_reader(root: Path) -> Callable[[str], tuple[bytes, str]]:
    """Return a function reading a member of the CIFAR-10 set from a dir or the tar.gz."""
    archive = root if root.is_file() else root / CIFAR10_ARCHIVE
    batch_dir = next(
        (d for d in (root, root / "cifar-10-batches-py") if (d / CIFAR10_TEST_BATCH).is_file()),
        None,
    )
    if root.is_dir() and batch_dir is not None:
        return lambda name: (read_file_bytes(batch_dir / name), str(batch_dir / name))
    if archive.is_file():
        try:
            with tarfile.open(archive, "r:gz") as tar:
                wanted = {*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH, CIFAR10_META}
                files = [m for m in tar.getmembers() if m.isfile() and Path(m.name).name in wanted]
                if any(m.size > MAX_FILE_BYTES for m in files):
                    raise DataError(f"{archive}: a member is larger than any CIFAR-10 batch; "
                                    "download the archive again")  # fmt: skip
                members = {
                    Path(m.name).name: tar.extractfile(m).read()  # type: ignore[union-attr]
                    for m in files
                }
        except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
            raise DataError(f"{archive}: corrupt or truncated archive ({err}); download again") from err

        def from_archive(name: str) -> tuple[bytes, str]:
            if name not in members:
                raise DataError(f"{archive}: member {name} missing; download the archive again")
            return members[name], f"{archive}:{name}"

        return from_archive
    raise DataError(
        f"{root}: no CIFAR-10 found (expected {CIFAR10_TEST_BATCH} and data_batch_1..5, or "
        f"{CIFAR10_ARCHIVE}); download it from {CIFAR10_URL} (or run `defdistill download "
        f"cifar10 --data-dir {root}`) and pass --data-dir"
    )


def concatenate_batches(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of several parsed batches, in order."""
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_cifar10(
    root: str | Path, limit_train: int | None = None, limit_test: int | None = None, train: bool = True
) -> Dataset:
    """Load CIFAR-10 from a directory of python batches or ``cifar-10-python.tar.gz``
    (``train=False``: the test batch only, the training split empty)."""
    root = Path(root)
    if not root.exists():
        raise DataError(
            f"{root}: not found; download CIFAR-10 (python version) from {CIFAR10_URL} "
            "and pass its directory with --data-dir"
        )
    read = _cifar_reader(root)
    x_te, y_te = parse_cifar_batch(*read(CIFAR10_TEST_BATCH))
    x_tr, y_tr = concatenate_batches([parse_cifar_batch(*read(name)) for name in CIFAR10_TRAIN_BATCHES]
                                     if train else [empty_like_split(x_te, y_te)])  # fmt: skip
    classes = CIFAR10_CLASSES
    try:
        meta_bytes, meta_src = read(CIFAR10_META)
    except DataError:
        log.warning("%s: %s missing; using the standard class names", root, CIFAR10_META)
    else:
        meta = _decode_keys(safe_unpickle(meta_bytes, meta_src), meta_src)
        names = meta.get("label_names")
        if isinstance(names, list) and len(names) == 10:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    ds = Dataset("cifar10", *to_tensors(x_tr, y_tr), *to_tensors(x_te, y_te), classes)
    return subset(ds, limit_train, limit_test)
