"""Square Attack (random search, no gradients): balls, queries, early stop, success against
a white-box reference, targeted mode, determinism, chunking, parameters."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import linear
from synthetic import make_synthetic
from torch import nn

from defdistill.attacks import PGD, Square
from defdistill.attacks.square import p_schedule, signed_margin

NUM_CLASSES = 4


def small_cnn(channels: int, size: int, num_classes: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    side = (size + 3) // 4
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * side * side, num_classes),
    )


@pytest.fixture(scope="module")
def trained_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small conv net on 16x16 synthetic images of 4 classes (100 % test accuracy)."""
    ds = make_synthetic(n_train=160, n_test=30, num_classes=NUM_CLASSES, size=16, seed=1)
    model = small_cnn(1, 16, NUM_CLASSES)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        loss = nn.functional.cross_entropy(model(ds.x_train), ds.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert bool((model(ds.x_test).argmax(1) == ds.y_test).all())
    return model, ds.x_test, ds.y_test


class NoBackward(torch.autograd.Function):
    """Identity whose backward raises: any gradient through the model fails loudly."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the attack differentiated the model")


class GradientFree(nn.Module):
    """Wraps a model: records whether autograd was on at each forward pass; backward raises."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.grad_enabled: list[bool] = []
        self.samples = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grad_enabled.append(torch.is_grad_enabled())
        self.samples += x.shape[0]
        return self.inner(NoBackward.apply(x))


def test_p_schedule_halves_at_the_papers_iterations() -> None:
    assert p_schedule(0.8, 0, 10000) == 0.8
    assert p_schedule(0.8, 10, 10000) == 0.8
    assert p_schedule(0.8, 11, 10000) == 0.4
    assert p_schedule(0.8, 50, 10000) == 0.4
    assert p_schedule(0.8, 51, 10000) == 0.2
    for i, halvings in [(201, 3), (501, 4), (1001, 5), (2001, 6), (4001, 7), (6001, 8), (8001, 9)]:
        assert p_schedule(0.8, i, 10000) == 0.8 / 2**halvings, i
    assert p_schedule(0.8, 9999, 10000) == 0.8 / 512
    # Rescaled to the budget: 1000 queries reach the same stages 10 times sooner.
    assert p_schedule(0.8, 1, 1000) == 0.8
    assert p_schedule(0.8, 2, 1000) == 0.4
    assert p_schedule(0.8, 801, 1000) == 0.8 / 512


def test_signed_margin() -> None:
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    y = torch.tensor([0, 0])
    torch.testing.assert_close(signed_margin(logits, y, None), torch.tensor([1.0, -5.0]))
    target = torch.tensor([2, 1])
    torch.testing.assert_close(signed_margin(logits, y, target), torch.tensor([1.0, -4.0]))


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 10, 14), (2, 2, 3)])
def test_square_respects_the_ball_and_the_box(norm: str, shape: tuple[int, int, int]) -> None:
    """Any channels and image size (non-square, smaller than the L2 minimum window of 3)."""
    c, h, w = shape
    model = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 5)).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, c, h, w, generator=g)
    x[:3] = 0.0  # images on the faces of the box: the clipping binds
    x[3:6] = 1.0
    x[6, :, 0] = 0.0
    y = torch.randint(0, 5, (12,), generator=g)
    eps = 0.05 if norm == "linf" else 0.3
    res = Square(eps, norm=norm, queries=150)(model, x, y)
    delta = (res.x_adv - x).flatten(1)
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    if norm == "linf":
        assert float(delta.abs().max()) <= eps + 1e-6
        # Square L∞ only visits vertices of the ball (cut by the box): x ± eps, clipped.
        attacked = res.info["queries"] > 0
        lo, hi = (x - eps).clamp(0, 1).flatten(1), (x + eps).clamp(0, 1).flatten(1)
        adv = res.x_adv.flatten(1)
        vertex = (adv == lo) | (adv == hi)
        assert bool(vertex[attacked].all())
    else:
        assert float(delta.norm(dim=1).max()) <= eps * (1 + 1e-5)
    assert bool((res.info["queries"] <= 150).all())


