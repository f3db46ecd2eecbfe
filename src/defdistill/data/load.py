"""``load_dataset``: one entry point for every data set by name."""

from __future__ import annotations

from pathlib import Path

from defdistill.data.cifar10 import CIFAR10_URL, load_cifar10
from defdistill.data.cifar10_subset import load_cifar10_subset
from defdistill.data.dataset import DATASETS, DataError, Dataset
from defdistill.data.mnist import load_mnist
from defdistill.io import PARAMETER


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    train: bool = True,
) -> Dataset:
    """Load ``"mnist"`` (embedded by default), ``"cifar10"`` (needs ``data_dir``) or
    ``"cifar10-subset"`` (embedded, no ``data_dir``: 5,085 + 1,017 real CIFAR-10 images).

    ``train=False`` reads the test split only (evaluation, attacks, audits): the returned
    training split is empty, and no training file is read.
    """
    if name == "mnist":
        return load_mnist(data_dir, limit_train, limit_test, train=train)
    if name == "cifar10":
        if data_dir is None:
            raise DataError(
                f"CIFAR-10 is not embedded: download the python version from {CIFAR10_URL}, "
                f"unpack it (or keep the .tar.gz) and pass its directory as {PARAMETER}; offline, "
                "the data set cifar10-subset is the embedded real subset (5,085 + 1,017 images)",
                parameter="data_dir",
            )
        return load_cifar10(data_dir, limit_train, limit_test, train=train)
    if name == "cifar10-subset":
        if data_dir is not None:
            raise DataError(
                f"{PARAMETER} {data_dir}: cifar10-subset is embedded in the package and reads no "
                "directory; the full set is the data set cifar10, with its directory", parameter="data_dir",
            )
        return load_cifar10_subset(limit_train, limit_test, train=train)
    raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
