"""Download MNIST or CIFAR-10 and verify checksums before anything is written."""
from __future__ import annotations

import gzip
import hashlib
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from defdistill.data.cifar10 import CIFAR10_ARCHIVE, CIFAR10_ARCHIVE_MD5, CIFAR10_URL
from defdistill.data.dataset import DATASETS, DataError
from defdistill.data.mnist import MNIST_FILES, MNIST_URL
from defdistill.io import PARAMETER, OutputError, atomic_write_bytes


def _fetch(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise DataError(
            f"could not download {url} ({err}); are you offline? Download it by hand "
            f"and pass its directory as {PARAMETER}", parameter="data_dir",
        ) from err


def download(name: str, dest: str | Path, timeout: float = 60.0) -> Path:
    """Download ``"mnist"`` or ``"cifar10"`` into ``dest`` and verify checksums.

    Files are verified before they are written (atomically); nothing corrupt is kept.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise DataError(f"{PARAMETER} {dest} is a file; give a directory to download into",
                        parameter="data_dir")
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "cifar10-subset":
        raise DataError("cifar10-subset is embedded in the package: nothing to download; "
                        "`download cifar10` fetches the full set")  # fmt: skip
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
            _write(target, blob)
        return dest
    target = dest / CIFAR10_ARCHIVE
    if not target.is_file():
        blob = _fetch(CIFAR10_URL, timeout)
        digest = hashlib.md5(blob).hexdigest()
        if digest != CIFAR10_ARCHIVE_MD5:
            raise DataError(f"{CIFAR10_URL}: checksum mismatch ({digest})")
        _write(target, blob)
    return target


def _write(target: Path, blob: bytes) -> None:
    """Write a verified download; the directory is created only now, so a failed download
    (offline, bad checksum) leaves nothing behind."""
    try:
        atomic_write_bytes(target, blob)
    except OutputError as err:
        raise DataError(f"{err} ({PARAMETER})", parameter="data_dir") from None
