"""``defdistill reproduce``: load data, run the resumable sweep, write the report.

Layout of ``out``: ``<dataset>/models/...`` (checkpoints), ``<dataset>/units/*.json``
(finished measurements) for seed 0, the same under ``<dataset>/seed-<k>/`` for any other
seed, ``<dataset>/results.json`` (every seed, and mean ± std when there are several); and,
over every data set swept into the same ``out`` (MNIST beside CIFAR-10, as in the paper),
``results.json``, ``results.csv``, ``figures/*.png``, ``report.md`` and the
self-contained ``report.html``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from defdistill.data import DATASETS, Dataset, load_dataset
from defdistill.experiments.executors import Executor
from defdistill.experiments.profiles import Profile
from defdistill.experiments.report import paper_values, summary_table, write_report
from defdistill.experiments.report.teachers import write_teachers
from defdistill.experiments.results import READABLE_SCHEMAS, combine
from defdistill.experiments.sweep import run_sweeps, seed_dir
from defdistill.io import atomic_write_json, exclusive, read_json_object, remove_temporaries

log = logging.getLogger(__name__)


def collect_results(out: Path) -> dict[str, dict[str, Any]]:
    """Every ``<dataset>/results.json`` under ``out`` with the current schema.

    A file that is damaged or of an older schema is left out of the report with a
    warning naming it (rerunning that data set rewrites it); it never stops the report.
    """
    results = {}
    for name in (*DATASETS, "synthetic"):
        path = out / name / "results.json"
        if not path.is_file():
            continue
        try:
            data = read_json_object(path)
        except (ValueError, OSError) as err:
            log.warning("%s; left out of the report: rerun that data set", err)
            continue
        if data.get("schema_version") in READABLE_SCHEMAS and isinstance(data.get("config"), dict):
            results[name] = data
        else:
            log.warning("%s has an old schema; rerun that data set", path)
    return results


def reproduce_on(
    ds: Dataset, profile: Profile, out: str | Path, seeds: int | Sequence[int] = 0,
    device: str = "auto", force: bool = False, progress: bool = True,
    executor: Executor | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Sweep ``ds`` into ``out/<ds.name>`` and rewrite the combined report in ``out``.

    ``seeds`` is one seed or several (the report then shows mean ± std over them);
    ``executor`` runs the sweep's tasks (default: in this process).
    """
    out = Path(out)
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    with exclusive(out):
        removed = remove_temporaries(out)
        if removed:
            log.info("removed %d temporary files left by an interrupted run", removed)
        # the teachers' soft labels, readable as soon as the first phase ends
        def teachers(seed: int, rows: list[dict[str, Any]]) -> None:
            write_teachers(seed_dir(out / ds.name, seed), ds.name, rows)

        per_seed = run_sweeps(ds, profile, out / ds.name, seeds, device=device, force=force,
                              progress=progress, executor=executor, on_teachers=teachers)  # fmt: skip
        result = combine({seed: r.to_dict() for seed, r in per_seed.items()})
        atomic_write_json(out / ds.name / "results.json", result)
        paths: dict[str, Any] = dict(write_report(out, collect_results(out)))
    paths["summary"] = "\n".join(summary_table(ds.name, result, paper_values()))
    return paths


def reproduce(
    dataset: str, profile: Profile, out: str | Path, data_dir: str | Path | None = None,
    seeds: int | Sequence[int] = 0, device: str = "auto", force: bool = False,
    progress: bool = True, executor: Executor | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Load ``dataset`` with the profile's limits and run :func:`reproduce_on`."""
    ds = load_dataset(dataset, data_dir, profile.limit_train, profile.limit_test)
    return reproduce_on(ds, profile, out, seeds, device, force, progress, executor)
