"""Training at temperature T (Papernot et al. 2016, arXiv:1511.04508, Section IV).

One loop, read top to bottom: shuffle, forward, loss ``-(p * log_softmax(z / T))``
against hard labels or soft labels ``p``, backward, SGD-with-momentum (or Adam) step.

**Paper-faithful by default.** The loss at T, the paper's SGD settings, He
initialisation (:mod:`defdistill.models`), nothing reparametrised: with the softmax at T
the gradient w.r.t. the logits shrinks by 1/T, so at large T the network needs more
steps before the logits have grown enough for the loss to fall (on MNIST at T = 100, one
epoch reaches about 94 % where T = 1 reaches about 97.6 %; see docs/training.md). This
is the regime the paper studies, and what makes the temperature matter.

**Head scaling** (``head_scaling=True``, ``--head-scaling``) is an option, not a fix: the
output layer is initialised T times larger and gets a learning rate T² times larger (T
times for Adam). Then ``z / T`` follows exactly the trajectory that ``z`` follows at
T = 1 from the same seed: training at T *becomes* training at T = 1 with the logits
multiplied by T, which erases what T does (every student of a sweep is one network with
its logits scaled). Use it to study that reparametrisation, not to reproduce the paper.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from defdistill.devices import machine_label, resolve_device, resolve_precision
from defdistill.inference import evaluate
from defdistill.models import output_layer
from defdistill.names import AdversarialMethod
from defdistill.temperature import temperature_loss
from defdistill.training.adversarial import RobustnessMonitor, adversarial_batch, trades_loss
from defdistill.training.config import TrainConfig, role_seed
from defdistill.training.resume import TrainingState, load_state, max_state_bytes, run_key

log = logging.getLogger(__name__)


class TrainingError(Exception):
    """Training produced a model that must not be used (e.g. accuracy near chance)."""


@dataclass
class TrainResult:
    """What a training run produced."""

    model: nn.Module
    test_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    precision: str = "fp32"
    memory_format: str = "contiguous"  # the layout training computed in (:func:`training_layout`)
    machines: list[str] = field(default_factory=list)  # what trained it, in order (:func:`machine_label`)


CONVERGENCE_SAMPLES = 1000  # training and test images of the per-epoch convergence record


def mean_entropy(probabilities: torch.Tensor) -> float:
    """Mean entropy (nats; uniform over K classes = ln K) of rows of probabilities."""
    p = probabilities.double()
    return float(-(p * p.clamp_min(1e-45).log()).sum(1).mean())


@torch.no_grad()
def convergence_record(
    model: nn.Module, x_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
    temperature: float, dev: torch.device,
) -> dict[str, float]:  # fmt: skip
    """What one epoch of training at T reached, for the curve of accuracy and soft-label
    entropy against the epochs (Papernot et al. 2016, Section IV-B: the teacher's soft labels
    at T carry the entropy distillation transfers).

    ``entropy_at_t``: mean entropy of ``softmax(Z / T)`` in float32 on the first
    :data:`CONVERGENCE_SAMPLES` training images (the soft labels a teacher stopped here would
    give them); ``heldout_accuracy`` on the first as many test images. In eval mode, restored
    to train mode after; no random numbers are drawn, so training is unchanged.
    """
    model.eval()
    try:
        z_train = model(x_train[:CONVERGENCE_SAMPLES].to(dev)).float()
        z_test = model(x_test[:CONVERGENCE_SAMPLES].to(dev)).float()
    finally:
        model.train()
    y = y_test[:CONVERGENCE_SAMPLES].to(dev)
    return {"entropy_at_t": mean_entropy(torch.softmax(z_train / temperature, dim=1)),
            "heldout_accuracy": float((z_test.argmax(1) == y).float().mean())}  # fmt: skip


def scale_head(model: nn.Module, temperature: float) -> nn.Linear:
    """Multiply the output layer's initial weights and bias by T; return that layer."""
    head = output_layer(model)
    with torch.no_grad():
        head.weight.mul_(temperature)
        if head.bias is not None:
            head.bias.mul_(temperature)
    return head


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser, with the output layer's learning rate scaled under head scaling."""
    groups: list[dict[str, Any]] = [{"params": list(model.parameters()), "lr": config.lr}]
    if config.head_scaling and config.temperature != 1.0:
        head = output_layer(model)
        head_ids = {id(p) for p in head.parameters()}
        power = 2 if config.optimizer == "sgd" else 1
        groups = [
            {"params": [p for p in model.parameters() if id(p) not in head_ids], "lr": config.lr},
            {"params": list(head.parameters()), "lr": config.lr * config.temperature**power},
        ]
    for group in groups:
        group["base_lr"] = group["lr"]
    if config.optimizer == "adam":
        return torch.optim.Adam(groups)
    return torch.optim.SGD(groups, momentum=config.momentum)


