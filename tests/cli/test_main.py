"""The entry point: every expected failure is one line and exit code 2, never a traceback.

Whatever layer fails (a data file, a checkpoint, an option), ``defdistill`` prints exactly
one line on stderr starting with ``defdistill``, naming the file or option and what to
do, and leaves every file written before (a model directory given to ``--out --force`` or
``--model``, the data) byte for byte as it was. The messages themselves are tested beside
the modules that raise them (tests/data, tests/test_checkpoint.py); here, that they reach
the user intact.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
from cli_helpers import assert_user_error
from data_files import write_cifar, write_mnist
from synthetic import cifar_batch

from defdistill.checkpoint import META, WEIGHTS


def test_the_entry_point_exits_2_with_one_line_and_no_traceback(tmp_path):
    """The real entry point (``python -m defdistill.cli``), not ``main()`` called in-process."""
    proc = subprocess.run(
        [sys.executable, "-m", "defdistill.cli", "train", "--data-dir", str(tmp_path / "nope"),
         "--out", str(tmp_path / "m")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("defdistill: error: ")
    assert "nope: directory not found" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m").exists()


# Each case sets up its files under ``tmp`` and returns the arguments and the fragments the
# one line must hold; ``existing`` is a model directory written before.


def _mnist_missing_dir(tmp, existing):
    return (["train", "--data-dir", tmp / "nope", "--out", existing, "--force"],
            ["nope: directory not found", "--data-dir"])  # fmt: skip


def _mnist_truncated_gzip(tmp, existing):
    write_mnist(tmp / "data")
    path = tmp / "data" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    return (["train", "--data-dir", tmp / "data", "--out", existing, "--force"],
            ["train-images-idx3-ubyte.gz: corrupt or truncated gzip", "download it again"])  # fmt: skip


def _mnist_wrong_file(tmp, existing):
    write_mnist(tmp / "data")  # every file checked by the command line: a checksum error
    return (["train", "--data-dir", tmp / "data", "--out", existing, "--force"],
            ["train-images-idx3-ubyte.gz: checksum mismatch", "download it again"])  # fmt: skip


def _cifar_bad_batch(tmp, existing):
    bad = cifar_batch()
    del bad[b"labels"]
    write_cifar(tmp / "data", test_batch=pickle.dumps(bad, protocol=2))
    return (["train", "--dataset", "cifar10", "--data-dir", tmp / "data", "--out", existing, "--force"],
            ["test_batch: missing 'data' or 'labels'", "not a CIFAR-10 batch"])  # fmt: skip


def _cifar_not_found(tmp, existing):
    (tmp / "data").mkdir()
    return (["train", "--dataset", "cifar10", "--data-dir", tmp / "data", "--out", existing, "--force"],
            ["no CIFAR-10 found", "--data-dir"])  # fmt: skip


def _model_missing(tmp, existing):
    return (["evaluate", "--model", tmp / "nothing"], ["meta.json: not found", "defdistill model directory"])


def _model_tampered(tmp, existing):
    blob = bytearray((existing / WEIGHTS).read_bytes())
    blob[len(blob) // 2] ^= 0x40
    (existing / WEIGHTS).write_bytes(bytes(blob))
    return (["evaluate", "--model", existing],
            ["model.safetensors: sha256 does not match meta.json", "retrain or restore"])  # fmt: skip


def _model_of_another_architecture(tmp, existing):
    meta = json.loads((existing / META).read_text())
    cifar = {**meta, "architecture": "cifar10_cnn", "input_shape": [3, 32, 32]}
    (existing / META).write_text(json.dumps(cifar))
    return (["attack", "--model", existing, "--attack", "fgsm"],
            ["weights do not fit architecture 'cifar10_cnn'", "retrain"])  # fmt: skip


def _model_meta_invalid(tmp, existing):
    meta = json.loads((existing / META).read_text())
    (existing / META).write_text(json.dumps({**meta, "num_classes": "10"}))
    return (["evaluate", "--model", existing], ["meta.json", "invalid", "retrain"])


FAILURES = [_mnist_missing_dir, _mnist_truncated_gzip, _mnist_wrong_file, _cifar_bad_batch, _cifar_not_found,
            _model_missing, _model_tampered, _model_of_another_architecture, _model_meta_invalid]  # fmt: skip


@pytest.mark.parametrize("failure", FAILURES, ids=[f.__name__.strip("_").replace("_", "-") for f in FAILURES])
def test_a_failure_in_any_layer_is_one_line_and_changes_nothing(tmp_path, existing, capsys, failure):
    argv, fragments = failure(tmp_path, existing)
    assert_user_error(capsys, argv, *fragments, protect=(tmp_path,))


def test_unknown_command_and_missing_option(existing, capsys):
    assert_user_error(capsys, ["distil", "--out", existing], "invalid choice: 'distil'", "distill",
                      protect=(existing,))  # fmt: skip
    assert_user_error(capsys, ["train"], "the following arguments are required: --out")
