"""JSMA: the chosen pair against a pure-Python brute force, the L0 budget, the bounds."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from attack_helpers import mlp

from defdistill.attacks import JSMA
from defdistill.attacks.jsma import select_pairs

N_FEATURES = 12


def brute_force_pair(alpha: list[float], beta: list[float], domain: list[bool], theta: float):
    """Literal saliency map over all pairs p < q of the search domain (None if no pair)."""
    best, arg = 0.0, None
    for p, q in itertools.combinations(range(len(alpha)), 2):
        if not (domain[p] and domain[q]):
            continue
        a, b = alpha[p] + alpha[q], beta[p] + beta[q]
        if theta > 0 and a > 0 and b < 0:
            score = a * abs(b)
        elif theta < 0 and a < 0 and b > 0:
            score = abs(a) * b
        else:
            continue
        if score > best:
            best, arg = score, {p, q}
    return arg


def reference_derivatives(model, x, t, on):
    """dF_t/dx and d(sum_{j != t} F_j)/dx with plain autograd, in float64."""
    m64 = copy.deepcopy(model).double().eval()
    xx = x.double().clone().requires_grad_(True)
    z = m64(xx)
    out = torch.softmax(z, dim=1) if on == "probs" else z
    (alpha,) = torch.autograd.grad(out[0, t], xx, retain_graph=True)
    if on == "target_logit":  # ART's saliency: the target logit alone
        return alpha.flatten().tolist(), (-alpha).flatten().tolist()
    others = [j for j in range(out.shape[1]) if j != t]
    (beta,) = torch.autograd.grad(out[0, others].sum(), xx)
    return alpha.flatten().tolist(), beta.flatten().tolist()


@pytest.mark.parametrize("on", ["probs", "logits", "target_logit"])
@pytest.mark.parametrize("theta", [1.0, -1.0])
@pytest.mark.parametrize("seed", range(6))
def test_first_pair_matches_brute_force(on: str, theta: float, seed: int) -> None:
    model = mlp(N_FEATURES, 4, hidden=10, seed=seed).eval()
    g = torch.Generator().manual_seed(100 + seed)
    x = 0.1 + 0.8 * torch.rand(8, N_FEATURES, generator=g)
    x[:, 0] = 1.0  # never in the domain for theta = +1
    x[:, 1] = 0.0  # never in the domain for theta = -1
    with torch.no_grad():
        pred = model(x).argmax(1)
    target = (pred + 1 + torch.randint(0, 3, (8,), generator=g)) % 4
    # gamma allows exactly one pair: floor(gamma * n) = 2.
    res = JSMA(theta=theta, gamma=2.5 / N_FEATURES, on=on)(model, x, pred, target)
    bound = 1.0 if theta > 0 else 0.0
    n_checked = 0
    for i in range(8):
        domain = (x[i] < 1).tolist() if theta > 0 else (x[i] > 0).tolist()
        alpha, beta = reference_derivatives(model, x[i : i + 1], int(target[i]), on)
        expected = brute_force_pair(alpha, beta, domain, theta)
        changed = set((res.x_adv[i] != x[i]).nonzero().flatten().tolist())
        if expected is None:
            assert changed == set()
            assert int(res.info["iterations"][i]) == 0
        else:
            n_checked += 1
            assert changed == expected, (i, alpha, beta)
            assert torch.all(res.x_adv[i, sorted(changed)] == bound)
            assert int(res.info["iterations"][i]) == 1
    assert n_checked >= 4  # the comparison is not vacuous


@pytest.mark.parametrize("mode", ["independent", "probs_like", "correlated", "anti"])
@pytest.mark.parametrize("top", [2, 4, 32])
def test_select_pairs_matches_brute_force(mode: str, top: int) -> None:
    g = torch.Generator().manual_seed(hash((mode, top)) % 1000)
    for n in (2, 3, 7, 30):
        a = torch.randn(5, n, generator=g)
        noise = torch.randn(5, n, generator=g)
        b = {
            "independent": noise,
            "probs_like": -a + 1e-3 * noise,
            "correlated": 0.5 * a + 0.1 * noise,
            "anti": a + 0.1 * noise,
        }[mode]
        domain = torch.rand(5, n, generator=g) > 0.25
        for theta in (1.0, -1.0):
            p, q, found = select_pairs(a, b, domain, theta, pair_chunk=5, top=top)
            for r in range(5):
                ref = brute_force_pair(a[r].tolist(), b[r].tolist(), domain[r].tolist(), theta)
                got = {int(p[r]), int(q[r])} if bool(found[r]) else None
                assert got == ref, (mode, n, theta, r)


def test_select_pairs_survives_tiny_gradients() -> None:
    """Products of 1e-30 gradients underflow in float32; the choice must not change."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 20, generator=g), torch.randn(4, 20, generator=g)
    domain = torch.ones(4, 20, dtype=torch.bool)
    p1, q1, f1 = select_pairs(a, b, domain, 1.0)
    p2, q2, f2 = select_pairs(a * 1e-30, b * 1e-30, domain, 1.0)
    assert torch.equal(f1, f2) and bool(f1.any())
    assert torch.equal(p1, p2) and torch.equal(q1, q2)


