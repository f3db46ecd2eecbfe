"""Every bad input is a clear error: one line, the problem and the fix, no traceback.

Through the command line (``defdistill.cli.main``): exit code 2, exactly one line on
stderr starting with ``defdistill``, naming the file or option and what to do, and every
file written before (a model directory given to ``--out --force`` or ``--model``) is left
byte for byte as it was. Through the Python API: ``DataError``, ``CheckpointError`` or
``ValueError`` with the same kind of message.

MNIST files are checksum-verified, so through the command line any wrong MNIST file is a
checksum error; the finer IDX checks are exercised with ``verify=False``.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import cifar_batch, make_synthetic

from defdistill import cli, data
from defdistill.attacks import FGSM, JSMA, PGD, CarliniWagnerL2
from defdistill.checkpoint import META, WEIGHTS, CheckpointError, load_model, load_reusable, save_model
from defdistill.data import DataError
from defdistill.data.cifar10 import parse_cifar_batch
from defdistill.data.mnist import load_mnist, parse_idx
from defdistill.experiments.units import UnitStore
from defdistill.models import build_model, output_layer
from defdistill.training.config import TrainConfig

# --------------------------------------------------------------------------- helpers


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)`` in-process; argparse errors (SystemExit) count as return codes."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(*roots: Path) -> dict[str, bytes]:
    """Every file under ``roots`` with its bytes."""
    return {str(p): p.read_bytes() for root in roots for p in sorted(Path(root).rglob("*")) if p.is_file()}


def assert_user_error(capsys, argv: list, *fragments: str, protect: tuple[Path, ...] = ()) -> str:
    """Exit 2, one stderr line with every fragment, no traceback, ``protect`` untouched."""
    before = snapshot(*protect)
    code, _, err = run_cli(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("defdistill") and ": error: " in lines[0], lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert snapshot(*protect) == before, "a file written earlier was changed"
    return lines[0]


META_BASE = {
    "architecture": "mnist_cnn", "input_shape": [1, 28, 28], "num_classes": 10,
    "dataset": {"name": "mnist"}, "role": "baseline", "temperature": 1.0,
}  # fmt: skip


def constant_model(cls: int) -> torch.nn.Module:
    """The paper's MNIST network that predicts class ``cls`` for every input."""
    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, 10)
    head = output_layer(model)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[cls] = 10.0
    return model.eval()


@pytest.fixture
def existing(tmp_path) -> Path:
    """A model directory written before the command under test (it must survive)."""
    save_model(tmp_path / "existing", constant_model(0), META_BASE)
    (tmp_path / "existing" / "notes.json").write_text('{"keep": true}\n')
    return tmp_path / "existing"


@functools.cache
def _mnist_full() -> data.Dataset:
    return load_mnist()


@pytest.fixture
def cached_mnist(monkeypatch):
    """The CLI's data loader with the embedded MNIST read once per session (speed only)."""

    def load(name, data_dir=None, limit_train=None, limit_test=None):
        assert name == "mnist" and data_dir is None
        return data._subset(_mnist_full(), limit_train, limit_test)

    monkeypatch.setattr(cli, "load_dataset", load)


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return bytes([0, 0, type_code, array.ndim]) + dims + array.tobytes()


def write_mnist(root: Path, n_train: int = 20, n_test: int = 10, **override: bytes) -> None:
    """Gzipped IDX files with the official names (random content; fails the checksum)."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        blob = override.get(key, idx_bytes(array))
        (root / f"{data.MNIST_FILES[key][0]}.gz").write_bytes(gzip.compress(blob))


def write_cifar(root: Path, test_batch: bytes | None = None) -> Path:
    """Six tiny CIFAR-10 python batches; ``test_batch`` replaces the test batch's bytes."""
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(data.CIFAR10_TRAIN_BATCHES):
        (root / name).write_bytes(pickle.dumps(cifar_batch(4, i), protocol=2))
    blob = test_batch if test_batch is not None else pickle.dumps(cifar_batch(4, 99), protocol=2)
    (root / data.CIFAR10_TEST_BATCH).write_bytes(blob)
    return root