def chance_threshold(num_classes: int) -> float:
    """Accuracy at or below which a model is treated as not trained: 10% above chance."""
    chance = 1.0 / num_classes
    return chance + 0.1 * (1.0 - chance)


def train(
    model: nn.Module,
    x_train: torch.Tensor,
    targets: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    config: TrainConfig,
    device: str | torch.device = "auto",
    progress: bool = True,
    allow_untrained: bool = False,
    desc: str = "train",
    state_path: Path | None = None,
) -> TrainResult:
    """Train ``model`` at ``config.temperature`` on hard labels ``(N,)`` or soft ``(N, K)``.

    The model must be freshly initialised (head scaling multiplies its output layer).
    The test accuracy is measured at the end with the deployed softmax (T = 1).
    ``state_path``: after every epoch the whole state of the run is written there, and a
    run with the same key resumes after its last finished epoch (:mod:`.resume`); the caller
    removes the file once the model is saved.

    Raises:
        TrainingError: the test accuracy is near chance and ``allow_untrained`` is False.
    """
    if len(x_train) != len(targets):
        raise ValueError(f"{len(x_train)} training inputs but {len(targets)} targets")
    dev = resolve_device(device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    if config.head_scaling and config.temperature != 1.0:
        scale_head(model, config.temperature)
    precision = resolve_precision(config.precision, dev)
    log.info("%s: training in %s on %s (requested: %s)", desc, precision, dev, config.precision)
    memory_format = _prepare(model, precision, dev)
    optimizer = make_optimizer(model, config)
    perturb, monitor, attack_generator = _adversarial(config, targets, x_test, y_test)
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
    history: list[dict[str, float]] = []
    key = run_key(model, config.to_dict(), x_train, targets) if state_path is not None else ""
    generators = {"order": generator, **({"attack": attack_generator} if attack_generator else {})}
    first_epoch, seconds_before = 0, 0.0
    machines: list[str] = []
    state = load_state(state_path, key, max_state_bytes(model))
    if state is not None:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        _set_random_state(generators, state.generators, dev)
        history, first_epoch, seconds_before = state.history, state.epoch, state.seconds
        machines = state.machines
        if monitor is not None:
            monitor.best = state.extra.get("monitor_best", 0.0)
    here = machine_label()
    if machines[-1:] != [here]:
        machines = [*machines, here]  # a run resumed on another machine names both
    start = time.perf_counter()
    bar = tqdm(
        total=config.epochs * steps_per_epoch, initial=first_epoch * steps_per_epoch, desc=desc,
        disable=not progress, unit="step", dynamic_ncols=True, leave=False,
    )  # fmt: skip
    try:
        for epoch in range(first_epoch, config.epochs):
            decay = config.lr_decay ** (epoch // config.lr_decay_every)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * decay
            order = torch.randperm(len(x_train), generator=generator)
            record = _epoch(model, optimizer, x_train, targets, order, config, dev, precision,
                            memory_format, bar if progress else None, epoch, perturb)  # fmt: skip
            record.update(convergence_record(model, x_train, x_test, y_test, config.temperature, dev))
            if monitor is not None:
                monitor(model, record, desc)  # in eval mode, restored to train mode after
            history.append(record)
            log.info("%s epoch %d/%d loss %.4f train acc %.4f", desc, epoch + 1, config.epochs,
                     record["loss"], record["train_accuracy"])  # fmt: skip
            if not math.isfinite(record["loss"]):
                raise TrainingError(f"{desc}: loss became {record['loss']} at epoch {epoch + 1}; "
                                    "lower --lr")  # fmt: skip
            if state_path is not None:
                TrainingState(
                    key=key, epoch=epoch + 1,
                    model={k: v.detach().cpu() for k, v in model.state_dict().items()},
                    optimizer=optimizer.state_dict(), generators=_random_state(generators, dev),
                    history=history, seconds=seconds_before + time.perf_counter() - start,
                    extra={} if monitor is None else {"monitor_best": monitor.best}, machines=machines,
                    epochs=config.epochs,
                ).save(state_path)  # fmt: skip
    finally:
        bar.close()
    if memory_format == torch.channels_last:  # the standard layout: checkpoints and attacks expect it
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]  # stubs omit it
    model.eval()
    accuracy = evaluate(model, x_test, y_test)["accuracy"]
    seconds = seconds_before + time.perf_counter() - start
    log.info("%s test accuracy %.4f (%.0f s)", desc, accuracy, seconds)
    if not allow_untrained:
        _refuse_untrained(model, accuracy, config, desc)
    return TrainResult(model=model, test_accuracy=accuracy, history=history, seconds=seconds,
                       precision=precision, memory_format=LAYOUT_NAMES[memory_format],
                       machines=machines)  # fmt: skip


def _random_state(generators: dict[str, torch.Generator], dev: torch.device) -> dict[str, torch.Tensor]:
    """Every random generator training draws from: the data order's, the attack's, torch's
    global one (dropout, initialisation) and, on CUDA, the device's."""
    found = {name: g.get_state() for name, g in generators.items()}
    found["torch"] = torch.get_rng_state()
    if dev.type == "cuda":
        found["cuda"] = torch.cuda.get_rng_state(dev)
    return found


def _set_random_state(generators: dict[str, torch.Generator], found: dict[str, torch.Tensor],
                      dev: torch.device) -> None:  # fmt: skip
    for name, g in generators.items():
        g.set_state(found[name])
    torch.set_rng_state(found["torch"])
    if dev.type == "cuda" and "cuda" in found:
        torch.cuda.set_rng_state(found["cuda"], dev)


LAYOUT_NAMES = {torch.channels_last: "channels_last", torch.contiguous_format: "contiguous"}


def training_layout(precision: str, dev: torch.device) -> torch.memory_format:
    """The memory layout training computes in: channels-last on a CPU, where its convolutions
    run faster in float32 too (one thread of a 2-core AMD EPYC: 1.15x, benchmarks/RESULTS.md;
    a 2-core Intel Xeon: 1.4x, issue 28), and for ``bf16`` anywhere; the standard layout for
    float32 on a GPU. Only the order of the sums changes, not the arithmetic's precision."""
    return torch.channels_last if precision == "bf16" or dev.type == "cpu" else torch.contiguous_format


def _prepare(model: nn.Module, precision: str, dev: torch.device) -> torch.memory_format:
    """Move ``model`` to ``dev`` in train mode and :func:`training_layout`. Returns the
    memory format the inputs must take (4-D inputs only: a linear network keeps its own)."""
    memory_format = training_layout(precision, dev)
    model.to(dev).train()
    model.to(memory_format=memory_format)  # type: ignore[call-overload]  # torch's stubs omit it
    return memory_format


def _epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, x_train: torch.Tensor, targets: torch.Tensor,
    order: torch.Tensor, config: TrainConfig, dev: torch.device, precision: str,
    memory_format: torch.memory_format, bar: tqdm | None, epoch: int, perturb: Perturb | None = None,
) -> dict[str, float]:  # fmt: skip
    """One pass over ``x_train`` in the order ``order``: loss at T, backward, optimiser step.

    ``perturb(model, x, y, epoch)`` gives each batch's adversarial examples (adversarial
    training; crafted in float32): they replace the batch (``pgd``, ``fgsm-rs``), or with
    ``trades`` the loss is :func:`~defdistill.training.adversarial.trades_loss` on the clean
    batch and them. ``precision`` ``bf16``: the forward passes under bfloat16 autocast, the
    loss on their logits cast to float32. Returns the epoch's mean loss and training accuracy
    (against the soft labels' argmax; on the inputs the cross-entropy sees: the adversarial
    examples with ``pgd`` and ``fgsm-rs``, the clean batch with ``trades``).
    """
    labels = targets if targets.dim() == 1 else targets.argmax(1)
    trades = config.adversarial == AdversarialMethod.TRADES
    n = len(x_train)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.long, device=dev)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            return model(x.contiguous(memory_format=memory_format) if x.dim() == 4 else x).float()

    for step in range(math.ceil(n / config.batch_size)):
        idx = order[step * config.batch_size : (step + 1) * config.batch_size]
        xb, tb = x_train[idx].to(dev, non_blocking=True), targets[idx].to(dev, non_blocking=True)
        x_adv = None if perturb is None else perturb(model, xb, tb, epoch)
        if trades and x_adv is not None:  # TRADES always perturbs (_adversarial)
            logits = forward(xb)
            loss = trades_loss(logits, forward(x_adv), tb, config.trades_beta, config.temperature)
        else:
            logits = forward(xb if x_adv is None else x_adv)
            loss = temperature_loss(logits, tb, config.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # accumulated on the device: no host synchronisation per step
        loss_sum += loss.detach() * len(idx)
        correct += (logits.detach().argmax(1) == labels[idx].to(dev)).sum()
        if bar is not None:
            bar.update()
            if step % 20 == 0:
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
    return {"epoch": epoch + 1, "loss": float(loss_sum) / n, "train_accuracy": int(correct) / n}


Perturb = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]


