"""``defdistill evaluate``: the test accuracy of a model trained by ``defdistill train``."""

from __future__ import annotations

import json

import pytest

from defdistill.cli import main


def test_evaluate_reports_the_accuracy_of_a_trained_model(small_model, capsys):
    """The model learnt (trained for seconds), and evaluate agrees with what train measured."""
    capsys.readouterr()
    assert main(["evaluate", "--model", str(small_model), "--limit-test", "300", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "on 300 mnist test images" in text
    accuracy = float(text.split("accuracy")[1].split("%")[0])
    # it learnt (chance is 10 %); the exact figure moves by a few points with the BLAS and
    # the thread count (78.7 % on one thread of an AMD EPYC, above 80 % on two)
    assert accuracy > 50.0
    trained = json.loads((small_model / "meta.json").read_text())["test_accuracy"]
    assert accuracy == pytest.approx(100 * trained, abs=0.01)
