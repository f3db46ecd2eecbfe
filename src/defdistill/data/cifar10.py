"""CIFAR-10 from the official "python version" batches (Krizhevsky 2009).

Read from a directory of batches or straight from ``cifar-10-python.tar.gz``, with the
restricted unpickler of :mod:`defdistill.data.safe_pickle`.
"""
from __future__ import annotations

import gzip
import logging
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol, cast

import numpy as np

from defdistill.data.dataset import (
    DataError,
    Dataset,
    empty_like_split,
    read_file_bytes,
    subset,
    to_tensors,
)
from defdistill.data.safe_pickle import safe_unpickle
from defdistill.io import PARAMETER

log = logging.getLogger(__name__)

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"


CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"


CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


CIFAR10_TEST_BATCH = "test_batch"


CIFAR10_META = "batches.meta"


MAX_BATCH_BYTES = 40 * 2**20  # a pickled batch of 10,000 images is 31 MB
MAX_ARCHIVE_MEMBERS = 64  # the official archive has 9 (a directory and 8 files)
MAX_ARCHIVE_BYTES = 192 * 2**20  # the official archive decompresses to 178 MiB
MAX_BATCH_IMAGES = 60_000


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
    images, raw_labels = batch["data"], batch["labels"]
    # checked before any conversion: a list of references to one object (a pickle's memo)
    # would otherwise become an array far larger than the file
    if not isinstance(images, np.ndarray):
        raise DataError(f"{source}: 'data' is {type(images).__name__}, not a numpy array; "
                        "not a CIFAR-10 batch")  # fmt: skip
    if isinstance(raw_labels, np.ndarray):
        small = raw_labels.ndim == 1 and raw_labels.size <= MAX_BATCH_IMAGES
        raw_labels = raw_labels.tolist() if small else None
    if (not isinstance(raw_labels, list) or len(raw_labels) > MAX_BATCH_IMAGES
            or not all(type(v) is int for v in raw_labels)):  # fmt: skip
        raise DataError(f"{source}: 'labels' must be a list of integer class indices (at most "
                        f"{MAX_BATCH_IMAGES:,}); "
                        "not a CIFAR-10 batch")  # fmt: skip
    try:
        labels = np.asarray(raw_labels, dtype=np.int64)
    except OverflowError as err:
        raise DataError(f"{source}: labels outside 0..9") from err
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise DataError(
            f"{source}: 'labels' must be a list of integer class indices, found "
            f"{labels.dtype} {labels.shape}"
        )
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
        return lambda name: (read_file_bytes(batch_dir / name, MAX_BATCH_BYTES), str(batch_dir / name))
    if archive.is_file():
        members = _read_archive(archive)

        def from_archive(name: str) -> tuple[bytes, str]:
            if name not in members:
                raise DataError(f"{archive}: member {name} missing; download the archive again")
            return members[name], f"{archive}:{name}"

        return from_archive
    raise DataError(
        f"{root}: no CIFAR-10 found (expected {CIFAR10_TEST_BATCH} and data_batch_1..5, or "
        f"{CIFAR10_ARCHIVE}); download it from {CIFAR10_URL} (or with defdistill's download) "
        f"and pass its directory as {PARAMETER}", parameter="data_dir",
    )


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Capped:
    """A binary stream that refuses to deliver more than :data:`MAX_ARCHIVE_BYTES` in all."""

    def __init__(self, stream: _Readable, source: Path) -> None:
        self.stream, self.source, self.delivered = stream, source, 0

    def read(self, size: int = -1) -> bytes:
        want = MAX_ARCHIVE_BYTES + 1 - self.delivered
        data = self.stream.read(want if size < 0 else min(size, want))
        self.delivered += len(data)
        if self.delivered > MAX_ARCHIVE_BYTES:
            raise DataError(f"{self.source}: decompresses to more than {MAX_ARCHIVE_BYTES / 2**20:.0f} MiB; "
                            "not the CIFAR-10 archive (download it again)")  # fmt: skip
        return data


def _read_archive(archive: Path) -> dict[str, bytes]:
    """The batches in ``cifar-10-python.tar.gz``, read member by member within bounded memory.

    At most :data:`MAX_ARCHIVE_MEMBERS` members are listed (an archive of millions of empty
    members is refused at once) and each batch is at most :data:`MAX_BATCH_BYTES`; the archive
    itself is streamed, never read whole.
    """
    wanted = {*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH, CIFAR10_META}
    members: dict[str, bytes] = {}
    try:
        # a stream ("r|") only reads: typeshed's file protocol also asks for write and seek
        with (
            gzip.open(archive, "rb") as raw,
            tarfile.open(fileobj=cast(IO[bytes], _Capped(raw, archive)), mode="r|") as tar,
        ):
            # a stream: no index of every member is kept, headers included in the byte cap
            for count, member in enumerate(tar, 1):
                if count > MAX_ARCHIVE_MEMBERS:
                    raise DataError(f"{archive}: more than {MAX_ARCHIVE_MEMBERS} members; not the "
                                    "CIFAR-10 archive (download it again)")  # fmt: skip
                name = Path(member.name).name
                if not member.isfile() or name not in wanted:
                    continue
                if member.size > MAX_BATCH_BYTES:
                    raise DataError(f"{archive}: member {member.name} is larger than any CIFAR-10 "
                                    "batch; download the archive again")  # fmt: skip
                data = tar.extractfile(member)  # a regular file's is never None
                if data is None:
                    raise DataError(f"{archive}: member {member.name} unreadable; download the archive again")
                members[name] = data.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{archive}: corrupt or truncated archive ({err}); download again") from err
    except MemoryError:
        raise DataError(f"{archive}: not enough memory to read the archive") from None
    return members


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
            f"and pass its directory as {PARAMETER}", parameter="data_dir",
        )
    read = _cifar_reader(root)
    x_te, y_te = parse_cifar_batch(*read(CIFAR10_TEST_BATCH))
    x_tr, y_tr = concatenate_batches([parse_cifar_batch(*read(name)) for name in CIFAR10_TRAIN_BATCHES]
                                     if train else [empty_like_split(x_te, y_te)])  # fmt: skip
    classes: tuple[str, ...] = CIFAR10_CLASSES
    try:
        meta_bytes, meta_src = read(CIFAR10_META)
    except DataError:
        log.warning("%s: %s missing; using the standard class names", root, CIFAR10_META)
    else:
        meta = _decode_keys(safe_unpickle(meta_bytes, meta_src), meta_src)
        names = meta.get("label_names")
        if isinstance(names, list) and len(names) == 10 and all(isinstance(n, bytes | str) for n in names):
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    ds = Dataset("cifar10", *to_tensors(x_tr, y_tr), *to_tensors(x_te, y_te), classes)
    return subset(ds, limit_train, limit_test)
