"""``defdistill reproduce``: load data, run the resumable sweep, write the report.

Layout of ``out``: ``<dataset>/models/...`` (checkpoints), ``<dataset>/units/*.json``
(finished measurements), ``<dataset>/results.json``; and, over every data set swept into
the same ``out`` (MNIST beside CIFAR-10, as in the paper), ``results.json``,
``results.csv``, ``figures/*.png``, ``report.md`` and the self-contained ``report.html``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from defdistill.data import DATASETS, Dataset, load_dataset
from defdistill.experiments.profiles import Profile
from defdistill.experiments.report import paper_values, summary_table, write_report
from defdistill.experiments.sweep import SCHEMA_VERSION, run_sweep
from defdistill.io import atomic_write_json

log = logging.getLogger(__name__)


def collect_results(out: Path) -> dict[str, dict[str, Any]]:
    """Every ``<dataset>/results.json`` under ``out`` with the current schema."""
    results = {}
    for name in (*DATASETS, "synthetic"):
        path = out / name / "results.json"
        if path.is_file():
            data = json.loads(path.read_text())
            if data.get("schema_version") == SCHEMA_VERSION:
                results[name] = data
            else:
                log.warning("%s has an old schema; rerun that data set", path)
    return results


def reproduce_on(
    ds: Dataset, profile: Profile, out: str | Path, seed: int = 0, device: str = "auto",
    force: bool = False, progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Sweep ``ds`` into ``out/<ds.name>`` and rewrite the combined report in ``out``."""
    out = Path(out)
    result = run_sweep(ds, profile, out / ds.name, seed=seed, device=device, force=force,
                       progress=progress)  # fmt: skip
    atomic_write_json(out / ds.name / "results.json", result.to_dict())
    paths: dict[str, Any] = dict(write_report(out, collect_results(out)))
    paths["summary"] = "\n".join(summary_table(ds.name, result.to_dict(), paper_values()))
    return paths


def reproduce(
    dataset: str, profile: Profile, out: str | Path, data_dir: str | Path | None = None,
    seed: int = 0, device: str = "auto", force: bool = False, progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Load ``dataset`` with the profile's limits and run :func:`reproduce_on`."""
    ds = load_dataset(dataset, data_dir, profile.limit_train, profile.limit_test)
    return reproduce_on(ds, profile, out, seed, device, force, progress)
