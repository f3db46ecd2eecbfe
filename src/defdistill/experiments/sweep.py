"""The temperature sweep of Papernot et al. 2016 (arXiv:1511.04508, Section V), resumable.

For one data set: train the baseline (T = 1, no distillation) and, for every temperature
of the profile, a teacher and a distilled student deployed at T = 1; then measure every
model as the paper does (accuracy, JSMA success rate and ``rho_adv`` on the deployed
softmax, gradient amplitudes) and with the attacks that later broke distillation (JSMA on
the logits, PGD at the training temperature, Carlini & Wagner L2, transfer from the
baseline). Each model and each measurement is a resumable unit (:mod:`.units`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from defdistill.battery import (
    first_correct,
    gradient_stats,
    run_cw,
    run_jsma,
    run_pgd,
    run_transfer,
)
from defdistill.checkpoint import CheckpointError, environment, load_model
from defdistill.data import Dataset
from defdistill.distill import dataset_signature, distill, train_model
from defdistill.experiments.profiles import Profile
from defdistill.experiments.units import UnitStore
from defdistill.train import evaluate, paper_config, resolve_device

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# Bump when what a measurement unit computes changes: stored units are then recomputed.
MEASUREMENT_VERSION = 4
ARCHITECTURES = {"mnist": "mnist_cnn", "cifar10": "cifar10_cnn", "synthetic": "mnist_cnn"}


@dataclass
class SweepResult:
    """Everything a report needs (serialised as ``results.json``)."""

    config: dict[str, Any]
    models: list[dict[str, Any]]
    environment: dict[str, str] = field(default_factory=environment)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "config": self.config,
            "environment": self.environment,
            "models": self.models,
        }


def model_name(temperature: float | None) -> str:
    """``baseline`` or ``distilled-T<T>``."""
    return "baseline" if temperature is None else f"distilled-T{temperature:g}"


def _trained(path: Path, config: dict, signature: dict, architecture: str) -> tuple[nn.Module, dict]:
    """Load the model at ``path`` if it was trained with exactly this configuration."""
    model, meta = load_model(path)
    wanted = {"config": config, "dataset": signature, "architecture": architecture}
    if any(meta.get(k) != v for k, v in wanted.items()):
        raise CheckpointError(f"{path} was trained with another configuration")
    return model, meta


def run_sweep(
    ds: Dataset,
    profile: Profile,
    out: str | Path,
    seed: int = 0,
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
    architecture: str | None = None,
) -> SweepResult:
    """Train and measure every model of the sweep; finished units are reused."""
    out = Path(out)
    dev = resolve_device(device)
    architecture = architecture or ARCHITECTURES[ds.name]
    signature = dataset_signature(ds)
    store = UnitStore(out, force=force)
    temperatures = list(dict.fromkeys(float(t) for t in profile.temperatures))
    names = [model_name(None)] + [model_name(t) for t in temperatures]
    bar = tqdm(total=2 * len(names), desc=f"{ds.name} sweep", unit="unit", disable=not progress,
               dynamic_ncols=True)  # fmt: skip
    start = time.perf_counter()

    models: dict[str, tuple[nn.Module, dict]] = {}
    for name, temperature in zip(names, [None, *temperatures], strict=True):
        config = paper_config(
            ds.name if ds.name in ("mnist", "cifar10") else "mnist", epochs=profile.epochs,
            batch_size=profile.batch_size, seed=seed, temperature=temperature or 1.0,
        )  # fmt: skip
        # the deployed model: the baseline itself, or the student (fresh seed)
        deployed_config = config if temperature is None else replace(config, seed=seed + 1)
        path = out / "models" / name
        bar.set_postfix_str(f"training {name}")
        try:
            models[name] = _trained(path, deployed_config.to_dict(), signature, architecture)
            store.reused.append(f"train-{name}")
        except CheckpointError:
            if temperature is None:
                model, meta = train_model(ds, architecture, config, path, "baseline",
                                          device=str(dev), progress=progress)  # fmt: skip
            else:
                distill(ds, architecture, config, path, student_config=deployed_config,
                        device=str(dev), progress=progress)  # fmt: skip
                model, meta = load_model(path)
            models[name] = (model.eval(), meta)
            store.computed.append(f"train-{name}")
        bar.update()

    baseline_model, baseline_meta = models["baseline"]
    x_test, y_test = ds.x_test, ds.y_test
    rows: list[dict[str, Any]] = []
    for name, temperature in zip(names, [None, *temperatures], strict=True):
        model, meta = models[name]
        model.to(dev)
        bar.set_postfix_str(f"attacking {name}")
        key = {
            "measurement_version": MEASUREMENT_VERSION,
            "weights": meta["weights_sha256"],
            "baseline_weights": baseline_meta["weights_sha256"],
            "profile": profile.to_dict(),
            "seed": seed,
            "dataset": signature,
        }

        def compute(model: nn.Module = model, temperature: float | None = temperature) -> dict:
            return {
                "accuracy": evaluate(model, x_test, y_test, temperature=1.0),
                **measure(model, baseline_model, x_test, y_test, profile, temperature, seed),
            }

        measured = store.run(f"eval-{name}", key, compute)
        rows.append(_row(name, temperature, meta, measured, baseline_meta))
        bar.update()
    bar.close()
    config = {
        "dataset": ds.name,
        "dataset_signature": signature,
        "architecture": architecture,
        "profile": profile.to_dict(),
        "seed": seed,
        "device": str(dev),
        "seconds": time.perf_counter() - start,
        "units_reused": store.reused,
        "units_computed": store.computed,
    }
    return SweepResult(config=config, models=rows)


def measure(
    model: nn.Module, baseline: nn.Module, x: torch.Tensor, y: torch.Tensor, profile: Profile,
    temperature: float | None, seed: int,
) -> dict[str, Any]:  # fmt: skip
    """The paper's measurements and the adaptive attacks for one deployed model.

    ``temperature`` is the distillation temperature (None for the baseline); the adaptive
    PGD divides the logits by it, undoing the saturation distillation relies on.
    """
    jsma = {"samples": profile.attack_samples, "targets": profile.targets, "seed": seed}
    on_f = run_jsma(model, x, y, on="probs", **jsma)
    xs, ys = first_correct(model, x, y, profile.adaptive_samples)
    eps = 0.3 if x.shape[1] == 1 else 8 / 255  # MNIST: Madry et al.'s 0.3; colour: 8/255
    adaptive = {
        "jsma_logits": run_jsma(model, x, y, on="logits", **jsma),
        # JSMA on softmax(Z / T_train): at T = 1 this is the paper's attack itself
        "jsma_temperature": on_f if temperature in (None, 1.0) else run_jsma(
            model, x, y, on="probs", temperature=temperature, **jsma
        ),
        "pgd_plain": run_pgd(model, xs, ys, eps=eps, seed=seed),
        "pgd_temperature": run_pgd(
            model, xs, ys, eps=eps, temperature=temperature or 1.0, seed=seed
        ),
        "cw_l2": run_cw(
            model, xs, ys, iterations=profile.cw_iterations, search_steps=profile.cw_search_steps
        ),
        "transfer": run_transfer(baseline, model, xs, ys, eps=eps, seed=seed),
    }
    return {
        "jsma_probs": on_f,
        "gradients": gradient_stats(model, x[: profile.gradient_samples]),
        "adaptive": adaptive,
    }


def _row(
    name: str, temperature: float | None, meta: dict, measured: dict, baseline_meta: dict
) -> dict[str, Any]:
    accuracy = measured["accuracy"]["accuracy"]
    base_accuracy = baseline_meta["test_accuracy"]
    return {
        "name": name,
        "role": meta["role"],
        "temperature": temperature,
        "distilled": temperature is not None,
        "test_accuracy": accuracy,
        "accuracy_variation_pp": 100.0 * (accuracy - base_accuracy),
        "mean_max_probability": measured["accuracy"]["mean_max_probability"],
        "saturated_fraction": measured["accuracy"]["saturated_fraction"],
        "teacher_accuracy": meta.get("teacher", {}).get("test_accuracy"),
        "soft_labels": meta.get("soft_labels"),
        "weights_sha256": meta["weights_sha256"],
        **{k: v for k, v in measured.items() if k != "accuracy"},
    }