@pytest.mark.parametrize("gamma", [0.1, 0.3, 0.55])
@pytest.mark.parametrize("theta", [1.0, -1.0])
def test_l0_budget_bounds_and_success(gamma: float, theta: float) -> None:
    n_features = 20
    model = mlp(n_features, 5, hidden=12, seed=1).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(40, n_features, generator=g)
    x[x < 0.1] = 0.0
    y = model(x).argmax(1).detach()
    target = (y + 1 + torch.randint(0, 4, (40,), generator=g)) % 5
    res = JSMA(theta=theta, gamma=gamma)(model, x, y, target)
    changed = (res.x_adv != x).sum(1)
    assert torch.equal(changed, res.info["features_changed"])
    assert int(changed.max()) <= math.ceil(gamma * n_features)
    assert int(changed.max()) <= math.floor(gamma * n_features)
    moved = res.x_adv != x
    assert torch.all(res.x_adv[moved] == (1.0 if theta > 0 else 0.0))
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    assert torch.equal(res.success, pred == target)
    assert bool(res.success.any()) and not bool(res.success.all())  # both branches exercised
    # Every iteration changes exactly one new pair.
    assert torch.equal(res.info["iterations"] * 2, changed)


def test_probs_fail_and_logits_succeed_on_a_saturated_model(trained_mlp3) -> None:
    """Distillation in miniature: logits x1e3 make dF/dx exactly 0 on the probabilities."""
    model, x, y = trained_mlp3
    model = copy.deepcopy(model)
    with torch.no_grad():
        model[-1].weight.mul_(1e3)
        model[-1].bias.mul_(1e3)
        ok = model(x).argmax(1) == y
    x, y = x[ok][:30], y[ok][:30]
    target = (y + 1) % 3
    on_probs = JSMA(gamma=1.0)(model, x, y, target)
    assert not bool(on_probs.success.any())
    assert int(on_probs.info["features_changed"].max()) == 0
    for on in ("logits", "target_logit"):
        assert float(JSMA(gamma=1.0, on=on)(model, x, y, target).success.float().mean()) > 0.5, on


def test_shape_nchw_and_many_targets_in_one_batch() -> None:
    model = mlp(3 * 4 * 4, 10, seed=3).eval()
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(3)) * 0.9
    y = model(x).argmax(1).detach()
    xr, yr = x.repeat_interleave(9, 0), y.repeat_interleave(9)
    tr = (yr + torch.arange(1, 10).repeat(4)) % 10
    res = JSMA(gamma=0.3)(model, xr, yr, tr)
    single = JSMA(gamma=0.3)(model, xr[5:6], yr[5:6], tr[5:6])
    torch.testing.assert_close(res.x_adv[5:6], single.x_adv)
    assert res.x_adv.shape == xr.shape


def test_jsma_cap_is_what_the_attack_can_reach_on_mnist() -> None:
    """At the paper's gamma = 14.5 %, JSMA stops at 112 of 784 pixels (14.29 %), not 14.5 %."""
    assert JSMA().max_features_changed(784) == 112
    assert JSMA().max_features_changed(3072) == 444
    assert JSMA(gamma=0.5).max_features_changed(16) == 8
