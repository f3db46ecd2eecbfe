"""APGD (Croce & Hein 2020): checkpoints, the first steps of Algorithm 1, step-size halving,
norm balls, eps = 0, targeted runs, the DLR loss, restarts, chunking, determinism, and the
comparison with PGD."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
import torch
from attack_helpers import blobs, linear, mlp, train
from torch import nn

from defdistill.attacks import APGD, PGD
from defdistill.attacks.apgd import apgd_checkpoints, dlr_loss


# --------------------------------------------------------------------------- helpers
class Bump(nn.Module):
    """1-D input; the CE loss on class 0 peaks at ``x = c`` and the sample is never adversarial.

    Logits ``(0, h)`` with ``h = -100 (x - c)² - 10 < 0``: CE(y=0) = softplus(h), whose
    gradient has the sign of ``c - x``. Records every input it sees.
    """

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        h = -100 * (x.flatten(1)[:, 0] - self.c) ** 2 - 10
        return torch.stack([torch.zeros_like(h), h], 1)


def saturated(model: nn.Module, scale: float = 1e4) -> nn.Module:
    """The model with its logits multiplied by ``scale``: the softmax saturates in float32,
    CE gradients are exactly 0 (what defensive distillation does at test time)."""

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) * scale

    return Scaled().eval()


@pytest.fixture(scope="module")
def trained_mlp10() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small tanh MLP on 10 blobs in 16 dimensions (enough classes for targeted DLR)."""
    x, y = blobs(120, 16, 10, spread=0.15, seed=11)
    return train(mlp(16, 10, seed=11), x, y, steps=150), x, y


def distance(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    delta = (x_adv - x).flatten(1)
    return delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)


# --------------------------------------------------------------------------- checkpoints
def paper_fractions() -> list[Fraction]:
    """p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), while p_j <= 1."""
    p = [Fraction(0), Fraction(22, 100)]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100))
        if nxt > 1:
            return p
        p.append(nxt)


def test_checkpoints_for_100_steps_are_the_papers() -> None:
    p = paper_fractions()
    # Section 3.2: 0, 0.22, 0.41 (= 0.22 + 0.19), 0.57, 0.70, 0.80, 0.87, then +0.06.
    assert [float(v) for v in p] == [0.0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99]
    expected = [math.ceil(v * 100) for v in p]
    assert expected == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(100) == expected
    # The trap the implementation avoids: the same recursion in floats gives
    # p_3 = 0.5700000000000001, whose ceil(100 p_3) is 58.
    naive = [0.0, 0.22]
    while naive[-1] + max(naive[-1] - naive[-2] - 0.03, 0.06) <= 1:
        naive.append(naive[-1] + max(naive[-1] - naive[-2] - 0.03, 0.06))
    assert [math.ceil(v * 100) for v in naive] == [0, 22, 41, 58, 70, 80, 87, 93, 99]


@pytest.mark.parametrize("steps", [1, 2, 5, 10, 37, 250, 1000])
def test_checkpoints_for_any_number_of_steps(steps: int) -> None:
    expected = sorted({math.ceil(v * steps) for v in paper_fractions()})
    ws = apgd_checkpoints(steps)
    assert ws == expected
    assert ws[0] == 0 and ws[-1] <= steps
    assert all(a < b for a, b in itertools.pairwise(ws))


# --------------------------------------------------------------------------- Algorithm 1
def test_first_steps_are_algorithm_1() -> None:
    """x1 = P(x0 + 2ε sign ∇f(x0)); x2 = P(x1 + α(z - x1) + (1 - α)(x1 - x0)), α = 0.75."""
    eps, c = 0.2, 0.55
    model = Bump(c)
    x, y = torch.tensor([[0.5]]), torch.tensor([0])
    APGD(eps, steps=10)(model, x, y)
    # Forward passes: the class count and the gradient check (base), the clean point, x0, x1, ..., x10,
    # the success check.
    iterates = [float(s[0, 0]) for s in model.seen[3:-1]]
    assert len(iterates) == 11

    def proj(v: float) -> float:
        return min(max(v, 0.5 - eps), 0.5 + eps)

    def sign(v: float) -> float:
        return math.copysign(1.0, v)

    x0, x1, x2 = iterates[:3]
    assert abs(x0 - 0.5) <= eps
    assert x1 == pytest.approx(proj(x0 + 2 * eps * sign(c - x0)), abs=1e-6)
    z = proj(x1 + 2 * eps * sign(c - x1))
    assert x2 == pytest.approx(proj(x1 + 0.75 * (z - x1) + 0.25 * (x1 - x0)), abs=1e-6)


