"""``load_dataset``: a data set by name, and what to do when it is not at hand."""

from __future__ import annotations

import pytest

from defdistill.data import DataError, load_dataset
from defdistill.data.cifar10 import CIFAR10_URL


def test_cifar10_is_not_embedded_and_the_error_says_how_to_get_it():
    with pytest.raises(DataError) as caught:
        load_dataset("cifar10")
    message = str(caught.value)
    assert message.startswith("CIFAR-10 is not embedded")
    assert CIFAR10_URL in message and caught.value.parameter == "data_dir" and "as data_dir" in message
    assert caught.value.render("--data-dir").count("--data-dir") == 1  # the CLI shows its flag


def test_unknown_dataset_names_the_choices():
    with pytest.raises(DataError, match="unknown dataset 'svhn'; choose one of mnist, cifar10"):
        load_dataset("svhn")


def test_test_only_loads_read_no_training_file(tmp_path, monkeypatch):
    """Evaluation, attacks and audits load with ``train=False``: the test split alone."""
    import shutil

    from defdistill.data import cifar10_subset
    from defdistill.data.mnist import EMBEDDED_MNIST

    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):  # no training files
        shutil.copy(EMBEDDED_MNIST / name, tmp_path / name)
    mnist = load_dataset("mnist", tmp_path, limit_test=50, train=False)
    assert tuple(mnist.x_train.shape) == (0, 1, 28, 28) and len(mnist.y_train) == 0
    assert tuple(mnist.x_test.shape) == (50, 1, 28, 28) and mnist.input_shape == (1, 28, 28)
    with pytest.raises(DataError, match="train"):
        load_dataset("mnist", tmp_path, limit_test=50)  # a full load needs them

    read = []
    original = cifar10_subset.read_verified
    monkeypatch.setattr(cifar10_subset, "read_verified",
                        lambda root, name, sums: read.append(name) or original(root, name, sums))  # fmt: skip
    colour = load_dataset("cifar10-subset", train=False)
    assert read == ["test_batch"]
    assert tuple(colour.x_train.shape) == (0, 3, 32, 32) and len(colour.x_test) == 1017
