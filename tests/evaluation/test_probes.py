"""The structure-blind probes, alone and inside the audit, on tiny defended models."""

import pytest
import torch
from torch import nn

from defdistill.defences import BitDepthReduction, GaussianNoise, KWinnersTakeAll, Preprocessed
from defdistill.evaluation import probes
from defdistill.evaluation.audit import audit
from defdistill.names import AttackId, CheckId

AUDIT = {"samples": 30, "jsma_samples": 3, "jsma_gamma": 0.5, "cw_iterations": 50, "cw_search_steps": 2,
         "apgd_steps": 30, "square_queries": 300}  # fmt: skip


def _flagged(report, severity="critical"):
    return {f.check for f in report.findings if f.severity.value == severity}


def test_eot_samples_follow_the_measured_gradient_agreement():
    assert probes.eot_samples(1.0) == probes.MIN_EOT_SAMPLES
    # one draw agreeing to cosine 0.5: 9 draws bring two estimates to 0.9
    assert probes.eot_samples(0.5) == 9
    assert probes.eot_samples(0.01) == probes.MAX_EOT_SAMPLES
    assert probes.eot_samples(float("nan")) == probes.MAX_EOT_SAMPLES


def test_probes_tell_deterministic_random_and_quantised_models_apart(trained):
    model, ds = trained
    x, y = ds.x_test[:40], ds.y_test[:40]
    torch.manual_seed(0)
    plain = probes.randomness(model, x)
    noisy = probes.randomness(Preprocessed(GaussianNoise(0.3), model), x)
    assert plain == {"random_fraction": 0.0, "unstable_fraction": 0.0}
    assert noisy["random_fraction"] == 1.0
    assert probes.gradient_cosine(model, x, y) == pytest.approx(1.0)
    assert probes.gradient_cosine(Preprocessed(GaussianNoise(0.3), model), x, y) < probes.STOCHASTIC_COSINE
    healthy = probes.gradient_health(model, x, y, eps=0.3)
    assert healthy["unavailable"] == 0.0 and healthy["shattered"] < probes.SHATTERED_FRACTION
    quantised = probes.gradient_health(Preprocessed(BitDepthReduction(3), model), x, y, eps=0.3)
    assert quantised["unavailable"] > 0.9


def test_shattered_gradients_are_found_by_finite_differences():
    """A step function of the input has a zero-free but meaningless gradient: a straight-through
    rounding whose backward pass is scaled the wrong way round."""

    class Backwards(nn.Module):
        def forward(self, x):
            return -x + (torch.round(4 * x) / 4 + x).detach()  # forward: rounded; backward: -identity

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    model = nn.Sequential(Backwards(), net)
    x = torch.rand(30, 1, 4, 4)
    y = model(x).argmax(1)
    health = probes.gradient_health(model, x, y, eps=0.3)
    assert health["unavailable"] == 0.0
    assert health["shattered"] > 0.5


def test_the_audit_calls_a_quantised_model_masking_without_over_reporting_it(trained):
    model, ds = trained
    report = audit(Preprocessed(BitDepthReduction(3), model).eval(), ds.x_test, ds.y_test, **AUDIT)
    assert report.verdict.masking, report.verdict.text
    assert CheckId.UNAVAILABLE_GRADIENTS in _flagged(report)
    assert report.battery[AttackId.PGD_CE_F].success.rate == 0.0  # its gradients cannot move it
    assert report.battery.get(AttackId.SURROGATE_TRANSFER) is not None  # so attacks without them run
    smoothed = report.battery[AttackId.SMOOTHED_APGD_CE]
    assert smoothed.details["estimator"] == "NES"  # no gradient to average: estimated from forward passes
    # the quantised model is no more robust than the network inside it (60 % of 30 here)
    plain = audit(model, ds.x_test, ds.y_test, **AUDIT).battery.robust_accuracy().rate
    assert report.battery.robust_accuracy().rate <= plain + 0.1