def test_the_step_size_halves_and_the_best_point_is_returned() -> None:
    """A fixed 2ε step would oscillate around the peak; halvings at the checkpoints settle on it."""
    eps, c = 0.2, 0.55
    model = Bump(c)
    x, y = torch.tensor([[0.5]]), torch.tensor([0])
    res = APGD(eps, steps=100)(model, x, y)
    iterates = torch.cat(model.seen[3:-1])[:, 0]
    assert len(iterates) == 101
    moves = (iterates[1:] - iterates[:-1]).abs()
    ws = apgd_checkpoints(100)
    first, last = moves[: ws[1]].max(), moves[ws[-2] : ws[-1]].max()
    assert float(first) > eps
    assert float(last) < 2 * eps / 2**4  # at least 4 halvings by the last window
    assert not bool(res.success.any())
    assert abs(float(res.x_adv) - c) < 0.01
    # At w_1 = 22 (the loss rose on only about half of the oscillating steps: condition 1)
    # η halves and the run continues from x_max, the iterate closest to the peak so far.
    w = ws[1]
    it = iterates.double().tolist()
    x_max = min(it[: w + 1], key=lambda v: abs(v - c))
    assert abs(it[w] - c) > abs(x_max - c)  # continuing from x^(22) would be another point

    def proj(v: float) -> float:
        return min(max(v, 0.5 - eps), 0.5 + eps)

    z = proj(x_max + eps * math.copysign(1.0, c - x_max))  # η = 2ε / 2
    assert it[w + 1] == pytest.approx(proj(x_max + 0.75 * (z - x_max) + 0.25 * (x_max - it[w - 1])), abs=1e-6)
    # Never adversarial: x_adv is the best point, and info["loss"] its loss.
    with torch.no_grad():
        loss_at_x_adv = nn.functional.cross_entropy(model(res.x_adv), y, reduction="none")
    torch.testing.assert_close(res.info["loss"], loss_at_x_adv)
    assert float(loss_at_x_adv) >= float(
        nn.functional.cross_entropy(model(iterates[:, None]), y.expand(101), reduction="none").max()
    )
    assert res.info["iterations"].tolist() == [100] and res.info["restarts"].tolist() == [1]


