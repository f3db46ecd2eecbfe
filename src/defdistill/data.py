"""Data sets as float32 tensors in [0, 1], NCHW, with int64 labels.

* MNIST is read from the four IDX files (gzip-compressed or raw). The full data set
  (60,000 + 10,000 images) ships inside the package, so everything works offline.
  Magic numbers, dimensions, counts and the md5 of the decompressed bytes are checked.
* CIFAR-10 is read from the official "python version" batches, either from a directory
  or straight from ``cifar-10-python.tar.gz``, with an unpickler restricted to plain
  builtins and numpy arrays (no code can run from a planted pickle).

Every problem with a file raises :class:`DataError` with the file name and what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import math
import pickle
import pickletools
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from defdistill.io import atomic_write_bytes

log = logging.getLogger(__name__)

EMBEDDED_MNIST = Path(__file__).parent / "embedded_data" / "mnist"

# md5 of the *decompressed* IDX files (identical to the canonical release), so that a
# re-compressed copy verifies too.
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
    "train_labels": ("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
    "test_images": ("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
    "test_labels": ("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
}
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

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

DATASETS = ("mnist", "cifar10")


class DataError(Exception):
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
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)


# --------------------------------------------------------------------------- IDX / MNIST

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    """Read a file, transparently decompressing gzip; corrupt archives raise DataError."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; check --data-dir or download the data set")
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path}: corrupt or truncated gzip ({err}); delete it and download it again"
        ) from err


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
        "or omit --data-dir to use the embedded copy"
    )


def read_mnist_split(root: Path, split: str, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read one MNIST split (``"train"`` or ``"test"``) as uint8 images and labels."""
    arrays = []
    for kind in ("images", "labels"):
        stem, md5 = MNIST_FILES[f"{split}_{kind}"]
        path = _find(root, stem)
        data = _read_bytes(path)
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


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32) / 255.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return x.contiguous(), torch.from_numpy(labels.astype(np.int64))


def _limit(n: int | None, name: str) -> int | None:
    if n is not None and n <= 0:
        raise DataError(f"--{name} must be a positive number of samples, got {n}")
    return n


def load_mnist(
    root: str | Path | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    verify: bool = True,
) -> Dataset:
    """Load MNIST; ``root=None`` uses the copy embedded in the package.

    ``limit_train``/``limit_test`` keep the first N samples of each split (deterministic).
    """
    root = Path(root) if root is not None else EMBEDDED_MNIST
    if not root.is_dir():
        raise DataError(f"{root}: directory not found; give an existing --data-dir")
    x_tr, y_tr = _to_tensors(*read_mnist_split(root, "train", verify))
    x_te, y_te = _to_tensors(*read_mnist_split(root, "test", verify))
    return _subset(Dataset("mnist", x_tr, y_tr, x_te, y_te, tuple(map(str, range(10)))),
                   limit_train, limit_test)


def _subset(ds: Dataset, limit_train: int | None, limit_test: int | None) -> Dataset:
    n_tr, n_te = _limit(limit_train, "limit-train"), _limit(limit_test, "limit-test")
    return Dataset(
        ds.name, ds.x_train[:n_tr], ds.y_train[:n_tr], ds.x_test[:n_te], ds.y_test[:n_te],
        ds.classes,
    )


# --------------------------------------------------------------------------- CIFAR-10


_SIMPLE_DTYPES = frozenset({"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"})
_NDARRAY = object()  # what the name numpy.ndarray resolves to while unpickling


class _DTypeStub:
    """Stands in for ``numpy.dtype`` while unpickling: plain numeric types only.

    numpy's own ``dtype.__setstate__`` trusts its input (a malformed state crashes the
    interpreter with a segmentation fault), so the state is checked here and numpy never
    sees it.
    """

    def __init__(self, obj: object, align: object = False, copy: object = False) -> None:
        name = obj.decode("latin1") if isinstance(obj, bytes) else obj
        if not isinstance(name, str) or name not in _SIMPLE_DTYPES:
            raise pickle.UnpicklingError(f"unsupported numpy dtype {obj!r}")
        self.dtype = np.dtype(name)

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) < 5:
            raise pickle.UnpicklingError("malformed numpy dtype state")
        order = state[1].decode("latin1") if isinstance(state[1], bytes) else state[1]
        if order not in ("|", "<", ">", "=") or any(v is not None for v in state[2:5]):
            raise pickle.UnpicklingError("malformed or structured numpy dtype")
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)


class _ArrayStub:
    """Stands in for a ``numpy.ndarray`` while unpickling; checks its state, then copies it."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("malformed numpy array state")
        shape, dtype, fortran, raw = state[-4:]
        if (
            not isinstance(shape, tuple) or len(shape) > 32
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            or not isinstance(dtype, _DTypeStub) or not isinstance(fortran, bool | int)
            or not isinstance(raw, bytes) or len(raw) != math.prod(shape) * dtype.dtype.itemsize
        ):  # fmt: skip
            raise pickle.UnpicklingError("malformed numpy array (shape, dtype or size)")
        order = "F" if fortran else "C"
        self.array = np.ndarray(shape, dtype.dtype, buffer=raw, order=order).copy()


def _reconstruct(cls: object, shape: object, typecode: object) -> _ArrayStub:
    if cls is not _NDARRAY:
        raise pickle.UnpicklingError("only numpy.ndarray can be reconstructed")
    return _ArrayStub()


