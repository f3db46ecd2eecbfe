"""The sweep's units as independent, idempotent tasks that any executor can run.

A task is a top-level function ``fn(ds, task)``: ``ds`` is the :class:`~defdistill.data.Dataset`
(shared by every task of a run) and ``task`` a small frozen dataclass (:class:`TrainTask`,
:class:`EvalTask`) naming the unit, its configuration and the directories it reads and
writes. Tasks load the models they need
from those directories and write their results there with the usual atomic-write and
resume rules, so they can run in this process or on a Ray worker, in any order within a
phase: training tasks are independent; an evaluation needs its model and the baseline.

* :func:`train_unit`: the baseline, or a teacher and its distilled student at T.
* :func:`eval_unit`: every measurement of one deployed model (:func:`measure`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from defdistill.checkpoint import CheckpointError, load_model, load_reusable
from defdistill.data import Dataset
from defdistill.devices import resolve_device
from defdistill.evaluation.battery import (
    run_cw,
    run_jsma,
    run_jsma_on_logits,
    run_pgd,
    run_transfer,
)
from defdistill.evaluation.gradients import gradient_stats
from defdistill.evaluation.samples import first_correct
from defdistill.evaluation.threats import standard_budgets
from defdistill.experiments.profiles import Profile
from defdistill.experiments.timing import Stopwatch
from defdistill.experiments.units import UnitStore
from defdistill.training.config import TrainConfig
from defdistill.training.distill import distill
from defdistill.training.loop import evaluate
from defdistill.training.runs import train_model

log = logging.getLogger(__name__)

# Bump when what a measurement unit computes changes: stored units are then recomputed.
MEASUREMENT_VERSION = 6  # 6: JSMA on Z takes the stronger of two logit saliencies


@dataclass(frozen=True)
class TrainTask:
    """One deployed model of the sweep to train (or reuse).

    Attributes:
        name: ``baseline``, ``distilled-T<T>`` or ``adversarial-<method>``.
        seed: the run's seed.
        temperature: the distillation temperature; None for the others.
        root: the seed's directory (where ``models/`` and ``units/`` live).
        path: the deployed model's directory.
        architecture: registered model name.
        dataset: the data set's signature (:func:`defdistill.training.runs.dataset_signature`).
        config: the run's configuration (seed = the run's seed), as a dict.
        deployed_config: the deployed model's configuration, with its own derived seed.
        device, progress: where to train, and whether to show progress bars.
        force: retrain even if a model trained with this configuration exists.
    """

    name: str
    seed: int
    temperature: float | None
    root: str
    path: str
    architecture: str
    dataset: dict[str, Any]
    config: dict[str, Any]
    deployed_config: dict[str, Any]
    device: str
    progress: bool
    force: bool

    @property
    def distilled(self) -> bool:
        return self.temperature is not None


@dataclass(frozen=True)
class EvalTask:
    """The measurements of one trained model.

    Attributes:
        name, seed, temperature, root: as in :class:`TrainTask`.
        model, baseline: the model's and the baseline's directories.
        index: the test images to attack, shared by every model of the run; None: each
            model's own first correctly classified ones.
        key: what the result depends on (both models' weight digests, ``index``, the
            profile, :data:`MEASUREMENT_VERSION`); a stored result with another key is
            recomputed.
        profile: the sweep's profile.
        device, force: where to compute, and whether to recompute a stored result.
    """

    name: str
    seed: int
    temperature: float | None
    root: str
    model: str
    baseline: str
    index: list[int] | None
    key: dict[str, Any]
    profile: Profile
    device: str
    force: bool


def train_unit(ds: Dataset, task: TrainTask) -> dict[str, Any]:
    """Train (or reuse) one deployed model of the sweep.

    Returns:
        ``{"name", "meta", "reused"}`` with the deployed model's ``meta.json``.
    """
    path, deployed = Path(task.path), task.deployed_config
    wanted = {"config": deployed, "dataset": task.dataset, "architecture": task.architecture}
    if not task.force:
        try:
            _, meta = load_reusable(path, wanted)
            return {"name": task.name, "meta": meta, "reused": True}
        except CheckpointError:
            pass
    config, clock = TrainConfig(**task.config), Stopwatch(f"train-{task.name}")
    if task.distilled:
        meta = distill(ds, task.architecture, config, path, device=task.device,
                       progress=task.progress, reuse_teacher=not task.force)  # fmt: skip
    else:
        role = "adversarial" if deployed.get("adversarial") else "baseline"
        _, meta = train_model(ds, task.architecture, TrainConfig(**deployed), path, role,
                              device=task.device, progress=task.progress)  # fmt: skip
    clock.lap("training", None)
    return {"name": task.name, "meta": meta, "reused": False, "timings": clock.seconds}


def eval_unit(ds: Dataset, task: EvalTask) -> dict[str, Any]:
    """Measure (or reuse the stored measurements of) one deployed model.

    Returns:
        ``{"name", "measured", "reused", "device"}``.
    """
    dev = resolve_device(task.device)
    store = UnitStore(task.root, force=task.force)
    unit, key = f"eval-{task.name}", task.key

    def compute() -> dict[str, Any]:
        model = load_exact(task.model, key["weights"], dev)
        baseline = load_exact(task.baseline, key["baseline_weights"], torch.device("cpu"))
        index = None if task.index is None else torch.tensor(task.index, dtype=torch.long)
        clock = Stopwatch(unit)
        return {
            "accuracy": clock.lap("accuracy", evaluate(model, ds.x_test, ds.y_test, temperature=1.0)),
            **measure(model, baseline, ds.x_test, ds.y_test, task.profile, task.temperature,
                      task.seed, index, clock),
        }

    measured = store.run(unit, key, compute)
    return {"name": task.name, "measured": measured, "reused": unit in store.reused,
            "device": str(dev)}  # fmt: skip


def load_exact(path: str, weights_sha256: str, device: torch.device) -> nn.Module:
    """The model at ``path``, which must still hold the weights the task was planned for."""
    model, meta = load_model(path, device)
    if meta["weights_sha256"] != weights_sha256:
        raise CheckpointError(f"{path} changed while the sweep was running; run it again")
    return model


def measure(
    model: nn.Module, baseline: nn.Module, x: torch.Tensor, y: torch.Tensor, profile: Profile,
    temperature: float | None, seed: int, index: torch.Tensor | None = None,
    clock: Stopwatch | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The paper's measurements and the adaptive attacks for one deployed model.

    ``temperature`` is the distillation temperature (None for the baseline); the adaptive
    PGD divides the logits by it, undoing the saturation distillation relies on.
    ``index`` selects the test images to attack (the sweep passes the first ones that
    every model of the run classifies correctly, so all models face the same images);
    JSMA takes its first ``attack_samples``, the other attacks its first
    ``adaptive_samples``. Without it, each attack takes the first images ``model``
    classifies correctly. ``timings``: each step's wall time in seconds, booked on
    ``clock`` (started before the call when given).
    """
    clock = clock or Stopwatch("measure")
    lap = clock.lap
    if index is not None:
        x_att, y_att = x[index.to(x.device)], y[index.to(y.device)]
    else:
        x_att, y_att = x, y
    jsma = {"samples": profile.attack_samples, "targets": profile.targets, "seed": seed}
    on_f = lap("jsma_probs", run_jsma(model, x_att, y_att, on="probs", **jsma))
    xs, ys = first_correct(model, x_att, y_att, profile.adaptive_samples)
    eps = standard_budgets(x).primary.eps  # MNIST: Madry et al.'s 0.3; colour: 8/255
    adaptive = {
        "jsma_logits": lap("jsma_logits", run_jsma_on_logits(model, x_att, y_att, **jsma)),
        # JSMA on softmax(Z / T_train): at T = 1 this is the paper's attack itself
        "jsma_temperature": lap("jsma_temperature", on_f if temperature in (None, 1.0) else run_jsma(
            model, x_att, y_att, on="probs", temperature=temperature, **jsma
        )),
        "pgd_plain": lap("pgd_plain", run_pgd(model, xs, ys, eps=eps, seed=seed)),
        "pgd_temperature": lap("pgd_temperature", run_pgd(
            model, xs, ys, eps=eps, temperature=temperature or 1.0, seed=seed
        )),
        # the logit margin does not saturate: cross-entropy in float32 does on confident
        # networks (its gradient rounds to 0), at any temperature
        "pgd_margin": lap("pgd_margin", run_pgd(model, xs, ys, eps=eps, loss="margin", seed=seed)),
        "cw_l2": lap("cw_l2", run_cw(
            model, xs, ys, iterations=profile.cw_iterations, search_steps=profile.cw_search_steps
        )),
        "transfer": lap("transfer", run_transfer(baseline, model, xs, ys, eps=eps, seed=seed)[0]),
    }
    return {
        "jsma_probs": on_f,
        "gradients": lap("gradients", gradient_stats(model, x[: profile.gradient_samples])),
        "adaptive": adaptive,
        "timings": clock.seconds,
    }
