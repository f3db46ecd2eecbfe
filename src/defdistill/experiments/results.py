"""The ``<dataset>/results.json`` schema, and statistics over seeds.

Schema version 5: ``config["samples"]`` (the evaluation images: ``sampling`` "random",
``seed``, ``n``, ``test_images``, ``indices`` in draw order, the same for every model); per
model, ``accuracy_interval`` (Wilson, over ``test_images``), interval dicts beside the means
(``rho_adv_interval``, ``mean_l2_interval``, the gradients' ``zero`` and ``amplitude`` and
``log10`` intervals); top-level ``ablations`` (:mod:`defdistill.experiments.ablation_unit`).
Per model, ``attacks`` keyed by attack id (:class:`defdistill.names.AttackId`) with each
rate's Wilson interval and the images each attack fooled, ``robust_accuracy``
(per image, unconditional and conditional on clean-correct images), the drawn images
(``drawn``, ``clean_correct``, ``clean_images``), ``gradients``, the masking ``checks``, and
the network's own training curve (``training_history``: epoch, loss, held-out accuracy,
entropy at T; a distilled row adds its teacher's, ``teacher_history``), the number format it
trained in (``precision``: ``fp32`` or ``bf16``, what ``auto`` resolved to); the machines that
computed its timings (``train_machines``, ``teacher_train_machines``: every machine a resumed
training ran on, in order; ``eval_machine``, and ``eval_machines`` when a measurement resumed
on another machine; :func:`defdistill.devices.machine_label`);
models attacked on shared samples. A run with one seed writes ``schema_version``, ``config`` (with
``seed``), ``environment`` and ``models`` (one row per model).
A run with several seeds writes ``config["seeds"]`` instead of ``config["seed"]``,
``per_seed`` (``[{"seed": s, "models": rows}, ...]``, the rows each seed measured) and
``models``, one row per model aggregated over the seeds: every number is the mean over
the seeds that measured it (``None`` and NaN ignored), its sample standard deviation
(n - 1; 0 for a single value) sits at the same place in the row's ``std``, every other
value (name, role, a digest) is kept when all seeds agree and left out when they do not,
and what belongs to one seed only (adversarial ``example`` images, gradient
``histogram``s, whose bins differ, which images were fooled) is only in
``per_seed``; ``seeds`` counts the seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeGuard

SCHEMA_VERSION = 5
READABLE_SCHEMAS = (5,)  # older files lack columns of the report: that data set is rerun

PER_SEED_ONLY = frozenset({"example", "histogram", "fooled_images", "clean_images"})
_MISSING = object()


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1) of the finite values; ``(None, None)`` if none."""
    finite = [float(v) for v in values if _number(v) and math.isfinite(v)]
    if not finite:
        return None, None
    mean = math.fsum(finite) / len(finite)
    if len(finite) == 1:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (len(finite) - 1))


def _aggregate(values: list[Any]) -> tuple[Any, Any]:
    """``(mean, std)`` trees of values measured by several seeds (see the module docstring)."""
    if all(isinstance(v, dict) for v in values):
        means, stds = {}, {}
        keys = [k for k in dict.fromkeys(k for v in values for k in v) if k not in PER_SEED_ONLY]
        for key in keys:
            mean, std = _aggregate([v.get(key) for v in values])
            if mean is not _MISSING:
                means[key] = mean
            if std is not _MISSING:
                stds[key] = std
        return means, stds or _MISSING
    numeric = all(v is None or _number(v) for v in values) and any(_number(v) for v in values)
    if all(v == values[0] for v in values):
        return values[0], (0.0 if numeric else _MISSING)
    if numeric:
        return mean_std(values)
    return _MISSING, _MISSING


def aggregate_rows(runs: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per model: means over the runs (one list of rows per seed), with ``std``."""
    by_name = [{row["name"]: row for row in rows} for rows in runs]
    names = [row["name"] for row in runs[0]]
    if any(set(b) != set(names) for b in by_name):
        raise ValueError("every seed must have measured the same models")
    out = []
    for name in names:
        mean, std = _aggregate([b[name] for b in by_name])
        if any("learned" in b[name] for b in by_name):  # learned in every seed (rows before: True)
            mean["learned"] = all(b[name].get("learned", True) for b in by_name)
        out.append({**mean, "std": std if std is not _MISSING else {}, "seeds": len(runs)})
    return out


def combine(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The data set's ``results.json`` from each seed's result (``SweepResult.to_dict()``)."""
    seeds = list(per_seed)
    if len(seeds) == 1:
        return per_seed[seeds[0]]
    first = per_seed[seeds[0]]
    config = {k: v for k, v in first["config"].items()
              if k not in ("seed", "units_reused", "units_computed", "samples")}  # fmt: skip
    config["seeds"] = seeds
    for key in ("units_reused", "units_computed"):
        config[key] = [f"seed-{s}/{unit}" for s in seeds for unit in per_seed[s]["config"][key]]
    return {
        "schema_version": SCHEMA_VERSION,
        "config": config,
        "environment": first["environment"],
        "models": aggregate_rows([per_seed[s]["models"] for s in seeds]),
        "per_seed": [{"seed": s, "samples": per_seed[s]["config"].get("samples"),
                      "ablations": per_seed[s].get("ablations"), "models": per_seed[s]["models"]}
                     for s in seeds],
        # the first seed's ablations (each seed's are in per_seed)
        **({"ablations": first["ablations"]} if first.get("ablations") else {}),
    }


def seed_runs(result: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The model rows of each seed of a data set's result (one list for a single seed)."""
    if "per_seed" in result:
        return [run["models"] for run in result["per_seed"]]
    return [result["models"]]


def seeds_of(result: dict[str, Any]) -> list[int]:
    """The seeds a data set's result was measured with."""
    config = result["config"]
    return list(config["seeds"]) if "seeds" in config else [config["seed"]]
