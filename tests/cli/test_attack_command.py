"""``defdistill attack``: the JSON and the example grid it writes, and its options."""

from __future__ import annotations

import json

import pytest
from cli_helpers import META_BASE, assert_user_error, constant_model, run_cli
from PIL import Image

from defdistill.attacks import JSMA
from defdistill.checkpoint import save_model
from defdistill.cli import main
from defdistill.evaluation.samples import random_order


def test_attack_command_writes_json_and_examples(small_model, tmp_path, capsys):
    # the paper's attack: one targeted attempt per sample, within JSMA's L0 budget
    out_json = tmp_path / "jsma.json"
    assert main(["attack", "--model", str(small_model), "--attack", "jsma", "--samples", "3",
                 "--targets", "next", "--limit-test", "300", "--quiet", "--json", str(out_json)]) == 0
    assert "success rate" in capsys.readouterr().out
    data = json.loads(out_json.read_text())
    assert data["summary"]["attempts"] == 3 and len(data["attempts"]) == 3
    cap = 100 * JSMA().max_features_changed(784) / 784  # 14.29 %: pairs of pixels under gamma 14.5 %
    for attempt in data["attempts"]:
        assert attempt["target"] == (attempt["label"] + 1) % 10
        assert attempt["l0_percent"] <= cap + 1e-4  # float32
    # PGD with eps = 1 may reach any image: every attempt succeeds, so the grid is always drawn
    out_json, png = tmp_path / "pgd.json", tmp_path / "examples.png"
    assert main(["attack", "--model", str(small_model), "--attack", "pgd", "--eps", "1.0", "--steps", "20",
                 "--samples", "3", "--limit-test", "300", "--quiet", "--json", str(out_json),
                 "--save-examples", str(png)]) == 0  # fmt: skip
    data = json.loads(out_json.read_text())
    assert data["summary"]["samples"] == 3 and data["summary"]["success_rate"] == 1.0
    assert all(a["success"] and a["target"] is None for a in data["attempts"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        image.verify()  # a complete, uncorrupted PNG
    with Image.open(png) as image:
        assert image.format == "PNG" and 0.8 < image.height / image.width < 1.25  # 3 rows of 3 panels


def test_more_samples_requested_than_classified_correctly(tmp_path, capsys, cached_mnist):
    save_model(tmp_path / "seven", constant_model(7), META_BASE)  # 2 of the first 20 test images are 7s
    argv = ["attack", "--model", tmp_path / "seven", "--attack", "fgsm", "--samples", "5",
            "--limit-test", "20", "--quiet", "--json", tmp_path / "a.json"]  # fmt: skip
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "2 samples, 2 attempts" in out
    assert "note: only 2 of the 20 test images are classified correctly, fewer than --samples 5" in out
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["summary"]["samples"] == 2
    # drawn at random with --seed (default 0): the two 7s in the order of the seeded permutation
    drawn = [i for i in random_order(20, 0).tolist() if i in (0, 17)]
    assert data["samples"] == {"sampling": "random", "seed": 0, "n": 2, "test_images": 20, "indices": drawn}
    # each attempt names its image by its index in the test set, untargeted or targeted
    assert [a["sample_index"] for a in data["attempts"]] == drawn
    argv = ["attack", "--model", tmp_path / "seven", "--attack", "jsma", "--samples", "5",
            "--targets", "all", "--limit-test", "20", "--quiet", "--json", tmp_path / "t.json"]  # fmt: skip
    assert run_cli(argv, capsys)[0] == 0
    attempts = json.loads((tmp_path / "t.json").read_text())["attempts"]
    assert [a["sample_index"] for a in attempts] == [drawn[0]] * 9 + [drawn[1]] * 9


def test_the_images_are_drawn_at_random_with_the_seed_and_recorded(small_model, tmp_path):
    def draw(seed: int) -> dict:
        out = tmp_path / f"seed{seed}.json"
        assert main(["attack", "--model", str(small_model), "--attack", "fgsm", "--samples", "10",
                     "--limit-test", "300", "--seed", str(seed), "--quiet", "--json", str(out)]) == 0
        return json.loads(out.read_text())["samples"]

    a, again, other = draw(1), draw(1), draw(2)
    assert a == again and a["seed"] == 1 and a["n"] == 10 and a["test_images"] == 300
    assert a["indices"] != other["indices"]  # another seed, other images
    # the first 10 correctly classified in the seeded permutation of the 300 test images
    order = random_order(300, 1).tolist()
    assert a["indices"] == sorted(a["indices"], key=order.index)  # in draw order
    assert a["indices"] != sorted(a["indices"])  # not the first N of the test set


def test_unknown_attack(existing, capsys):
    assert_user_error(capsys, ["attack", "--model", existing, "--attack", "deepfool"],
                      "argument --attack: invalid choice: 'deepfool'", "jsma", protect=(existing,))


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf"])
def test_attack_temperature_must_be_finite_and_positive(existing, capsys, value):
    assert_user_error(capsys, ["attack", "--model", existing, "--attack", "jsma", "--temperature", value],
                      "--temperature", "number > 0", protect=(existing,))  # fmt: skip


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
@pytest.mark.parametrize("value", ["-0.1", "-1", "nan", "inf"])
def test_eps_must_be_finite_and_nonnegative(existing, capsys, attack, value):
    assert_user_error(capsys, ["attack", "--model", existing, "--attack", attack, "--eps", value],
                      "--eps: must be a finite number >= 0", value, protect=(existing,))  # fmt: skip


@pytest.mark.parametrize("value", ["0", "-0.1", "1.5", "nan"])
def test_gamma_must_be_in_0_1(existing, capsys, value):
    assert_user_error(capsys, ["attack", "--model", existing, "--attack", "jsma", "--gamma", value],
                      "gamma", protect=(existing,))  # fmt: skip


ATTACK_OPTIONS = [
    (["--attack", "cw", "--confidence", "-1"], "--confidence: must be a finite number >= 0"),
    (["--attack", "pgd", "--steps", "0"], "--steps: must be a positive integer"),
    (["--attack", "jsma", "--theta", "0.5"], "argument --theta: invalid choice"),
    (["--attack", "fgsm", "--samples", "0"], "--samples: must be a positive integer"),
    (["--attack", "fgsm", "--batch-size", "-1"], "--batch-size: must be a positive integer"),
]


@pytest.mark.parametrize("argv, fragment", ATTACK_OPTIONS, ids=[" ".join(a) for a, _ in ATTACK_OPTIONS])
def test_bad_attack_options(existing, capsys, argv, fragment):
    assert_user_error(capsys, ["attack", "--model", existing, *argv], fragment, protect=(existing,))
