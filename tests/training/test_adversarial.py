"""Adversarial training (Madry et al. 2018; Wong et al. 2020; TRADES, Zhang et al. 2019): a
network that resists PGD."""

import pytest
import torch

from defdistill.data import Dataset
from defdistill.models import build_model
from defdistill.training.adversarial import adversarial_batch, pgd_accuracy
from defdistill.training.config import TrainConfig
from defdistill.training.loop import train

EPS = 0.1


def fit(ds, **config):
    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, ds.num_classes)
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 32, **config})
    return train(model, ds.x_train, ds.y_train, ds.x_test, ds.y_test, cfg, progress=False)


@pytest.mark.parametrize("method", ["pgd", "fgsm-rs", "trades"])
def test_adversarial_batches_stay_in_the_ball_and_are_reproducible(method):
    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, 3).eval()
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 3
    make = lambda seed: adversarial_batch(model, x, y, method, EPS, 5, torch.Generator().manual_seed(seed))  # noqa: E731
    a, b, c = make(1), make(1), make(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a - x).abs().max() <= EPS + 1e-6 and a.min() >= 0 and a.max() <= 1
    assert (a - x).abs().max() > EPS / 2  # it moved
    assert torch.equal(adversarial_batch(model, x, y, method, 0.0, 5, torch.Generator()), x)


@pytest.fixture(scope="module")
def faint(synthetic) -> Dataset:
    """The synthetic task at 40 % contrast: a plain network learns it, PGD at ε = 0.1 breaks it."""
    s = synthetic
    return Dataset("faint", 0.4 * s.x_train, s.y_train, 0.4 * s.x_test, s.y_test, s.classes)


@pytest.fixture(scope="module")
def trained(faint):
    """The same network and seed trained plainly, with FGSM-RS, with PGD and with TRADES (3 epochs)."""
    return {
        "plain": fit(faint),
        "fgsm-rs": fit(faint, adversarial="fgsm-rs", adversarial_eps=EPS),
        "pgd": fit(faint, adversarial="pgd", adversarial_eps=EPS, adversarial_steps=5),
        "trades": fit(faint, adversarial="trades", adversarial_eps=EPS, adversarial_steps=5),
    }


@pytest.mark.heavy
def test_adversarial_training_resists_the_pgd_that_breaks_plain_training(faint, trained):
    """Measured: plain 65 % under PGD-20, the FGSM-RS, PGD and TRADES networks 100 %."""
    x, y = faint.x_test, faint.y_test
    robust = {name: pgd_accuracy(r.model, x, y, EPS, steps=20) for name, r in trained.items()}
    for method in ("fgsm-rs", "pgd", "trades"):
        assert trained[method].test_accuracy > 0.9, method  # it still learns the task
        assert robust[method] > robust["plain"] + 0.25, robust
    assert robust["plain"] < 0.75, robust


@pytest.mark.heavy
def test_the_monitor_records_pgd_accuracy_each_epoch_and_the_config_records_the_method(trained):
    history = trained["fgsm-rs"].history
    assert len(history) == 3 and all(0 <= h["pgd_accuracy"] <= 1 for h in history)
    assert "pgd_accuracy" not in trained["plain"].history[0]
    config = TrainConfig(adversarial="fgsm-rs", adversarial_eps=EPS).to_dict()
    assert config["adversarial"] == "fgsm-rs" and "adversarial_steps" not in config
    assert "adversarial" not in TrainConfig().to_dict()  # earlier configurations stay reusable


@pytest.mark.parametrize("bad", [{"adversarial": "mart"}, {"adversarial": "pgd", "adversarial_eps": 1.5},
                                 {"adversarial": "pgd", "adversarial_steps": 0}])  # fmt: skip
def test_bad_adversarial_options_are_value_errors(bad):
    with pytest.raises(ValueError, match="adversarial"):
        TrainConfig(**bad)


def test_soft_labels_cannot_be_trained_adversarially(synthetic):
    soft = torch.nn.functional.one_hot(synthetic.y_train, synthetic.num_classes).float()
    model = build_model("mnist_cnn", 1, 28, synthetic.num_classes)
    with pytest.raises(ValueError, match="needs hard labels"):
        train(model, synthetic.x_train, soft, synthetic.x_test, synthetic.y_test,
              TrainConfig(epochs=1, adversarial="pgd"), progress=False)  # fmt: skip


def test_adversarial_training_crafts_with_the_attacks_package_pgd():
    """One PGD: training's batches are :class:`defdistill.attacks.PGD`'s examples at the same
    settings, and that PGD without a random start is the signed-gradient ascent of Madry et al.
    written out by hand (step 2.5 ε / steps, projected on the ε-ball and [0, 1])."""
    import torch.nn.functional as F

    from defdistill.attacks import PGD
    from defdistill.training.adversarial import SEED_RANGE

    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, 3).eval()
    x, y = torch.rand(6, 1, 28, 28), torch.arange(6) % 3
    batch = adversarial_batch(model, x, y, "pgd", EPS, 4, torch.Generator().manual_seed(7))
    seed = int(torch.randint(SEED_RANGE, (1,), generator=torch.Generator().manual_seed(7)))
    assert torch.equal(batch, PGD(eps=EPS, steps=4, seed=seed, early_stop=False).perturb(model, x, y))

    by_hand = x.clone()
    for _ in range(4):
        by_hand.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(by_hand), y), by_hand)
        by_hand = by_hand.detach() + 2.5 * EPS / 4 * grad.sign()
        by_hand = torch.min(torch.max(by_hand, x - EPS), x + EPS).clamp(0, 1)
    pgd = PGD(eps=EPS, steps=4, random_start=False, early_stop=False).perturb(model, x, y)
    assert torch.allclose(pgd, by_hand, atol=1e-6)
