"""The temperature sweep of Papernot et al. 2016 (arXiv:1511.04508, Section V), resumable.

For one data set and every seed: train the baseline (T = 1, no distillation) and, for
every temperature of the profile, a teacher and a distilled student deployed at T = 1;
then measure every model as the paper does (accuracy, JSMA success rate and ``rho_adv`` on
the deployed softmax, gradient amplitudes) and with the attacks that later broke
distillation (JSMA on the logits, PGD at the training temperature, Carlini & Wagner L2,
transfer from the baseline). Each model and each measurement is a resumable unit
(:mod:`.units`) and an independent task (:mod:`.tasks`) run by an executor
(:mod:`.executors`) in three phases: every teacher and undistilled model; every student,
with the undistilled models' measurements beside them; the students' measurements and the
ablations.

Seed 0 lives in the data set's directory itself, seed ``k > 0`` in ``seed-<k>/`` below it,
so a single-seed run and a later run with more seeds share seed 0's units.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from defdistill.checkpoint import environment, read_meta
from defdistill.data import Dataset
from defdistill.devices import machine, resolve_device
from defdistill.evaluation.battery import BatteryResult
from defdistill.evaluation.checks import assess
from defdistill.evaluation.samples import random_indices
from defdistill.evaluation.scaled_copy import scaled_copy_residual
from defdistill.experiments.ablation_unit import AblationTask, ablation_task, ablation_unit
from defdistill.experiments.executors import Executor, LocalExecutor
from defdistill.experiments.profiles import Profile
from defdistill.experiments.results import SCHEMA_VERSION
from defdistill.experiments.tasks import (
    MEASUREMENT_VERSION,
    EvalTask,
    TrainTask,
    eval_unit,
    load_exact,
    measure,
    student_unit,
    teacher_curve,
    teacher_unit,
    training_curve,
)
from defdistill.inference import predict_logits
from defdistill.models import paper_architecture
from defdistill.names import AdversarialMethod, ExecutorKind, Precision
from defdistill.pretrained import resolve_model
from defdistill.temperature import trained_at
from defdistill.training.config import PAPER_CONFIGS, TrainConfig, paper_config, role_seed
from defdistill.training.distill import role_configs
from defdistill.training.loop import chance_threshold
from defdistill.training.runs import dataset_signature

__all__ = ["SCHEMA_VERSION", "SweepResult", "measure", "model_name", "run_sweeps", "seed_dir"]

log = logging.getLogger(__name__)

@dataclass
class SweepResult:
    """Everything a report needs for one seed (serialised as ``results.json``)."""

    config: dict[str, Any]
    models: list[dict[str, Any]]
    environment: dict[str, str] = field(default_factory=environment)
    schema_version: int = SCHEMA_VERSION
    ablations: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "schema_version": self.schema_version,
            "config": self.config,
            "environment": self.environment,
            "models": self.models,
        }
        return out if self.ablations is None else {**out, "ablations": self.ablations}


def model_name(temperature: float | None) -> str:
    """``baseline`` or ``distilled-T<T>``."""
    return "baseline" if temperature is None else f"distilled-T{temperature:g}"


def adversarial_name(method: str) -> str:
    """``adversarial-<method>``: the adversarially trained model of a run."""
    return f"adversarial-{method}"


def seed_dir(root: str | Path, seed: int) -> Path:
    """Where seed ``seed``'s models and units live under a data set's directory ``root``."""
    return Path(root) if seed == 0 else Path(root) / f"seed-{seed}"


def run_sweeps(
    ds: Dataset, profile: Profile, out: str | Path, seeds: Sequence[int] = (0,),
    device: str = "auto", force: bool = False, progress: bool = True,
    architecture: str | None = None, executor: Executor | None = None,
    on_teachers: Callable[[int, list[dict[str, Any]]], None] | None = None,
) -> dict[int, SweepResult]:  # fmt: skip
    """The sweep for every seed, through ``executor`` (default: in this process).

    ``out`` is the data set's directory; see :func:`seed_dir`. ``on_teachers(seed, teachers)``
    is called once the first phase has trained every teacher, before any student, with each
    teacher's temperature and :func:`.tasks.teacher_curve`. Returns each seed's result.
    """
    out, executor = Path(out), executor or LocalExecutor()
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    local = executor.name == ExecutorKind.LOCAL
    # in process, fail early on --device cuda without a GPU; elsewhere each worker resolves it
    device = str(resolve_device(device)) if local else device
    architecture = architecture or paper_architecture(ds.input_shape[0])
    signature = dataset_signature(ds)
    temperatures = [None, *dict.fromkeys(float(t) for t in profile.temperatures)]
    show = progress and local  # a worker's progress bars would interleave in the driver's log
    train_tasks = [
        _train_task(ds.name, profile, seed_dir(out, s), s, t, architecture, signature, device, show,
                    force)
        for s in seeds
        for t in temperatures
    ]
    if profile.adversarial:
        train_tasks += [_adversarial_task(task, profile.adversarial) for task in train_tasks
                        if task.name == model_name(None)]  # fmt: skip
    controls = [shipped_control(task, profile.control, ds) for task in train_tasks
                if profile.control and task.name == model_name(None)]  # fmt: skip
    reused: dict[int, list[str]] = {s: [] for s in seeds}
    computed: dict[int, list[str]] = {s: [] for s in seeds}
    # a training and a measurement per model, a unit per teacher, a measurement per control
    units = 2 * len(train_tasks) + sum(t.distilled for t in train_tasks) + len(controls)
    ablation_units = len(seeds) if len(temperatures) > 1 else 0  # fewer if no student learned
    bar = tqdm(total=units + ablation_units, desc=f"{ds.name} sweep", unit="unit",
               disable=not progress, dynamic_ncols=True)  # fmt: skip
    start = time.perf_counter()
    metas: dict[tuple[int, str], dict[str, Any]] = {(t.seed, t.name): meta for t, meta in controls}
    teachers: dict[tuple[int, str], dict[str, Any]] = {(t.seed, t.name): {} for t, _ in controls}
    evaluated: dict[tuple[int, str], dict[str, Any]] = {}
    ablations: dict[int, dict[str, Any]] = {}

    def done(task: TrainTask | EvalTask | AblationTask, result: dict[str, Any], what: str) -> None:
        """Book a finished unit of any phase."""
        if isinstance(task, TrainTask):
            metas[task.seed, task.name] = result["meta"]
            teachers[task.seed, task.name] = {k: result.get(k) for k in TEACHER_KEYS}
            unit = f"train-{task.name}"
        elif isinstance(task, AblationTask):
            ablations[task.seed], unit = result["measured"], "ablations"
        else:
            evaluated[task.seed, task.name], unit = result, f"eval-{task.name}"
        (reused if result["reused"] else computed)[task.seed].append(unit)
        bar.set_postfix_str(what)
        bar.update()

    # Three phases. 1: every teacher and every undistilled model; 2: the students (each needs
    # its teacher) and, beside them, the measurements that need no student (the undistilled
    # models'); 3: the students' measurements and the ablations, submitted as soon as the
    # students are trained, behind the undistilled models' measurements still running. The
    # soft labels' curves come first, each phase's units are about one network long, and the
    # measurements of phase 2 fill the workers while the last students train. In each phase
    # the longest first, so parallel workers end it with the short ones, and among equal
    # trainings the hottest: plain training at a large T learns slowest, so a network that
    # does not learn stops the run soonest.
    def order(task: TrainTask, teacher_only: bool = False) -> tuple[int, float]:
        return training_cost(task, teacher_only), task.temperature or 0.0

    try:
        first = sorted(train_tasks, key=partial(order, teacher_only=True), reverse=True)
        for task, result in zip(first, executor.map(teacher_unit, first, ds), strict=True):
            if task.distilled:
                bar.set_postfix_str(f"trained the teacher of {task.name}")
                bar.update()
            else:
                done(task, result, f"trained {task.name}")
        if on_teachers is not None:
            for s in seeds:
                on_teachers(s, [{"name": t.name, "temperature": t.temperature, **teacher_curve(t)}
                                for t in train_tasks if t.seed == s and t.distilled])  # fmt: skip
        index = {s: evaluation_index(ds, profile, s) for s in seeds}
        undistilled = [t for t in train_tasks if not t.distilled] + [t for t, _ in controls]
        students = sorted((t for t in train_tasks if t.distilled), key=order, reverse=True)
        references = [_eval_task(t, metas, profile, signature, force, index[t.seed]) for t in undistilled]
        phase_two: list[TrainTask | EvalTask] = [*students, *references]
        second = executor.map(second_phase_unit, phase_two, ds)
        for task, result in zip(students, second, strict=False):  # stops at the last student
            done(task, result, f"trained {task.name}")
        hottest = {s: max((t for t in temperatures if t is not None and learned(metas[s, model_name(t)])),
                          default=None) for s in seeds}  # fmt: skip
        bar.total -= sum(t is None for t in hottest.values()) if ablation_units else 0
        # the ablations first: they are the longest units of the phase
        third: list[EvalTask | AblationTask] = [
            *(_ablation_task(s, out, t, metas, profile, signature, device, force)
              for s, t in hottest.items() if t is not None),
            *(_eval_task(t, metas, profile, signature, force, index[t.seed])
              for t in train_tasks if t.distilled),
        ]  # fmt: skip
        # submitted before the undistilled models' measurements are read: a worker that would
        # wait for the last of those starts a student's measurement instead
        measured = executor.map(measurement_unit, third, ds)
        for reference, result in zip(references, second, strict=True):
            done(reference, result, f"measured {reference.name}")
        for unit, result in zip(third, measured, strict=True):
            done(unit, result, f"measured {unit.name if isinstance(unit, EvalTask) else 'the ablations'}")
    finally:
        bar.close()
    nearest = {s: nearest_students([t for t in train_tasks if t.seed == s and t.distilled], metas, ds, device)
               for s in seeds}  # fmt: skip
    rows = {s: [{**_row(t.name, s, t.temperature, metas[s, t.name], evaluated[s, t.name]["measured"],
                        metas[s, "baseline"]),
                 "scaled_copy": nearest[s].get(t.name), **teachers[s, t.name]}
                for t in [*train_tasks, *(c for c, _ in controls)] if t.seed == s]
            for s in seeds}  # fmt: skip
    devices = {result["device"] for result in evaluated.values()}
    seconds = time.perf_counter() - start
    results = {}
    for seed in seeds:
        config = {
            "dataset": ds.name,
            "dataset_description": ds.description,
            "dataset_signature": signature,
            "architecture": architecture,
            "profile": profile.to_dict(),
            "seed": seed,
            "device": ",".join(sorted(devices)),
            "executor": executor.name,
            "machine": machine(),
            "seconds": seconds,
            "units_reused": reused[seed],
            "units_computed": computed[seed],
            # the evaluation images: drawn at random from the test set with the run's seed,
            # the same for every model
            "samples": {"sampling": "random", "seed": seed, "n": len(index[seed]),
                        "test_images": len(ds.x_test), "indices": index[seed]},
        }
        results[seed] = SweepResult(config=config, models=rows[seed], ablations=ablations.get(seed))
    return results


def _train_task(
    dataset: str, profile: Profile, root: Path, seed: int, temperature: float | None,
    architecture: str, signature: dict, device: str, progress: bool, force: bool,
) -> TrainTask:  # fmt: skip
    """The training task of one deployed model (see :func:`.tasks.train_unit`)."""
    config = paper_config(
        dataset if dataset in PAPER_CONFIGS else "mnist", epochs=profile.epochs,
        batch_size=profile.batch_size, seed=seed, temperature=trained_at(temperature),
        precision=profile.precision,
    )  # fmt: skip
    # the deployed model: the baseline itself, or the student; each from a seed of its own
    deployed = (replace(config, seed=role_seed(seed, "baseline")) if temperature is None
                else role_configs(config)[1])  # fmt: skip
    name = model_name(temperature)
    return TrainTask(
        name=name, seed=seed, temperature=temperature, root=str(root),
        path=str(root / "models" / name), architecture=architecture, dataset=signature,
        config=config.to_dict(), deployed_config=deployed.to_dict(), device=device,
        progress=progress, force=force,
    )  # fmt: skip


RECIPE_KEYS = ("adversarial", "adversarial_eps", "adversarial_steps", "adversarial_warmup", "epochs",
               "optimizer", "lr", "trades_beta")  # what the report says of a positive control's training
# what a row keeps of its teacher's training
TEACHER_KEYS = ("teacher_history", "teacher_train_seconds", "teacher_train_machines")


def second_phase_unit(ds: Dataset, task: TrainTask | EvalTask) -> dict[str, Any]:
    """The second phase's one task function: a student's training or an undistilled model's
    evaluation."""
    return student_unit(ds, task) if isinstance(task, TrainTask) else eval_unit(ds, task)


def measurement_unit(ds: Dataset, task: EvalTask | AblationTask) -> dict[str, Any]:
    """The last phase's one task function: a model's evaluation or a seed's ablations."""
    return ablation_unit(ds, task) if isinstance(task, AblationTask) else eval_unit(ds, task)


