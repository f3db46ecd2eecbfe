"""The audit's verdict on models built to mask gradients or not, and its agreement with the sweep."""

import pytest

from defdistill.evaluation.audit import audit
from defdistill.evaluation.checks import assess


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
    attacks = report.attacks
    # the paper's attack fails, the adaptive ones succeed on the same model
    assert attacks["JSMA on F (gamma 50%)"]["success_rate"] < 0.2
    assert attacks["JSMA on Z (gamma 50%)"]["success_rate"] > 0.8
    cw, cw_plain = attacks["C&W L2 (minimum L2)"], plain.attacks["C&W L2 (minimum L2)"]
    assert cw["success_rate"] > 0.95
    # the decision boundary did not move: the masked model is as close as the plain one
    assert cw["mean_l2"] == pytest.approx(cw_plain["mean_l2"], rel=0.05)
    json_ready = report.to_dict()
    assert {f["check"] for f in json_ready["findings"]} >= {"zero_gradients", "probs_vs_logits"}


def test_audit_and_reproduce_give_the_same_verdict(trained, masked):
    """One masking rule: ``defdistill audit`` and the reproduction's per-model checks
    (``sweep.evidence`` on what ``measure`` returns) decide alike on the same models."""
    from defdistill.experiments import sweep
    from defdistill.experiments.profiles import Profile
    from defdistill.experiments.tasks import measure
    from defdistill.training.loop import evaluate

    model, ds = trained
    profile = Profile("agree", (1000.0,), epochs=1, attack_samples=5, gradient_samples=30,
                      adaptive_samples=30, cw_iterations=100, cw_search_steps=3)  # fmt: skip
    for candidate, temperature, expected in ((model, None, False), (masked, 1000.0, True)):
        row = {**measure(candidate, model, ds.x_test, ds.y_test, profile, temperature, seed=0),
               "temperature": temperature, "distilled": temperature is not None,
               "saturated_fraction": evaluate(candidate, ds.x_test, ds.y_test)["saturated_fraction"]}
        _, reproduced = assess(sweep.evidence(row))
        audited = audit(candidate, ds.x_test, ds.y_test, temperature=temperature or 1.0,
                        reference=model if temperature else None, samples=30, jsma_samples=5,
                        cw_iterations=100, cw_search_steps=3, apgd_steps=30,
                        square_queries=300).verdict  # fmt: skip
        assert reproduced.masking is audited.masking is expected, (reproduced.text, audited.text)
