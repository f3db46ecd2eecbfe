"""Several seeds: mean ± sample standard deviation in results.json, the CSV and the report."""

import csv
import json
import math
import shutil
import statistics

import pytest
from pipeline_runner import TINY, tiny_dataset

from defdistill.experiments.pipeline import reproduce_on
from defdistill.experiments.report import robustness_table, summary_table
from defdistill.experiments.results import SCHEMA_VERSION, aggregate_rows, combine, mean_std


def test_mean_std_on_known_values():
    assert mean_std([1, 2, 3]) == (2.0, 1.0)  # sample std (n - 1)
    assert mean_std([0.5, 0.7]) == pytest.approx((0.6, math.sqrt(0.02)))
    assert mean_std([4.0]) == (4.0, 0.0)
    assert mean_std([1.0, None, math.nan, 3.0]) == (2.0, math.sqrt(2.0))  # missing values ignored
    assert mean_std([None, None]) == (None, None)
    assert mean_std([]) == (None, None)


def _row(name, accuracy, success, mean_l2, sha, example):
    return {"name": name, "temperature": None if name == "baseline" else 5.0,
            "distilled": name != "baseline", "test_accuracy": accuracy, "weights_sha256": sha,
            "attacks": {"jsma-f": {"success_rate": success, "samples": 4, "example": example},
                        "cw-l2": {"mean_l2": mean_l2}}}  # fmt: skip


def test_rows_are_aggregated_per_model():
    seed0 = [_row("baseline", 0.9, 0.5, 2.0, "a", {"x": [1]}),
             _row("distilled-T5", 0.8, 0.1, None, "b", None)]
    seed1 = [_row("baseline", 0.7, 0.7, 4.0, "c", {"x": [2]}),
             _row("distilled-T5", 0.8, 0.3, 3.0, "d", None)]
    base, student = aggregate_rows([seed0, seed1])
    assert base["name"] == "baseline" and base["seeds"] == 2 and base["temperature"] is None
    assert base["test_accuracy"] == pytest.approx(0.8)
    assert base["std"]["test_accuracy"] == pytest.approx(statistics.stdev([0.9, 0.7]))
    assert base["attacks"]["cw-l2"]["mean_l2"] == 3.0
    assert base["std"]["attacks"]["cw-l2"]["mean_l2"] == pytest.approx(math.sqrt(2))
    assert base["attacks"]["jsma-f"]["samples"] == 4 and base["std"]["attacks"]["jsma-f"]["samples"] == 0.0
    # values that differ between seeds and are not numbers are left out, never averaged
    assert "weights_sha256" not in base and "example" not in base["attacks"]["jsma-f"]
    assert student["test_accuracy"] == 0.8 and student["std"]["test_accuracy"] == 0.0
    assert "example" not in student["attacks"]["jsma-f"]  # one seed's image: only in per_seed
    assert student["attacks"]["cw-l2"]["mean_l2"] == 3.0  # the seed without a success is ignored
    assert student["std"]["attacks"]["cw-l2"]["mean_l2"] == 0.0
    with pytest.raises(ValueError, match="same models"):
        aggregate_rows([seed0, seed1[:1]])


def test_one_seed_is_written_as_it_is():
    result = {"schema_version": SCHEMA_VERSION, "config": {"seed": 3}, "environment": {}, "models": []}
    assert combine({3: result}) is result


@pytest.fixture(scope="module")
def two_seeds(tiny_run, tmp_path_factory):
    """The tiny sweep with seeds 0 and 1, in a copy of the single-seed run's directory."""
    out = tmp_path_factory.mktemp("seeds") / "out"
    shutil.copytree(tiny_run[0], out)
    reproduce_on(tiny_dataset(), TINY, out, seeds=[0, 1], progress=False)
    return out, json.loads((out / "synthetic" / "results.json").read_text())


@pytest.mark.heavy
def test_two_seeds_reuse_seed_0_and_store_every_seed(two_seeds, tiny_run):
    out, result = two_seeds
    config = result["config"]
    assert config["seeds"] == [0, 1] and "seed" not in config
    # seed 0 is the single-seed run's directory: nothing of it is recomputed
    assert [u.split("/")[0] for u in config["units_reused"]] == ["seed-0"] * 9  # ablations included
    assert [u.split("/")[0] for u in config["units_computed"]] == ["seed-1"] * 9
    assert (out / "synthetic" / "seed-1" / "models" / "distilled-T50" / "meta.json").is_file()
    assert [run["seed"] for run in result["per_seed"]] == [0, 1]
    # each seed draws its own images, recorded beside its rows, and runs its own ablations
    draws = [run["samples"] for run in result["per_seed"]]
    assert [d["seed"] for d in draws] == [0, 1] and draws[0]["indices"] != draws[1]["indices"]
    assert [run["ablations"]["seed"] for run in result["per_seed"]] == [0, 1]
    assert result["per_seed"][0]["models"] == tiny_run[3]["models"]
    seed1 = result["per_seed"][1]["models"]
    assert seed1[0]["weights_sha256"] != tiny_run[3]["models"][0]["weights_sha256"]  # another seed
    for i, row in enumerate(result["models"]):
        values = [run["models"][i]["attacks"]["jsma-f"]["success_rate"] for run in result["per_seed"]]
        assert row["attacks"]["jsma-f"]["success_rate"] == pytest.approx(statistics.mean(values))
        assert row["std"]["attacks"]["jsma-f"]["success_rate"] == pytest.approx(statistics.stdev(values))
        assert row["seeds"] == 2


@pytest.mark.heavy
def test_two_seeds_report_mean_and_std(two_seeds):
    out, result = two_seeds
    accuracies = [100 * run["models"][0]["test_accuracy"] for run in result["per_seed"]]
    cell = f"{statistics.mean(accuracies):.2f} ± {statistics.stdev(accuracies):.2f}"
    assert summary_table("synthetic", result, {})[2].startswith(f"| baseline | 1 (none) | {cell} (")
    assert all(line.count("±") >= 5 for line in robustness_table(result)[2:])
    md = (out / "report.md").read_text()
    assert "seeds 0, 1 (every number is the mean ± sample standard deviation" in md and cell in md
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    baseline = {r["seed"]: r for r in rows if r["name"] == "baseline"}
    assert set(baseline) == {"0", "1", "mean", "std"}
    assert float(baseline["mean"]["test_accuracy"]) == pytest.approx(statistics.mean(accuracies) / 100)
    assert float(baseline["std"]["test_accuracy"]) == pytest.approx(statistics.stdev(accuracies) / 100)
    combined = json.loads((out / "results.json").read_text())
    assert combined["schema_version"] == SCHEMA_VERSION and "per_seed" in combined["datasets"]["synthetic"]
