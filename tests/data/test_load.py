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
    assert CIFAR10_URL in message and "--data-dir DIR" in message


def test_unknown_dataset_names_the_choices():
    with pytest.raises(DataError, match="unknown dataset 'svhn'; choose one of mnist, cifar10"):
        load_dataset("svhn")
