import gzip
import io
import os
import pickle
import tarfile
import urllib.error

import numpy as np
import pytest
import torch
from synthetic import cifar_batch

from defdistill import data
from defdistill.data import DataError
from defdistill.data.cifar10 import load_cifar10
from defdistill.data.mnist import load_mnist, parse_idx


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root, n_train=20, n_test=10, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": rng.integers(0, 10, n_train),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": rng.integers(0, 10, n_test),
    }
    for key, arr in arrays.items():
        stem = data.MNIST_FILES[key][0]
        blob = idx_bytes(arr)
        if compress:
            (root / f"{stem}.gz").write_bytes(gzip.compress(blob))
        else:
            (root / stem).write_bytes(blob)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, compress):
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
    with pytest.raises(DataError, match="limit-train"):
        load_mnist(limit_train=0)


def test_checksum_mismatch_names_the_file(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: checksum mismatch"):
        load_mnist(tmp_path)


def test_missing_directory_and_file(tmp_path):
    with pytest.raises(DataError, match="directory not found"):
        load_mnist(tmp_path / "nope")
    write_mnist(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path, verify=False)


def test_truncated_and_corrupt_gzip(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: corrupt or truncated gzip"):
        load_mnist(tmp_path, verify=False)
    path.write_bytes(blob[:10] + b"\xff" * 20 + blob[30:])
    with pytest.raises(DataError, match="train-labels"):
        load_mnist(tmp_path, verify=False)


def test_wrong_magic_wrong_size_and_count_mismatch(tmp_path):
    arr = np.zeros((3, 28, 28), np.uint8)
    with pytest.raises(DataError, match="bad magic"):
        parse_idx(b"\x01\x02" + idx_bytes(arr)[2:], "f")
    with pytest.raises(DataError, match="does not match its header"):
        parse_idx(idx_bytes(arr)[:-5], "f")
    with pytest.raises(DataError, match="does not match its header"):
        parse_idx(idx_bytes(arr) + b"\0", "f")
    write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(7, np.uint8)))
    )
    with pytest.raises(DataError, match="20 images but 7 labels"):
        load_mnist(tmp_path, verify=False)


# ----------------------------------------------------------------------------- CIFAR-10


def write_cifar(root, n=4):
    root.mkdir(parents=True, exist_ok=True)
    batches = {name: cifar_batch(n, i) for i, name in enumerate(data.CIFAR10_TRAIN_BATCHES)}
    batches[data.CIFAR10_TEST_BATCH] = cifar_batch(n, 99)
    for name, batch in batches.items():
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [c.encode() for c in data.CIFAR10_CLASSES], b"num_vis": 3072}
    (root / data.CIFAR10_META).write_bytes(pickle.dumps(meta, protocol=2))
    return batches


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
    archive = tmp_path / data.CIFAR10_ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    from_dir = load_cifar10(src)
    from_tar = load_cifar10(archive)
    assert torch.equal(from_dir.x_train, from_tar.x_train)
    assert torch.equal(load_cifar10(tmp_path).y_test, from_dir.y_test)


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_malicious_pickle_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "c"
    write_cifar(root)
    (root / "data_batch_3").write_bytes(pickle.dumps({b"data": _Boom(), b"labels": []}))
    with pytest.raises(DataError, match=r"data_batch_3: unsafe .*posix.system|data_batch_3: unsafe"):
        load_cifar10(root)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_cifar_wrong_shapes_and_missing(tmp_path):
    root = tmp_path / "c"
    write_cifar(root)
    bad = cifar_batch(4, 0)
    bad[b"data"] = bad[b"data"][:, :100]
    (root / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match="test_batch: 'data' must be uint8 of shape"):
        load_cifar10(root)
    with pytest.raises(DataError, match="download CIFAR-10"):
        load_cifar10(tmp_path / "missing")
    with pytest.raises(DataError, match="no CIFAR-10 found"):
        load_cifar10(tmp_path)
    with pytest.raises(DataError, match="--data-dir"):
        data.load_dataset("cifar10")


# ----------------------------------------------------------------------------- download


def test_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="are you offline"):
        data.download("mnist", tmp_path)
    assert not list(tmp_path.iterdir())


def test_download_rejects_a_bad_checksum_and_keeps_good_files(tmp_path, monkeypatch):
    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    blobs = {"train-images-idx3-ubyte": gzip.compress(b"not mnist")}
    monkeypatch.setattr(
        data.urllib.request, "urlopen",
        lambda url, timeout: Response(blobs.get(url.rsplit("/", 1)[1][:-3], b"")),
    )
    with pytest.raises(DataError, match="checksum mismatch"):
        data.download("mnist", tmp_path)
    assert not any(p.name.endswith(".gz") for p in tmp_path.iterdir())
