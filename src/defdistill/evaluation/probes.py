"""Structure-blind probes: randomness and shattered gradients, found and then attacked.

A user brings a model, not a description of its defence. The probes look at what the
model does and choose the attacks that still work (Athalye, Carlini & Wagner 2018,
arXiv:1802.00420; Tramèr et al. 2020, arXiv:2002.08347; the indicators of attack
failure of Pintor et al. 2022, arXiv:2106.09947):

* **randomness** (Pintor's *unstable predictions*): two forward passes of the same input
  differ. Then the gradient of one draw is a noisy estimate (*stochastic gradients*,
  measured by the cosine between two draws' input gradients), so the probes attack the
  expectation, APGD on :class:`~defdistill.attacks.EOT` with a number of draws chosen from
  that cosine (:func:`eot_samples`), and report accuracy as the defence is used: one
  random draw, and the majority vote over :data:`VOTE_DRAWS` draws;
* **unavailable gradients** (Pintor's indicator of the same name): the input gradient is
  ``None``, non-finite or exactly zero although the output moves under small input
  changes (quantisation, thermometer encoding);
* **shattered gradients**: the gradient disagrees with finite differences of the same
  function (discontinuous activations such as k-WTA, non-differentiable layers);
* when gradients are unavailable or shattered, attacks that do not need the model's own
  gradient at a point: APGD on the gradient of the model's Gaussian smoothing, by autograd
  averaged over the neighbourhood (:class:`~defdistill.attacks.EOT` with ``noise``, as
  Tramèr et al. 2020 attack k-WTA) or, where the model's gradient is zero or missing, from
  forward passes only (:class:`~defdistill.attacks.NES`); transfer from a smooth surrogate
  trained on the model's own labels (Papernot et al. 2017, arXiv:1602.02697); BPDA with
  the identity
  (:func:`~defdistill.attacks.bpda`) when the user names a preprocessing layer; Square,
  which the audit runs anyway, is one more.

Each check is a :class:`~defdistill.evaluation.checks.Finding`; critical ones make the
audit's verdict "masking" (the one rule, :func:`~defdistill.evaluation.checks.verdict`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from defdistill.attacks import APGD, EOT, NES, PGD, bpda
from defdistill.attacks.base import classification_loss
from defdistill.evaluation.battery import AttackSummary
from defdistill.evaluation.checks import Finding, Severity
from defdistill.evaluation.stats import Proportion, share
from defdistill.evaluation.threats import ThreatModel
from defdistill.inference import eval_mode, predict_logits
from defdistill.names import AttackId, CheckId, Norm

logger = logging.getLogger(__name__)

VOTE_DRAWS = 9  # draws of the majority vote of a random model (odd: no ties between two classes)
TARGET_COSINE = 0.9  # EOT averages enough draws that two estimates agree to this cosine
MAX_EOT_SAMPLES = 32  # the most draws EOT averages (cost: this many forward passes per step)
MIN_EOT_SAMPLES = 4
STOCHASTIC_COSINE = 0.9  # below it, one draw's gradient is too noisy to follow: critical
UNAVAILABLE_FRACTION = 0.1  # more samples than this without a usable gradient: critical
SHATTERED_FRACTION = 0.2  # more samples than this whose gradient contradicts the function: critical
FD_STEP = 1e-3  # finite-difference step along a random sign direction (L∞ size)
FD_DISAGREEMENT = 0.5  # relative error between the two derivatives counted as disagreement
MIN_GAP = 0.1  # an attack beating another by this much (accuracy) is critical, as in checks.py
SMOOTHING = 0.25  # σ of the neighbourhood, as a fraction of ε (0.075 at MNIST's 0.3: about one 4-bit level)
SMOOTHING_DRAWS = 16  # draws averaged per step of the neighbourhood attack (autograd)
NES_DRAWS = 64  # antithetic pairs per NES estimate (16 are too noisy on a 64-pixel toy: 10 % vs 27 % at 200)
SURROGATE_POOL = 2000  # inputs the surrogate learns the model's labels on (at most)
SURROGATE_EPOCHS = 8


@dataclass
class ProbeReport:
    """What the probes found and what their attacks did.

    Attributes:
        findings: one :class:`Finding` per check run.
        attacks: the attacks the probes ran, by id, each with the samples it fooled (one
            draw of a random model), counted in the audit's per-image worst case.
        measurements: the probes' raw numbers (the evidence of the findings).
    """

    findings: list[Finding] = field(default_factory=list)
    attacks: dict[str, AttackSummary] = field(default_factory=dict)
    measurements: dict[str, Any] = field(default_factory=dict)

    def add(self, attack: AttackId, label: str, fooled: torch.Tensor, start: float, eps: float,
            gradient: bool, **details: Any) -> AttackSummary:  # fmt: skip
        """Record an untargeted L∞ attack at the primary budget (it counts in the worst case)."""
        threat, seconds = ThreatModel(Norm.LINF, eps), time.perf_counter() - start
        summary = AttackSummary(attack, label, threat, gradient, True, fooled.cpu(),
                                Proportion.from_mask(fooled), details, seconds)  # fmt: skip
        self.attacks[str(attack)] = summary
        return summary

    def to_dict(self) -> dict[str, Any]:
        return {"findings": [f.to_dict() for f in self.findings],
                "attacks": {k: a.to_dict() for k, a in self.attacks.items()},
                "measurements": self.measurements}  # fmt: skip


# --------------------------------------------------------------------------- randomness
def draws(model: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """Logits of ``n`` forward passes of ``x``, ``(n, N, K)`` (eval mode, no gradients)."""
    return torch.stack([predict_logits(model, x) for _ in range(n)])


def randomness(model: nn.Module, x: torch.Tensor, n: int = VOTE_DRAWS) -> dict[str, float]:
    """How random the model is on ``x``: the fraction of samples whose logits differ between
    two passes, and (Pintor et al.'s *unstable predictions*) whose predicted class differs
    among ``n`` passes."""
    logits = draws(model, x, n)
    differs = (logits[0] != logits[1]).flatten(1).any(1)
    predictions = logits.argmax(2)
    unstable = (predictions != predictions[0]).any(0)
    return {"random_fraction": float(differs.float().mean()),
            "unstable_fraction": float(unstable.float().mean())}  # fmt: skip


def vote(model: nn.Module, x: torch.Tensor, n: int = VOTE_DRAWS) -> torch.Tensor:
    """The majority vote of ``n`` draws' predicted classes, ``(N,)`` (ties: the lowest class)."""
    predictions = draws(model, x, n).argmax(2)
    counts = F.one_hot(predictions, draws_classes(model, x)).sum(0)
    return counts.argmax(1)


def draws_classes(model: nn.Module, x: torch.Tensor) -> int:
    return int(predict_logits(model, x[:1]).shape[1])


def margin_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """The input gradient of the logit margin ``max_{i != y} z_i - z_y`` (the loss an attack
    ascends, free of softmax saturation), ``(N, ...)``; ``None`` when the model's output is
    not connected to its input (a layer outside autograd)."""
    xg = x.detach().clone().requires_grad_(True)
    with eval_mode(model):
        loss = classification_loss(model(xg), y, "margin", 1.0)
    if not loss.requires_grad:
        return None
    (g,) = torch.autograd.grad(loss.sum(), xg, allow_unused=True)
    return g


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=1e-30)