def train_cifar(capsys, root: Path, existing: Path, *fragments: str) -> str:
    argv = ["train", "--dataset", "cifar10", "--data-dir", root, "--out", existing, "--force"]
    return assert_user_error(capsys, argv, *fragments, protect=(existing, root))


# --------------------------------------------------------------------------- MNIST files


def test_truncated_gzip(tmp_path, existing, capsys):
    write_mnist(tmp_path / "m")
    path = tmp_path / "m" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    assert_user_error(capsys, ["train", "--data-dir", tmp_path / "m", "--out", existing, "--force"],
                      "train-images-idx3-ubyte.gz: corrupt or truncated gzip", "download it again",
                      protect=(existing,))  # fmt: skip


def test_corrupt_gzip(tmp_path, existing, capsys):
    write_mnist(tmp_path / "m")
    path = tmp_path / "m" / "train-images-idx3-ubyte.gz"  # read first
    blob = bytearray(path.read_bytes())
    blob[100:120] = b"\xff" * 20  # inside the deflate stream: a stream or CRC error
    path.write_bytes(bytes(blob))
    assert_user_error(capsys, ["train", "--data-dir", tmp_path / "m", "--out", existing, "--force"],
                      "train-images-idx3-ubyte.gz: corrupt or truncated gzip", "download it again",
                      protect=(existing,))  # fmt: skip


def test_wrong_file_is_a_checksum_error_through_the_cli(tmp_path, existing, capsys):
    write_mnist(tmp_path / "m")
    assert_user_error(capsys, ["train", "--data-dir", tmp_path / "m", "--out", existing, "--force"],
                      "train-images-idx3-ubyte.gz: checksum mismatch", "download it again",
                      protect=(existing,))  # fmt: skip


def test_wrong_idx_magic(tmp_path, existing, capsys):
    good = idx_bytes(np.zeros((20, 28, 28), np.uint8))
    write_mnist(tmp_path / "m", train_images=b"\x50\x4b" + good[2:])  # a zip header, say
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: not an IDX file .*bad magic"):
        load_mnist(tmp_path / "m", verify=False)
    assert_user_error(capsys, ["train", "--data-dir", tmp_path / "m", "--out", existing, "--force"],
                      "checksum mismatch", protect=(existing,))  # fmt: skip


def test_unsupported_idx_type_code():
    with pytest.raises(DataError, match="unsupported IDX type 0x07"):
        parse_idx(idx_bytes(np.zeros((2, 2), np.uint8), type_code=0x07), "f")


def test_idx_size_does_not_match_header():
    blob = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match="f: size .* does not match its header"):
        parse_idx(blob[:-1], "f")
    with pytest.raises(DataError, match="truncated IDX header"):
        parse_idx(blob[:9], "f")
    # dimensions whose product overflows int64 must not wrap around to a "matching" size
    huge = bytes([0, 0, 0x08, 4]) + (2**32 - 1).to_bytes(4, "big") * 4
    with pytest.raises(DataError, match="does not match its header"):
        parse_idx(huge + b"\0" * 16, "f")


def test_wrong_dimensions(tmp_path):
    write_mnist(tmp_path / "m", train_images=idx_bytes(np.zeros((20, 784), np.uint8)))
    with pytest.raises(DataError, match="images must be 3-D and labels 1-D"):
        load_mnist(tmp_path / "m", verify=False)


