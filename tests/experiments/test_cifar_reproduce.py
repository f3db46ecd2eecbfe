"""The CIFAR-10 path of ``defdistill reproduce`` on a synthetic CIFAR-format data set."""

import json
import pickle

import numpy as np
import pytest
from synthetic import make_synthetic

from defdistill.cli import main
from defdistill.data.cifar10 import CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES


def write_learnable_cifar(root, n_per_batch=40, n_test=40):
    """CIFAR-10 python batches whose images a network can learn (class squares)."""
    ds = make_synthetic(n_train=5 * n_per_batch, n_test=n_test, num_classes=10, channels=3,
                        size=32, seed=3)  # fmt: skip

    def batch(x, y):
        pixels = (x.numpy() * 255).round().astype(np.uint8).reshape(len(x), -1)
        return {b"data": pixels, b"labels": [int(v) for v in y], b"batch_label": b"synthetic"}

    root.mkdir(parents=True)
    for i, name in enumerate(CIFAR10_TRAIN_BATCHES):
        sl = slice(i * n_per_batch, (i + 1) * n_per_batch)
        (root / name).write_bytes(pickle.dumps(batch(ds.x_train[sl], ds.y_train[sl]), protocol=2))
    (root / CIFAR10_TEST_BATCH).write_bytes(pickle.dumps(batch(ds.x_test, ds.y_test), protocol=2))


@pytest.mark.heavy
def test_reproduce_cifar10_beside_nothing_else(tmp_path, capsys):
    write_learnable_cifar(tmp_path / "cifar")
    out = tmp_path / "results"
    argv = ["reproduce", "--dataset", "cifar10", "--data-dir", str(tmp_path / "cifar"),
            "--temperatures", "5", "--epochs", "3", "--batch-size", "16",
            "--attack-samples", "1", "--adaptive-samples", "2", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    combined = json.loads((out / "results.json").read_text())
    rows = combined["datasets"]["cifar10"]["models"]
    assert [r["name"] for r in rows] == ["baseline", "distilled-T5"]
    assert all(r["test_accuracy"] > 0.5 for r in rows)
    assert "## CIFAR-10" in (out / "report.md").read_text()
    assert "report:" in capsys.readouterr().out


def test_reproduce_on_a_few_hundred_real_images_refuses_a_baseline_at_chance(tmp_path, capsys):
    """The real subset, 300 training images, one epoch: the paper's CIFAR-10 network stays at
    chance. A distilled network at chance is kept (a result: the report flags it), but without
    a baseline there is nothing to compare: the reproduction stops before measuring, naming it."""
    out = tmp_path / "results"
    argv = ["reproduce", "--dataset", "cifar10-subset", "--limit-train", "300", "--epochs", "1",
            "--limit-test", "200", "--temperatures", "100", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("defdistill: error: baseline: test accuracy") and "near chance (10%)" in err
    assert "(T=1," in err
    # the T = 100 teacher trained first (the hottest of the first wave) and is kept for a rerun
    assert [p.parent.name for p in out.rglob("model.safetensors")] == ["teacher"]
    assert not list(out.rglob("results.json"))
