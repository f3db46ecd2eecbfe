"""Adversarial training: the audit's positive control, a network that really is robust.

Every training batch is replaced by adversarial examples against the current network
(the min-max objective of Madry et al. 2018, arXiv:1706.06083):

* ``pgd`` (Madry et al.): L∞ PGD from a uniform random start in the ε-ball, ``steps``
  steps of size ``2.5 ε / steps``, on the cross-entropy, every step taken: the attacks
  package's :class:`~defdistill.attacks.PGD`, the same attack that audits the result.
* ``fgsm-rs`` (Wong, Rice & Kolter 2020, arXiv:2001.03994, "fast is better than free"):
  one signed-gradient step of size α = 1.25 ε from a uniform random start, projected back
  onto the ε-ball: about PGD's robustness for a fraction of its cost. At large ε it can
  *catastrophically overfit*: within an epoch its robustness to PGD collapses while its
  accuracy on its own FGSM examples rises. The training loop therefore measures PGD
  accuracy on held-out images after every epoch (``history[i]["pgd_accuracy"]``) and
  warns when it collapses.

The examples are crafted with the network in eval mode (dropout off), in float32; each
batch's random start comes from a seed drawn from the run's generator.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from defdistill.attacks import PGD
from defdistill.inference import eval_mode
from defdistill.names import AdversarialMethod
from defdistill.training.config import TrainConfig

log = logging.getLogger(__name__)

FGSM_RS_STEP = 1.25  # α / ε (Wong et al. 2020)
SEED_RANGE = 2**62  # each batch's attack seed is drawn below this
MONITOR_SAMPLES = 256  # held-out images whose PGD accuracy is measured after every epoch
MONITOR_STEPS = 10
COLLAPSE = 0.3  # a drop of PGD accuracy this large from the best epoch is catastrophic overfitting


def adversarial_batch(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str, eps: float, steps: int,
    generator: torch.Generator,
) -> torch.Tensor:  # fmt: skip
    """Adversarial examples for one training batch (``method``: ``pgd`` or ``fgsm-rs``).

    The attack's seed is drawn on the CPU from ``generator`` (the run's seed), so a run is
    reproducible on a given device.
    """
    if eps == 0:
        return x
    seed = int(torch.randint(SEED_RANGE, (1,), generator=generator))
    return training_attack(method, eps, steps, seed).perturb(model, x, y)


def training_attack(method: str, eps: float, steps: int, seed: int) -> PGD:
    """The attack adversarial training crafts its batches with: PGD taking every step (no
    early stop, as Madry et al.), or FGSM-RS as one PGD step of ``1.25 ε`` from a random start."""
    if method == AdversarialMethod.FGSM_RS:
        return PGD(eps=eps, steps=1, step_size=FGSM_RS_STEP * eps, seed=seed, early_stop=False)
    return PGD(eps=eps, steps=steps, seed=seed, early_stop=False)


def pgd_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = MONITOR_STEPS,
                 seed: int = 0) -> float:  # fmt: skip
    """Accuracy under a ``steps``-step PGD at ε (random start): the overfitting monitor."""
    x_adv = training_attack(AdversarialMethod.PGD, eps, steps, seed).perturb(model, x, y)
    with eval_mode(model), torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


class RobustnessMonitor:
    """PGD accuracy on held-out images after each epoch; warns on catastrophic overfitting."""

    def __init__(self, config: TrainConfig, x: torch.Tensor, y: torch.Tensor) -> None:
        self.config = config
        self.x, self.y = x[:MONITOR_SAMPLES], y[:MONITOR_SAMPLES]
        self.best = 0.0

    def __call__(self, model: nn.Module, record: dict[str, float], desc: str) -> None:
        eps = self.config.adversarial_eps
        dev = next(model.parameters()).device
        acc = pgd_accuracy(model, self.x.to(dev), self.y.to(dev), eps, seed=self.config.seed)
        record["pgd_accuracy"] = acc
        log.info("%s epoch %d: PGD-%d accuracy at eps %.3g on %d held-out images: %.4f", desc,
                 int(record["epoch"]), MONITOR_STEPS, eps, len(self.x), acc)  # fmt: skip
        if self.best - acc > COLLAPSE:
            advice = ("use --adversarial pgd or a smaller eps" if self.config.adversarial == "fgsm-rs"
                      else "use more --adv-steps (smaller steps), a lower --lr or a smaller eps")  # fmt: skip
            log.warning("%s: PGD accuracy fell from %.2f to %.2f in epoch %d: catastrophic "
                        "overfitting (Wong et al. 2020); %s", desc, self.best, acc,
                        int(record["epoch"]), advice)  # fmt: skip
        self.best = max(self.best, acc)
