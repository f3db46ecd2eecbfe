"""Options shared by the sub-commands: data, training hyper-parameters, ``--out``, and the
models a command refuses to attack. A bad value is exit 2, one line naming the option, and
leaves the model directory given to ``--out --force`` untouched."""

from __future__ import annotations

import pytest
import torch
from cli_helpers import META_BASE, assert_user_error, constant_model

from defdistill.checkpoint import save_model
from defdistill.models import build_model


def test_unknown_dataset(existing, capsys):
    assert_user_error(capsys, ["train", "--dataset", "svhn", "--out", existing, "--force"],
                      "argument --dataset: invalid choice: 'svhn'", "mnist", "--help",
                      protect=(existing,))  # fmt: skip


def test_unknown_model(existing, capsys):
    assert_user_error(capsys, ["train", "--arch", "resnet50", "--out", existing, "--force"],
                      "argument --arch: invalid choice: 'resnet50'", "mnist_cnn", protect=(existing,))


@pytest.mark.parametrize("command", ["train", "distill"])
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc"])
def test_temperature_must_be_finite_and_positive(existing, capsys, command, value):
    assert_user_error(capsys, [command, "--temperature", value, "--out", existing, "--force"],
                      "--temperature", "number > 0", protect=(existing,))  # fmt: skip


TRAINING_OPTIONS = [
    (["--epochs", "0"], "--epochs: must be a positive integer, got 0"),
    (["--epochs", "1.5"], "--epochs: expected a positive integer, got '1.5'"),
    (["--lr", "inf"], "--lr: must be a finite number > 0"),
    (["--lr", "x"], "--lr: expected a number > 0, got 'x'"),
    (["--momentum", "1.5"], "0 <= momentum < 1"),
    (["--limit-train", "-5"], "--limit-train: must be a positive integer"),
    (["--batch-size", "0"], "--batch-size: must be a positive integer"),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["--seed", "99999999999999999999999"], "--seed: must be an integer in [0, 2^63)"),
    (["--seed", "-1"], "--seed: must be an integer in [0, 2^63)"),
    (["--lr", "1e300"], "--lr: 1e300 is beyond float32's range"),
    (["--temperature", "1e30"], "too large to train at"),
    (["--temperature", "1e4", "--lr", "1e31", "--head-scaling"], "head scaling multiplies lr by T^2"),
    (["--adv-eps", "0.1"], "--adv-eps, --adv-steps and --adv-warmup need --adversarial"),
    (["--adversarial", "mart"], "argument --adversarial: invalid choice: 'mart'"),
    (["--adversarial", "trades", "--trades-beta", "0"], "--trades-beta: must be a finite number > 0, got 0"),
    (["--adversarial", "trades", "--trades-beta", "inf"], "--trades-beta: must be a finite number > 0"),
    (["--adversarial", "trades", "--trades-beta", "six"], "--trades-beta: expected a number > 0, got 'six'"),
    (["--trades-beta", "6"], "--trades-beta needs --adversarial trades"),
    (["--adversarial", "pgd", "--trades-beta", "6"], "--trades-beta needs --adversarial trades"),
    (["--adversarial", "pgd", "--adv-eps", "2"], "adversarial_eps must be in [0, 1]"),
    (["--precision", "fp16"], "argument --precision: invalid choice: 'fp16'"),
]


@pytest.mark.parametrize("argv, fragment", TRAINING_OPTIONS, ids=[" ".join(a) for a, _ in TRAINING_OPTIONS])
def test_bad_training_options(existing, capsys, argv, fragment):
    assert_user_error(capsys, ["train", *argv, "--out", existing, "--force"], fragment, protect=(existing,))


def test_out_is_a_file(tmp_path, capsys):
    (tmp_path / "model").write_text("not a directory")
    assert_user_error(capsys, ["train", "--out", tmp_path / "model"], "is a file, not a directory",
                      "choose another --out", protect=(tmp_path,))  # fmt: skip


@pytest.mark.parametrize("command", [["attack", "--attack", "fgsm"], ["attack", "--attack", "jsma"],
                                     ["audit"]], ids=["fgsm", "jsma", "audit"])  # fmt: skip
def test_model_that_classifies_nothing_correctly(tmp_path, capsys, cached_mnist, command):
    save_model(tmp_path / "zero", constant_model(0), META_BASE)  # always "0"; test image 0 is a 7
    out_json = tmp_path / "out.json"
    out_json.write_text("{}\n")
    argv = [command[0], "--model", tmp_path / "zero", *command[1:], "--limit-test", "1", "--json", out_json]
    assert_user_error(capsys, argv, "classifies none of the 1 test images correctly: nothing to attack",
                      "defdistill evaluate", protect=(tmp_path,))  # fmt: skip


def test_dataset_given_for_a_model_must_be_the_models(existing, capsys, cached_mnist):
    assert_user_error(capsys, ["evaluate", "--model", existing, "--dataset", "cifar10"],
                      "was trained on mnist, not --dataset cifar10", protect=(existing,))  # fmt: skip


def test_a_reference_of_another_data_set_is_named_as_such(tmp_path, existing, capsys, cached_mnist):
    torch.manual_seed(0)
    cifar = build_model("cifar10_cnn", 3, 32, 10).eval()
    save_model(tmp_path / "cifar", cifar, {**META_BASE, "architecture": "cifar10_cnn",
                                           "input_shape": [3, 32, 32], "dataset": {"name": "cifar10"}})
    assert_user_error(capsys, ["audit", "--model", existing, "--reference", tmp_path / "cifar",
                               "--limit-test", "50", "--samples", "1", "--jsma-samples", "1"],
                      "cifar was trained on cifar10, the audited model on mnist",
                      protect=(existing, tmp_path / "cifar"))  # fmt: skip
