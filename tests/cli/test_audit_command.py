"""``defdistill audit``: a verdict on a trained model, printed and written as JSON."""

from __future__ import annotations

import json
import sys

import pytest
from cli_helpers import assert_user_error

from defdistill.cli import main


@pytest.mark.heavy
def test_audit_command_gives_a_verdict(small_model, tmp_path, capsys):
    out_json = tmp_path / "audit.json"
    assert main(["audit", "--model", str(small_model), "--samples", "10", "--jsma-samples", "2",
                 "--cw-iterations", "100", "--cw-search-steps", "4", "--limit-test", "300",
                 "--quiet", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "verdict:" in text and "jsma-z" in text and "unconditional" in text
    data = json.loads(out_json.read_text())
    assert data["verdict"]["masking"] is False  # a normally trained network masks nothing
    assert data["attacks"]["pgd-ce-f"]["accuracy"] < 0.2
    assert data["attacks"]["pgd-ce-f@0.1"]["eps"] == 0.1  # the second budget, keyed apart
    robust = data["robust_accuracy"]
    assert robust["unconditional"] <= robust["conditional"] <= data["attacks"]["pgd-ce-f"]["accuracy"]
    # 10 images drawn at random: the correctly classified ones attacked, the others counted as failures
    assert robust["unconditional_interval"]["n"] == data["config"]["drawn"] == 10
    assert robust["conditional_interval"]["n"] == data["config"]["samples"] <= 10
    assert len(data["config"]["sample_indices"]) == 10 and data["config"]["sample_seed"] == 0


USER_NET = '''
from defdistill.models import build_model


def build():
    return build_model("mnist_cnn", 1, 28, 10)


def linear():
    import torch
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))


def not_a_module():
    return 42
'''


@pytest.fixture
def user_net(tmp_path, monkeypatch):
    """A user's module ``user_net`` in the current directory, as the --factory contract says."""
    (tmp_path / "user_net.py").write_text(USER_NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "user_net", raising=False)
    yield
    sys.modules.pop("user_net", None)


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items()
                if k not in ("seconds", "attempts_per_second", "samples_per_second", "model")}
    return value


@pytest.mark.heavy
def test_a_model_the_user_brings_gets_the_same_audit(small_model, user_net, tmp_path, capsys):
    """--factory module:callable + safetensors weights: the very audit of the model directory."""
    args = ["--samples", "8", "--jsma-samples", "2", "--cw-iterations", "50", "--cw-search-steps", "2",
            "--apgd-steps", "20", "--square-queries", "100", "--limit-test", "200", "--quiet"]
    assert main(["audit", "--model", str(small_model), *args, "--json", str(tmp_path / "own.json")]) == 0
    assert main(["audit", "--factory", "user_net:build", "--weights", str(small_model / "model.safetensors"),
                 "--dataset", "mnist", *args, "--json", str(tmp_path / "brought.json")]) == 0
    assert "audit of user_net:build" in capsys.readouterr().out
    own, brought = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("own", "brought"))
    assert without_timings(brought) == without_timings(own)
    assert brought["verdict"]["masking"] is False


@pytest.mark.parametrize("argv, fragments", [
    (["--factory", "user_net"], ["expected module:callable"]),
    (["--factory", "no_such_module:build"], ["no_such_module", "check the module path"]),
    (["--factory", "user_net:missing"], ["missing", "check the module path"]),
    (["--factory", "user_net:not_a_module"], ["returned int, not an nn.Module"]),
    (["--factory", "user_net:linear"], ["does not hold user_net:linear's weights"]),
    (["--factory", "user_net:build", "--weights", "absent.safetensors"], ["absent.safetensors: not found"]),
])  # fmt: skip
def test_a_model_the_user_brings_that_does_not_fit_is_a_one_line_error(
    small_model, user_net, capsys, argv, fragments
):
    if "--weights" not in argv:
        argv = [*argv, "--weights", str(small_model / "model.safetensors")]
    assert_user_error(capsys, ["audit", *argv, "--dataset", "mnist", "--limit-test", "50"], *fragments)


def test_factory_needs_weights_and_dataset(user_net, small_model, capsys):
    assert_user_error(capsys, ["audit", "--factory", "user_net:build", "--dataset", "mnist"],
                      "needs --weights")
    assert_user_error(capsys, ["audit", "--factory", "user_net:build", "--weights",
                               str(small_model / "model.safetensors")], "needs --dataset")  # fmt: skip