def _adversarial(
    config: TrainConfig, targets: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor
) -> tuple[Perturb | None, RobustnessMonitor | None, torch.Generator | None]:
    """The batch perturbation, the robustness monitor and the attack's random generator of
    adversarial training, if on."""
    method = config.adversarial
    if method is None:
        return None, None, None
    if targets.dim() != 1:
        raise ValueError("adversarial training needs hard labels, not soft labels")
    generator = torch.Generator().manual_seed(role_seed(config.seed, "adversarial"))

    def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
        warmup = config.adversarial_warmup
        eps = config.adversarial_eps * (min(1.0, (epoch + 1) / warmup) if warmup else 1.0)
        return adversarial_batch(model, x, y, method, eps, config.adversarial_steps,
                                 generator, config.temperature)  # fmt: skip

    return perturb, RobustnessMonitor(config, x_test, y_test), generator


def _refuse_untrained(model: nn.Module, accuracy: float, config: TrainConfig, desc: str) -> None:
    """Raise :class:`TrainingError` if the test accuracy is at or below the floor (near chance)."""
    num_classes = int(output_layer(model).out_features)
    floor = config.min_accuracy if config.min_accuracy is not None else chance_threshold(num_classes)
    if accuracy <= floor:
        raise TrainingError(
            f"{desc}: test accuracy {accuracy:.2%} is near chance ({1 / num_classes:.0%}); the "
            f"model did not learn (T={config.temperature:g}, head_scaling={config.head_scaling}, "
            f"{config.epochs} epoch(s)). Attacks on it would be meaningless. Train longer (more "
            "epochs; at large T plain training needs more), or pass allow_untrained=True to "
            "keep it anyway"
        )
