"""The sweep's units as independent, idempotent tasks that any executor can run.

A task is a top-level function ``fn(ds, task)``: ``ds`` is the :class:`~defdistill.data.Dataset`
(shared by every task of a run) and ``task`` a small frozen dataclass (:class:`TrainTask`,
:class:`EvalTask`) naming the unit, its configuration and the directories it reads and
writes. Tasks load the models they need
from those directories and write their results there with the usual atomic-write and
resume rules, so they can run in this process or on a Ray worker, in any order within a
phase: training tasks are independent; an evaluation needs its model and the baseline.

* :func:`teacher_unit`: a distilled model's teacher alone (the others: :func:`train_unit`).
* :func:`train_unit`: the baseline, or a teacher and its distilled student at T;
  :func:`student_unit` once :func:`teacher_unit` has run.
* :func:`eval_unit`: every measurement of one deployed model (:func:`measure`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from defdistill.checkpoint import CheckpointError, load_model, load_reusable, read_meta
from defdistill.data import Dataset
from defdistill.devices import machine_label, resolve_device
from defdistill.evaluation import battery as b
from defdistill.evaluation.battery import AttackSpec, StepRecord, run_battery
from defdistill.evaluation.gradients import gradient_stats
from defdistill.evaluation.samples import random_indices, random_order
from defdistill.evaluation.stats import Proportion
from defdistill.evaluation.threats import ThreatModel, standard_budgets
from defdistill.experiments.profiles import Profile
from defdistill.experiments.timing import Stopwatch
from defdistill.experiments.units import UnitStore
from defdistill.inference import evaluate
from defdistill.names import AttackId, JsmaOn, Loss, Norm, TargetMode
from defdistill.temperature import trained_at
from defdistill.training.config import TrainConfig
from defdistill.training.distill import distill, role_configs, train_teacher
from defdistill.training.runs import train_model

log = logging.getLogger(__name__)

# Bump when what a measurement unit computes changes: stored units are then recomputed.
MEASUREMENT_VERSION = 8


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

    def train_config(self, deployed: bool = False) -> TrainConfig:
        """The run's (or, with ``deployed``, the deployed model's) configuration with its
        precision resolved where the task runs: ``auto`` reads as ``fp32`` or ``bf16`` on this
        worker's device (:meth:`TrainConfig.resolved`)."""
        return TrainConfig(**(self.deployed_config if deployed else self.config)).resolved(self.device)


@dataclass(frozen=True)
class EvalTask:
    """The measurements of one trained model.

    Attributes:
        name, seed, temperature, root: as in :class:`TrainTask`.
        model, baseline: the model's and the baseline's directories.
        index: the test images drawn at random for the run (correct or not), shared by every
            model of the run; None: drawn by :func:`measure` with the run's seed.
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


def teacher_unit(ds: Dataset, task: TrainTask) -> dict[str, Any]:
    """The first wave of the sweep's training: a distilled model's teacher alone (reused as
    :func:`train_unit` would, retrained with ``force``), every other model whole
    (:func:`train_unit`). The teachers' soft labels are then measured before any student has
    trained, and the wave's units have the same length: one network each."""
    if not task.distilled:
        return train_unit(ds, task)
    _, meta = train_teacher(ds, task.architecture, task.train_config(), task.path,
                            device=task.device, progress=task.progress, allow_untrained=True,
                            reuse=not task.force)  # fmt: skip
    return {"name": task.name, "meta": meta}


def student_unit(ds: Dataset, task: TrainTask) -> dict[str, Any]:
    """The second wave: the distilled model of ``task`` from the teacher :func:`teacher_unit`
    has just trained or checked (reused even with ``force``, which retrains the student)."""
    return train_unit(ds, task, teacher_ready=True)


def train_unit(ds: Dataset, task: TrainTask, teacher_ready: bool = False) -> dict[str, Any]:
    """Train (or reuse) one deployed model of the sweep; with ``teacher_ready``, a distilled
    model's teacher is reused as it stands (:func:`student_unit`).

    Returns:
        ``{"name", "meta", "reused"}`` with the deployed model's ``meta.json``.
    """
    path, deployed = Path(task.path), task.train_config(deployed=True)
    wanted = {"config": deployed.to_dict(), "dataset": task.dataset, "architecture": task.architecture}
    if not task.force:
        try:
            _, meta = load_reusable(path, wanted)
            if task.distilled:
                _check_teacher(task, meta)
            return {"name": task.name, "meta": meta, "reused": True, **teacher_curve(task)}
        except CheckpointError as err:
            log.info("%s: %s; training it", task.name, err)
    config, clock = task.train_config(), Stopwatch(f"train-{task.name}")
    if task.distilled:
        # a teacher or student at chance is kept (the report flags it, with its curve): at a
        # large T plain training may not learn in the profile's epochs, which is a result
        meta = distill(ds, task.architecture, config, path, device=task.device, progress=task.progress,
                       allow_untrained=True, reuse_teacher=teacher_ready or not task.force)  # fmt: skip
    else:
        role = "adversarial" if deployed.adversarial else "baseline"
        _, meta = train_model(ds, task.architecture, deployed, path, role,
                              device=task.device, progress=task.progress)  # fmt: skip
    clock.lap("training", None)
    return {"name": task.name, "meta": meta, "reused": False, "timings": clock.seconds, **teacher_curve(task)}