def test_l2_perturbation_uses_the_whole_budget_away_from_the_box(trained_cnn) -> None:
    model, _, _ = trained_cnn
    x = 0.4 + 0.2 * torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model(x).argmax(1)
    res = Square(0.2, norm="l2", queries=1)(model, x, y)  # the initialisation only
    norms = (res.x_adv - x).flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, 0.2), rtol=1e-5, atol=0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_eps_zero_returns_the_input_unchanged(trained_cnn, norm: str) -> None:
    model, x, y = trained_cnn
    res = Square(0.0, norm=norm, queries=50)(model, x, y)
    assert torch.equal(res.x_adv, x)
    assert not bool(res.success.any())
    assert bool((res.info["queries"] == 0).all())
    with torch.no_grad():
        torch.testing.assert_close(res.info["margin"], signed_margin(model(x), y, None))


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.2), ("l2", 2.0)])
def test_untargeted_success_is_close_to_white_box_pgd(trained_cnn, norm: str, eps: float) -> None:
    """Reference run: PGD (40 steps, margin loss, gradients) at the same eps. A black-box search
    with 1000 queries must be within 0.2 of it (the paper finds Square on par with white-box
    attacks), and far better than its own initialisation alone."""
    model, x, y = trained_cnn
    reference = PGD(eps, norm=norm, steps=40, loss="margin")(model, x, y).success_rate
    init_only = Square(eps, norm=norm, queries=1)(model, x, y).success_rate
    res = Square(eps, norm=norm, queries=1000)(model, x, y)
    assert reference >= 0.5, reference  # the threat model is not trivial for either attack
    assert res.success_rate >= reference - 0.2, (res.success_rate, reference)
    assert res.success_rate >= init_only + 0.4, (res.success_rate, init_only)
    assert bool((res.info["margin"][res.success] <= 0).all())
    assert bool((res.info["margin"][~res.success] > 0).all())


def test_targeted_square_reaches_the_target(trained_cnn) -> None:
    model, x, y = trained_cnn
    target = (y + 1) % NUM_CLASSES
    res = Square(0.25, queries=1000)(model, x, y, target)
    assert res.success_rate >= 0.8, res.success_rate
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    assert bool((pred[res.success] == target[res.success]).all())
    assert bool((res.info["margin"][res.success] <= 0).all())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_never_differentiates_the_model(trained_cnn, norm: str) -> None:
    model, x, y = trained_cnn
    wrapped = GradientFree(model)
    eps = 0.25 if norm == "linf" else 2.5
    res = Square(eps, norm=norm, queries=300)(wrapped, x, y)
    assert res.success_rate > 0.5  # the search did run
    assert wrapped.grad_enabled and not any(wrapped.grad_enabled)
    # The guard can fire: a gradient attack through the same wrapper fails.
    with pytest.raises(AssertionError, match="differentiated"):
        PGD(eps, norm=norm, steps=2)(GradientFree(model), x[:2], y[:2])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_queries_are_counted_and_successful_samples_stop(trained_cnn, norm: str) -> None:
    model, x, y = trained_cnn
    y = y.clone()
    y[:2] = (y[:2] + 1) % NUM_CLASSES  # two samples are misclassified before any perturbation
    wrapped = GradientFree(model)
    budget = 200
    eps = 0.2 if norm == "linf" else 2.2
    res = Square(eps, norm=norm, queries=budget)(wrapped, x, y)
    queries = res.info["queries"]
    assert queries.dtype == torch.long
    assert bool((queries <= budget).all())
    # Already adversarial: returned unchanged, no query spent.
    assert bool(res.success[:2].all()) and bool((queries[:2] == 0).all())
    assert torch.equal(res.x_adv[:2], x[:2])
    # Failures spend the whole budget; successes stop at their first adversarial query.
    assert bool((queries[~res.success] == budget).all())
    found = res.success.clone()
    found[:2] = False
    assert int(found.sum()) >= 3 and int((~res.success).sum()) >= 3, (found.sum(), res.success)
    assert bool((queries[found] >= 1).all()) and bool((queries[found] < budget).any())
    # Every forward pass is accounted for: label check (1), clean pass (N), the search,
    # success measurement (N). A sample queried after its success would break the equality.
    assert wrapped.samples == 1 + len(x) + int(queries.sum()) + len(x)


