"""CIFAR-10: batches from a directory or the tar.gz, and every malformed batch a DataError.

The CIFAR-10 reader, fed mutated or truncated batches, returns a batch or raises
``DataError``: no other exception, no crash, no huge allocation.
"""

from __future__ import annotations

import pickle
import tarfile

import numpy as np
import pytest
import torch
from data_files import write_cifar
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic import cifar_batch

from defdistill.data import DataError
from defdistill.data.cifar10 import CIFAR10_ARCHIVE, load_cifar10, parse_cifar_batch

# --------------------------------------------------------------------------- reading


def test_cifar10_from_directory(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    ds = load_cifar10(tmp_path)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    first = batches["data_batch_1"]
    expected = first[b"data"][0].reshape(3, 32, 32) / 255.0
    np.testing.assert_allclose(ds.x_train[0].numpy(), expected, rtol=1e-6)
    assert ds.y_train[:4].tolist() == first[b"labels"]
    assert ds.classes[0] == "airplane" and ds.num_classes == 10
    assert len(load_cifar10(tmp_path, limit_train=7).x_train) == 7


def test_cifar10_from_tar_gz(tmp_path):
    src = tmp_path / "src" / "cifar-10-batches-py"
    write_cifar(src)
    archive = tmp_path / CIFAR10_ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    from_dir = load_cifar10(src)
    from_tar = load_cifar10(archive)
    assert torch.equal(from_dir.x_train, from_tar.x_train)
    assert torch.equal(load_cifar10(tmp_path).y_test, from_dir.y_test)


def _batch() -> dict:
    rng = np.random.default_rng(0)
    return {b"labels": [1, 2, 3], b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8),
            b"batch_label": b"x"}  # fmt: skip


BATCHES = [pickle.dumps(_batch(), protocol=p) for p in (2, 3, 4, 5)]


@pytest.mark.parametrize("blob", BATCHES[:3], ids=["protocol2", "protocol3", "protocol4"])
def test_unmodified_batches_load(blob):
    images, labels = parse_cifar_batch(blob, "b")
    assert np.array_equal(images.reshape(3, -1), _batch()[b"data"]) and labels.tolist() == [1, 2, 3]


def test_cifar_labels_as_numpy_array_load():
    batch = cifar_batch()
    batch[b"labels"] = np.array(batch[b"labels"], dtype=">i8")  # big-endian, say
    for protocol in (2, 3, 4):
        images, labels = parse_cifar_batch(pickle.dumps(batch, protocol=protocol), "b")
        assert labels.tolist() == batch[b"labels"].tolist()
        assert np.array_equal(images.reshape(4, -1), batch[b"data"])


# --------------------------------------------------------------------------- malformed batches


def _without_labels(batch: dict) -> None:
    del batch[b"labels"]


def _one_channel(batch: dict) -> None:
    batch[b"data"] = batch[b"data"][:, :1024]


def _float_pixels(batch: dict) -> None:
    batch[b"data"] = batch[b"data"].astype(np.float32)


def _label_ten(batch: dict) -> None:
    batch[b"labels"][0] = 10


def _three_labels(batch: dict) -> None:
    batch[b"labels"] = batch[b"labels"][:3]


@pytest.mark.parametrize(("edit", "fragments"), [
    (_without_labels, ["test_batch: missing 'data' or 'labels'", "not a CIFAR-10 batch"]),
    (_one_channel, ["test_batch: 'data' must be uint8 of shape (N, 3072)", "(4, 1024)"]),
    (_float_pixels, ["'data' must be uint8", "float32"]),
    (_label_ten, ["test_batch: labels outside 0..9"]),
    (_three_labels, ["test_batch: 4 images but 3 labels"]),
], ids=["wrong-keys", "wrong-shape", "wrong-dtype", "label-out-of-range", "count-mismatch"])  # fmt: skip
def test_malformed_batch_is_a_data_error_naming_the_file(tmp_path, edit, fragments):
    bad = cifar_batch()
    edit(bad)
    write_cifar(tmp_path, test_batch=pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError) as caught:
        load_cifar10(tmp_path)
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize("labels", [["cat"] * 4, {b"a": 1}, [[1, 2]] * 4, [1.5] * 4],
                         ids=["strings", "dict", "nested", "floats"])  # fmt: skip
def test_labels_must_be_integers(labels):
    bad = cifar_batch()
    bad[b"labels"] = labels
    with pytest.raises(DataError, match="'labels' must be a list of integer class indices"):
        parse_cifar_batch(pickle.dumps(bad, protocol=2), "b")


def test_batch_that_is_not_a_dict(tmp_path):
    write_cifar(tmp_path, test_batch=pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(DataError, match="test_batch: expected a dict .*found list"):
        load_cifar10(tmp_path)


def test_truncated_batch(tmp_path):
    blob = pickle.dumps(cifar_batch(), protocol=2)
    write_cifar(tmp_path, test_batch=blob[: len(blob) // 2])
    with pytest.raises(DataError, match="test_batch: truncated or corrupt pickle .*download again"):
        load_cifar10(tmp_path)


# a mutated string opcode may hold an escape Python deprecates: pickletools warns while decoding it
@pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")
@settings(max_examples=400, deadline=None)
@given(st.sampled_from(BATCHES), st.lists(st.tuples(st.integers(0, 399), st.integers(0, 255)), max_size=6),
       st.one_of(st.none(), st.integers(1, 9500)))  # fmt: skip
def test_mutated_cifar_batches_give_a_batch_or_a_data_error(blob, edits, keep):
    """Edits mostly in the first 400 bytes (the structure), optionally truncated."""
    mutated = bytearray(blob[:keep] if keep else blob)
    for pos, value in edits:
        mutated[pos % len(mutated)] = value
    try:
        images, labels = parse_cifar_batch(bytes(mutated), "b")
    except DataError:
        return
    assert images.dtype == np.uint8 and images.shape[1:] == (3, 32, 32)
    assert labels.dtype == np.int64 and len(labels) == len(images)


# --------------------------------------------------------------------------- missing data


def test_corrupt_archive(tmp_path):
    src = tmp_path / "src" / "cifar-10-batches-py"
    write_cifar(src)
    archive = tmp_path / "a" / CIFAR10_ARCHIVE
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    archive.write_bytes(archive.read_bytes()[:300])
    message = "cifar-10-python.tar.gz: corrupt or truncated archive .*download again"
    with pytest.raises(DataError, match=message):
        load_cifar10(archive.parent)


def test_missing_or_empty_directory(tmp_path):
    with pytest.raises(DataError, match="missing: not found; download CIFAR-10 .* as data_dir"):
        load_cifar10(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no CIFAR-10 found .* as data_dir"):
        load_cifar10(tmp_path / "empty")