def _encode_latin1(text: object, encoding: object = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only latin-1 encoded bytes are supported")
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds builtin containers and plain numeric numpy arrays.

    No global is ever imported: the few names a CIFAR-10 batch refers to resolve to the
    checked stand-ins above, everything else is refused.
    """

    _ALLOWED: ClassVar[dict[tuple[str, str], object]] = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _DTypeStub,
        ("_codecs", "encode"): _encode_latin1,
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _resolve(obj: object) -> object:
    """Replace the array stand-ins at the top level (and in a top-level dict) by arrays."""
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise pickle.UnpicklingError("numpy array without data")
        return obj.array
    if isinstance(obj, dict):
        return {k: _resolve(v) if isinstance(v, _ArrayStub) else v for k, v in obj.items()}
    return obj


# Opcodes a CIFAR-10 batch never holds: out-of-band buffers, persistent ids, the extension
# registry, and bytearrays (whose size the C unpickler allocates before reading).
_REFUSED_OPCODES = frozenset({
    "BYTEARRAY8", "NEXT_BUFFER", "READONLY_BUFFER", "PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4",
})  # fmt: skip


def _check_opcodes(data: bytes) -> None:
    """Walk the opcodes without building anything (``pickletools``).

    Refuses the opcodes above and memo indices beyond the number of opcodes seen: the C
    unpickler sizes its memo by the largest index, so one ``LONG_BINPUT 4000000000``
    would make it allocate and clear gigabytes. Malformed streams raise ``ValueError``.
    """
    for count, (op, arg, _) in enumerate(pickletools.genops(data)):
        if op.name in _REFUSED_OPCODES:
            raise pickle.UnpicklingError(f"opcode {op.name} is not allowed")
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and not 0 <= int(arg) <= count:
            raise pickle.UnpicklingError(f"memo index {arg} out of range")


def safe_unpickle(data: bytes, source: str) -> object:
    """Unpickle ``data`` allowing only plain containers and numeric numpy arrays.

    Any failure (refused global, malformed or truncated stream, absurd sizes) is a
    :class:`DataError`: the bytes are untrusted.
    """
    try:
        _check_opcodes(data)
        return _resolve(_RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load())
    except pickle.UnpicklingError as err:
        raise DataError(f"{source}: unsafe or corrupt pickle ({err}); not a CIFAR-10 batch") from err
    except Exception as err:  # untrusted bytes: EOFError, MemoryError, OverflowError, ...
        raise DataError(
            f"{source}: truncated or corrupt pickle ({type(err).__name__}: {err}); download again"
        ) from err


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
        return lambda name: (_read_bytes(batch_dir / name), str(batch_dir / name))
    if archive.is_file():
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = {
                    Path(m.name).name: tar.extractfile(m).read()  # type: ignore[union-attr]
                    for m in tar.getmembers()
                    if m.isfile()
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


def load_cifar10(
    root: str | Path, limit_train: int | None = None, limit_test: int | None = None
) -> Dataset:
    """Load CIFAR-10 from a directory of python batches or ``cifar-10-python.tar.gz``."""
    root = Path(root)
    if not root.exists():
        raise DataError(
            f"{root}: not found; download CIFAR-10 (python version) from {CIFAR10_URL} "
            "and pass its directory with --data-dir"
        )
    read = _cifar_reader(root)
    parts = [parse_cifar_batch(*read(name)) for name in CIFAR10_TRAIN_BATCHES]
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    x_te, y_te = parse_cifar_batch(*read(CIFAR10_TEST_BATCH))
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
    ds = Dataset("cifar10", *_to_tensors(x_tr, y_tr), *_to_tensors(x_te, y_te), classes)
    return _subset(ds, limit_train, limit_test)


# --------------------------------------------------------------------------- dispatch


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> Dataset:
    """Load ``"mnist"`` (embedded by default) or ``"cifar10"`` (needs ``data_dir``)."""
    if name == "mnist":
        return load_mnist(data_dir, limit_train, limit_test)
    if name == "cifar10":
        if data_dir is None:
            raise DataError(
                f"CIFAR-10 is not embedded: download the python version from {CIFAR10_URL}, "
                "unpack it (or keep the .tar.gz) and pass --data-dir DIR"
            )
        return load_cifar10(data_dir, limit_train, limit_test)
    raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


# --------------------------------------------------------------------------- download


def _fetch(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise DataError(
            f"could not download {url} ({err}); are you offline? Download it by hand "
            "and pass its directory with --data-dir"
        ) from err


def download(name: str, dest: str | Path, timeout: float = 60.0) -> Path:
    """Download ``"mnist"`` or ``"cifar10"`` into ``dest`` and verify checksums.

    Files are verified before they are written (atomically); nothing corrupt is kept.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if name == "mnist":
        for stem, md5 in MNIST_FILES.values():
            target = dest / f"{stem}.gz"
            if target.is_file():
                continue
            blob = _fetch(MNIST_URL + f"{stem}.gz", timeout)
            try:
                digest = hashlib.md5(gzip.decompress(blob)).hexdigest()
            except (OSError, EOFError, zlib.error):
                digest = "<not gzip>"
            if digest != md5:
                raise DataError(f"{MNIST_URL}{stem}.gz: checksum mismatch ({digest} != {md5})")
            atomic_write_bytes(target, blob)
        return dest
    if name == "cifar10":
        target = dest / CIFAR10_ARCHIVE
        if not target.is_file():
            blob = _fetch(CIFAR10_URL, timeout)
            digest = hashlib.md5(blob).hexdigest()
            if digest != CIFAR10_ARCHIVE_MD5:
                raise DataError(f"{CIFAR10_URL}: checksum mismatch ({digest})")
            atomic_write_bytes(target, blob)
        return target
    raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