def training_cost(task: TrainTask, teacher_only: bool = False) -> int:
    """Forward-backward passes over the training set that ``task`` costs: epochs, times two
    networks (teacher and student) when distilled unless ``teacher_only``, times ``steps + 1``
    passes per batch when adversarially trained (``steps`` of the attack, one for FGSM, and the
    update; TRADES's update takes a second pass, on the clean batch and on ``x'``)."""
    deployed = task.deployed_config
    method = deployed.get("adversarial")
    per_epoch = 1
    if method is not None:
        per_epoch += 1 if method == AdversarialMethod.FGSM_RS else deployed["adversarial_steps"]
        if method == AdversarialMethod.TRADES:
            per_epoch += 1
    return int(deployed["epochs"]) * per_epoch * (2 if task.distilled and not teacher_only else 1)


def shipped_control(baseline: TrainTask, name: str, ds: Dataset) -> tuple[TrainTask, dict[str, Any]]:
    """The shipped model ``name`` (:attr:`Profile.control`) as the positive control beside
    ``baseline``, and its ``meta.json``: an adversarially trained network of the sweep's
    architecture, trained on this data set (its name, shapes and split sizes)."""
    path = resolve_model(name)
    meta = read_meta(path)
    trained_on, here = meta.get("dataset") or {}, dataset_signature(ds)
    same = all(trained_on.get(k) == here[k] for k in ("name", "input_shape", "num_classes"))
    if meta.get("role") != "adversarial" or meta.get("architecture") != baseline.architecture or not same:
        raise ValueError(f"profile control {name} is not an adversarially trained {baseline.architecture} "
                         f"of the {ds.name} data set; name another control or train one (profile field "
                         "adversarial)")  # fmt: skip
    config = meta["config"]
    task = replace(baseline, name=adversarial_name(config["adversarial"]), path=str(path), config=config,
                   deployed_config=config)  # fmt: skip
    return task, {**meta, "shipped": name}