@pytest.mark.parametrize("channels", [1, 2])
def test_linf_proposals_always_change_the_image(channels: int) -> None:
    """The reference redraws the signs of a square that would not change the image; with
    1 channel and 1-pixel squares half of the proposals would otherwise be wasted queries."""
    attack = Square(0.1)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, channels, 5, 5, generator=g)
    best = (x + 0.1 * (torch.randint(0, 2, (64, channels, 1, 1), generator=g) * 2 - 1)).clamp(0, 1)
    for p in (0.8 / 512, 0.1):  # 1-pixel squares, then 2-pixel squares on constant images
        for _ in range(20):
            new = attack._propose_linf(x, best, p, g)
            assert bool((new != best).flatten(1).any(1).all())
            assert float((new - x).abs().max()) <= 0.1 + 1e-6


def test_same_seed_same_result_other_seed_differs(trained_cnn) -> None:
    model, x, y = trained_cnn
    for norm, eps in (("linf", 0.2), ("l2", 1.5)):
        a = Square(eps, norm=norm, queries=100, seed=3)(model, x, y)
        b = Square(eps, norm=norm, queries=100, seed=3)(model, x.clone(), y.clone())
        c = Square(eps, norm=norm, queries=100, seed=4)(model, x, y)
        assert torch.equal(a.x_adv, b.x_adv)
        assert a.info.keys() == b.info.keys() == {"queries", "margin"}
        for key in a.info:
            assert torch.equal(a.info[key], b.info[key]), key
        assert not torch.equal(a.x_adv, c.x_adv)
    state = torch.random.get_rng_state()
    Square(0.2, queries=20)(model, x, y)
    assert torch.equal(state, torch.random.get_rng_state()), "global RNG must not be used"


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_batch_size_does_not_change_the_result(trained_cnn, norm: str) -> None:
    """The random draws are shared by the batch and restart for each chunk."""
    model, x, y = trained_cnn
    eps = 0.2 if norm == "linf" else 1.5
    whole = Square(eps, norm=norm, queries=150)(model, x, y)
    chunked = Square(eps, norm=norm, queries=150, batch_size=7)(model, x, y)
    alone = Square(eps, norm=norm, queries=150)(model, x[9:10], y[9:10])
    torch.testing.assert_close(chunked.x_adv, whole.x_adv, atol=1e-6, rtol=0)
    assert torch.equal(chunked.success, whole.success)
    assert torch.equal(chunked.info["queries"], whole.info["queries"])
    torch.testing.assert_close(alone.x_adv, whole.x_adv[9:10], atol=1e-6, rtol=0)


def test_inputs_must_be_images() -> None:
    model = linear(16, 3)
    x, y = torch.rand(4, 16), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        Square(0.1)(model, x, y)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"eps": -0.1},
        {"eps": float("nan")},
        {"eps": float("inf")},
        {"eps": 0.1, "norm": "l1"},
        {"eps": 0.1, "queries": 0},
        {"eps": 0.1, "queries": 2.5},
        {"eps": 0.1, "queries": True},
        {"eps": 0.1, "p_init": 0.0},
        {"eps": 0.1, "p_init": 1.5},
        {"eps": 0.1, "p_init": float("nan")},
        {"eps": 0.1, "seed": 1.5},
        {"eps": 0.1, "batch_size": 0},
    ],
)
def test_bad_parameters_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Square(**kwargs)
