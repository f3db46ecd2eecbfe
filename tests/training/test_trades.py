"""TRADES (Zhang et al. 2019, arXiv:1901.08573): the KL inner maximisation, the loss, its place
in the training loop, and what a configuration records."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from defdistill.models import build_model
from defdistill.training.adversarial import adversarial_batch, kl_divergence, trades_example, trades_loss
from defdistill.training.config import TrainConfig, role_seed
from defdistill.training.loop import train

EPS = 0.1


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    return build_model("mnist_cnn", 1, 28, 3).train()


def test_the_inner_maximisation_raises_the_kl_and_stays_in_the_ball_and_the_range(net):
    x = torch.rand(16, 1, 28, 28)
    x_adv = trades_example(net, x, EPS, 5, seed=3)
    with torch.no_grad():
        clean = net.eval()(x)
        kl_adv = kl_divergence(clean, net(x_adv))
        start = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
        kl_start = kl_divergence(clean, net((x + 0.001 * start).clamp(0, 1)))
        corner = (x + EPS * torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(4)) * 2
                  - EPS).clamp(0, 1)  # a random corner of the ball: as far as x' may go
        kl_corner = kl_divergence(clean, net(corner))
    net.train()
    assert kl_adv.mean() > 100 * kl_start.mean() and kl_adv.mean() > 3 * kl_corner.mean()
    assert bool((kl_adv > kl_start).all())
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert net.training and all(p.grad is None for p in net.parameters())  # mode restored, no gradient
    assert torch.equal(x_adv, trades_example(net, x, EPS, 5, seed=3))
    assert not torch.equal(x_adv, trades_example(net, x, EPS, 5, seed=4))
    assert torch.equal(trades_example(net, x, 0.0, 5, seed=3), x)


def test_the_trades_loss_is_cross_entropy_plus_beta_times_the_kl_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]], requires_grad=True)
    logits_adv = torch.tensor([[0.0, 1.0, -1.0], [0.5, -0.5, 1.0]], requires_grad=True)
    y = torch.tensor([0, 2])

    def softmax(row):
        e = [math.exp(v) for v in row]
        return [v / sum(e) for v in e]

    p, q = [softmax(r) for r in logits.tolist()], [softmax(r) for r in logits_adv.tolist()]
    ce = -(math.log(p[0][0]) + math.log(p[1][2])) / 2
    kl = sum(pi * math.log(pi / qi) for row_p, row_q in zip(p, q, strict=True)
             for pi, qi in zip(row_p, row_q, strict=True)) / 2  # fmt: skip
    loss = trades_loss(logits, logits_adv, y, beta=6.0)
    assert loss.item() == pytest.approx(ce + 6.0 * kl, rel=1e-6)
    # the authors' formulation: KLDivLoss(log_softmax f(x'), softmax f(x)), summed, over the batch
    theirs = F.cross_entropy(logits, y) + 6.0 * F.kl_div(
        F.log_softmax(logits_adv, 1), F.softmax(logits, 1), reduction="sum") / 2
    assert loss.item() == pytest.approx(theirs.item(), rel=1e-6)
    loss.backward()
    assert logits.grad.abs().sum() > 0 and logits_adv.grad.abs().sum() > 0  # both sides are trained
    # at T, both terms are taken on the logits / T
    assert trades_loss(logits, logits_adv, y, 6.0, temperature=2.0).item() == pytest.approx(
        trades_loss(logits / 2, logits_adv / 2, y, 6.0).item(), rel=1e-6)


def test_one_training_step_descends_the_trades_loss_on_the_clean_batch_and_its_kl_maximiser(synthetic):
    """The loop's update is SGD on ``trades_loss(f(x), f(x'), y, β)`` with ``x'`` from the run's
    seeds, not on the perturbed batch alone."""
    x, y = synthetic.x_train[:48], synthetic.y_train[:48]
    config = TrainConfig(epochs=1, batch_size=48, lr=0.5, momentum=0.0, adversarial="trades",
                         adversarial_eps=EPS, adversarial_steps=3, trades_beta=4.0, seed=5)  # fmt: skip
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 3))
    before = [p.detach().clone() for p in model.parameters()]
    hand = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 3))
    hand.load_state_dict(model.state_dict())

    result = train(model, x, y, synthetic.x_test, synthetic.y_test, config, device="cpu",
                   progress=False, allow_untrained=True)  # fmt: skip

    order = torch.randperm(48, generator=torch.Generator().manual_seed(5))
    xb, yb = x[order], y[order]
    x_adv = adversarial_batch(hand, xb, yb, "trades", EPS, 3,
                              torch.Generator().manual_seed(role_seed(5, "adversarial")))  # fmt: skip
    loss = trades_loss(hand(xb), hand(x_adv), yb, 4.0)
    grads = torch.autograd.grad(loss, list(hand.parameters()))
    for after, start, grad in zip(model.parameters(), before, grads, strict=True):
        assert torch.allclose(after, start - 0.5 * grad, atol=1e-6)
    assert result.history[0]["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert 0 <= result.history[0]["pgd_accuracy"] <= 1  # the robustness monitor measures it too


def fit_trades(ds, seed: int):
    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, ds.num_classes)
    config = TrainConfig(epochs=2, batch_size=32, optimizer="adam", lr=1e-3, adversarial="trades",
                         adversarial_eps=EPS, adversarial_steps=2, adversarial_warmup=2,
                         seed=seed)  # fmt: skip
    return train(model, ds.x_train[:160], ds.y_train[:160], ds.x_test[:90], ds.y_test[:90], config,
                 device="cpu", progress=False)  # fmt: skip


def test_a_short_trades_training_learns_and_repeats_itself_under_a_seed(synthetic):
    a, b = fit_trades(synthetic, 0), fit_trades(synthetic, 0)
    assert a.test_accuracy > 0.9
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values(),
                                                  strict=True))  # fmt: skip
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


# the keys TrainConfig.to_dict gave before TRADES existed: configurations (and the models and
# results keyed by them) from before stay reusable
PLAIN_KEYS = {"epochs", "batch_size", "lr", "momentum", "optimizer", "lr_decay", "lr_decay_every",
              "temperature", "head_scaling", "seed", "min_accuracy"}  # fmt: skip
ADVERSARIAL_KEYS = {"adversarial", "adversarial_eps", "adversarial_warmup"}


@pytest.mark.parametrize(("config", "keys"), [
    (TrainConfig(), PLAIN_KEYS),
    (TrainConfig(trades_beta=3.0), PLAIN_KEYS),  # β without TRADES is not recorded
    (TrainConfig(adversarial="pgd"), PLAIN_KEYS | ADVERSARIAL_KEYS | {"adversarial_steps"}),
    (TrainConfig(adversarial="fgsm-rs", adversarial_eps=0.2), PLAIN_KEYS | ADVERSARIAL_KEYS),
    (TrainConfig(adversarial="trades", trades_beta=3.0),
     PLAIN_KEYS | ADVERSARIAL_KEYS | {"adversarial_steps", "trades_beta"}),
])  # fmt: skip
def test_a_configuration_records_beta_only_with_trades_and_round_trips(config, keys):
    values = config.to_dict()
    assert set(values) == keys
    again = TrainConfig(**values)
    assert again.to_dict() == values
    if config.adversarial == "trades":
        assert again == config and values["trades_beta"] == 3.0


@pytest.mark.parametrize("beta", [0.0, -1.0, float("inf"), float("nan")])
def test_beta_must_be_a_finite_positive_number(beta):
    with pytest.raises(ValueError, match="trades_beta must be a finite number > 0"):
        TrainConfig(adversarial="trades", trades_beta=beta)
