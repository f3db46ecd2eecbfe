"""Gradient-masking checks on models built to mask or not."""

from torch import nn

from defdistill.evaluation.checks import (
    Severity,
    check_outputs_are_logits,
    check_probs_vs_logits,
    check_softmax_saturation,
    check_transfer_vs_whitebox,
    check_zero_gradients,
    verdict,
)
from defdistill.evaluation.gradients import zero_gradient_fraction
from defdistill.training.loop import evaluate


def test_masking_model_is_flagged_and_plain_model_is_not(trained, masked):
    model, ds = trained
    x, y = ds.x_test[:64], ds.y_test[:64]
    assert zero_gradient_fraction(model, x) == 0.0
    assert zero_gradient_fraction(masked, x) > 0.5
    assert check_zero_gradients(zero_gradient_fraction(model, x)).severity is Severity.OK
    zero = check_zero_gradients(zero_gradient_fraction(masked, x))
    assert zero.severity is Severity.CRITICAL
    assert not check_softmax_saturation(evaluate(model, x, y)["saturated_fraction"]).flagged
    saturation = check_softmax_saturation(evaluate(masked, x, y)["saturated_fraction"])
    assert saturation.flagged and saturation.value > 0.5


def test_probability_outputs_are_flagged(trained):
    model, ds = trained
    probs = nn.Sequential(model, nn.Softmax(dim=1))
    assert check_outputs_are_logits(probs, ds.x_test[:16]).severity is Severity.CRITICAL
    assert not check_outputs_are_logits(model, ds.x_test[:16]).flagged


def test_gap_checks():
    assert check_probs_vs_logits(0.004, 0.97).flagged
    assert not check_probs_vs_logits(0.9, 0.95).flagged
    assert check_transfer_vs_whitebox(0.6, 0.1).flagged
    assert not check_transfer_vs_whitebox(0.5, 1.0).flagged
    assert verdict([check_probs_vs_logits(0.0, 1.0)]).masking
