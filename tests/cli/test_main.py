import json
import subprocess
import sys

import pytest

from defdistill.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "defdistill.cli", *args], capture_output=True, text=True,
        timeout=120,
    )


def test_bad_data_dir_is_one_line_exit_2(tmp_path):
    proc = run_cli("train", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "m"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "nope: directory not found" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_model_and_cifar_without_data(tmp_path, capsys):
    assert main(["evaluate", "--model", str(tmp_path)]) == 2
    assert "meta.json: not found" in capsys.readouterr().err
    assert main(["train", "--dataset", "cifar10", "--out", str(tmp_path / "c")]) == 2
    assert "CIFAR-10 is not embedded" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "baseline"
    assert main(["train", "--epochs", "1", "--limit-train", "4000", "--limit-test", "300",
                 "--batch-size", "32", "--quiet", "--out", str(out)]) == 0
    return out


def test_attack_command_writes_json_and_examples(small_model, tmp_path, capsys):
    out_json, png = tmp_path / "jsma.json", tmp_path / "ex.png"
    assert main(["attack", "--model", str(small_model), "--attack", "jsma", "--samples", "3",
                 "--targets", "next", "--limit-test", "300", "--quiet", "--json", str(out_json),
                 "--save-examples", str(png)]) == 0
    assert "success rate" in capsys.readouterr().out
    data = json.loads(out_json.read_text())
    assert data["summary"]["attempts"] == 3 and len(data["attempts"]) == 3
    for attempt in data["attempts"]:
        assert attempt["target"] == (attempt["label"] + 1) % 10
        assert attempt["l0_percent"] <= 14.5 + 1e-9
    if data["summary"]["success_rate"] > 0:
        assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["attack", "--model", str(small_model), "--attack", "pgd", "--eps", "-1"]) == 2
    assert "eps must be" in capsys.readouterr().err


def test_audit_command_gives_a_verdict(small_model, tmp_path, capsys):
    out_json = tmp_path / "audit.json"
    assert main(["audit", "--model", str(small_model), "--samples", "10", "--jsma-samples", "2",
                 "--cw-iterations", "100", "--cw-search-steps", "4", "--limit-test", "300",
                 "--quiet", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "verdict:" in text and "JSMA on Z" in text
    data = json.loads(out_json.read_text())
    assert data["verdict"]["masking"] is False  # a normally trained network masks nothing
    assert data["attacks"]["PGD Linf 0.3 on F"]["accuracy"] < 0.2


def test_train_evaluate_and_refuse_overwrite(tmp_path, capsys):
    out = tmp_path / "m"
    args = ["train", "--epochs", "1", "--limit-train", "3000", "--limit-test", "500", "--batch-size", "32",
            "--quiet", "--out", str(out)]
    assert main(args) == 0
    assert "test accuracy" in capsys.readouterr().out
    weights = (out / "model.safetensors").read_bytes()
    assert main(args) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == weights
    assert main(["evaluate", "--model", str(out), "--limit-test", "500", "--quiet"]) == 0
    text = capsys.readouterr().out
    accuracy = float(text.split("accuracy")[1].split("%")[0])
    assert accuracy > 80.0


@pytest.mark.parametrize("bad", [["--epochs", "0"], ["--temperature", "-1"], ["--lr", "x"]])
def test_bad_arguments_exit_2(tmp_path, bad):
    proc = run_cli("train", "--out", str(tmp_path / "m"), *bad)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
