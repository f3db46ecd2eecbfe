"""Measurement: two or more reproduction runs of the same profile, model by model.

Reads each run's ``<run>/<dataset>/results.json`` (``defdistill reproduce --out RUN``) and
prints, per model and run, what a change of training arithmetic (``--precision``) or of
machine must not change for the reproduction's conclusions to stand (Papernot et al. 2016,
arXiv:1511.04508): the number format it trained in, test accuracy (Wilson interval), the
teacher's soft labels' mean entropy, the deployed mean max logit (bootstrap interval over the
test images, when the run's models are on disk), JSMA on F's success over attempts and robust
accuracy (Wilson intervals), C&W L2's mean distance, and the masking verdict. A last column
says whether each interval overlaps the first run's.

    python benchmarks/compare_runs.py /work/val/q-fp32 /work/val/q-bf16 docs/quick
    python benchmarks/compare_runs.py docs/precision/fp32 docs/precision/bf16 docs/quick  # stored results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from defdistill.checkpoint import load_model
from defdistill.data import load_dataset
from defdistill.evaluation.stats import MeanEstimate, Proportion
from defdistill.inference import predict_logits

COMPARED = {"accuracy": "acc", "logit": "logit", "jsma_f": "jsma", "robust": "robust"}


def interval(found: dict[str, Any] | None) -> Proportion | None:
    return None if not found else Proportion.of(found["k"], found["n"])


def cell(p: Proportion | None) -> str:
    return "–" if p is None else f"{p.rate:.1%} [{p.low:.1%}, {p.high:.1%}] ({p.k}/{p.n})"


def overlaps(a: Any, b: Any) -> bool | None:
    """Whether two intervals (both Proportion or both MeanEstimate) overlap; None if one is absent."""
    return None if a is None or b is None else not a.separated_from(b)


def logit_scale(run: Path, dataset: str, name: str, ds: Any) -> MeanEstimate | None:
    """The deployed model's mean max logit over the run's test images, if its weights are here."""
    path = run / dataset / "models" / name
    if not (path / "meta.json").exists():
        return None
    model, _ = load_model(path)
    return MeanEstimate.of(predict_logits(model, ds.x_test).max(1).values)


def load_result(run: Path, dataset: str) -> dict[str, Any]:
    """A run's results for ``dataset``: ``<run>/<dataset>/results.json``, or the combined
    ``<run>/results.json`` of a published report."""
    own = run / dataset / "results.json"
    if own.exists():
        return json.loads(own.read_text())
    return json.loads((run / "results.json").read_text())["datasets"][dataset]


def trained_in(run: Path, dataset: str, name: str) -> str:
    """A model's training precision from its ``meta.json`` (rows written before the report
    recorded it); float32 for a model from before the option, "–" without weights here."""
    meta = run / dataset / "models" / name / "meta.json"
    return json.loads(meta.read_text()).get("precision", "fp32") if meta.exists() else "–"


def describe(result: dict[str, Any], run: Path, dataset: str, ds: Any) -> dict[str, dict[str, Any]]:
    rows = {}
    for row in result["models"]:
        attacks = row.get("attacks") or {}
        rows[row["name"]] = {
            "precision": row.get("precision") or trained_in(run, dataset, row["name"]),
            "accuracy": interval(row.get("test_accuracy_interval")),
            "entropy": (row.get("soft_labels") or {}).get("mean_entropy"),
            "logit": logit_scale(run, dataset, row["name"], ds),
            "logit_point": row.get("mean_max_logit"),
            "jsma_f": interval((attacks.get("jsma-f") or {}).get("success_interval")),
            "robust": interval((row.get("robust_accuracy") or {}).get("unconditional_interval")),
            "cw_l2": (attacks.get("cw-l2") or {}).get("mean_l2"),
            "masking": ((row.get("checks") or {}).get("verdict") or {}).get("masking"),
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="reproduce --out directories (or docs/quick)")
    parser.add_argument("--dataset", default="mnist")
    args = parser.parse_args()
    results = {run: load_result(run, args.dataset) for run in args.runs}
    profile = results[args.runs[0]]["config"]["profile"]
    ds = load_dataset(args.dataset, None, profile.get("limit_train"), profile.get("limit_test"), train=False)
    runs = {run: describe(result, run, args.dataset, ds) for run, result in results.items()}
    reference = runs[args.runs[0]]
    print("| model | run | precision | test accuracy | soft-label entropy | mean max logit "
          "| JSMA on F | robust accuracy | C&W L2 mean | masking | overlaps the first run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, base in reference.items():
        for run, rows in runs.items():
            row = rows.get(name)
            if row is None:
                continue
            logit = row["logit"]
            scale = (f"{logit.mean:.1f} [{logit.low:.1f}, {logit.high:.1f}]" if logit is not None
                     else "–" if row["logit_point"] is None else f"{row['logit_point']:.1f}")  # fmt: skip
            checks = {short: overlaps(row[k], base[k]) for k, short in COMPARED.items()}
            agree = "–" if run == args.runs[0] else ", ".join(
                f"{k} {'yes' if c else 'NO'}" for k, c in checks.items() if c is not None)
            entropy = "–" if row["entropy"] is None else f"{row['entropy']:.4f}"
            l2 = "–" if row["cw_l2"] is None else f"{row['cw_l2']:.2f}"
            print(f"| {name} | {run} | {row['precision']} | {cell(row['accuracy'])} | {entropy} | {scale} "
                  f"| {cell(row['jsma_f'])} | {cell(row['robust'])} | {l2} | {row['masking']} | {agree} |")


if __name__ == "__main__":
    main()
