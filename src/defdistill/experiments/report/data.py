"""What the other report modules share: reading a data set's rows, its seeds and the paper's values.

Reads only; nothing here decides or draws. A model's masking verdict is the one
:func:`defdistill.evaluation.checks.assess` stored in the row (:func:`verdict`).
"""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

from defdistill.data.dataset import DESCRIPTIONS
from defdistill.experiments.results import mean_std, seed_runs

DATASET_TITLES = {**DESCRIPTIONS, "synthetic": "synthetic"}  # the subset's names its size


def dataset_title(dataset: str) -> str:
    """The data set's name in reports and figures (the subset's names its size)."""
    return DATASET_TITLES.get(dataset, dataset)


# The paper's numbers a data set is compared with: the subset's images are CIFAR-10's own.
PAPER_DATASET = {"cifar10-subset": "cifar10"}


def paper_values() -> dict[str, Any]:
    """The paper's published numbers shipped with the package."""
    text = resources.files("defdistill.experiments").joinpath("paper_values.json").read_text()
    return json.loads(text)


def paper_entry(paper: dict, dataset: str, key: str) -> dict[str, Any]:
    """The paper's entry ``key`` (e.g. ``rho_adv_by_temperature``) for ``dataset``, or ``{}``."""
    return paper.get("datasets", {}).get(PAPER_DATASET.get(dataset, dataset), {}).get(key) or {}


def stat(result: dict, name: str, get: Any) -> tuple[float | None, float | None]:
    """``get(row)`` of model ``name``: its value for one seed (std None), else mean and std."""
    values = [get(next(r for r in rows if r["name"] == name)) for rows in seed_runs(result)]
    if len(values) == 1:
        return values[0], None
    return mean_std(values)


def distilled(rows: list[dict]) -> list[dict]:
    return sorted((r for r in rows if r["distilled"]), key=lambda r: r["temperature"])


def learned(row: dict) -> bool:
    """Whether the model's accuracy, and its teacher's, are above the chance floor training
    refuses, in every seed (``learned`` in its row, :func:`defdistill.experiments.sweep.learned`;
    rows from before the field: True). The report reads no attack on
    a distilled model that did not learn: on the few images it gets right by luck, a network at
    chance "resists" every attack."""
    return row.get("learned", True) is True


def studied(rows: list[dict]) -> list[dict]:
    """The distilled models that learned, coldest first: the ones whose measurements are read."""
    return [r for r in distilled(rows) if learned(r)]


def hottest(rows: list[dict]) -> dict | None:
    """The hottest distilled model that learned: the subject of the report's verdicts."""
    read = studied(rows)
    return read[-1] if read else None


def flagged(rows: list[dict], profile: dict) -> list[str]:
    """The distilled models more than the profile's accuracy tolerance below the baseline."""
    drop = profile.get("max_accuracy_drop", 1.5)
    return [r["name"] for r in distilled(rows) if r["accuracy_variation_pp"] < -drop]


def baseline(rows: list[dict]) -> dict:
    return next(r for r in rows if r["name"] == "baseline")


def adversarial(rows: list[dict]) -> list[dict]:
    """The adversarially trained models (the positive control), if the run has any."""
    return [r for r in rows if r.get("role") == "adversarial"]


def in_order(rows: list[dict]) -> list[dict]:
    """The baseline, then the distilled models by temperature: the order of the tables of T."""
    return [baseline(rows), *distilled(rows)]


def verdict(row: dict) -> dict | None:
    """The masking rule's verdict on a model (None when seeds disagree or it is absent)."""
    found = (row.get("checks") or {}).get("verdict") or {}
    return found if "masking" in found else None


def fmt(value: Any, spec: str = ".1f", suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:{spec}}{suffix}"


def masking_detected(result: dict) -> bool:
    """The masking rule (:func:`defdistill.evaluation.checks.assess`, as in ``defdistill audit``) flags
    the student distilled at the highest temperature that learned."""
    top = hottest(result["models"])
    found = verdict(top) if top else None
    return bool(found and found["masking"])