def test_label_image_count_mismatch(tmp_path):
    write_mnist(tmp_path / "m", test_labels=idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(DataError, match="test has 10 images but 7 labels; the files do not belong"):
        load_mnist(tmp_path / "m", verify=False)


def test_missing_or_wrong_data_dir(tmp_path, existing, capsys):
    assert_user_error(capsys, ["train", "--data-dir", tmp_path / "nope", "--out", existing, "--force"],
                      "nope: directory not found", "--data-dir", protect=(existing,))  # fmt: skip
    (tmp_path / "file").write_text("x")
    assert_user_error(capsys, ["train", "--data-dir", tmp_path / "file", "--out", existing, "--force"],
                      "directory not found", protect=(existing,))  # fmt: skip
    (tmp_path / "empty").mkdir()
    assert_user_error(capsys, ["train", "--data-dir", tmp_path / "empty", "--out", existing, "--force"],
                      "train-images-idx3-ubyte(.gz): file not found", protect=(existing,))  # fmt: skip


# --------------------------------------------------------------------------- CIFAR-10 files


def test_cifar_batch_with_wrong_keys(tmp_path, existing, capsys):
    bad = cifar_batch()
    del bad[b"labels"]
    root = write_cifar(tmp_path / "c", pickle.dumps(bad, protocol=2))
    train_cifar(capsys, root, existing, "test_batch: missing 'data' or 'labels'", "not a CIFAR-10 batch")


def test_cifar_batch_with_wrong_shape(tmp_path, existing, capsys):
    bad = cifar_batch()
    bad[b"data"] = bad[b"data"][:, :1024]  # one channel only
    root = write_cifar(tmp_path / "c", pickle.dumps(bad, protocol=2))
    train_cifar(capsys, root, existing, "test_batch: 'data' must be uint8 of shape (N, 3072)", "(4, 1024)")


def test_cifar_batch_with_wrong_dtype(tmp_path, existing, capsys):
    bad = cifar_batch()
    bad[b"data"] = bad[b"data"].astype(np.float32)
    root = write_cifar(tmp_path / "c", pickle.dumps(bad, protocol=2))
    train_cifar(capsys, root, existing, "'data' must be uint8", "float32")


def test_cifar_labels_out_of_range_or_not_integers(tmp_path, existing, capsys):
    bad = cifar_batch()
    bad[b"labels"][0] = 10
    root = write_cifar(tmp_path / "c", pickle.dumps(bad, protocol=2))
    train_cifar(capsys, root, existing, "test_batch: labels outside 0..9")
    for labels in (["cat"] * 4, {b"a": 1}, [[1, 2]] * 4, [1.5] * 4):
        bad[b"labels"] = labels
        with pytest.raises(DataError, match="'labels' must be a list of integer class indices"):
            parse_cifar_batch(pickle.dumps(bad, protocol=2), "b")


def test_cifar_label_image_count_mismatch(tmp_path, existing, capsys):
    bad = cifar_batch()
    bad[b"labels"] = bad[b"labels"][:3]
    root = write_cifar(tmp_path / "c", pickle.dumps(bad, protocol=2))
    train_cifar(capsys, root, existing, "test_batch: 4 images but 3 labels")


def test_cifar_batch_that_is_not_a_dict(tmp_path, existing, capsys):
    root = write_cifar(tmp_path / "c", pickle.dumps([1, 2, 3], protocol=2))
    train_cifar(capsys, root, existing, "test_batch: expected a dict", "found list")


def test_truncated_cifar_batch(tmp_path, existing, capsys):
    blob = pickle.dumps(cifar_batch(), protocol=2)
    root = write_cifar(tmp_path / "c", blob[: len(blob) // 2])
    train_cifar(capsys, root, existing, "test_batch: truncated or corrupt pickle", "download again")


def test_corrupt_cifar_archive(tmp_path, existing, capsys):
    src = write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    archive = tmp_path / "a" / data.CIFAR10_ARCHIVE
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    archive.write_bytes(archive.read_bytes()[:300])
    train_cifar(capsys, archive.parent, existing, "cifar-10-python.tar.gz: corrupt or truncated archive",
                "download again")  # fmt: skip


def test_no_cifar_found_or_no_data_dir(tmp_path, existing, capsys):
    (tmp_path / "empty").mkdir()
    train_cifar(capsys, tmp_path / "empty", existing, "no CIFAR-10 found", "--data-dir")
    assert_user_error(capsys, ["train", "--dataset", "cifar10", "--out", existing, "--force"],
                      "CIFAR-10 is not embedded", "--data-dir DIR", protect=(existing,))  # fmt: skip


UNSAFE = re.compile(
    r"torch\.load\(|pickle\.loads?\(|(?<![\w.])(np|numpy)\.load\(|allow_pickle\s*=\s*True|"
    r"(?<![\w.])(eval|exec)\(|marshal\.loads?\(|shelve\.|yaml\.load\(|joblib\.load\(|dill\."
)


def test_no_unsafe_loading_anywhere_in_the_library():
    """No pickle, torch.load, np.load or eval of anything; the only unpickler is restricted."""
    src = Path(data.__file__).parent
    hits = [f"{p.name}:{n}: {line.strip()}" for p in sorted(src.rglob("*.py"))
            for n, line in enumerate(p.read_text().splitlines(), 1) if UNSAFE.search(line)]  # fmt: skip
    assert hits == []
    unpicklers = [p.name for p in src.rglob("*.py") if "Unpickler" in p.read_text()]
    assert unpicklers == ["data.py"]
    assert data._RestrictedUnpickler.find_class is not pickle.Unpickler.find_class


class _Touch:
    """Unpickling this runs ``os.system("touch PWNED_BY_PICKLE")`` in the current directory."""

    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_malicious_pickle_is_refused_and_would_really_run(tmp_path, existing, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blob = pickle.dumps({b"data": _Touch(), b"labels": []}, protocol=2)
    root = write_cifar(tmp_path / "c", blob)
    train_cifar(capsys, root, existing, "test_batch: unsafe or corrupt pickle", "refusing to load global")
    with pytest.raises(DataError, match="refusing to load global (posix|os).system"):
        parse_cifar_batch(blob, "b")
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()
    # the same bytes, given to plain pickle, do run the command: the test is meaningful
    pickle.loads(blob)
    assert (tmp_path / "PWNED_BY_PICKLE").exists()


@pytest.mark.parametrize("payload", [
    (open, ("planted", "w")),  # creates a file
    (eval, ("1 + 1",)),
    (subprocess.Popen, (["true"],)),
    (np.load, ("x.npy",)),
    (getattr, ("text", "upper")),
], ids=["open", "eval", "popen", "np.load", "getattr"])  # fmt: skip
def test_other_gadgets_are_refused(tmp_path, monkeypatch, payload):
    class Gadget:
        def __reduce__(self):
            return payload

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="refusing to load global"):
        parse_cifar_batch(pickle.dumps({b"data": Gadget(), b"labels": []}, protocol=2), "b")
    assert not (tmp_path / "planted").exists()


def _malformed_dtype_pickle() -> bytes:
    """A batch whose numpy dtype state is malformed (a None popped from its state tuple)."""
    blob = pickle.dumps(cifar_batch(), protocol=2)
    assert blob.count(b"NNNJ\xff\xff\xff\xff") == 1
    return blob.replace(b"NNNJ\xff\xff\xff\xff", b"NN0J\xff\xff\xff\xff")


def test_malformed_numpy_state_is_refused_not_a_crash():
    """numpy's own ``dtype.__setstate__`` segfaults on this state; numpy never sees it."""
    with pytest.raises(DataError, match="b: unsafe or corrupt pickle .*numpy dtype"):
        parse_cifar_batch(_malformed_dtype_pickle(), "b")


def test_the_malformed_numpy_state_crashes_plain_pickle():
    """Why the stand-ins exist: plain ``pickle.loads`` of the same bytes kills the process."""
    proc = subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                          input=_malformed_dtype_pickle(), capture_output=True, timeout=60)  # fmt: skip
    if proc.returncode != -signal.SIGSEGV:
        pytest.skip(f"this numpy ({np.__version__}) no longer crashes (exit {proc.returncode})")


@pytest.mark.parametrize("blob", [
    b"\x80\x02]r\xff\xff\xff\x7f.",  # LONG_BINPUT 2**31 - 1: the C unpickler would size its memo so
    b"\x80\x05\x96" + (2**40).to_bytes(8, "little") + b"x.",  # a 1 TiB bytearray
    b"\x80\x02]q\x00h\x00\x86\x94" * 1 + b"\x80",  # truncated garbage
    b"\x80\x04\x95" + (2**62).to_bytes(8, "little") + b"}.",  # absurd frame length
], ids=["memo-index", "bytearray8", "truncated", "frame"])  # fmt: skip
def test_hostile_pickle_streams_are_data_errors(blob):
    with pytest.raises(DataError, match="b: (unsafe|truncated) or corrupt pickle"):
        parse_cifar_batch(blob, "b")


def test_python2_style_batch_still_loads():
    """The official batches were written by Python 2: str -> bytes, dtype name as bytes."""
    raw = bytes(range(256)) * 12 * 2  # 2 images of 3072 bytes
    blob = (
        b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\n"
        b"q\x03K\x00\x85U\x01b\x87Rq\x04(K\x01K\x02M\x00\x0c\x86cnumpy\ndtype\nq\x05U\x02u1K\x00K\x01"
        b"\x87Rq\x06(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T"
        + len(raw).to_bytes(4, "little") + raw
        + b"tbU\x06labels]q\x07(K\x03K\teu."
    )  # fmt: skip
    images, labels = parse_cifar_batch(blob, "py2")
    assert images.shape == (2, 3, 32, 32) and images.dtype == np.uint8
    assert images.tobytes() == raw and labels.tolist() == [3, 9]
    assert images.flags.writeable  # a copy, not a view of the untrusted buffer


def test_cifar_labels_as_numpy_array_load():
    batch = cifar_batch()
    batch[b"labels"] = np.array(batch[b"labels"], dtype=">i8")  # big-endian, say
    for protocol in (2, 3, 4):
        images, labels = parse_cifar_batch(pickle.dumps(batch, protocol=protocol), "b")
        assert labels.tolist() == batch[b"labels"].tolist()
        assert np.array_equal(images.reshape(4, -1), batch[b"data"])


# --------------------------------------------------------------------------- names


def test_unknown_dataset(tmp_path, existing, capsys):
    assert_user_error(capsys, ["train", "--dataset", "svhn", "--out", existing, "--force"],
                      "argument --dataset: invalid choice: 'svhn'", "mnist", "--help",
                      protect=(existing,))  # fmt: skip
    with pytest.raises(DataError, match="unknown dataset 'svhn'; choose one of mnist, cifar10"):
        data.load_dataset("svhn")


def test_unknown_model(tmp_path, existing, capsys):
    assert_user_error(capsys, ["train", "--arch", "resnet50", "--out", existing, "--force"],
                      "argument --arch: invalid choice: 'resnet50'", "mnist_cnn", protect=(existing,))
    with pytest.raises(ValueError, match="unknown model 'resnet50'; choose one of"):
        build_model("resnet50", 1, 28, 10)


def test_unknown_attack(existing, capsys):
    assert_user_error(capsys, ["attack", "--model", existing, "--attack", "deepfool"],
                      "argument --attack: invalid choice: 'deepfool'", "jsma", protect=(existing,))


def test_unknown_command_and_missing_option(existing, capsys):
    assert_user_error(capsys, ["distil", "--out", existing], "invalid choice: 'distil'", "distill")
    assert_user_error(capsys, ["train"], "the following arguments are required: --out")


# --------------------------------------------------------------------------- hyper-parameters


@pytest.mark.parametrize("command", ["train", "distill"])
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc"])
def test_temperature_must_be_finite_and_positive(existing, capsys, command, value):
    line = assert_user_error(capsys, [command, "--temperature", value, "--out", existing, "--force"],
                             "--temperature", protect=(existing,))  # fmt: skip
    assert "number > 0" in line
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        TrainConfig(temperature=float(value) if value != "abc" else 0.0)


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf"])
def test_attack_temperature_must_be_finite_and_positive(existing, capsys, value):
    assert_user_error(capsys, ["attack", "--model", existing, "--attack", "jsma", "--temperature", value],
                      "--temperature", "number > 0", protect=(existing,))  # fmt: skip


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
@pytest.mark.parametrize("value", ["-0.1", "nan", "inf"])
def test_eps_must_be_finite_and_nonnegative(existing, capsys, attack, value):
    assert_user_error(capsys, ["attack", "--model", existing, "--attack", attack, "--eps", value],
                      "eps must be a finite number >= 0", value, protect=(existing,))  # fmt: skip


@pytest.mark.parametrize("value", ["0", "-0.1", "1.5", "nan"])
def test_gamma_must_be_in_0_1(existing, capsys, value):
    assert_user_error(capsys, ["attack", "--model", existing, "--attack", "jsma", "--gamma", value],
                      "gamma", protect=(existing,))  # fmt: skip
    with pytest.raises(ValueError, match="gamma"):
        JSMA(gamma=float(value))


@pytest.mark.parametrize("argv, fragment", [
    (["--epochs", "0"], "--epochs: must be a positive integer, got 0"),
    (["--epochs", "1.5"], "--epochs: expected a positive integer, got '1.5'"),
    (["--lr", "inf"], "--lr: must be a finite number > 0"),
    (["--momentum", "1.5"], "need lr > 0 and 0 <= momentum < 1"),
    (["--limit-train", "-5"], "--limit-train: must be a positive integer"),
    (["--batch-size", "0"], "--batch-size: must be a positive integer"),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
], ids=lambda v: v if isinstance(v, str) else v[0])  # fmt: skip
def test_bad_training_options(existing, capsys, argv, fragment):
    assert_user_error(capsys, ["train", *argv, "--out", existing, "--force"], fragment, protect=(existing,))


@pytest.mark.parametrize("argv, fragment", [
    (["--attack", "cw", "--confidence", "-1"], "confidence must be a finite number >= 0"),
    (["--attack", "pgd", "--steps", "0"], "--steps: must be a positive integer"),
    (["--attack", "jsma", "--theta", "0.5"], "argument --theta: invalid choice"),
    (["--attack", "fgsm", "--samples", "0"], "--samples: must be a positive integer"),
    (["--attack", "fgsm", "--batch-size", "-1"], "--batch-size: must be a positive integer"),
], ids=lambda v: v if isinstance(v, str) else v[1])  # fmt: skip
def test_bad_attack_options(existing, capsys, argv, fragment):
    assert_user_error(capsys, ["attack", "--model", existing, *argv], fragment, protect=(existing,))


def test_reproduce_bad_temperature_list(tmp_path, capsys):
    for value in ("a,b", "0,1", ","):
        assert_user_error(capsys, ["reproduce", "--temperatures", value, "--out", tmp_path / "r"],
                          "--temperatures")  # fmt: skip
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--seeds", "0,a"], "--seeds: expected seeds like 0,1,2"),
    (["--seeds", "0,-1"], "--seeds: seeds must be integers >= 0"),
    (["--seeds", "1,1"], "--seeds: a seed is repeated"),
    (["--seeds", "0,1", "--seed", "2"], "give --seed N or --seeds N,M,..., not both"),
    (["--executor", "dask"], "argument --executor: invalid choice"),
    (["--address", "auto"], "--address: only used with --executor ray"),
    (["--cpus-per-task", "2", "--max-retries", "0"],
     "--cpus-per-task, --max-retries: only used with --executor ray"),
    (["--executor", "ray", "--cpus-per-task", "0"], "--cpus-per-task: must be a positive integer"),
    (["--executor", "ray", "--max-retries", "-1"], "--max-retries: must be an integer >= 0"),
], ids=lambda v: v if isinstance(v, str) else v[1])  # fmt: skip
def test_reproduce_bad_seeds_and_executor_options(tmp_path, capsys, argv, fragment):
    assert_user_error(capsys, ["reproduce", *argv, "--out", tmp_path / "r"], fragment)
    assert not (tmp_path / "r").exists()