CURVE_KEYS = ("epoch", "loss", "heldout_accuracy", "entropy_at_t")


def training_curve(meta: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A model's ``meta.json`` history, epoch by epoch, reduced to :data:`CURVE_KEYS` (loss,
    held-out accuracy, entropy of its softmax at T); None for a model trained before the
    history recorded held-out accuracy."""
    history = [r for r in meta.get("history") or [] if isinstance(r, dict)]
    curve = [{k: r[k] for k in CURVE_KEYS if k in r} for r in history]
    return curve if curve and all("heldout_accuracy" in r for r in curve) else None


def teacher_curve(task: TrainTask) -> dict[str, Any]:
    """What the distilled model's teacher's ``meta.json`` says of its training: its wall time
    (``teacher_train_seconds``) and the machines that measured it (``teacher_train_machines``),
    its test accuracy (``teacher_accuracy``) and, epoch by epoch, its loss, held-out accuracy
    and the entropy of its softmax at T (``teacher_history``,
    :func:`.training.loop.convergence_record`; absent for a teacher trained before that record
    existed). Empty for an undistilled model."""
    if not task.distilled:
        return {}
    try:
        meta = read_meta(Path(task.path) / "teacher")
    except CheckpointError:
        return {}
    curve = training_curve(meta)
    found = {"teacher_train_seconds": meta.get("train_seconds"),
             "teacher_train_machines": meta.get("train_machines"),
             "teacher_accuracy": meta.get("test_accuracy")}  # fmt: skip
    return {**found, "teacher_history": curve} if curve and "entropy_at_t" in curve[0] else found


def _check_teacher(task: TrainTask, student_meta: dict[str, Any]) -> None:
    """``CheckpointError`` unless the student was distilled from the teacher now beside it,
    itself trained on this data with this run's teacher configuration."""
    teacher_config = role_configs(task.train_config())[0].to_dict()
    wanted = {"config": teacher_config, "dataset": task.dataset, "architecture": task.architecture}
    _, teacher = load_reusable(Path(task.path) / "teacher", wanted)
    if student_meta.get("teacher", {}).get("weights_sha256") != teacher["weights_sha256"]:
        raise CheckpointError(f"{task.path} was distilled from another teacher")


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
        baseline = (None if task.model == task.baseline  # no transfer from the baseline to itself
                    else load_exact(task.baseline, key["baseline_weights"], torch.device("cpu")))  # fmt: skip
        index = None if task.index is None else torch.tensor(task.index, dtype=torch.long)
        clock, steps, here = Stopwatch(unit), store.steps(unit, key), machine_label()
        measured = {
            "accuracy": clock.lap("accuracy", accuracy_with_interval(model, ds.x_test, ds.y_test)),
            **measure(model, baseline, ds.x_test, ds.y_test, task.profile, task.temperature,
                      task.seed, index, clock, steps),
            "eval_machine": here,  # what the timings were measured on
        }
        # a measurement resumed on another machine: every machine that timed one of its attacks
        machines = list(dict.fromkeys([*steps.machines, here]))
        return measured | ({"eval_machines": machines} if len(machines) > 1 else {})

    measured = store.run(unit, key, compute)
    return {"name": task.name, "measured": measured, "reused": unit in store.reused,
            "device": str(dev)}  # fmt: skip


