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
from defdistill.inference import evaluate


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


def test_findings_carry_their_check_and_the_attacks_they_compare():
    from defdistill.evaluation.checks import Evidence, assess
    from defdistill.names import AttackId, CheckId

    findings, decision = assess(Evidence(jsma_f=0.0, jsma_z=0.9, effort_gain=0.2, effort_factor=4,
                                         robust_accuracy=0.3, robust_accuracy_conditional=0.4))  # fmt: skip
    by_check = {f.check: f for f in findings}
    assert set(by_check) == {CheckId.PROBS_VS_LOGITS, CheckId.MORE_EFFORT}
    assert by_check[CheckId.PROBS_VS_LOGITS].attacks == (AttackId.JSMA_F, AttackId.JSMA_Z)
    assert by_check[CheckId.PROBS_VS_LOGITS].severity is Severity.CRITICAL and decision.masking
    effort = by_check[CheckId.MORE_EFFORT]
    assert effort.severity is Severity.WARNING and effort.value == 0.2
    assert effort.to_dict()["attacks"] == ["apgd-ce", "apgd-ce-effort"]
    _, unmasked = assess(Evidence(jsma_f=0.9, jsma_z=0.9, robust_accuracy=0.3,
                                  robust_accuracy_conditional=0.4))  # fmt: skip
    assert not unmasked.masking