def test_reproduce_on_ray_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert_user_error(capsys, ["reproduce", "--executor", "ray", "--out", tmp_path / "r"],
                      "install the ray extra: pip install 'defdistill[ray]'")  # fmt: skip
    assert not (tmp_path / "r").exists()  # refused before any work


@pytest.mark.parametrize(("address", "fragment"), [
    ("nohost", "--address must be auto or HOST:PORT, got 'nohost'"),
    ("127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1"),  # refused at once
])  # fmt: skip
def test_reproduce_on_an_unreachable_ray_cluster(tmp_path, capsys, address, fragment):
    pytest.importorskip("ray", reason="no ray: pip install 'defdistill[ray]'")
    assert_user_error(capsys, ["reproduce", "--executor", "ray", "--address", address,
                               "--out", tmp_path / "r"], fragment)  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_cuda_without_gpu(existing, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert_user_error(capsys, ["evaluate", "--model", existing, "--device", "cuda"],
                      "--device cuda requested but no CUDA GPU is available; use auto or cpu",
                      protect=(existing,))  # fmt: skip


def test_out_is_a_file(tmp_path, capsys):
    (tmp_path / "model").write_text("not a directory")
    assert_user_error(capsys, ["train", "--out", tmp_path / "model"], "is a file, not a directory",
                      "choose another --out", protect=(tmp_path,))  # fmt: skip


# --------------------------------------------------------------------------- attack inputs (API)

ATTACKS = {
    "fgsm": lambda: FGSM(eps=0.1),
    "pgd": lambda: PGD(eps=0.1, steps=2),
    "jsma": lambda: JSMA(gamma=0.5),
    "cw": lambda: CarliniWagnerL2(binary_search_steps=1, max_iterations=2),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("bad, fragment", [
    (float("nan"), "x contains NaN"),
    (1.5, "x must lie in [0, 1]"),
    (-0.25, "x must lie in [0, 1]"),
    (float("inf"), "x must lie in [0, 1]"),
], ids=["nan", "above-1", "below-0", "inf"])  # fmt: skip
def test_bad_pixels_are_value_errors(name, bad, fragment):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.rand(4, 1, 4, 4)
    x[2, 0, 1, 1] = bad
    y = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        ATTACKS[name]()(model, x, y, (y + 1) % 3)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_bad_labels_and_targets_are_value_errors(name):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match=r"y must be class indices in \[0, 3\)"):
        ATTACKS[name]()(model, x, torch.tensor([0, 1, 3, 0]), (y + 1) % 3)
    with pytest.raises(ValueError, match="target must differ from y"):
        ATTACKS[name]()(model, x, y, y)


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_sha_mismatch(existing, capsys):
    blob = bytearray((existing / WEIGHTS).read_bytes())
    blob[len(blob) // 2] ^= 0x40
    (existing / WEIGHTS).write_bytes(bytes(blob))
    assert_user_error(capsys, ["evaluate", "--model", existing],
                      "model.safetensors: sha256 does not match meta.json", "retrain or restore",
                      protect=(existing,))  # fmt: skip


def test_checkpoint_architecture_mismatch(existing, capsys):
    meta = json.loads((existing / META).read_text())
    cifar = {**meta, "architecture": "cifar10_cnn", "input_shape": [3, 32, 32]}
    (existing / META).write_text(json.dumps(cifar))
    assert_user_error(capsys, ["attack", "--model", existing, "--attack", "fgsm"],
                      "weights do not fit architecture 'cifar10_cnn'", "retrain", protect=(existing,))
    (existing / META).write_text(json.dumps({**meta, "architecture": "vgg16"}))
    assert_user_error(capsys, ["evaluate", "--model", existing], "unknown architecture 'vgg16'",
                      protect=(existing,))  # fmt: skip
    (existing / META).write_text(json.dumps({**meta, "input_shape": [1, 8, 8]}))  # too small
    with pytest.raises(CheckpointError, match="do not fit architecture 'mnist_cnn' with inputs"):
        load_model(existing)


@pytest.mark.parametrize("edit", ["drop-input-shape", "num-classes-string", "not-a-dict", "old-format"])
def test_checkpoint_meta_missing_or_invalid_fields(existing, capsys, edit):
    meta = json.loads((existing / META).read_text())
    if edit == "drop-input-shape":
        del meta["input_shape"]
    elif edit == "num-classes-string":
        meta["num_classes"] = "10"
    elif edit == "not-a-dict":
        meta = [meta]
    else:
        meta["format_version"] = 0
    (existing / META).write_text(json.dumps(meta))
    line = assert_user_error(capsys, ["evaluate", "--model", existing], "meta.json", "retrain",
                             protect=(existing,))  # fmt: skip
    assert "invalid" in line or "unknown checkpoint format" in line


def test_missing_model_directory(tmp_path, capsys):
    assert_user_error(capsys, ["evaluate", "--model", tmp_path / "nothing"],
                      "meta.json: not found", "defdistill model directory")  # fmt: skip


# --------------------------------------------------------------------------- empty selections


@pytest.mark.parametrize("command", [["attack", "--attack", "fgsm"], ["attack", "--attack", "jsma"],
                                     ["audit"]], ids=["fgsm", "jsma", "audit"])  # fmt: skip
def test_model_that_classifies_nothing_correctly(tmp_path, capsys, cached_mnist, command):
    save_model(tmp_path / "zero", constant_model(0), META_BASE)  # always "0"; test image 0 is a 7
    out_json = tmp_path / "out.json"
    out_json.write_text("{}\n")
    argv = [command[0], "--model", tmp_path / "zero", *command[1:], "--limit-test", "1", "--json", out_json]
    assert_user_error(capsys, argv, "classifies none of the 1 test images correctly: nothing to attack",
                      "defdistill evaluate", protect=(tmp_path,))  # fmt: skip


def test_more_samples_requested_than_classified_correctly(tmp_path, capsys, cached_mnist):
    save_model(tmp_path / "seven", constant_model(7), META_BASE)  # 2 of the first 20 test images are 7s
    argv = ["attack", "--model", tmp_path / "seven", "--attack", "fgsm", "--samples", "5",
            "--limit-test", "20", "--quiet", "--json", tmp_path / "a.json"]  # fmt: skip
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "2 samples, 2 attempts" in out
    assert "note: only 2 of the 20 test images are classified correctly, fewer than --samples 5" in out
    assert json.loads((tmp_path / "a.json").read_text())["summary"]["samples"] == 2


# --------------------------------------------------------------------------- stale results


def test_unit_store_refuses_results_of_another_configuration(tmp_path):
    store = UnitStore(tmp_path)
    assert store.run("eval-x", {"eps": 0.3, "samples": 4}, lambda: {"value": 1}) == {"value": 1}
    # the same key is reused, any changed field recomputes
    assert UnitStore(tmp_path).run("eval-x", {"eps": 0.3, "samples": 4}, lambda: {"value": 2}) == {"value": 1}
    changed = UnitStore(tmp_path)
    assert changed.run("eval-x", {"eps": 0.3, "samples": 5}, lambda: {"value": 3}) == {"value": 3}
    assert changed.computed == ["eval-x"] and changed.reused == []
    # a stored key digest that does not match (an edited or foreign file) is not trusted
    stored = json.loads((tmp_path / "units" / "eval-x.json").read_text())
    stored["key_sha256"] = "0" * 64
    (tmp_path / "units" / "eval-x.json").write_text(json.dumps(stored))
    assert UnitStore(tmp_path).run("eval-x", {"eps": 0.3, "samples": 5}, lambda: {"value": 4}) == {"value": 4}


def test_models_of_another_configuration_are_not_reused(tmp_path):
    ds = make_synthetic(n_train=64, n_test=32)
    from defdistill.training.runs import dataset_signature, train_model

    config = TrainConfig(epochs=1, batch_size=32, lr=0.05)
    train_model(ds, "mnist_cnn", config, tmp_path / "m", "baseline", progress=False, allow_untrained=True)
    signature = dataset_signature(ds)
    wanted = {"config": config.to_dict(), "dataset": signature, "architecture": "mnist_cnn"}
    _, meta = load_reusable(tmp_path / "m", wanted)  # same configuration: reused
    assert meta["config"] == config.to_dict()
    other = TrainConfig(epochs=2, batch_size=32, lr=0.05).to_dict()
    for changed in ({"config": other}, {"dataset": {**signature, "n_train": 65}},
                    {"architecture": "cifar10_cnn"}):  # fmt: skip
        with pytest.raises(CheckpointError, match="trained with another configuration"):
            load_reusable(tmp_path / "m", {**wanted, **changed})
    with pytest.raises(CheckpointError, match="not found"):
        load_reusable(tmp_path / "nothing", wanted)
    (tmp_path / "m" / "model.safetensors").write_bytes(b"tampered")  # meta matches, weights do not
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_reusable(tmp_path / "m", wanted)
