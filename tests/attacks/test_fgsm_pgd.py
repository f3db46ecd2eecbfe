"""FGSM and PGD: exact steps on linear models, norm balls, eps = 0, temperature, early stop."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import blobs, linear, train

from defdistill.attacks import FGSM, PGD


def two_class_linear(scale: float = 1.0):
    model = linear(8, 2, seed=3).eval()
    with torch.no_grad():
        model[1].weight.mul_(scale)
        model[1].bias.mul_(scale)
    x = 0.25 + 0.5 * torch.rand(20, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def test_eps_zero_returns_input_exactly() -> None:
    model, x, y = two_class_linear()
    for attack in (
        FGSM(0.0),
        PGD(0.0),
        PGD(0.0, norm="l2"),
        PGD(0.0, random_start=False, loss="margin"),
    ):
        res = attack(model, x, y)
        assert torch.equal(res.x_adv, x), attack


def test_fgsm_is_the_signed_gradient_step_of_a_linear_model() -> None:
    """For 2 classes, d CE(y) / dx = (1 - p_y) (w_other - w_y): the sign is known."""
    model, x, y = two_class_linear()
    w = model[1].weight.detach()
    direction = torch.sign(w[1 - y] - w[y])
    eps = 0.05
    expected = (x + eps * direction).clamp(0, 1)
    for loss in ("ce", "margin"):
        torch.testing.assert_close(FGSM(eps, loss=loss)(model, x, y).x_adv, expected)
    # Targeted towards the other class: the same step (descend the loss of the target).
    torch.testing.assert_close(FGSM(eps)(model, x, y, target=1 - y).x_adv, expected)


def test_fgsm_respects_linf_ball_and_box() -> None:
    model, _, _ = two_class_linear()
    x = torch.rand(50, 8, generator=torch.Generator().manual_seed(0))
    x[:, 0] = 0.0
    x[:, 1] = 1.0
    y = torch.zeros(50, dtype=torch.long)
    res = FGSM(0.2)(model, x, y)
    delta = (res.x_adv - x).abs()
    assert float(delta.max()) <= 0.2 + 1e-6
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    # Interior coordinates with non-zero gradient move by exactly eps.
    interior = (x > 0.2) & (x < 0.8)
    torch.testing.assert_close(delta[interior], torch.full_like(delta[interior], 0.2))


def test_temperature_defeats_softmax_saturation() -> None:
    """Logits x1e4: the CE gradient at T = 1 is exactly 0 in float32, at T = 1e4 it is not."""
    model, x, y = two_class_linear(scale=1e4)
    plain = FGSM(0.05)(model, x, y)
    assert torch.equal(plain.x_adv, x)
    adaptive = FGSM(0.05, temperature=1e4)(model, x, y)
    assert float((adaptive.x_adv - x).abs().min()) == pytest.approx(0.05, abs=1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_stays_in_the_ball_and_the_box(norm: str, random_start: bool) -> None:
    model, _, _ = two_class_linear(scale=0.1)  # hard to attack: most samples run all steps
    x = torch.rand(64, 8, generator=torch.Generator().manual_seed(1))
    x[:8] = 0.0
    x[8:16] = 1.0
    y = torch.randint(0, 2, (64,), generator=torch.Generator().manual_seed(1))
    eps = 0.1 if norm == "linf" else 0.4
    res = PGD(eps, norm=norm, steps=10, step_size=eps / 2, random_start=random_start)(model, x, y)
    delta = (res.x_adv - x).flatten(1)
    dist = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert float(dist.max()) <= eps * (1 + 1e-5)
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    assert int(res.info["iterations"].max()) == 10


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_succeeds_iff_the_ball_reaches_the_boundary(norm: str) -> None:
    """Linear 2-class model: distance to the boundary is |margin| / ||w1 - w0||_dual."""
    model, x, y = two_class_linear()
    w = model[1].weight.detach()
    z = model(x).detach()
    margin = (z[:, 0] - z[:, 1]).abs()
    dual = 1 if norm == "linf" else 2
    dist = margin / torch.linalg.vector_norm(w[1] - w[0], ord=dual)
    # Points whose closest boundary point is inside the box (the box does not bind).
    for factor, expect in ((1.25, True), (0.8, False)):
        attack = PGD(
            float(dist.max() * factor) if expect else float(dist.min() * factor),
            norm=norm,
            steps=50,
            random_start=False,
        )
        res = attack(model, x, y)
        if expect:
            assert bool(res.success.all())
        else:
            assert not bool(res.success.any())


def test_pgd_returns_the_first_successful_iterate() -> None:
    model, x, y = two_class_linear()
    res = PGD(0.5, steps=40, random_start=False)(model, x, y)
    assert bool(res.success.all())
    it = res.info["iterations"]
    assert 1 < int(it.max()) < 40
    # Runs truncated to s steps: a sample is adversarial iff it needed at most s steps,
    # and the iterate is the same as the one of the long run.
    for s in range(1, int(it.max()) + 1):
        short = PGD(0.5, steps=s, step_size=2.5 * 0.5 / 40, random_start=False)(model, x, y)
        assert torch.equal(short.success, it <= s)
        torch.testing.assert_close(short.x_adv[it <= s], res.x_adv[it <= s])


def test_pgd_targeted_reaches_the_target() -> None:
    model = linear(8, 5, seed=4).eval()
    x = torch.rand(30, 8, generator=torch.Generator().manual_seed(4))
    y = model(x).argmax(1).detach()
    target = (y + 2) % 5
    res = PGD(1.0, steps=100, step_size=0.05, loss="margin")(model, x, y, target)
    assert bool(res.success.all())
    assert torch.equal(model(res.x_adv).argmax(1), target)


def test_without_early_stop_every_sample_takes_all_steps_and_goes_deeper():
    x, y = blobs(60, 10, 2, seed=4)
    model = train(linear(10, 2, seed=4), x, y)
    x = x.clamp(0, 1)
    early = PGD(eps=0.5, steps=20)(model, x, y)
    full = PGD(eps=0.5, steps=20, early_stop=False)(model, x, y)
    assert (full.info["iterations"] == 20).all()
    assert (early.info["iterations"] <= 20).all() and (early.info["iterations"] < 20).any()
    both = early.success & full.success
    assert both.any()

    def margin(x_adv):  # how far past the boundary: other logit minus true logit
        z = model(x_adv)
        return (z.gather(1, (1 - y)[:, None]) - z.gather(1, y[:, None])).squeeze(1)

    with torch.no_grad():
        assert (margin(full.x_adv)[both] >= margin(early.x_adv)[both] - 1e-6).all()
        assert margin(full.x_adv)[both].mean() > margin(early.x_adv)[both].mean()
