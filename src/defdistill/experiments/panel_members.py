"""The members of the audit panel (issue 29): defended MNIST networks, shipped or trained.

Wrapped around the shipped ``mnist-baseline`` (no training): bit-depth reduction (Xu et
al. 2018, arXiv:1704.01155), random resize-and-pad (Xie et al. 2018, arXiv:1711.01991),
Gaussian noise at inference. Trained here, because the network must learn its input or
activation: thermometer encoding (Buckman et al. 2018) and k-WTA (Xiao et al. 2020,
arXiv:1905.10510), briefly (:data:`TRAIN_EPOCHS` epochs of Adam) and cached. Shipped:
defensive distillation at T = 100 (Papernot et al. 2016, arXiv:1511.04508) and PGD
adversarial training (Madry et al. 2018, arXiv:1706.06083). The second robust recipe, TRADES
(Zhang et al. 2019, arXiv:1901.08573), is trained here with the budget of the quick profile's
PGD control (:data:`TRADES_CONFIG`) and cached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from defdistill.data import Dataset
from defdistill.defences import (
    BitDepthReduction,
    GaussianNoise,
    Preprocessed,
    RandomResizePad,
    ThermometerEncoding,
    kwta_network,
)
from defdistill.experiments.profiles import ADVERSARIAL_MNIST
from defdistill.models import build_model
from defdistill.names import AdversarialMethod, Role
from defdistill.pretrained import load_pretrained
from defdistill.training.config import TrainConfig, role_seed
from defdistill.training.loop import train

log = logging.getLogger(__name__)

TRAIN_EPOCHS = 2
BITS = 4  # 16 grey levels: ε = 0.3 spans ~4.5 of them (1 bit would leave MNIST's 0/1 pixels unmovable)
THERMOMETER_LEVELS = 16  # Buckman et al.'s MNIST setting
NOISE_SIGMA = 0.2
RESIZE_MIN = 24
KWTA_RATIO = 0.1  # Xiao et al.'s sparsity γ = 0.1
# TRADES with the budget of the quick profile's PGD control (4 epochs of Adam, ε = 0.3 reached after
# 2, 10 steps of 2.5 ε / 10), at the paper's MNIST β = 6 (Zhang et al. 2019)
TRADES_CONFIG: dict[str, Any] = {**ADVERSARIAL_MNIST, "adversarial": AdversarialMethod.TRADES,
                                 "trades_beta": 6.0, "epochs": 4, "adversarial_warmup": 2}  # fmt: skip
TRADES_TRAINING = ("TRADES, {epochs} epochs of Adam, ε = {adversarial_eps:g} reached after "
                   "{adversarial_warmup}, {adversarial_steps} KL steps per batch").format(**TRADES_CONFIG)


@dataclass(frozen=True)
class Member:
    """One defended model of the panel.

    Attributes:
        name: short id.
        title: what it is, with its paper.
        model: the defended model (logits, input in [0, 1]).
        kind: ``"shattered"``, ``"stochastic"``, ``"discontinuous"``, ``"vanishing"`` or ``"robust"``.
        masking: the literature's verdict (True: broken, i.e. masking).
        literature: the literature's robust accuracy where one exists, with its source.
        trained_seconds: training time here (0 for shipped or wrapped models).
        training: how it was trained here (empty for shipped or wrapped models).
    """

    name: str
    title: str
    model: nn.Module
    kind: str
    masking: bool
    literature: str
    trained_seconds: float = 0.0
    training: str = ""


def _train_cached(name: str, model: nn.Module, ds: Dataset, cache: Path, seed: int,
                  config: TrainConfig | None = None) -> tuple[nn.Module, float]:  # fmt: skip
    """``model`` trained with ``config`` (default :data:`TRAIN_EPOCHS` epochs of Adam) from
    ``seed``, or loaded from ``cache``."""
    path = cache / f"{name}.safetensors"
    if path.is_file():
        model.load_state_dict(load_file(path))
        return model.eval(), float((cache / f"{name}.seconds").read_text())
    config = (replace(config, seed=seed) if config is not None
              else TrainConfig(epochs=TRAIN_EPOCHS, optimizer="adam", lr=1e-3, seed=seed))  # fmt: skip
    result = train(model, ds.x_train, ds.y_train, ds.x_test, ds.y_test, config, device="cpu",
                   progress=False, desc=name)  # fmt: skip
    cache.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, path)
    (cache / f"{name}.seconds").write_text(f"{result.seconds:.1f}")
    log.info("%s: test accuracy %.4f after %.0f s", name, result.test_accuracy, result.seconds)
    return result.model.eval(), result.seconds


def thermometer_model(ds: Dataset, cache: Path, seed: int = 0) -> tuple[nn.Module, float]:
    """The paper's MNIST network on a 16-level thermometer encoding, trained here."""
    c = ds.x_train.shape[1]
    net = build_model("mnist_cnn", c * THERMOMETER_LEVELS, ds.x_train.shape[2], 10)
    return _train_cached("thermometer", Preprocessed(ThermometerEncoding(THERMOMETER_LEVELS), net), ds,
                         cache, seed)  # fmt: skip


