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
from defdistill.evaluation.stats import Proportion
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
                                         robust_accuracy=Proportion.of(3, 10),
                                         robust_accuracy_conditional=Proportion.of(3, 8)))  # fmt: skip
    by_check = {f.check: f for f in findings}
    assert set(by_check) == {CheckId.PROBS_VS_LOGITS, CheckId.MORE_EFFORT}
    assert by_check[CheckId.PROBS_VS_LOGITS].attacks == (AttackId.JSMA_F, AttackId.JSMA_Z)
    assert by_check[CheckId.PROBS_VS_LOGITS].severity is Severity.CRITICAL and decision.masking
    effort = by_check[CheckId.MORE_EFFORT]
    assert effort.severity is Severity.WARNING and effort.value == 0.2
    assert effort.to_dict()["attacks"] == ["apgd-ce", "apgd-ce-effort"]
    _, unmasked = assess(Evidence(jsma_f=0.9, jsma_z=0.9, robust_accuracy=Proportion.of(3, 10),
                                  robust_accuracy_conditional=Proportion.of(3, 8)))  # fmt: skip
    assert not unmasked.masking
    assert "30.0 % [10.8, 60.3] of 10 images (37.5 % " in unmasked.text


def test_the_verdict_states_robust_accuracy_with_its_sample_size_and_wilson_interval():
    # 18 of 20 by hand: p = 0.9, z = 1.96, centre (p + z²/2n) / (1 + z²/n) = 0.8355, half-width
    # z √(p(1-p)/n + z²/4n²) / (1 + z²/n) = 0.1366: [69.9 %, 97.2 %]; 18 of 19: [75.4 %, 99.1 %]
    found = verdict([], Proportion.of(18, 20), Proportion.of(18, 19))
    assert not found.masking
    assert found.text == ("no sign of gradient masking; robust accuracy at the standard budget (per image, "
                          "no attack fooled it): 90.0 % [69.9, 97.2] of 20 images "
                          "(94.7 % [75.4, 99.1] of the 19 correctly classified)")
    # without the conditional figure, and with nothing attacked
    assert verdict([], Proportion.of(20, 20)).text.endswith(": 100.0 % [83.9, 100.0] of 20 images")
    assert verdict([], Proportion.of(0, 0)).text.endswith(": – (no image) of 0 images")


def test_a_check_never_rounds_a_share_to_all_or_none():
    """996 zero Jacobians of 1,000 (the paper run's T = 100 student) were written "100%"."""
    assert check_zero_gradients(0.996).message.startswith("99.6% of inputs")
    assert "on 0.4% of inputs" in check_softmax_saturation(0.004).message
    assert check_zero_gradients(1.0).message.startswith("100% of inputs")
