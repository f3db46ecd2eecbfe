"""The evidence in the tiny run's report: random draws with a seed, intervals in tables and CSV,
the two ablations."""

import csv
import math

from pipeline_runner import TINY, tiny_dataset

from defdistill.evaluation.samples import random_order
from defdistill.experiments.report.columns import COLUMNS


def test_the_sweep_draws_its_images_at_random_with_the_seed_for_every_model(tiny_run):
    _, _, _, result = tiny_run
    samples = result["config"]["samples"]
    n = max(TINY.attack_samples, TINY.adaptive_samples)
    drawn = random_order(len(tiny_dataset().x_test), 0)[:n].tolist()
    assert samples["sampling"] == "random" and samples["seed"] == 0 and samples["indices"] == drawn
    # every model is evaluated on all drawn images (its clean errors count as failures)
    assert {row["drawn"] for row in result["models"]} == {n}
    for row in result["models"]:
        u = row["robust_accuracy"]["unconditional_interval"]
        assert u["n"] <= n and u["k"] <= row["clean_correct"]


def test_every_interval_column_is_in_the_csv_and_brackets_its_value(tiny_run):
    out, _, _, _ = tiny_run
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    with_interval = [c.key for c in COLUMNS if c.interval]
    assert {"test_accuracy", "jsma_probs_success_rate", "rho_adv_percent", "robust_accuracy",
            "robust_accuracy_conditional", "gradient_float32_zero_fraction",
            "cw_l2_mean"} <= set(with_interval)  # fmt: skip
    checked = 0
    for row in rows:
        for key in with_interval:
            value, low, high, n = (row[key + s] for s in ("", "_low", "_high", "_n"))
            if value and low and high:
                assert float(low) - 1e-9 <= float(value) <= float(high) + 1e-9, key
                assert int(float(n)) >= 1
                checked += 1
    assert checked >= 5 * len(rows)


def test_tables_print_intervals_and_n(tiny_run):
    out, _, _, result = tiny_run
    text = (out / "report.md").read_text()
    summary = next(line for line in text.splitlines() if line.startswith("| baseline | 1 (none)"))
    # accuracy, JSMA on F's success and rho_adv with their intervals and counts
    assert summary.count(" n=") >= 3 and summary.count("[") >= 3
    accuracy = result["models"][0]["test_accuracy_interval"]
    assert f"n={accuracy['n']}" in summary
    assert "random" in text and "seed 0" in text


def test_the_ablations_are_measured_and_reported(tiny_run):
    out, _, _, result = tiny_run
    ablations = result["ablations"]
    hottest = max(TINY.temperatures)
    assert ablations["temperature"] == hottest and ablations["seed"] == 0
    assert set(ablations["rows"]) >= {"baseline", "baseline_scaled", "student", "student_float64"}
    assert len(ablations["indices"]) == ablations["images"]
    for row in ablations["rows"].values():
        f = row["jsma_f"]
        assert f["n"] == 0 or f["low"] <= f["rate"] <= f["high"]
        assert not math.isnan(row["zero_jacobian"]["rate"])
    text = (out / "report.md").read_text()
    assert "scale alone" in text and "precision alone" in text


def test_the_report_says_each_statement_once(tiny_run):
    """The robustness section carries the verdict and the robust accuracy; the data set's
    section above it does not repeat them."""
    out, _, _, _ = tiny_run
    text = (out / "report.md").read_text()
    bullets = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(bullets) == len(set(bullets))
    robustness = text.split("## Is defensive distillation robust?")[1]
    assert "Masking checks on the T = " in robustness and "Robust accuracy at the primary" in robustness
