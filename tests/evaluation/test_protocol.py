"""Metrics: distortions, the paper's success-rate protocol, rho_adv, gradient amplitude."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from defdistill.attacks import JSMA, Attack
from defdistill.evaluation.distances import l0, l0_fraction, l2, linf
from defdistill.evaluation.gradients import gradient_amplitude
from defdistill.evaluation.protocol import all_targets, paper_success_rate, rho_adv
from defdistill.inference import accuracy, predict


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_distortions_on_hand_built_tensors() -> None:
    delta = torch.tensor(
        [
            [[0.0, 0.5], [-0.25, 0.0]],
            [[0.0, 0.0], [0.0, 0.0]],
            [[1.0, -1.0], [1.0, -1e-7]],
        ]
    )
    assert l0(delta).tolist() == [2, 0, 4]
    assert l0(delta, tol=1e-6).tolist() == [2, 0, 3]
    torch.testing.assert_close(l0_fraction(delta), torch.tensor([0.5, 0.0, 1.0]))
    torch.testing.assert_close(l0_fraction(delta, tol=1e-6), torch.tensor([0.5, 0, 0.75]))
    torch.testing.assert_close(l2(delta), torch.tensor([math.sqrt(0.3125), 0.0, math.sqrt(3.0)]))
    torch.testing.assert_close(linf(delta), torch.tensor([0.5, 0.0, 1.0]))
    with pytest.raises(ValueError):
        l2(torch.zeros(3))


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


def test_jsma_cap_is_what_the_attack_can_reach_on_mnist() -> None:
    """At the paper's gamma = 14.5 %, JSMA stops at 112 of 784 pixels (14.29 %), not 14.5 %."""
    assert JSMA().max_features_changed(784) == 112
    assert JSMA().max_features_changed(3072) == 444
    assert JSMA(gamma=0.5).max_features_changed(16) == 8


def test_rho_adv_ignores_and_counts_failed_samples() -> None:
    rob = rho_adv(torch.tensor([1.0, float("nan"), 3.0]))
    assert rob.value == 2.0 and rob.samples == 3 and rob.samples_without_success == 1
    censored = rho_adv(torch.tensor([1.0, float("nan"), 3.0]), budget=14.5)
    assert censored.value == pytest.approx((1.0 + 14.5 + 3.0) / 3)
    assert censored.samples_without_success == 1
    assert math.isnan(rho_adv(torch.tensor([float("nan")])).value)


def test_gradient_amplitude_of_a_linear_model_matches_the_hand_jacobian() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(6, 3)
    model = nn.Sequential(nn.Flatten(), lin).train()
    x = torch.rand(5, 1, 2, 3)
    temperature = 2.5
    w, b = lin.weight.detach().double(), lin.bias.detach().double()
    s = torch.softmax((x.flatten(1).double() @ w.T + b) / temperature, dim=1)
    # dF_c/dx = F_c (w_c - sum_k F_k w_k) / T
    jac = s[:, :, None] * (w[None] - (s @ w)[:, None, :]) / temperature
    expected = jac.abs().mean(dim=(1, 2)).float()
    got = gradient_amplitude(model, x, temperature=temperature, batch_size=2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-9)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_gradient_amplitude_keeps_tiny_values_that_autograd_rounds_to_zero() -> None:
    """Saturated softmax: dF_c/dz_c = F_c (1 - F_c) must not be computed as 0."""
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[20.0, 0.0], [0.0, 0.0]]))
        lin.bias.zero_()
    x = torch.tensor([[1.0, 0.5]])
    got = float(gradient_amplitude(lin, x))
    # F_0 = 1 / (1 + e^-20): the Jacobian entries are F0 F1 * 20 (features 0) and 0.
    f1 = 1 / (1 + math.exp(20))
    assert got == pytest.approx((1 - f1) * f1 * 20 * 2 / 4, rel=1e-4)


def test_accuracy_restores_the_models_mode() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.9)).train()
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    assert accuracy(model, x, y) == pytest.approx(2 / 3)
    assert accuracy(model, x, y, batch_size=1) == pytest.approx(2 / 3)
    assert model.training


def test_log10_gradient_amplitude_matches_float64_and_does_not_underflow():
    from defdistill.evaluation.gradients import gradient_amplitude, log10_gradient_amplitude

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(),
                               torch.nn.Linear(8, 4)).double()  # fmt: skip
    x = torch.rand(6, 1, 3, 4, dtype=torch.float64)
    for t in (1.0, 3.0):
        exact = gradient_amplitude(base, x, t).log10()
        assert torch.allclose(log10_gradient_amplitude(base, x, t), exact, atol=1e-9)

    class Scaled(torch.nn.Module):  # logits x 1e5: float64 underflows, the log does not
        def forward(self, v):
            return base(v) * 1e5

    assert (gradient_amplitude(Scaled(), x) == 0).all()
    logs = log10_gradient_amplitude(Scaled(), x)
    assert torch.isfinite(logs).all() and (logs < -300).all()
    assert (logs < log10_gradient_amplitude(base, x) - 100).all()
