"""Carlini & Wagner L2: near-minimal distances on models where the minimum is known."""

from __future__ import annotations

import copy

import torch

from defdistill.attacks import CarliniWagnerL2


def boundary_distance(model, x, y):
    """L2 distance to the decision boundary of a 2-class linear model (box ignored)."""
    w, b = model[1].weight.detach(), model[1].bias.detach()
    z = x @ w.T + b
    other = 1 - y
    gap = z.gather(1, y[:, None])[:, 0] - z.gather(1, other[:, None])[:, 0]
    return gap / (w[0] - w[1]).norm()


def test_cw_is_near_minimal_on_a_trained_linear_model(trained_linear2) -> None:
    model, x, y = trained_linear2
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    x, y = x[ok][:24], y[ok][:24]
    dist = boundary_distance(model, x, y)
    res = CarliniWagnerL2(max_iterations=300, learning_rate=5e-2)(model, x, y)
    assert bool(res.success.all())
    l2 = (res.x_adv - x).norm(dim=1)
    torch.testing.assert_close(res.info["l2"], l2, rtol=1e-4, atol=1e-6)
    # Nothing can be closer than the boundary; C&W should be within 5 % of it.
    assert bool((l2 >= dist * (1 - 1e-3)).all())
    assert bool((l2 <= dist * 1.05 + 1e-3).all()), (l2 / dist).max()
    assert bool((res.info["const"] > 0).all())


def test_cw_targeted_on_a_trained_mlp_with_three_classes(trained_mlp3) -> None:
    model, x, y = trained_mlp3
    model = copy.deepcopy(model)
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    x, y = x[ok][:30], y[ok][:30]
    target = (y + 1) % 3
    res = CarliniWagnerL2(binary_search_steps=6, max_iterations=200, learning_rate=5e-2)(model, x, y, target)
    assert float(res.success.float().mean()) >= 0.95
    # Smaller than the distance to the closest training point of the target class.
    pairwise = torch.cdist(x, x)
    same_target = y[None, :] == target[:, None]
    nearest = pairwise.masked_fill(~same_target, float("inf")).amin(1)
    assert bool((res.info["l2"][res.success] < nearest[res.success]).all())


def test_cw_confidence_margin_holds(trained_mlp3) -> None:
    model, x, y = trained_mlp3
    x, y = x[:20], y[:20]
    kappa = 3.0
    res = CarliniWagnerL2(confidence=kappa, binary_search_steps=6, max_iterations=200, learning_rate=5e-2)(
        model, x, y
    )
    with torch.no_grad():
        z = model(res.x_adv)
    top2 = z.topk(2, dim=1).values
    succ = res.success
    assert float(succ.float().mean()) >= 0.9
    assert bool((top2[succ, 0] - z[succ].gather(1, y[succ, None])[:, 0] > kappa - 1e-4).all())
    assert bool((res.info["l2"][~succ] == 0).all())


def test_cw_works_where_the_softmax_saturates(trained_linear2) -> None:
    model, x, y = trained_linear2
    saturated = copy.deepcopy(model)
    with torch.no_grad():
        saturated[1].weight.mul_(1e3)
        saturated[1].bias.mul_(1e3)
    x, y = x[:16], y[:16]
    with torch.no_grad():
        y = saturated(x).argmax(1)
    res = CarliniWagnerL2(initial_const=1e-6, max_iterations=300, learning_rate=5e-2)(saturated, x, y)
    assert bool(res.success.all())
    dist = boundary_distance(saturated, x, y)
    assert bool((res.info["l2"] <= dist * 1.5 + 1e-3).all())  # harder landscape, looser bound


class _Scaled(torch.nn.Module):
    """The same decision function with its logits multiplied by ``factor``."""

    def __init__(self, model: torch.nn.Module, factor: float) -> None:
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * self.model(x)


def test_cw_with_the_reference_search_is_blind_to_the_logit_scale(trained_mlp3) -> None:
    """A distilled student's logits are ~T times the baseline's. With the reference's 9
    search steps from c = 1e-3 (c x 10 on failure), the search reaches the constant
    either scale needs: same success, nearly the same L2, at logit scale x1 and x100."""
    model, x, y = trained_mlp3
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    x, y = x[ok][:30], y[ok][:30]
    attack = CarliniWagnerL2(binary_search_steps=9, max_iterations=200, learning_rate=5e-2)
    plain, scaled = attack(model, x, y), attack(_Scaled(model, 100.0), x, y)
    assert bool(plain.success.all()) and bool(scaled.success.all())
    ratio = scaled.info["l2"].mean() / plain.info["l2"].mean()
    assert 0.9 < float(ratio) < 1.1
    # a search too short for a small logit scale: c never grows enough at scale x0.01
    short = CarliniWagnerL2(binary_search_steps=2, max_iterations=200, learning_rate=5e-2)
    assert float(short(_Scaled(model, 0.01), x, y).success.float().mean()) < 1.0