def kwta_model(ds: Dataset, cache: Path, seed: int = 0) -> tuple[nn.Module, float]:
    """The paper's MNIST network with k-WTA (γ = 0.1) instead of ReLU, trained here."""
    net = kwta_network("mnist_cnn", ds.x_train.shape[1], ds.x_train.shape[2], 10, ratio=KWTA_RATIO)
    return _train_cached("kwta", net, ds, cache, seed)


def trades_model(ds: Dataset, cache: Path, seed: int = 0) -> tuple[nn.Module, float]:
    """The paper's MNIST network trained with TRADES (:data:`TRADES_CONFIG`), from the seed of
    the adversarial role (the PGD control of a run with ``seed`` starts from the same one)."""
    net = build_model("mnist_cnn", ds.x_train.shape[1], ds.x_train.shape[2], 10)
    return _train_cached("trades", net, ds, cache, role_seed(seed, Role.ADVERSARIAL),
                         TrainConfig(**TRADES_CONFIG))  # fmt: skip


def members(ds: Dataset, cache: Path, names: list[str] | None = None, seed: int = 0) -> list[Member]:
    """The panel, in order (only ``names`` when given; the trained ones are cached in ``cache``)."""
    base = load_pretrained("mnist-baseline")[0].eval()
    build: dict[str, Callable[[], Member]] = {
        "bit-depth": lambda: Member(
            "bit-depth", f"bit-depth reduction to {BITS} bits (Xu et al. 2018, arXiv:1704.01155)",
            Preprocessed(BitDepthReduction(BITS), base).eval(), "shattered", True,
            "broken: He et al. 2017 (arXiv:1706.04701), adaptive attacks defeat feature squeezing"),
        "thermometer": lambda: Member(
            "thermometer", f"thermometer encoding, {THERMOMETER_LEVELS} levels (Buckman et al. 2018)",
            *_pair(thermometer_model(ds, cache, seed), "shattered", True,
                   "0 % under BPDA (Athalye et al. 2018, CIFAR-10 ε = 8/255, with adversarial training)")),
        "resize-pad": lambda: Member(
            "resize-pad", f"random resize to [{RESIZE_MIN}, 28] and pad (Xie et al. 2018, arXiv:1711.01991)",
            Preprocessed(RandomResizePad(RESIZE_MIN), base).eval(), "stochastic", True,
            "0 % under EOT (Athalye et al. 2018, ImageNet ε = 0.031)"),
        "noise": lambda: Member(
            "noise", f"Gaussian noise σ = {NOISE_SIGMA} at inference",
            Preprocessed(GaussianNoise(NOISE_SIGMA), base).eval(), "stochastic", True,
            "broken by EOT (Athalye et al. 2018, Section 4.3); no MNIST figure"),
        "k-wta": lambda: Member(
            "k-wta", f"k-WTA, γ = {KWTA_RATIO} (Xiao et al. 2020, arXiv:1905.10510)",
            *_pair(kwta_model(ds, cache, seed), "discontinuous", True,
                   "0.1 % (Tramèr et al. 2020, CIFAR-10 ε = 8/255)")),
        "distilled": lambda: Member(
            "distilled", "defensive distillation T = 100 (Papernot et al. 2016, arXiv:1511.04508), shipped",
            load_pretrained("mnist-distilled-T100")[0].eval(), "vanishing", True,
            "C&W: 100 % success (Carlini & Wagner 2016, arXiv:1607.04311)"),
        "adv-pgd": lambda: Member(
            "adv-pgd", "PGD adversarial training (Madry et al. 2018, arXiv:1706.06083), shipped",
            load_pretrained("mnist-adversarial-pgd")[0].eval(), "robust", False,
            "89 % at ε = 0.3 (Madry et al. 2018, a larger network; 88 % AutoAttack)"),
        "adv-trades": lambda: Member(
            "adv-trades", f"TRADES, β = {TRADES_CONFIG['trades_beta']:g} (Zhang et al. 2019, "
            "arXiv:1901.08573), trained here",
            *_pair(trades_model(ds, cache, seed), "robust", False,
                   "96.07 % at ε = 0.3 under PGD-40 (Zhang et al. 2019: this network's layers, "
                   "40 KL steps of 0.01; 92.5 % under later attacks, the authors' leaderboard)",
                   training=TRADES_TRAINING)),
    }
    unknown = sorted(set(names or []) - set(build))
    if unknown:
        raise ValueError(f"unknown panel members {unknown}; choose from {list(build)}")
    return [build[n]() for n in (names or list(build))]


def _pair(trained: tuple[nn.Module, float], kind: str, masking: bool, literature: str,
          training: str = f"{TRAIN_EPOCHS} epochs of Adam") -> tuple:  # fmt: skip
    model, seconds = trained
    return model, kind, masking, literature, seconds, training
