"""Adversarial training: the audit's positive control, a network that really is robust.

Every training batch is met with adversarial examples against the current network: they
replace it (the min-max objective of Madry et al. 2018, arXiv:1706.06083), or they enter a
regulariser beside it (TRADES):

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
* ``trades`` (Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan 2019, arXiv:1901.08573, "Theoretically
  principled trade-off between robustness and accuracy"): the batch is not replaced; the
  loss is ``CE(f(x), y) + β · KL(softmax f(x) || softmax f(x'))`` (:func:`trades_loss`), where
  ``x'`` maximises the KL term in the L∞ ε-ball (:func:`trades_example`): ``steps`` signed
  gradient steps of ``2.5 ε / steps`` (the step rule of ``pgd`` here; the paper's MNIST
  setting is 40 steps of 0.01 at ε = 0.3) from ``x + 0.001 · N(0, 1)``, projected onto the
  ball and [0, 1]. β = 1/λ trades clean accuracy for robustness (paper: 6 on MNIST).

The examples are crafted with the network in eval mode (dropout off), in float32; each
batch's random start comes from a seed drawn from the run's generator.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from defdistill.attacks import PGD
from defdistill.attacks.base import project
from defdistill.inference import eval_mode
from defdistill.names import AdversarialMethod, Norm
from defdistill.temperature import log_softmax_at, temperature_loss
from defdistill.training.config import TrainConfig

log = logging.getLogger(__name__)

FGSM_RS_STEP = 1.25  # α / ε (Wong et al. 2020)
TRADES_STEP = 2.5  # α · steps / ε of TRADES's inner maximisation, as PGD's (paper, MNIST: 0.01 · 40 / 0.3)
TRADES_START = 0.001  # σ of the Gaussian start around x (Zhang et al. 2019's code)
SEED_RANGE = 2**62  # each batch's attack seed is drawn below this
MONITOR_SAMPLES = 256  # held-out images whose PGD accuracy is measured after every epoch
MONITOR_STEPS = 10
COLLAPSE = 0.3  # a drop of PGD accuracy this large from the best epoch is catastrophic overfitting


def adversarial_batch(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str, eps: float, steps: int,
    generator: torch.Generator, temperature: float = 1.0,
) -> torch.Tensor:  # fmt: skip
    """Adversarial examples for one training batch (``method``: ``pgd``, ``fgsm-rs`` or
    ``trades``, whose ``x'`` maximises the KL term of :func:`trades_loss` at ``temperature``,
    not a loss on ``y``; ``pgd`` and ``fgsm-rs`` attack the softmax at 1).

    The attack's seed is drawn on the CPU from ``generator`` (the run's seed), so a run is
    reproducible on a given device.
    """
    if eps == 0:
        return x
    seed = int(torch.randint(SEED_RANGE, (1,), generator=generator))
    if method == AdversarialMethod.TRADES:
        return trades_example(model, x, eps, steps, seed, temperature)
    return training_attack(method, eps, steps, seed).perturb(model, x, y)


def kl_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-sample ``KL(softmax(z_p / T) || softmax(z_q / T))``, ``(N,)``, from log-softmaxes
    (finite for any logits)."""
    log_p = log_softmax_at(logits_p, temperature)
    return (log_p.exp() * (log_p - log_softmax_at(logits_q, temperature))).sum(1)


def trades_loss(logits: torch.Tensor, logits_adv: torch.Tensor, targets: torch.Tensor, beta: float,
                temperature: float = 1.0) -> torch.Tensor:  # fmt: skip
    """The TRADES training objective (Zhang et al. 2019, arXiv:1901.08573, with the cross-entropy
    as surrogate loss): ``CE(f(x), y) + β · mean KL(softmax f(x) || softmax f(x'))``.

    Args:
        logits: ``(N, K)`` logits of the clean batch ``x``.
        logits_adv: ``(N, K)`` logits of ``x'`` (:func:`trades_example`).
        targets: ``(N,)`` class indices.
        beta: β = 1/λ > 0, the weight of the robustness term (paper, MNIST: 6).
        temperature: both terms are taken on ``logits / T`` (1 in the paper).

    Gradients flow through both logits, as in the authors' code.
    """
    return temperature_loss(logits, targets, temperature) + beta * kl_divergence(
        logits, logits_adv, temperature).mean()


def trades_example(model: nn.Module, x: torch.Tensor, eps: float, steps: int, seed: int,
                   temperature: float = 1.0) -> torch.Tensor:  # fmt: skip
    """``x'`` of TRADES (Zhang et al. 2019, arXiv:1901.08573, Algorithm 1): the KL between the
    model's softmax on ``x`` and on ``x'`` maximised in the L∞ ``eps``-ball.

    ``steps`` signed gradient ascent steps of size ``TRADES_STEP · eps / steps`` from
    ``x + 0.001 · N(0, 1)`` (the noise drawn from ``seed``), each projected onto the ball and
    [0, 1]; every step taken (no early stop). The model is in eval mode (dropout off) and its
    parameters receive no gradient; float32.
    """
    if eps == 0:
        return x
    step = TRADES_STEP * eps / steps
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(x.device, x.dtype)
    with eval_mode(model):
        with torch.no_grad():
            clean = model(x).float()
        x_adv = project(x, x + TRADES_START * noise, eps, Norm.LINF)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            kl = kl_divergence(clean, model(x_adv).float(), temperature).sum()
            (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = project(x, x_adv.detach() + step * grad.sign(), eps, Norm.LINF)
    return x_adv.detach()


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