def gradient_cosine(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The mean cosine between two independent draws' margin gradients (1 for a deterministic
    model; near 0 when one draw says little about the expected gradient)."""
    a, b = margin_gradient(model, x, y), margin_gradient(model, x, y)
    if a is None or b is None:
        return math.nan
    return float(_cosine(a, b).nan_to_num(0.0).mean())


def eot_samples(cosine: float, target: float = TARGET_COSINE) -> int:
    """Draws to average so that two EOT gradient estimates agree to cosine ``target``.

    With one draw's gradient = signal ``s`` + noise of variance ``v``, two draws agree to
    ``c = s² / (s² + v)``; averages of ``k`` draws to ``s² / (s² + v / k)``. Solving for
    ``k``: ``k = (1 - c) / c · target / (1 - target)``, kept in
    ``[MIN_EOT_SAMPLES, MAX_EOT_SAMPLES]`` (the upper bound keeps the cost to that many
    forward passes per step; it is reported when it binds).
    """
    if not math.isfinite(cosine) or cosine <= 0:
        return MAX_EOT_SAMPLES
    k = math.ceil((1 - cosine) / cosine * target / (1 - target) - 1e-9)  # no float excess over an integer
    return int(min(MAX_EOT_SAMPLES, max(MIN_EOT_SAMPLES, k)))


# --------------------------------------------------------------------------- gradients
def gradient_health(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                    seed: int = 0) -> dict[str, float]:  # fmt: skip
    """Whether the input gradient describes the function, per sample, as fractions of ``x``.

    * ``unavailable``: the margin gradient is ``None``, non-finite or exactly zero while the
      logits move when ``x`` is perturbed uniformly within ``eps / 4`` (4 draws);
    * ``shattered``: among samples with a finite non-zero gradient, the directional
      derivative along a random sign direction ``d`` disagrees (relative error above
      :data:`FD_DISAGREEMENT`) with the central finite difference
      ``(L(x + h·d) - L(x - h·d)) / 2h``, ``h =`` :data:`FD_STEP`; every pass draws the same
      randomness (the seed is reset), so a random model is compared with itself.
    """
    gen = torch.Generator().manual_seed(seed)
    n = len(x)

    def margin(inputs: torch.Tensor) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return classification_loss(predict_logits(model, inputs), y, "margin", 1.0).double()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = margin_gradient(model, x, y)
    base = predict_logits(model, x)
    moves = torch.zeros(n, dtype=torch.bool)
    for _ in range(4):
        noise = (torch.rand(x.shape, generator=gen) * 2 - 1).to(x) * eps / 4
        moves |= (predict_logits(model, (x + noise).clamp(0, 1)) != base).flatten(1).any(1).cpu()
    if g is None:
        usable = torch.zeros(n, dtype=torch.bool)
    else:
        flat = g.flatten(1)
        usable = (torch.isfinite(flat).all(1) & (flat != 0).any(1)).cpu()
    unavailable = ~usable & moves
    shattered = torch.zeros(n, dtype=torch.bool)
    if g is not None and bool(usable.any()):
        d = (torch.randint(0, 2, x.shape, generator=gen) * 2 - 1).to(x)
        analytic = (g * d).flatten(1).sum(1).double().cpu()
        finite = ((margin((x + FD_STEP * d)) - margin((x - FD_STEP * d))) / (2 * FD_STEP)).cpu()
        error = (analytic - finite).abs() / (analytic.abs() + finite.abs()).clamp_min(1e-12)
        shattered = usable & (error > FD_DISAGREEMENT)
    return {"unavailable": float(unavailable.float().mean()), "shattered": float(shattered.float().mean()),
            "unavailable_count": int(unavailable.sum()), "shattered_count": int(shattered.sum()),
            "samples": n, "no_gradient_at_all": g is None}  # fmt: skip


def established_above(count: int, n: int, fraction: float) -> bool:
    """Whether ``count`` of ``n`` inputs establish a rate above ``fraction``: the lower bound
    of its 95 % Wilson interval is. A ReLU network's margin bends within the finite-difference
    step on a few inputs (1-7 % of 100 on the audit panel's plain and robust members), so 2 of 8
    is not evidence of a shattered gradient; 93 of 98 (k-WTA) is."""
    return n > 0 and Proportion.of(count, n).low > fraction


# --------------------------------------------------------------------------- surrogate
def train_surrogate(model: nn.Module, x: torch.Tensor, epochs: int = SURROGATE_EPOCHS,
                    seed: int = 0) -> nn.Module:  # fmt: skip
    """A small smooth CNN trained (Adam) on ``model``'s own predictions for ``x``.

    The black-box substitute of Papernot et al. 2017 (arXiv:1602.02697) without their
    Jacobian augmentation: the inputs the audit was given (at most
    :data:`SURROGATE_POOL`), each also seen with uniform noise, labelled by the model.
    """
    torch.manual_seed(seed)
    pool = x[:SURROGATE_POOL]
    labels = predict_logits(model, pool).argmax(1)
    k = draws_classes(model, pool)
    c, h, w = pool.shape[1:]
    surrogate = nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(64 * (h // 4) * (w // 4), 128), nn.ReLU(), nn.Linear(128, k),
    ).to(x.device)  # fmt: skip
    opt = torch.optim.Adam(surrogate.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(pool), generator=gen)
        for start in range(0, len(pool), 64):
            idx = order[start : start + 64]
            xb = pool[idx]
            noise = 0.1 * (torch.rand(xb.shape, generator=gen).to(xb) * 2 - 1)
            xb = torch.cat([xb, (xb + noise).clamp(0, 1)])
            loss = F.cross_entropy(surrogate(xb), labels[idx].repeat(2))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return surrogate.eval()


# --------------------------------------------------------------------------- the probes
def _fooled(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (predict_logits(model, x_adv).argmax(1) != y).cpu()


def probe(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, pool: torch.Tensor, eps: float,
    white_box_accuracy: float | None = None, gradient_success: float | None = None,
    reference: nn.Module | None = None, preprocess: str | None = None, steps: int = 100, seed: int = 0,
) -> ProbeReport:  # fmt: skip
    """Run every probe on correctly classified ``(x, y)`` at L∞ budget ``eps``.

    Args:
        model: the model under audit, returning logits.
        x, y: the attacked samples (classified correctly) and their labels.
        pool: inputs a surrogate may learn the model's labels on (the audit's whole ``x``).
        eps: the L∞ budget.
        white_box_accuracy: accuracy under the audit's APGD-CE without EOT (compared with
            EOT's on a random model).
        gradient_success: the best success of the audit's gradient attacks (compared with
            transfer from the surrogate).
        reference: a smooth model of the same task to transfer from instead of training one.
        preprocess: the name of a preprocessing submodule to attack with BPDA (identity).
        steps: APGD's iterations.
        seed: seeds the attacks, the surrogate and the finite-difference directions.
    """
    report = ProbeReport()
    if len(x) == 0:
        return report
    linf = f"Linf {eps:.3g}"
    rand = randomness(model, x)
    report.measurements.update(rand)
    is_random = rand["random_fraction"] > 0
    report.findings.append(Finding(
        CheckId.UNSTABLE_PREDICTIONS, Severity.WARNING if rand["unstable_fraction"] > 0 else Severity.OK,
        rand["unstable_fraction"],
        f"{share(rand['random_fraction'])} of inputs get different logits on two forward passes, "
        f"{share(rand['unstable_fraction'])} a different class among {VOTE_DRAWS}"
        + (": the model is random; it is attacked through the expectation (EOT) and scored as "
           "used, one draw and the majority vote." if is_random else "."),
    ))  # fmt: skip
    if is_random:
        cosine = gradient_cosine(model, x, y)
        k = eot_samples(cosine)
        report.measurements.update({"gradient_cosine": cosine, "eot_samples": k})
        report.findings.append(Finding(
            CheckId.STOCHASTIC_GRADIENTS,
            Severity.CRITICAL if cosine < STOCHASTIC_COSINE else Severity.OK, cosine,
            f"two draws' input gradients agree to cosine {cosine:.2f} (below {STOCHASTIC_COSINE} is "
            f"critical): one draw's gradient is a noisy estimate, attacks that follow it under-report "
            f"what the expectation (EOT, {k} draws) finds." if cosine < STOCHASTIC_COSINE else
            f"two draws' input gradients agree to cosine {cosine:.2f}: the randomness barely moves them.",
        ))  # fmt: skip
        start = time.perf_counter()
        x_adv = APGD(eps=eps, steps=steps, seed=seed).perturb(EOT(model, k), x, y)
        one = _fooled(model, x_adv, y)
        voted = (vote(model, x_adv) != y).cpu()
        eot = report.add(AttackId.EOT_APGD_CE, f"EOT-APGD-CE {linf} ({k} draws)", one, start, eps, True,
                         steps=steps, eot_samples=k, vote_draws=VOTE_DRAWS,
                         vote_accuracy=1 - float(voted.float().mean()))  # fmt: skip
        if white_box_accuracy is not None:
            gain = white_box_accuracy - eot.accuracy.rate
            report.findings.append(_gap_finding(
                CheckId.EOT_VS_SINGLE_DRAW, gain,
                f"EOT lowers the accuracy under APGD-CE by {gain:.1%} (one draw: "
                f"{white_box_accuracy:.1%} -> {eot.accuracy.rate:.1%})",
                "attacks on one draw's gradient over-report robustness (stochastic gradients).",
                (AttackId.APGD_CE, AttackId.EOT_APGD_CE)))
    health = gradient_health(model, x, y, eps, seed)
    report.measurements.update({f"gradient_{k}": v for k, v in health.items()})
    n = int(health["samples"])
    unavailable = established_above(int(health["unavailable_count"]), n, UNAVAILABLE_FRACTION)
    shattered = established_above(int(health["shattered_count"]), n, SHATTERED_FRACTION)

    def rate(key: str) -> str:
        found = Proportion.of(int(health[f"{key}_count"]), n)
        return f"{share(found.rate)} [{found.low:.0%}, {found.high:.0%}] of {n}"

    report.findings.append(Finding(
        CheckId.UNAVAILABLE_GRADIENTS, Severity.CRITICAL if unavailable else Severity.OK,
        health["unavailable"],
        f"{rate('unavailable')} inputs have a None, non-finite or zero input gradient while "
        "the output moves under small input changes"
        + (": gradient attacks cannot move them (shattered gradients, e.g. quantisation); trust "
           "Square, transfer and BPDA instead." if unavailable else
           f" (critical when the interval lies above {UNAVAILABLE_FRACTION:.0%})."),
    ))  # fmt: skip
    report.findings.append(Finding(
        CheckId.SHATTERED_GRADIENTS, Severity.CRITICAL if shattered else Severity.OK, health["shattered"],
        f"on {rate('shattered')} inputs the input gradient disagrees with finite differences "
        f"of the same function (step {FD_STEP:g})"
        + (": the gradient does not describe the function (a discontinuous or non-differentiable "
           "layer); trust attacks that do not need it." if shattered else
           f" (critical when the interval lies above {SHATTERED_FRACTION:.0%})."),
    ))  # fmt: skip
    broken = unavailable or shattered
    if broken:  # the gradient of the Gaussian smoothing: by autograd where gradients exist, else NES
        start = time.perf_counter()
        sigma = SMOOTHING * eps
        draws_used = NES_DRAWS if unavailable else SMOOTHING_DRAWS
        smooth = NES(model, draws_used, sigma) if unavailable else EOT(model, draws_used, noise=sigma)
        adv = APGD(eps=eps, steps=steps, seed=seed).perturb(smooth, x, y)
        fooled = _fooled(model, adv, y)
        how = "NES" if unavailable else "EOT"
        report.add(AttackId.SMOOTHED_APGD_CE,
                   f"smoothed-gradient APGD-CE {linf} ({how}, N(x, {sigma:.3g}²), {draws_used} draws)",
                   fooled, start, eps, not unavailable, steps=steps, noise=sigma, draws=draws_used,
                   estimator=how)  # fmt: skip
    if broken or reference is not None:
        start = time.perf_counter()
        source = reference if reference is not None else train_surrogate(model, pool, seed=seed)
        adv = PGD(eps=eps, steps=40, seed=seed, early_stop=False).perturb(source, x, y)
        fooled = _fooled(model, adv, y)
        source_name = "the reference" if reference is not None else "a surrogate"
        transfer = report.add(AttackId.SURROGATE_TRANSFER, f"transfer PGD {linf} from {source_name}", fooled,
                              start, eps, False, steps=40,
                              source="reference" if reference is not None else "surrogate",
                              surrogate_images=None if reference is not None
                              else min(len(pool), SURROGATE_POOL))  # fmt: skip
        if gradient_success is not None:
            gain = transfer.success.rate - gradient_success
            report.findings.append(_gap_finding(
                CheckId.SURROGATE_TRANSFER_VS_WHITEBOX, gain,
                f"transfer from {source_name} {transfer.success.rate:.1%} "
                f"vs the best white-box gradient attack {gradient_success:.1%}",
                "another model's gradients fool this one more often than its own (masked gradients).",
                (AttackId.SURROGATE_TRANSFER,)))
    if preprocess is not None:
        start = time.perf_counter()
        adv = APGD(eps=eps, steps=steps, seed=seed).perturb(bpda(model, preprocess), x, y)
        fooled = _fooled(model, adv, y)
        report.add(AttackId.BPDA_APGD_CE, f"BPDA-APGD-CE {linf} (identity on {preprocess!r})", fooled,
                   start, eps, False, steps=steps, layer=preprocess)
    return report


def _gap_finding(check: CheckId, gap: float, text: str, meaning: str,
                 attacks: tuple[AttackId, ...]) -> Finding:  # fmt: skip
    if gap >= MIN_GAP:
        return Finding(check, Severity.CRITICAL, gap, f"{text}: {meaning}", attacks)
    return Finding(check, Severity.OK, gap, f"{text}.", attacks)
