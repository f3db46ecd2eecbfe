"""MNIST: the IDX reader, the embedded copy, checksums, and every broken file a DataError."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
import torch
from data_files import idx_bytes, write_mnist
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from defdistill.data import DataError
from defdistill.data.dataset import read_file_bytes
from defdistill.data.mnist import load_mnist, parse_idx

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_round_trip(tmp_path, compress):
    arrays = write_mnist(tmp_path, compress=compress)
    ds = load_mnist(tmp_path, verify=False)
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.x_train.dtype == torch.float32
    assert ds.y_train.dtype == torch.int64
    np.testing.assert_array_equal(ds.x_train[:, 0].numpy() * 255, arrays["train_images"])
    np.testing.assert_array_equal(ds.y_test.numpy(), arrays["test_labels"])
    assert ds.x_test.min() >= 0.0 and ds.x_test.max() <= 1.0


def test_embedded_mnist_is_full_and_verified():
    ds = load_mnist()  # verifies the md5 of every decompressed file
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.y_train.bincount().tolist()[:3] == [5923, 6742, 5958]
    assert ds.num_classes == 10


def test_limits_take_the_same_first_samples():
    a = load_mnist(limit_train=100, limit_test=50)
    b = load_mnist(limit_train=100, limit_test=50)
    assert len(a.x_train) == 100 and len(a.x_test) == 50
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    with pytest.raises(DataError, match="limit_train"):
        load_mnist(limit_train=0)


IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@st.composite
def idx_arrays(draw):
    code = draw(st.sampled_from(sorted(IDX_TYPES)))
    dtype = np.dtype(IDX_TYPES[code])
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6))
    array = draw(hnp.arrays(dtype, shape))
    return code, array


@FAST
@given(idx_arrays())
def test_idx_round_trip_of_every_type(item):
    code, array = item
    parsed = parse_idx(idx_bytes(array, type_code=code), "f")
    assert parsed.shape == array.shape and parsed.dtype == array.dtype
    assert parsed.tobytes() == array.tobytes()  # bit-identical (NaN payloads included)


@FAST
@given(st.binary(max_size=64), st.sampled_from([b"", b"\x00\x00\x08\x01", b"\x00\x00\x0d\x03"]))
def test_idx_random_bytes_give_an_array_or_a_data_error(tail, head):
    blob = head + tail
    try:
        array = parse_idx(blob, "f")
    except DataError:
        return
    assert array.nbytes == len(blob) - 4 - 4 * array.ndim  # the header accounts for every byte


# --------------------------------------------------------------------------- broken files


def test_checksum_mismatch_names_the_file(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: checksum mismatch.*download it again"):
        load_mnist(tmp_path)


def test_missing_directory_and_file(tmp_path):
    with pytest.raises(DataError, match="nope: directory not found; give an existing data_dir"):
        load_mnist(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="directory not found"):
        load_mnist(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\(\.gz\): file not found"):
        load_mnist(tmp_path / "empty")
    write_mnist(tmp_path / "m")
    os.remove(tmp_path / "m" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\(\.gz\): file not found"):
        load_mnist(tmp_path / "m", verify=False)


def test_truncated_and_corrupt_gzip(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    blob = path.read_bytes()
    message = "train-images-idx3-ubyte.gz: corrupt or truncated gzip .*download it again"
    path.write_bytes(blob[:200])
    with pytest.raises(DataError, match=message):
        load_mnist(tmp_path)
    corrupt = bytearray(blob)
    corrupt[100:120] = b"\xff" * 20  # inside the deflate stream: a stream or CRC error
    path.write_bytes(bytes(corrupt))
    with pytest.raises(DataError, match=message):
        load_mnist(tmp_path)


def test_wrong_idx_magic(tmp_path):
    good = idx_bytes(np.zeros((20, 28, 28), np.uint8))
    with pytest.raises(DataError, match="f: not an IDX file .*bad magic"):
        parse_idx(b"\x01\x02" + good[2:], "f")
    write_mnist(tmp_path, train_images=b"\x50\x4b" + good[2:])  # a zip header, say
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: not an IDX file .*bad magic"):
        load_mnist(tmp_path, verify=False)


def test_unsupported_idx_type_code():
    with pytest.raises(DataError, match="unsupported IDX type 0x07"):
        parse_idx(idx_bytes(np.zeros((2, 2), np.uint8), type_code=0x07), "f")


def test_idx_size_does_not_match_header():
    blob = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    for wrong in (blob[:-1], blob[:-5], blob + b"\0"):
        with pytest.raises(DataError, match="f: size .* does not match its header"):
            parse_idx(wrong, "f")
    with pytest.raises(DataError, match="truncated IDX header"):
        parse_idx(blob[:9], "f")
    # dimensions whose product overflows int64 must not wrap around to a "matching" size
    huge = bytes([0, 0, 0x08, 4]) + (2**32 - 1).to_bytes(4, "big") * 4
    with pytest.raises(DataError, match="does not match its header"):
        parse_idx(huge + b"\0" * 16, "f")


def test_wrong_dimensions(tmp_path):
    write_mnist(tmp_path, train_images=idx_bytes(np.zeros((20, 784), np.uint8)))
    with pytest.raises(DataError, match="images must be 3-D and labels 1-D"):
        load_mnist(tmp_path, verify=False)


def test_label_image_count_mismatch(tmp_path):
    write_mnist(tmp_path / "test", test_labels=idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(DataError, match="test has 10 images but 7 labels; the files do not belong"):
        load_mnist(tmp_path / "test", verify=False)
    (tmp_path / "test" / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(7, np.uint8)))
    )
    with pytest.raises(DataError, match="train has 20 images but 7 labels"):
        load_mnist(tmp_path / "test", verify=False)


def test_a_decompression_bomb_is_refused_after_reading_the_limit(tmp_path):
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(b"\0" * 100_000))  # ~100 bytes that expand 1000-fold
    with pytest.raises(DataError, match="bomb.gz: decompresses to more than"):
        read_file_bytes(bomb, max_bytes=50_000)
    assert len(read_file_bytes(bomb, max_bytes=100_000)) == 100_000  # exactly at the limit: fine
    raw = tmp_path / "raw"
    raw.write_bytes(b"\0" * 1_000)
    with pytest.raises(DataError, match="raw: 1,000 bytes, more than any data file"):
        read_file_bytes(raw, max_bytes=999)
