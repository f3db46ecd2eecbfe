"""The paper's protocol: targeted attempts, the success rate, and rho_adv (mean minimum L0)."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

from defdistill.attacks import JSMA, Attack
from defdistill.evaluation.protocol import all_targets, paper_success_rate, rho_adv
from defdistill.inference import predict


def test_all_targets_expands_every_other_class() -> None:
    x = torch.arange(3.0)[:, None]
    y = torch.tensor([0, 3, 1])
    xr, yr, t = all_targets(x, y, 4)
    assert xr[:, 0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert yr.tolist() == [0, 0, 0, 3, 3, 3, 1, 1, 1]
    assert t.tolist() == [1, 2, 3, 0, 1, 2, 2, 3, 0]
    assert bool((t != yr).all())
    with pytest.raises(ValueError):
        all_targets(x, y, 1)


class FakeAttack(Attack):
    """Sets features ``0 .. target`` to 1.0, which makes :class:`Lookup` predict ``target``."""

    uses_gradients = False  # it never differentiates the model (Lookup has no input gradient)

    requires_target = True

    def _run(self, model, x, y, target, generator):
        flat = x.flatten(1).clone()
        cols = torch.arange(flat.shape[1])[None, :]
        flat[cols <= target[:, None]] = 1.0
        return flat.view_as(x), {}


class Lookup(nn.Module):
    """Predicts (number of leading features equal to 1) - 1, else round(last feature)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.k = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        ones = (flat[:, : self.k] == 1.0).float()
        count = ones.cumprod(dim=1).sum(dim=1).long()
        cls = torch.where(count > 0, count - 1, flat[:, -1].round().long())
        return torch.nn.functional.one_hot(cls, self.k).float() * 10


def test_paper_success_rate_protocol() -> None:
    k = 5
    model = Lookup(k)
    x = torch.zeros(7, 10)
    x[[1, 3, 6], -1] = 1.0  # clean predictions: class round(x[-1]) in {0, 1}
    y = predict(model, x)
    assert y.tolist() == [0, 1, 0, 1, 0, 0, 1]
    y[5] = 3  # sample 5 is misclassified and must not be attacked
    report = paper_success_rate(model, FakeAttack(), x, y, targets="all")
    n_correct = 6
    assert report.attempts == n_correct * (k - 1)
    assert report.correct.tolist() == [True] * 5 + [False, True]
    assert 5 not in report.sample_index.tolist()
    # FakeAttack puts ones on features 0..t, so the model predicts t: every attempt succeeds.
    assert report.successes == report.attempts and report.success_rate == 1.0
    expected_frac = (report.target.float() + 1) / 10
    torch.testing.assert_close(report.l0_fraction, expected_frac)
    # min over the targets != y of (t + 1) / 10: t = 0 unless y = 0, then t = 1.
    ys = y[report.correct]
    expected_min = torch.where(ys == 0, 0.2, 0.1)
    torch.testing.assert_close(report.min_l0_fraction, expected_min)
    assert report.rho_adv_percent == pytest.approx(100 * float(expected_min.mean()))
    assert report.samples_without_success == 0
    assert report.mean_l0_percent == pytest.approx(100 * float(expected_frac.mean()))
    nxt = paper_success_rate(model, FakeAttack(), x, y, num_classes=k, targets="next")
    assert nxt.attempts == n_correct
    assert torch.equal(nxt.target, (y[report.correct] + 1) % k)
    rnd = paper_success_rate(model, FakeAttack(), x, y, targets="random", seed=3)
    assert rnd.attempts == n_correct and bool((rnd.target != y[report.correct]).all())
    with pytest.raises(ValueError):
        paper_success_rate(model, FakeAttack(), x, y, targets="some")