def _adversarial_task(baseline: TrainTask, overrides: dict[str, Any]) -> TrainTask:
    """The positive control beside ``baseline``: the same network and data, adversarially
    trained with ``overrides`` (:attr:`Profile.adversarial`) from a seed of its own."""
    seed = role_seed(baseline.seed, "adversarial")
    deployed = TrainConfig(**{**baseline.deployed_config, **overrides, "seed": seed}).to_dict()
    name = adversarial_name(deployed["adversarial"])
    return replace(baseline, name=name, path=str(Path(baseline.root) / "models" / name),
                   config=deployed, deployed_config=deployed)  # fmt: skip


def evaluation_index(ds: Dataset, profile: Profile, seed: int) -> list[int]:
    """The test images every model of seed ``seed`` is evaluated on: ``max(attack_samples,
    adaptive_samples)`` drawn at random with ``seed`` whatever the models predict
    (:func:`defdistill.evaluation.samples.random_indices`: each model attacks the ones it
    classifies correctly, a clean error counts as a failure)."""
    n = max(profile.attack_samples, profile.adaptive_samples)
    return [int(i) for i in random_indices([], ds.x_test, ds.y_test, n, seed)[0]]


def nearest_students(
    tasks: list[TrainTask], metas: dict[tuple[int, str], dict], ds: Dataset, device: str,
    scale_samples: int = 500,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """For each distilled model of ``tasks`` (one seed's), the nearest other one in the sense
    of :func:`defdistill.evaluation.scaled_copy.scaled_copy_residual` on the first
    ``scale_samples`` test images, with their agreement: a residual near 0 means the sweep
    degenerated into one network with its logits scaled by T.
    """
    # on the driver: a worker's GPU may not be visible here
    dev = torch.device("cuda" if device.startswith("cuda") and torch.cuda.is_available() else "cpu")
    models = {t.name: load_exact(t.path, metas[t.seed, t.name]["weights_sha256"], dev) for t in tasks}
    x = ds.x_test[:scale_samples].to(dev)
    logits = {t.name: predict_logits(models[t.name], x).cpu() for t in tasks}
    nearest: dict[str, dict[str, Any]] = {}
    for name, z in logits.items():
        others = [(scaled_copy_residual(z, z_other), other) for other, z_other in logits.items()
                  if other != name]  # fmt: skip
        if others:
            residual, other = min(others)
            agreement = float((z.argmax(1) == logits[other].argmax(1)).float().mean())
            nearest[name] = {"nearest": other, "relative_residual": residual,
                             "prediction_agreement": agreement, "samples": len(x)}  # fmt: skip
    return nearest


def learned(meta: dict[str, Any]) -> bool:
    """Whether a trained network, and its teacher where it has one, have a test accuracy above
    the chance floor training refuses (:func:`defdistill.training.loop.chance_threshold`): a
    student of a teacher at chance was distilled from noise. The sweep keeps a distilled
    network that did not learn; the report does not read its attacks."""
    floor = meta["config"].get("min_accuracy")
    floor = chance_threshold(int(meta["num_classes"])) if floor is None else floor
    accuracies = [meta["test_accuracy"], *([meta["teacher"]["test_accuracy"]] if meta.get("teacher") else [])]
    return all(float(a) > floor for a in accuracies)


def _ablation_task(
    seed: int, out: Path, temperature: float, metas: dict[tuple[int, str], dict], profile: Profile,
    signature: dict, device: str, force: bool,
) -> AblationTask:  # fmt: skip
    """The ablations of seed ``seed`` (:mod:`.ablation_unit`): the baseline ×``temperature`` and
    the student distilled at ``temperature``, on ``attack_samples`` images."""
    root = seed_dir(out, seed)
    student = model_name(temperature)
    weights = (metas[seed, "baseline"]["weights_sha256"], metas[seed, student]["weights_sha256"])
    return ablation_task(seed, str(root), str(root / "models" / "baseline"), str(root / "models" / student),
                         temperature, profile.attack_samples, weights, signature, device, force)  # fmt: skip


def _eval_task(
    train: TrainTask, metas: dict[tuple[int, str], dict], profile: Profile, signature: dict,
    force: bool, index: list[int],
) -> EvalTask:  # fmt: skip
    """The evaluation task of a trained model (see :func:`.tasks.eval_unit`)."""
    seed = train.seed
    key = {
        "measurement_version": MEASUREMENT_VERSION,
        "weights": metas[seed, train.name]["weights_sha256"],
        "baseline_weights": metas[seed, "baseline"]["weights_sha256"],
        # the precision of training is in the weights: a float32 model's measurements are
        # reused whether fp32 or auto was asked
        "profile": {k: v for k, v in profile.to_dict().items() if k != "precision"},
        "seed": seed,
        "dataset": signature,
        "index": index,
    }
    return EvalTask(
        name=train.name, seed=seed, temperature=train.temperature, root=train.root,
        model=train.path, baseline=str(Path(train.root) / "models" / model_name(None)),
        index=index, key=key, profile=profile, device=train.device, force=force,
    )  # fmt: skip


def _row(
    name: str, seed: int, temperature: float | None, meta: dict, measured: dict, baseline_meta: dict
) -> dict[str, Any]:
    """A model's row: what it is, what was measured, and the masking rule's findings on it."""
    row = _measured_row(name, seed, temperature, meta, measured, baseline_meta)
    evidence = BatteryResult.from_dict(measured).evidence(
        zero_gradient_fraction=row["gradients"]["zero_fraction"], saturated_fraction=row["saturated_fraction"]
    )
    findings, decision = assess(evidence)
    return {**row, "checks": {"verdict": decision.to_dict(),
                              "findings": [f.to_dict() for f in findings]}}  # fmt: skip


def _measured_row(
    name: str, seed: int, temperature: float | None, meta: dict, measured: dict, baseline_meta: dict
) -> dict[str, Any]:
    accuracy = measured["accuracy"]["accuracy"]
    base_accuracy = baseline_meta["test_accuracy"]
    return {
        "name": name,
        "role": meta["role"],
        "temperature": temperature,
        "distilled": temperature is not None,
        "learned": learned(meta),
        "test_accuracy": accuracy,
        "test_accuracy_interval": measured["accuracy"].get("accuracy_interval"),
        "accuracy_variation_pp": 100.0 * (accuracy - base_accuracy),
        "mean_max_probability": measured["accuracy"]["mean_max_probability"],
        "saturated_fraction": measured["accuracy"]["saturated_fraction"],
        "mean_max_logit": measured["accuracy"]["mean_max_logit"],
        "train_seed": meta["config"]["seed"],
        # the number format it trained in; a model from before the option: float32
        "precision": meta.get("precision", Precision.FP32),
        **({"recipe": {k: meta["config"][k] for k in RECIPE_KEYS if k in meta["config"]},
            "shipped": meta.get("shipped")} if meta["role"] == "adversarial" else {}),
        "teacher_seed": None if temperature is None else role_seed(seed, "teacher", temperature),
        "teacher_accuracy": meta.get("teacher", {}).get("test_accuracy"),
        "soft_labels": meta.get("soft_labels"),
        "weights_sha256": meta["weights_sha256"],
        "train_seconds": meta.get("train_seconds"),
        "train_machines": meta.get("train_machines"),
        "training_history": training_curve(meta),
        **{k: v for k, v in measured.items() if k != "accuracy"},
    }
