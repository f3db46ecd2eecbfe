"""``load_dataset``: one entry point for every data set by name."""

from __future__ import annotations

from pathlib import Path

from defdistill.data.cifar10 import CIFAR10_URL, load_cifar10
from defdistill.data.dataset import DATASETS, DataError, Dataset
from defdistill.data.mnist import load_mnist


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
