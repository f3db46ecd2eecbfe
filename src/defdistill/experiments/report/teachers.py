"""The first phase's result, written as soon as every teacher of a seed has trained.

The paper profile trains for hours; its teachers finish in the first of the sweep's three
phases (:mod:`defdistill.experiments.sweep`). What they show about the soft labels, the
entropy of each teacher's softmax at T epoch by epoch (Papernot et al. 2016, Section IV.B:
the mechanism the paper describes), can be read then, without waiting for the students.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from defdistill.experiments.report.data import dataset_title, fmt
from defdistill.experiments.report.figures import soft_label_figure
from defdistill.experiments.report.soft_labels import soft_label_convergence
from defdistill.io import atomic_write_bytes, atomic_write_text

FIGURE = "soft_label_convergence.png"  # the report's name for the same figure


def write_teachers(directory: Path, dataset: str, rows: list[dict[str, Any]]) -> Path | None:
    """``teachers.md`` and its figure ``soft_label_convergence.png`` (the report's, for this
    seed alone) in ``directory`` from one seed's teachers.

    ``rows``: per teacher, ``temperature``, ``teacher_accuracy`` and ``teacher_history`` (its
    curve, :func:`defdistill.experiments.tasks.teacher_curve`). Returns the markdown's path;
    None when no teacher recorded its curve.
    """
    rows = [{**r, "distilled": True} for r in rows if r.get("teacher_history")]
    png = soft_label_figure({dataset: {"models": rows}})
    if png is None:
        return None
    lines = [
        f"# The teachers' soft labels, epoch by epoch: {dataset_title(dataset)}",
        "",
        "Written when every teacher of this seed had trained, before the students: the mean "
        "entropy of each teacher's softmax at its temperature on training images, and its "
        "held-out accuracy (first 1,000 test images), after each epoch.",
        "",
        "| T | epochs | entropy at T, last epoch (nats) | held-out accuracy, last epoch | test accuracy |",
        "|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: r["temperature"]):
        last = row["teacher_history"][-1]
        accuracy = row.get("teacher_accuracy")
        lines.append(f"| {row['temperature']:g} | {last['epoch']} | {last['entropy_at_t']:.4g} "
                     f"| {100 * last['heldout_accuracy']:.1f} % "
                     f"| {fmt(None if accuracy is None else 100 * accuracy, '.2f', ' %')} |")  # fmt: skip
    lines += ["", soft_label_convergence(rows) or "", "", f"![teachers]({FIGURE})", ""]
    atomic_write_bytes(directory / FIGURE, png)
    path = directory / "teachers.md"
    atomic_write_text(path, "\n".join(lines))
    return path
