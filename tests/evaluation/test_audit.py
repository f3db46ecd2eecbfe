"""The audit's verdict on models built to mask gradients or not, and its agreement with the sweep."""

import pytest

from defdistill.evaluation.audit import audit
from defdistill.evaluation.checks import assess
from defdistill.evaluation.samples import random_order
from defdistill.names import AttackId, CheckId


def test_audit_verdicts(trained, masked):
    model, ds = trained
    # 64 features: gamma 0.5 lets JSMA draw another class's square
    kwargs = {"samples": 30, "jsma_samples": 5, "jsma_gamma": 0.5, "cw_iterations": 200,
              "cw_search_steps": 5, "apgd_steps": 30, "square_queries": 300}  # fmt: skip
    plain = audit(model, ds.x_test, ds.y_test, **kwargs)
    assert not plain.verdict.masking, plain.verdict.text
    report = audit(masked, ds.x_test, ds.y_test, temperature=1000.0, reference=model, **kwargs)
    assert report.verdict.masking
    assert "gradient masking" in report.verdict.text
    attacks = report.battery
    # the paper's attack fails, the adaptive ones succeed on the same model
    assert attacks[AttackId.JSMA_F].success.rate < 0.2
    assert attacks[AttackId.JSMA_Z].success.rate > 0.8
    cw, cw_plain = attacks[AttackId.CW_L2], plain.battery[AttackId.CW_L2]
    assert cw.success.rate > 0.95
    # the decision boundary did not move: the masked model is as close as the plain one
    assert cw.details["mean_l2"] == pytest.approx(cw_plain.details["mean_l2"], rel=0.05)
    flagged = {(f.check, f.attacks) for f in report.findings if f.flagged}
    assert (CheckId.ZERO_GRADIENTS, ()) in flagged
    assert (CheckId.PROBS_VS_LOGITS, (AttackId.JSMA_F, AttackId.JSMA_Z)) in flagged
    json_ready = report.to_dict()
    assert {f["check"] for f in json_ready["findings"]} >= {"zero_gradients", "probs_vs_logits"}
    assert set(json_ready["attacks"]) >= {"pgd-ce-f", "pgd-ce-zt", "apgd-ce", "square", "transfer", "cw-l2"}
    # the worst case per image is at most every counted attack's accuracy
    robust = report.battery.robust_accuracy_conditional().rate
    assert all(robust <= a.accuracy.rate for a in report.battery.worst_case_attacks())
    # the images: drawn at random with the seed, whatever the model, the same for both models
    drawn = random_order(len(ds.x_test), 0)[:30].tolist()
    assert plain.config["sample_indices"] == report.config["sample_indices"] == drawn
    assert drawn != sorted(drawn) and plain.config["sample_seed"] == 0 and plain.config["drawn"] == 30
    # the attacked images are the drawn ones the model classifies correctly; the others count as fooled
    assert plain.config["samples"] == int(plain.battery.clean.sum())
    assert json_ready["config"]["sample_indices"] == drawn


def test_audit_and_reproduce_give_the_same_verdict(trained, masked):
    """One masking rule: ``defdistill audit`` and the reproduction's per-model checks
    (the evidence of the battery ``measure`` runs) decide alike on the same models."""
    from defdistill.evaluation.battery import BatteryResult
    from defdistill.experiments.profiles import Profile
    from defdistill.experiments.tasks import measure
    from defdistill.inference import evaluate

    model, ds = trained
    profile = Profile("agree", (1000.0,), epochs=1, attack_samples=5, gradient_samples=30,
                      adaptive_samples=30, cw_iterations=100, cw_search_steps=3)  # fmt: skip
    for candidate, temperature, expected in ((model, None, False), (masked, 1000.0, True)):
        measured = measure(candidate, model, ds.x_test, ds.y_test, profile, temperature, seed=0)
        battery = BatteryResult.from_dict(measured)
        _, reproduced = assess(battery.evidence(
            zero_gradient_fraction=measured["gradients"]["zero_fraction"],
            saturated_fraction=evaluate(candidate, ds.x_test, ds.y_test)["saturated_fraction"]))
        audited = audit(candidate, ds.x_test, ds.y_test, temperature=temperature or 1.0,
                        reference=model if temperature else None, samples=30, jsma_samples=5,
                        cw_iterations=100, cw_search_steps=3, apgd_steps=30,
                        square_queries=300).verdict  # fmt: skip
        assert reproduced.masking is audited.masking is expected, (reproduced.text, audited.text)