class Recorder(nn.Module):
    """Records every input its wrapped model sees."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.inner(x)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.08), ("l2", 0.25)])
def test_each_sample_stops_at_its_first_adversarial_iterate(trained_mlp3, norm: str, eps: float) -> None:
    """One sample at a time, every iterate recorded: the run stops at the first adversarial
    one and returns it, and ``info["iterations"]`` counts the steps to it."""
    model, x, y = trained_mlp3
    long_runs = 0
    for i in range(40):
        rec = Recorder(model)
        one = APGD(eps, norm=norm, steps=20)(rec, x[i : i + 1], y[i : i + 1])
        iterates = torch.cat(rec.seen[3:-1])  # after the class count, the gradient check, the clean pass
        with torch.no_grad():
            adv = model(iterates).argmax(1) != y[i]
        assert not bool(adv[:-1].any())
        if bool(one.success):
            assert bool(adv[-1]) and torch.equal(one.x_adv, iterates[-1:])
            assert int(one.info["iterations"]) == len(iterates) - 1
            long_runs += len(iterates) >= 3
        else:
            assert len(iterates) == 21
    assert long_runs >= 2


# --------------------------------------------------------------------------- constraints
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_stays_in_the_ball_and_the_box(norm: str, loss: str) -> None:
    model = linear(8, 3, seed=3).eval()
    with torch.no_grad():  # hard to attack: most samples run every step of every restart
        model[1].weight.mul_(0.1)
    x = torch.rand(48, 8, generator=torch.Generator().manual_seed(1))
    x[:8] = 0.0
    x[8:16] = 1.0
    with torch.no_grad():
        y = model(x).argmax(1)
    eps = 0.1 if norm == "linf" else 0.4
    res = APGD(eps, norm=norm, loss=loss, steps=12, restarts=2)(model, x, y)
    assert float(distance(res.x_adv, x, norm).max()) <= eps * (1 + 1e-5)
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    assert not bool(res.success.all())
    failed = ~res.success
    assert (res.info["iterations"][failed] == 24).all() and (res.info["restarts"][failed] == 2).all()
    assert (res.info["iterations"] <= 24).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_eps_zero_returns_the_input_exactly(trained_mlp3, norm: str, loss: str) -> None:
    model, x, y = trained_mlp3
    res = APGD(0.0, norm=norm, loss=loss, steps=5)(model, x, y)
    assert torch.equal(res.x_adv, x)
    assert (res.info["iterations"] == 0).all() and (res.info["restarts"] == 0).all()


def test_a_misclassified_input_is_returned_unchanged() -> None:
    model = linear(8, 3, seed=3).eval()
    x = torch.rand(10, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        pred = model(x).argmax(1)
    y = pred.clone()
    y[:4] = (pred[:4] + 1) % 3  # already adversarial
    res = APGD(0.05, steps=5)(model, x, y)
    assert torch.equal(res.x_adv[:4], x[:4]) and bool(res.success[:4].all())
    assert (res.info["iterations"][:4] == 0).all() and (res.info["restarts"][:4] == 0).all()
    assert (res.info["restarts"][4:] == 1).all()


# --------------------------------------------------------------------------- targeted, DLR
def test_targeted_ce_reaches_the_target(trained_mlp3) -> None:
    model, x, y = trained_mlp3
    target = (y + 1) % 3
    res = APGD(0.3, steps=20)(model, x, y, target)
    assert bool(res.success.all())
    with torch.no_grad():
        assert torch.equal(model(res.x_adv).argmax(1), target)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_targeted_dlr_reaches_the_target(trained_mlp10, norm: str) -> None:
    """The targeted DLR loss compares z_t with z_y only: with 20 steps one sample stalls
    with a third class on top (misclassified, not on target); 100 steps reach every target."""
    model, x, y = trained_mlp10
    target = (y + 3) % 10
    eps = 0.3 if norm == "linf" else 1.5
    res = APGD(eps, norm=norm, loss="dlr", steps=100)(model, x, y, target)
    assert bool(res.success.all())
    with torch.no_grad():
        assert torch.equal(model(res.x_adv).argmax(1), target)
    assert float(distance(res.x_adv, x, norm).max()) <= eps * (1 + 1e-5)


def test_dlr_loss_values() -> None:
    z = torch.tensor([[5.0, 3.0, 1.0, 0.0], [1.0, 4.0, 2.0, 0.0]])
    y = torch.tensor([0, 0])
    # Untargeted: -(z_y - max_{i != y} z_i) / (z_π1 - z_π3).
    torch.testing.assert_close(dlr_loss(z, y), torch.tensor([-(5 - 3) / (5 - 1), -(1 - 4) / (4 - 1)]))
    # Targeted: -(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2).
    t = torch.tensor([2, 1])
    torch.testing.assert_close(dlr_loss(z, y, t), torch.tensor([-(5 - 1) / (5 - 0.5), -(1 - 4) / (4 - 0.5)]))
    # Invariant to shift and scale of the logits.
    torch.testing.assert_close(dlr_loss(7 * z - 3, y), dlr_loss(z, y))


def test_dlr_needs_three_classes_and_four_targeted(trained_linear2, trained_mlp3) -> None:
    model2, x2, y2 = trained_linear2
    with pytest.raises(ValueError, match="dlr"):
        APGD(0.1, loss="dlr", steps=2)(model2, x2, y2)
    APGD(0.1, loss="ce", steps=2)(model2, x2, y2)  # CE is fine with 2 classes
    model3, x3, y3 = trained_mlp3
    APGD(0.1, loss="dlr", steps=2)(model3, x3, y3)
    with pytest.raises(ValueError, match="targeted DLR"):
        APGD(0.1, loss="dlr", steps=2)(model3, x3, y3, (y3 + 1) % 3)


# --------------------------------------------------------------------------- against PGD
def test_apgd_ce_succeeds_at_least_as_often_as_pgd(trained_mlp10) -> None:
    """Same model, eps, steps and one random start each; PGD with its default step size.

    On so small a model both attacks come close to the optimum and single settings differ
    by a sample or two either way (the reference implementation too), so the test counts
    successes over a grid of radii and both norms.
    """
    model, x, y = trained_mlp10
    grid = [("linf", 0.05), ("linf", 0.08), ("l2", 0.2), ("l2", 0.3)]
    pgd = sum(int(PGD(eps, norm=norm, steps=20)(model, x, y).success.sum()) for norm, eps in grid)
    apgd = sum(int(APGD(eps, norm=norm, steps=20)(model, x, y).success.sum()) for norm, eps in grid)
    assert 0 < pgd < len(grid) * len(x), "the grid must leave room to do better and worse"
    assert apgd >= pgd


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_dlr_beats_pgd_when_the_softmax_saturates(trained_mlp10, norm: str) -> None:
    """Logits x 1e4 (a distilled network at T = 1): CE gradients are 0, DLR does not care.

    DLR is invariant to the scale of the logits, so APGD-DLR breaks the same samples as on
    the unscaled model, while PGD-CE (same eps and steps) is blind.
    """
    model, x, y = trained_mlp10
    eps = 0.08 if norm == "linf" else 0.3
    pgd = PGD(eps, norm=norm, steps=20)(saturated(model), x, y)
    dlr = APGD(eps, norm=norm, loss="dlr", steps=20)(saturated(model), x, y)
    dlr_unscaled = APGD(eps, norm=norm, loss="dlr", steps=20)(model, x, y)
    assert int(dlr.success.sum()) >= int(pgd.success.sum())
    assert int(dlr.success.sum()) > len(x) // 2
    assert torch.equal(dlr.success, dlr_unscaled.success)


# --------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    "kwargs",
    [
        {"eps": -0.1},
        {"eps": float("nan")},
        {"eps": float("inf")},
        {"eps": 0.1, "steps": 0},
        {"eps": 0.1, "steps": 2.5},
        {"eps": 0.1, "restarts": 0},
        {"eps": 0.1, "rho": 0.0},
        {"eps": 0.1, "rho": 1.0},
        {"eps": 0.1, "rho": 1.5},
        {"eps": 0.1, "rho": -0.5},
        {"eps": 0.1, "rho": float("nan")},
        {"eps": 0.1, "loss": "margin"},
        {"eps": 0.1, "loss": "DLR"},
        {"eps": 0.1, "norm": "l1"},
        {"eps": 0.1, "seed": 1.5},
        {"eps": 0.1, "temperature": 0.0},
        {"eps": 0.1, "batch_size": 0},
    ],
)
def test_bad_parameters_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        APGD(**kwargs)


# --------------------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_seeded_and_deterministic(trained_mlp3, norm: str) -> None:
    model, x, y = trained_mlp3
    eps = 0.08 if norm == "linf" else 0.25
    state = torch.random.get_rng_state()
    a = APGD(eps, norm=norm, steps=10, restarts=2, seed=5)(model, x, y)
    assert torch.equal(state, torch.random.get_rng_state()), "global RNG must not be used"
    b = APGD(eps, norm=norm, steps=10, restarts=2, seed=5)(model, x.clone(), y.clone())
    c = APGD(eps, norm=norm, steps=10, restarts=2, seed=6)(model, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    for key in a.info:
        assert torch.equal(a.info[key], b.info[key]), key
    assert not torch.equal(a.x_adv, c.x_adv)


@pytest.mark.parametrize(
    ("norm", "dtype", "atol"),
    [("linf", torch.float32, 1e-5), ("linf", torch.float64, 1e-12), ("l2", torch.float64, 1e-12)],
)
def test_batch_size_chunks_give_the_same_result(trained_mlp3, norm: str, dtype, atol: float) -> None:
    """All starts of a chunk are drawn sample-major, so chunking does not change them (CPU).

    What remains is rounding: the model's matrix products round differently for other batch
    sizes. In float32 with L2 a near-tie between two candidate best points can then pick one
    ~1e-4 away, hence float64 for L2.
    """
    model, x, y = trained_mlp3
    model, x, y = model.to(dtype), x[:40].to(dtype), y[:40]
    eps = 0.08 if norm == "linf" else 0.25
    try:
        whole = APGD(eps, norm=norm, steps=10, restarts=3)(model, x, y)
        chunked = APGD(eps, norm=norm, steps=10, restarts=3, batch_size=7)(model, x, y)
    finally:
        model.float()  # the fixture is shared
    assert 0 < int(whole.success.sum()) < 40 and int(whole.info["restarts"].max()) == 3
    torch.testing.assert_close(chunked.x_adv, whole.x_adv, atol=atol, rtol=0)
    assert torch.equal(chunked.success, whole.success)
    for key in ("iterations", "restarts"):
        assert torch.equal(chunked.info[key], whole.info[key]), key
    torch.testing.assert_close(chunked.info["loss"], whole.info["loss"])


def test_eval_mode_and_no_parameter_gradients() -> None:
    model = mlp(16, 3).train()  # dropout: the result would change between calls in train mode
    x = torch.rand(6, 16, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    a = APGD(0.1, steps=5)(model, x, y)
    b = APGD(0.1, steps=5)(model, x, y)
    assert torch.equal(a.x_adv, b.x_adv)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
