"""The embedded CIFAR-10 subset: its files, what it loads, and a damaged copy a DataError."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from defdistill.data import DataError, load_dataset
from defdistill.data import cifar10_subset as module
from defdistill.data.cifar10 import CIFAR10_CLASSES, load_cifar10
from defdistill.data.cifar10_subset import EMBEDDED_CIFAR10_SUBSET, load_cifar10_subset
from defdistill.experiments.profiles import get_profile
from defdistill.training.config import paper_config

SHARED = Path(__file__).parents[3] / "shared" / "data" / "cifar10-subset"

FILES = ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch")

# per-class counts (airplane ... truck) of each batch, from the provenance README
COUNTS = {
    "data_batch_1": [103, 113, 102, 94, 103, 86, 109, 102, 101, 104],
    "data_batch_2": [105, 101, 83, 99, 110, 96, 98, 118, 118, 89],
    "data_batch_3": [104, 108, 92, 120, 103, 92, 107, 94, 105, 92],
    "data_batch_4": [101, 105, 117, 89, 112, 105, 87, 97, 99, 105],
    "data_batch_5": [104, 97, 96, 91, 109, 96, 102, 105, 106, 111],
    "test_batch": [105, 93, 100, 104, 92, 87, 114, 102, 110, 110],
}


@pytest.fixture(scope="module")
def subset():
    return load_cifar10_subset()


def _sums(root: Path) -> dict[str, str]:
    lines = (root / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines)}


def _decompressed(name: str) -> bytes:
    return gzip.decompress((EMBEDDED_CIFAR10_SUBSET / f"{name}.gz").read_bytes())


# --------------------------------------------------------------------------- the files


def test_embedded_files_match_their_sha256sums():
    sums = _sums(EMBEDDED_CIFAR10_SUBSET)
    assert sorted(sums) == sorted(FILES)
    assert sorted(p.name for p in EMBEDDED_CIFAR10_SUBSET.glob("*.gz")) == sorted(f"{n}.gz" for n in FILES)
    for name in FILES:
        assert hashlib.sha256(_decompressed(name)).hexdigest() == sums[name], name


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} not beside the checkout")
def test_embedded_files_are_the_shared_copy():
    assert (EMBEDDED_CIFAR10_SUBSET / "SHA256SUMS").read_bytes() == (SHARED / "SHA256SUMS").read_bytes()
    for name in FILES:
        assert _decompressed(name) == (SHARED / "cifar-10-batches-py" / name).read_bytes(), name


# --------------------------------------------------------------------------- what it loads


def test_shapes_types_and_name(subset):
    assert subset.x_train.shape == (5085, 3, 32, 32) and subset.x_test.shape == (1017, 3, 32, 32)
    assert subset.x_train.dtype == torch.float32 and subset.x_test.dtype == torch.float32
    assert subset.y_train.dtype == torch.int64 and subset.y_test.dtype == torch.int64
    for x in (subset.x_train, subset.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() == 1.0
    assert subset.name == "cifar10-subset" and subset.classes == CIFAR10_CLASSES
    assert subset.description == module.DESCRIPTION == "CIFAR-10 subset (5,085 train / 1,017 test)"


def test_labels_are_cifar10s(subset):
    assert subset.y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert subset.y_test.bincount(minlength=10).tolist() == COUNTS["test_batch"]
    for i, batch in enumerate(torch.split(subset.y_train, 1017)):
        assert batch.bincount(minlength=10).tolist() == COUNTS[f"data_batch_{i + 1}"]


def test_same_as_the_full_set_loader_on_the_decompressed_files(subset, tmp_path):
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    for name in FILES:
        (batches / name).write_bytes(_decompressed(name))
    full = load_cifar10(tmp_path)  # also reads the class names from batches.meta
    assert full.classes == subset.classes
    for a, b in ((full.x_train, subset.x_train), (full.y_train, subset.y_train),
                 (full.x_test, subset.x_test), (full.y_test, subset.y_test)):  # fmt: skip
        assert torch.equal(a, b)


def test_limits_take_the_first_samples(subset):
    small = load_cifar10_subset(limit_train=100, limit_test=10)
    assert len(small.x_train) == 100 and len(small.x_test) == 10
    assert torch.equal(small.x_train, subset.x_train[:100]) and torch.equal(small.y_test, subset.y_test[:10])
    with pytest.raises(DataError, match="limit_test"):
        load_cifar10_subset(limit_test=0)


# --------------------------------------------------------------------------- damaged copies


@pytest.fixture
def copy(tmp_path, monkeypatch) -> Path:
    """A copy of the embedded directory that the loader reads instead."""
    root = tmp_path / "cifar10-subset"
    shutil.copytree(EMBEDDED_CIFAR10_SUBSET, root)
    monkeypatch.setattr(module, "EMBEDDED_CIFAR10_SUBSET", root)
    return root


def test_one_changed_byte_fails_the_checksum(copy):
    data = bytearray(_decompressed("data_batch_1"))
    data[-1] ^= 0x01  # a pixel of the last image: still a valid batch
    (copy / "data_batch_1.gz").write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(DataError) as caught:
        load_cifar10_subset()
    message = str(caught.value)
    assert "data_batch_1.gz" in message and "checksum mismatch" in message
    assert "restore data_batch_1.gz from git" in message and "\n" not in message


def test_a_damaged_gzip_names_the_file(copy):
    path = copy / "data_batch_2.gz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"data_batch_2\.gz.*restore data_batch_2\.gz from git"):
        load_cifar10_subset()


def test_a_missing_file_names_it(copy):
    (copy / "data_batch_1.gz").unlink()
    with pytest.raises(DataError, match=r"data_batch_1\.gz: missing.*restore"):
        load_cifar10_subset()


# --------------------------------------------------------------------------- by name


def test_load_dataset_by_name():
    ds = load_dataset("cifar10-subset", limit_train=8, limit_test=4)
    assert ds.name == "cifar10-subset" and len(ds.x_train) == 8 and len(ds.x_test) == 4


def test_a_data_dir_is_refused_and_points_to_the_full_set(tmp_path):
    with pytest.raises(DataError, match="embedded.*the data set cifar10") as err:
        load_dataset("cifar10-subset", data_dir=tmp_path)
    assert err.value.parameter == "data_dir" and str(err.value).startswith("data_dir ")


def test_cifar10_without_data_dir_suggests_the_subset():
    with pytest.raises(DataError, match="cifar10-subset") as err:
        load_dataset("cifar10")
    assert err.value.parameter == "data_dir"


def test_the_subset_gets_cifar10s_settings():
    assert paper_config("cifar10-subset") == paper_config("cifar10")
    assert paper_config("cifar10-subset").lr == 0.01
    paper = get_profile("cifar10-subset", "paper")
    assert paper == get_profile("cifar10", "paper").with_overrides(max_accuracy_drop=3.0)
    assert paper.epochs == 50 and len(paper.temperatures) == 9  # the paper's settings
    quick = get_profile("cifar10-subset", "quick")
    assert quick.temperatures == (5.0, 20.0) and quick.epochs == 20 and quick.limit_test is None
    assert quick.max_accuracy_drop == 3.0  # accuracy on 1,017 test images: ~1.6 pp sampling error


def test_the_sweep_trains_the_subset_with_cifar10s_configuration(tmp_path):
    from defdistill.experiments.sweep import _train_task

    task = _train_task(
        "cifar10-subset", get_profile("cifar10-subset", "quick"), tmp_path, seed=0, temperature=None,
        architecture="cifar10_cnn", signature={}, device="cpu", progress=False, force=False,
    )  # fmt: skip
    assert task.config["lr"] == 0.01 and task.config["momentum"] == 0.9 and task.config["lr_decay"] == 0.95


def test_the_subset_is_not_downloaded(tmp_path):
    from defdistill.data.download import download

    with pytest.raises(DataError, match="embedded in the package: nothing to download"):
        download("cifar10-subset", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_reports_name_the_subset_with_its_size():
    from defdistill.experiments.report.data import DATASET_TITLES

    assert DATASET_TITLES["cifar10-subset"] == "CIFAR-10 subset (5,085 train / 1,017 test)"
