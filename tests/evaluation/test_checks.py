"""Gradient-masking checks and the audit verdict on models built to mask or not."""

import pytest
import torch
from synthetic import make_synthetic
from torch import nn

from defdistill.evaluation.audit import audit
from defdistill.evaluation.checks import (
    Severity,
    assess,
    check_outputs_are_logits,
    check_probs_vs_logits,
    check_softmax_saturation,
    check_transfer_vs_whitebox,
    check_zero_gradients,
    verdict,
)
from defdistill.evaluation.gradients import zero_gradient_fraction


class ScaledLogits(nn.Module):
    """Masks gradients by construction: logits x 1000 saturate the softmax in float32,
    exactly what defensive distillation does to its deployed network."""

    def __init__(self, base: nn.Module, scale: float = 1000.0) -> None:
        super().__init__()
        self.base, self.scale = base, scale

    def forward(self, x):
        return self.base(x) * self.scale


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    ds = make_synthetic(n_train=600, n_test=200, num_classes=3, size=8, seed=2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = nn.functional.cross_entropy(model(ds.x_train), ds.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert (model(ds.x_test).argmax(1) == ds.y_test).float().mean() > 0.95
    return model, ds


def test_masking_model_is_flagged_and_plain_model_is_not(trained):
    model, ds = trained
    masked = ScaledLogits(model).eval()
    x, y = ds.x_test[:64], ds.y_test[:64]
    from defdistill.training.loop import evaluate

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


def test_audit_verdicts(trained):
    model, ds = trained
    masked = ScaledLogits(model).eval()
    # 64 features: gamma 0.5 lets JSMA draw another class's square
    kwargs = {"samples": 30, "jsma_samples": 5, "jsma_gamma": 0.5, "cw_iterations": 200,
              "cw_search_steps": 5}  # fmt: skip
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


def test_audit_and_reproduce_give_the_same_verdict(trained):
    """One masking rule: ``defdistill audit`` and the reproduction's per-model checks
    (``sweep.evidence`` on what ``measure`` returns) decide alike on the same models."""
    from defdistill.experiments import sweep
    from defdistill.experiments.profiles import Profile
    from defdistill.experiments.tasks import measure
    from defdistill.training.loop import evaluate

    model, ds = trained
    masked = ScaledLogits(model).eval()
    profile = Profile("agree", (1000.0,), epochs=1, attack_samples=5, gradient_samples=30,
                      adaptive_samples=30, cw_iterations=100, cw_search_steps=3)  # fmt: skip
    for candidate, temperature, expected in ((model, None, False), (masked, 1000.0, True)):
        row = {**measure(candidate, model, ds.x_test, ds.y_test, profile, temperature, seed=0),
               "temperature": temperature, "distilled": temperature is not None,
               "saturated_fraction": evaluate(candidate, ds.x_test, ds.y_test)["saturated_fraction"]}
        _, reproduced = assess(sweep.evidence(row))
        audited = audit(candidate, ds.x_test, ds.y_test, temperature=temperature or 1.0,
                        reference=model if temperature else None, samples=30, jsma_samples=5,
                        cw_iterations=100, cw_search_steps=3).verdict  # fmt: skip
        assert reproduced.masking is audited.masking is expected, (reproduced.text, audited.text)
