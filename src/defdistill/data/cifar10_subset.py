"""A real CIFAR-10 subset embedded in the package: 5,085 training and 1,017 test images.

The first 1,017 images of each official python batch (Krizhevsky 2009), gzip-compressed
in :data:`EMBEDDED_CIFAR10_SUBSET` (provenance in its README). It lets the colour-image
experiments run on real data offline; it is about 10 % of CIFAR-10, not the full set
(that one is :func:`defdistill.data.cifar10.load_cifar10` with ``--data-dir``). Every file
read is checked against the sha256 of its decompressed bytes in ``SHA256SUMS``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from defdistill.data.cifar10 import (
    CIFAR10_CLASSES,
    CIFAR10_TEST_BATCH,
    CIFAR10_TRAIN_BATCHES,
    concatenate_batches,
    parse_cifar_batch,
)
from defdistill.data.dataset import (
    DESCRIPTIONS,
    DataError,
    Dataset,
    empty_like_split,
    read_file_bytes,
    subset,
    to_tensors,
)

log = logging.getLogger(__name__)

NAME = "cifar10-subset"


DESCRIPTION = DESCRIPTIONS[NAME]


EMBEDDED_CIFAR10_SUBSET = Path(__file__).parent / "embedded" / "cifar10-subset"


def _restore_hint(path: Path) -> str:
    return f"the embedded CIFAR-10 subset is damaged: restore {path.name} from git (or reinstall defdistill)"


def expected_sha256(root: Path) -> dict[str, str]:
    """``SHA256SUMS`` of ``root`` as {file name without .gz: sha256 of the decompressed bytes}."""
    sums = root / "SHA256SUMS"
    if not sums.is_file():
        raise DataError(f"{sums}: missing; {_restore_hint(sums)}")
    entries = [line.split() for line in sums.read_text(encoding="ascii").splitlines() if line.strip()]
    if any(len(entry) != 2 for entry in entries):
        raise DataError(f"{sums}: not 'sha256  name' lines; {_restore_hint(sums)}")
    return {name: digest.lower() for digest, name in entries}


def read_verified(root: Path, name: str, sums: dict[str, str]) -> bytes:
    """The decompressed bytes of ``root/<name>.gz``, checked against ``sums[name]``."""
    path = root / f"{name}.gz"
    if not path.is_file() or name not in sums:
        raise DataError(f"{path}: missing (or not in SHA256SUMS); {_restore_hint(path)}")
    try:
        data = read_file_bytes(path)
    except DataError as err:
        raise DataError(f"{path}: unreadable gzip; {_restore_hint(path)}") from err
    digest = hashlib.sha256(data).hexdigest()
    if digest != sums[name]:
        raise DataError(
            f"{path}: checksum mismatch (sha256 of the decompressed data is {digest[:12]}…, "
            f"SHA256SUMS says {sums[name][:12]}…); {_restore_hint(path)}"
        )
    return data


def load_cifar10_subset(limit_train: int | None = None, limit_test: int | None = None,
                        train: bool = True) -> Dataset:  # fmt: skip
    """The embedded CIFAR-10 subset as a :class:`Dataset` named ``"cifar10-subset"``.

    ``limit_train``/``limit_test`` keep the first N samples of each split (deterministic);
    ``train=False`` reads the test batch only (the training split is then empty).
    The class names are CIFAR-10's (those of the embedded ``batches.meta``, which the
    tests compare).

    Raises:
        DataError: a file is missing, corrupt or does not match ``SHA256SUMS``.
    """
    root = EMBEDDED_CIFAR10_SUBSET
    sums = expected_sha256(root)

    def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
        return parse_cifar_batch(read_verified(root, name, sums), str(root / f"{name}.gz"))

    x_te, y_te = batch(CIFAR10_TEST_BATCH)
    x_tr, y_tr = concatenate_batches([batch(name) for name in CIFAR10_TRAIN_BATCHES] if train
                                     else [empty_like_split(x_te, y_te)])  # fmt: skip
    log.debug("%s: %d train + %d test images from %s", NAME, len(x_tr), len(x_te), root)
    ds = Dataset(NAME, *to_tensors(x_tr, y_tr), *to_tensors(x_te, y_te), CIFAR10_CLASSES)
    return subset(ds, limit_train, limit_test)