def test_the_audit_attacks_exactly_the_given_images_and_lets_its_surrogate_learn_on_the_pool(trained):
    """``pool`` (the audit panel's way to audit the images it drew): every image of ``x`` is
    attacked, none of the pool, and the surrogate learns on both."""
    model, ds = trained
    quantised = Preprocessed(BitDepthReduction(3), model).eval()
    settings = {**AUDIT, "samples": 30}
    report = audit(quantised, ds.x_test[:30], ds.y_test[:30], pool=ds.x_test[30:], **settings)
    assert sorted(report.config["sample_indices"]) == list(range(30))
    assert report.battery.robust_accuracy().n == 30  # unconditional over exactly these images
    together = min(len(ds.x_test), probes.SURROGATE_POOL)
    assert together > 30
    assert report.battery[AttackId.SURROGATE_TRANSFER].details["surrogate_images"] == together
    alone = audit(quantised, ds.x_test[:30], ds.y_test[:30], **settings)
    assert alone.battery[AttackId.SURROGATE_TRANSFER].details["surrogate_images"] == 30


def test_the_audit_attacks_a_noisy_model_through_the_expectation(trained):
    model, ds = trained
    torch.manual_seed(0)
    report = audit(Preprocessed(GaussianNoise(0.3), model).eval(), ds.x_test, ds.y_test, **AUDIT)
    assert report.verdict.masking, report.verdict.text
    assert CheckId.STOCHASTIC_GRADIENTS in _flagged(report)
    assert CheckId.UNSTABLE_PREDICTIONS in _flagged(report, "warning") | _flagged(report, "ok")
    eot = report.battery[AttackId.EOT_APGD_CE]
    assert eot.details["eot_samples"] >= probes.MIN_EOT_SAMPLES
    assert 0.0 <= eot.details["vote_accuracy"] <= 1.0
    assert report.config["probes"]["random_fraction"] == 1.0


def test_the_audit_does_not_call_an_honest_model_masking(trained):
    model, ds = trained
    report = audit(model, ds.x_test, ds.y_test, **AUDIT)
    assert not report.verdict.masking, report.verdict.text
    probe_checks = {CheckId.STOCHASTIC_GRADIENTS, CheckId.UNAVAILABLE_GRADIENTS, CheckId.SHATTERED_GRADIENTS}
    assert probe_checks.isdisjoint(_flagged(report))
    probe_attacks = {AttackId.EOT_APGD_CE, AttackId.SMOOTHED_APGD_CE, AttackId.SURROGATE_TRANSFER}
    assert probe_attacks.isdisjoint(report.battery.attacks)  # nothing to work around


def test_kwta_model_is_flagged_as_shattered():
    """k-WTA (Xiao et al. 2020): ranks swap under tiny input changes, the gradient lies."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 32, 3), KWinnersTakeAll(0.1), nn.Flatten(), nn.Linear(32 * 14 * 14, 3))
    x = torch.rand(40, 1, 16, 16)
    y = model(x).argmax(1)
    assert probes.gradient_health(model, x, y, eps=0.3)["shattered"] > probes.SHATTERED_FRACTION


class OutsideAutograd(nn.Module):
    """A preprocessing step computed outside autograd (as a NumPy or JPEG step would be)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.round(x * 7) / 7


def test_the_audit_of_a_model_without_input_gradients_says_masking_instead_of_failing(trained):
    model, ds = trained
    report = audit(Preprocessed(OutsideAutograd(), model).eval(), ds.x_test, ds.y_test, **AUDIT)
    assert report.verdict.masking, report.verdict.text
    assert CheckId.UNAVAILABLE_GRADIENTS in _flagged(report)
    assert report.battery.get(AttackId.PGD_CE_F) is None  # no gradient attack could run
    expected = {AttackId.SQUARE, AttackId.SMOOTHED_APGD_CE, AttackId.SURROGATE_TRANSFER}
    assert expected <= set(report.battery.attacks)
    # the attacks that need no gradient of the model still find what the plain network gives up
    plain = audit(model, ds.x_test, ds.y_test, **AUDIT).battery.robust_accuracy().rate
    assert report.battery.robust_accuracy().rate <= plain + 0.1


def test_a_gradient_check_is_critical_only_when_its_interval_lies_above_the_threshold():
    """2 of 8 inputs (25 %, Wilson [7, 59] %) is what a ReLU network's kinks give a small audit
    (the CI's 1-epoch baseline, trained channels-last); 93 of 98 (k-WTA on the audit panel) is
    established. The thresholds are the rates the interval must exceed."""
    assert not probes.established_above(2, 8, probes.SHATTERED_FRACTION)
    assert probes.established_above(93, 98, probes.SHATTERED_FRACTION)
    # 40 of 100: lower bound 30.9 % > 20 %; 25 of 100: lower bound 17.5 % is not
    assert probes.established_above(40, 100, 0.2) and not probes.established_above(25, 100, 0.2)
    assert not probes.established_above(0, 0, 0.2)