def test_paper_success_rate_with_jsma_counts_failures() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 4)).eval()
    x = torch.rand(20, 12)
    y = predict(model, x)
    y[:3] = (y[:3] + 1) % 4  # three misclassified samples are not attacked
    report = paper_success_rate(model, JSMA(gamma=0.2), x, y)
    assert report.attempts == 17 * 3
    pred = predict(model, report.x_adv)
    assert torch.equal(report.success, pred == report.target)
    rob = report.robustness(censored=False)
    no_success = torch.isnan(report.min_l0_fraction)
    assert rob.samples_without_success == int(no_success.sum())
    if bool((~no_success).any()):
        assert rob.value == pytest.approx(100 * float(report.min_l0_fraction[~no_success].mean()))
    # default: never-broken samples count at the largest L0 JSMA can reach, which is
    # below gamma (pairs of features): here 2 * floor(floor(0.2 * n) / 2) of n features
    n = report.x[0].numel()
    cap = 2 * (int(0.2 * n) // 2) / n
    assert report.budget_fraction == pytest.approx(cap) and cap < 0.2
    censored = torch.where(no_success, torch.full_like(report.min_l0_fraction, cap),
                           report.min_l0_fraction)  # fmt: skip
    assert report.rho_adv_percent == pytest.approx(100 * float(censored.double().mean()))
    assert float(report.l0_fraction.max()) <= cap + 1e-6


def test_rho_adv_ignores_and_counts_failed_samples() -> None:
    rob = rho_adv(torch.tensor([1.0, float("nan"), 3.0]))
    assert rob.value == 2.0 and rob.samples == 3 and rob.samples_without_success == 1
    censored = rho_adv(torch.tensor([1.0, float("nan"), 3.0]), budget=14.5)
    assert censored.value == pytest.approx((1.0 + 14.5 + 3.0) / 3)
    assert censored.samples_without_success == 1
    assert math.isnan(rho_adv(torch.tensor([float("nan")])).value)


class Unmoved(Attack):
    """A targeted attack that never changes anything: no attempt succeeds."""

    uses_gradients = False

    requires_target = True

    def _run(self, model, x, y, target, generator):
        return x.clone(), {}


def test_no_success_is_logged_and_written_without_nan(caplog) -> None:
    """'mean L0 – (no success)' in the log, not 'nan %'; JSON null, not NaN."""
    from defdistill.evaluation.battery import jsma
    from defdistill.io import json_bytes

    model = Lookup(5)
    x = torch.zeros(4, 10)
    y = predict(model, x)
    with caplog.at_level(logging.INFO, logger="defdistill.evaluation.protocol"):
        report = paper_success_rate(model, Unmoved(), x, y)
    assert report.attempts == 16 and report.successes == 0
    assert caplog.messages == ["Unmoved: 0/16 attempts successful (0.0 %), mean L0 – (no success)"]
    assert "nan" not in report.describe()
    # a model whose output ignores its input: JSMA finds nothing to change
    constant = nn.Sequential(nn.Flatten(), nn.Linear(10, 3))
    with torch.no_grad():
        constant[1].weight.zero_()
        constant[1].bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    outcome = jsma()(constant, torch.rand(3, 1, 2, 5), torch.zeros(3, dtype=torch.long))
    assert outcome.attempts == 6 and outcome.successes == 0 and not outcome.fooled.any()
    summary = outcome.details
    assert summary["mean_l0_percent"] is None and summary["rho_adv_successful_percent"] is None
    written = json_bytes(summary).decode()
    assert "NaN" not in written and '"mean_l0_percent": null' in written


def test_describe_with_successes_and_without_attempts() -> None:
    model = Lookup(5)
    x = torch.zeros(7, 10)
    y = predict(model, x)
    report = paper_success_rate(model, FakeAttack(), x, y, targets="next")
    assert report.describe() == "7/7 attempts successful (100.0 %), mean L0 20.00 %"
    y_wrong = (y + 1) % 5
    none = paper_success_rate(model, FakeAttack(), x, y_wrong, num_classes=5)
    assert none.attempts == 0 and "nan" not in none.describe()
