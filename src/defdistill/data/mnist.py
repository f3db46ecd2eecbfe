"""MNIST from its four IDX files (LeCun's format, gzip-compressed or raw).

The full data set (60,000 + 10,000 images) ships inside the package
(:data:`EMBEDDED_MNIST`), so everything works offline. Magic numbers, dimensions, counts
and the md5 of the decompressed bytes are checked.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from defdistill.data.dataset import DataError, Dataset, empty_like_split, read_file_bytes, subset, to_tensors
from defdistill.io import PARAMETER

EMBEDDED_MNIST = Path(__file__).parent / "embedded" / "mnist"


# md5 of the *decompressed* IDX files (identical to the canonical release), so that a
# re-compressed copy verifies too.
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
    "train_labels": ("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
    "test_images": ("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
    "test_labels": ("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
}


MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"


_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an IDX file (LeCun's MNIST format) into a numpy array.

    Raises:
        DataError: wrong magic number, unknown type code, or a size that does not
            match the header.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{source}: not an IDX file (bad magic number); is it the right file?")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"{source}: unsupported IDX type 0x{type_code:02x} with {ndim} dims")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: truncated IDX header; download the file again")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        raise DataError(
            f"{source}: size {len(data)} bytes does not match its header {dims} "
            f"({expected} bytes expected); the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{root / stem}(.gz): file not found; put the MNIST IDX files in {root} "
        f"or omit {PARAMETER} to use the embedded copy", parameter="data_dir",
    )


def read_mnist_split(root: Path, split: str, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read one MNIST split (``"train"`` or ``"test"``) as uint8 images and labels."""
    arrays = []
    for kind in ("images", "labels"):
        stem, md5 = MNIST_FILES[f"{split}_{kind}"]
        path = _find(root, stem)
        data = read_file_bytes(path)
        if verify and hashlib.md5(data).hexdigest() != md5:
            raise DataError(
                f"{path}: checksum mismatch (md5 of the decompressed data is not {md5}); "
                "the file is corrupt or not the official MNIST: download it again"
            )
        arrays.append(parse_idx(data, str(path)))
    images, labels = arrays
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{root}: MNIST {split} images must be 3-D and labels 1-D")
    if len(images) != len(labels):
        raise DataError(
            f"{root}: {split} has {len(images)} images but {len(labels)} labels; "
            "the files do not belong together"
        )
    return images, labels


def load_mnist(
    root: str | Path | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    verify: bool = True,
    train: bool = True,
) -> Dataset:
    """Load MNIST; ``root=None`` uses the copy embedded in the package.

    ``limit_train``/``limit_test`` keep the first N samples of each split (deterministic);
    ``train=False`` reads no training file (the training split is then empty).
    """
    root = Path(root) if root is not None else EMBEDDED_MNIST
    if not root.is_dir():
        raise DataError(f"{root}: directory not found; give an existing {PARAMETER}", parameter="data_dir")
    training = read_mnist_split(root, "train", verify) if train else None  # train first: its errors first
    test = read_mnist_split(root, "test", verify)
    x_tr, y_tr = to_tensors(*(empty_like_split(*test) if training is None else training))
    x_te, y_te = to_tensors(*test)
    return subset(Dataset("mnist", x_tr, y_tr, x_te, y_te, tuple(map(str, range(10)))),
                   limit_train, limit_test)
