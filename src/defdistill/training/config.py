"""Hyper-parameters of a training run, the paper's defaults and the seed of each network.

**Seeds.** Every network of a run trains from its own seed, derived from the run's seed,
its role and its temperature (:func:`role_seed`), so a teacher at T is never the
baseline's twin and two temperatures never share an initialisation.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from defdistill.names import AdversarialMethod, Precision, Role, values
from defdistill.temperature import check_temperature

if TYPE_CHECKING:
    import torch

ROLES = values(Role)
ADVERSARIAL_METHODS = values(AdversarialMethod)


MAX_TRAINING_TEMPERATURE = 1e4
FLOAT32_MAX = 3.4028234663852886e38  # torch.finfo(torch.float32).max
# The library's default (the paper's float32, the same arithmetic on every machine; a
# configuration without ``precision`` is float32). The command line and the reproduction
# profiles ask for "auto" instead, validated against float32 on hardware with native
# bfloat16 (docs/training.md, issue 28).
DEFAULT_PRECISION = Precision.FP32


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run; defaults are the paper's MNIST setting.

    Attributes:
        epochs: passes over the training set (paper: 50).
        batch_size: samples per step (paper: 128).
        lr: learning rate (paper: 0.1 for MNIST, 0.01 for CIFAR-10).
        momentum: SGD momentum (paper: 0.5 for MNIST, 0.9 for CIFAR-10).
        optimizer: ``"sgd"`` (paper) or ``"adam"``.
        lr_decay: multiply the learning rate by this every ``lr_decay_every`` epochs
            (paper, CIFAR-10: 0.95 every 10 epochs; 1.0 disables).
        lr_decay_every: epochs between decays.
        temperature: softmax temperature T of the training loss.
        head_scaling: see the module docstring; ``False`` (default) is the paper's plain
            training at T.
        seed: seeds initialisation, shuffling and dropout.
        min_accuracy: refuse a model whose test accuracy is at or below this; ``None``
            means "near chance": ``1/K + 0.1 * (1 - 1/K)``.
        precision: number format of training (:mod:`defdistill.devices`): ``"fp32"``,
            ``"bf16"`` (the forward pass under bfloat16 autocast on channels-last inputs;
            weights, optimiser, loss and every evaluation stay float32) or ``"auto"``
            (bf16 where the hardware computes it natively, else fp32; :meth:`resolved`);
            default :data:`DEFAULT_PRECISION` (the command line's: ``auto``). A model's
            ``meta.json`` records the resolved choice (``config.precision`` and
            ``precision``). Recorded in :meth:`to_dict` only when not fp32, so float32
            models trained before the option existed stay reusable.
        adversarial: adversarial training (:mod:`defdistill.training.adversarial`):
            ``"pgd"`` (Madry et al. 2018), ``"fgsm-rs"`` (Wong et al. 2020) or ``"trades"``
            (Zhang et al. 2019, arXiv:1901.08573); ``None`` (default) trains on clean inputs.
            Recorded in :meth:`to_dict` only when on.
        adversarial_eps: its L∞ budget (MNIST's standard 0.3).
        adversarial_steps: gradient steps per batch (``pgd`` and ``trades``; Madry et al.
            and Zhang et al. on MNIST: 40).
        adversarial_warmup: epochs over which ε grows linearly from ε/warmup to ε
            (0, default: the full ε from the first batch, as the papers).
        trades_beta: β = 1/λ of TRADES, the weight of its KL term (> 0; the paper's MNIST
            value 6, default). Recorded in :meth:`to_dict` only with ``"trades"``.
    """

    epochs: int = 50
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.5
    optimizer: str = "sgd"
    lr_decay: float = 1.0
    lr_decay_every: int = 10
    temperature: float = 1.0
    head_scaling: bool = False
    seed: int = 0
    min_accuracy: float | None = None
    precision: str = DEFAULT_PRECISION
    adversarial: str | None = None
    adversarial_eps: float = 0.3
    adversarial_steps: int = 40
    adversarial_warmup: int = 0
    trades_beta: float = 6.0

    def __post_init__(self) -> None:
        check_temperature(self.temperature)
        if self.precision not in values(Precision):
            choices = ", ".join(values(Precision))
            raise ValueError(f"precision must be one of {choices}, got {self.precision!r}")
        if self.adversarial is not None and self.adversarial not in ADVERSARIAL_METHODS:
            raise ValueError(f"adversarial must be one of {', '.join(ADVERSARIAL_METHODS)}, "
                             f"got {self.adversarial!r}")  # fmt: skip
        if not 0 <= self.adversarial_eps <= 1 or self.adversarial_steps < 1 or self.adversarial_warmup < 0:
            raise ValueError(f"adversarial_eps must be in [0, 1] (inputs are in [0, 1]) and "
                             f"adversarial_steps >= 1, got {self.adversarial_eps}, {self.adversarial_steps}")
        if not 0 < self.trades_beta < float("inf"):
            raise ValueError(f"trades_beta must be a finite number > 0, got {self.trades_beta}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.temperature > MAX_TRAINING_TEMPERATURE:
            raise ValueError(
                f"temperature {self.temperature:g} is too large to train at (at most "
                f"{MAX_TRAINING_TEMPERATURE:g}): the loss's gradient shrinks as 1/T and the float32 "
                "softmax of typical logits is uniform long before; the paper's largest T is 100"
            )
        if not 0 < self.lr <= FLOAT32_MAX or not 0 <= self.momentum < 1:
            raise ValueError(f"need 0 < lr <= {FLOAT32_MAX:.3g} (float32) and 0 <= momentum < 1, "
                             f"got lr {self.lr}, momentum {self.momentum}")  # fmt: skip
        if self.head_scaling and self.lr * self.temperature**2 > FLOAT32_MAX:
            raise ValueError(f"head scaling multiplies lr by T^2 = {self.temperature**2:.3g}, beyond "
                             "float32; lower --lr or --temperature")  # fmt: skip
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if not 0 < self.lr_decay <= 1 or self.lr_decay_every < 1:
            raise ValueError("lr_decay must be in (0, 1] and lr_decay_every >= 1")

    def resolved(self, device: str | torch.device = "auto") -> TrainConfig:
        """This configuration with ``precision`` ``auto`` replaced by what it means on
        ``device`` (``fp32`` or ``bf16``, :func:`defdistill.devices.resolve_precision`): what a
        model records and what its reuse compares, so a float32 model is found again whether
        ``fp32`` or ``auto`` was asked on a machine without native bfloat16."""
        from defdistill.devices import resolve_device, resolve_precision  # torch: not at import

        return replace(self, precision=resolve_precision(self.precision, resolve_device(device)))

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        if self.precision == DEFAULT_PRECISION:
            del values["precision"]
        if self.adversarial is None:  # configurations from before the option stay reusable
            for key in ("adversarial", "adversarial_eps", "adversarial_steps", "adversarial_warmup"):
                del values[key]
        elif self.adversarial == AdversarialMethod.FGSM_RS:
            del values["adversarial_steps"]
        if self.adversarial != AdversarialMethod.TRADES:  # the same: recorded only when it applies
            del values["trades_beta"]
        return values


PAPER_CONFIGS: dict[str, dict[str, Any]] = {
    "mnist": {"lr": 0.1, "momentum": 0.5, "batch_size": 128, "epochs": 50},
    "cifar10": {
        "lr": 0.01, "momentum": 0.9, "batch_size": 128, "epochs": 50,
        "lr_decay": 0.95, "lr_decay_every": 10,
    },
}  # fmt: skip
# the embedded real subset of CIFAR-10 (defdistill.data.cifar10_subset): the same images and network
PAPER_CONFIGS["cifar10-subset"] = PAPER_CONFIGS["cifar10"]


def paper_config(dataset: str, **overrides: Any) -> TrainConfig:
    """The paper's hyper-parameters for ``dataset``, with ``overrides`` (None values ignored)."""
    values = {**PAPER_CONFIGS[dataset], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(**values)


def role_seed(run_seed: int, role: str, temperature: float = 1.0) -> int:
    """The seed of one network of a run: a stream of its own per role and temperature.

    ``sha256("<run_seed>/<role>/<T>")`` reduced to 31 bits, so the baseline, the teacher
    and the student at each T start from unrelated initialisations and shuffles, and the
    same run seed always gives the same networks (``defdistill train --seed 0`` trains
    the baseline that ``defdistill reproduce --seed 0`` trains).

    Examples:
        >>> role_seed(0, "teacher", 20.0) != role_seed(0, "teacher", 100.0) != role_seed(0, "baseline")
        True
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    digest = hashlib.sha256(f"{int(run_seed)}/{role}/{float(temperature)!r}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