def accuracy_with_interval(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """:func:`defdistill.inference.evaluate` at T = 1 on all of ``(x, y)``, with the accuracy's
    Wilson interval (``accuracy_interval``) over its ``len(x)`` images."""
    measured = evaluate(model, x, y, temperature=1.0)
    n = len(x)
    return {**measured, "accuracy_interval": Proportion.of(round(measured["accuracy"] * n), n).to_dict()}


def load_exact(path: str, weights_sha256: str, device: torch.device) -> nn.Module:
    """The model at ``path``, which must still hold the weights the task was planned for."""
    model, meta = load_model(path, device)
    if meta["weights_sha256"] != weights_sha256:
        raise CheckpointError(f"{path} changed while the sweep was running; run it again")
    return model


def sweep_battery(
    profile: Profile, eps: float, temperature: float | None, baseline: nn.Module | None, seed: int
) -> list[AttackSpec]:
    """The reproduction's attacks as data, at the primary L∞ budget ``eps``.

    JSMA (the paper's protocol) on F, on Z and on ``softmax(Z / T)`` on the first
    ``attack_samples`` correct images; PGD with cross-entropy on F and on ``Z / T`` and with
    the logit margin, Carlini & Wagner L2 and transfer from ``baseline`` on the first
    ``adaptive_samples``. The attacks on ``Z / T`` need a training temperature other than 1.
    """
    t = trained_at(temperature)
    hot = t != 1.0
    primary = ThreatModel(Norm.LINF, eps)
    jsma: dict[str, Any] = {"targets": TargetMode(profile.targets), "seed": seed}
    few, many = profile.attack_samples, profile.adaptive_samples

    def counted(attack: AttackId, label: str, run: b.Run, gradient: bool = True) -> AttackSpec:
        return AttackSpec(attack, label, run, primary, gradient=gradient, worst_case=True, samples=many)

    specs = [
        AttackSpec(AttackId.JSMA_F, "JSMA on F", b.jsma(JsmaOn.PROBS, example=True, **jsma), samples=few),
        AttackSpec(AttackId.JSMA_Z, "JSMA on Z", b.jsma_on_logits(example=True, **jsma), samples=few),
    ]
    if hot:
        specs.append(AttackSpec(AttackId.JSMA_ZT, "JSMA on softmax(Z/T)",
                                b.jsma(JsmaOn.PROBS, temperature=t, **jsma), samples=few))  # fmt: skip
    specs.append(counted(AttackId.PGD_CE_F, f"PGD {primary} CE on F", b.pgd(eps, seed=seed)))
    if hot:
        run = b.pgd(eps, temperature=t, seed=seed)
        specs.append(counted(AttackId.PGD_CE_ZT, f"PGD {primary} CE on Z/T", run))
    # the logit margin does not saturate: cross-entropy in float32 does on confident
    # networks (its gradient rounds to 0), at any temperature
    specs += [
        counted(AttackId.PGD_MARGIN, f"PGD {primary} margin on Z", b.pgd(eps, loss=Loss.MARGIN, seed=seed)),
        AttackSpec(AttackId.CW_L2, "C&W L2", b.cw_l2(profile.cw_iterations, profile.cw_search_steps),
                   samples=many),
    ]  # fmt: skip
    if baseline is not None:
        specs.append(counted(AttackId.TRANSFER, f"transfer PGD {primary} from the baseline",
                             b.transfer(baseline, eps, seed=seed), gradient=False))  # fmt: skip
    return specs


def measure(
    model: nn.Module, baseline: nn.Module | None, x: torch.Tensor, y: torch.Tensor, profile: Profile,
    temperature: float | None, seed: int, index: torch.Tensor | None = None,
    clock: Stopwatch | None = None, record: StepRecord | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The paper's measurements and the adaptive attacks for one deployed model.

    ``temperature`` is the distillation temperature (None for the baseline); the adaptive
    attacks divide the logits by it, undoing the saturation distillation relies on.
    ``baseline`` is the transfer attack's source (None: no transfer, for the baseline itself).
    ``index`` are the test images drawn at random for the run (the sweep draws them once with
    :func:`defdistill.evaluation.samples.random_indices`, so all models face the same
    images); without it, ``max(attack_samples, adaptive_samples)`` images are drawn here
    with ``seed``. The battery (:func:`sweep_battery`) attacks the correctly classified ones
    among them (JSMA the first ``attack_samples``, the others ``adaptive_samples``); a
    clean error counts as a failure in the unconditional robust accuracy. The gradient
    amplitude is measured on the first ``gradient_samples`` images of the same seeded
    permutation of the test set (:func:`defdistill.evaluation.samples.random_order`).
    ``clock`` books the steps' wall times (started before the call when given);
    ``record`` records each finished attack (:func:`run_battery`), so that an interrupted
    measurement resumes at the attack it was in.

    Returns:
        ``gradients`` (:func:`gradient_stats`), the battery's result
        (:meth:`BatteryResult.to_dict`: ``attacks`` by id, ``robust_accuracy``, the drawn
        images) and ``timings``: seconds per step (``gradients``, each attack by its key, and
        whatever ``clock`` had booked before).
    """
    clock = clock or Stopwatch("measure")
    if index is None:
        index, _ = random_indices([model], x, y, max(profile.attack_samples, profile.adaptive_samples), seed)
    index = index.to(x.device)
    eps = standard_budgets(x).primary.eps  # MNIST: Madry et al.'s 0.3; colour: 8/255
    specs = sweep_battery(profile, eps, temperature, baseline, seed)
    gradient_index = random_order(len(x), seed)[: profile.gradient_samples].to(x.device)
    gradients = clock.lap("gradients", gradient_stats(model, x[gradient_index], seed=seed))
    result = run_battery(model, specs, x[index], y[index.to(y.device)], record)
    return {
        "gradients": gradients,
        **result.to_dict(),
        "timings": {**clock.seconds, **{key: a.seconds for key, a in result.attacks.items()}},
    }
