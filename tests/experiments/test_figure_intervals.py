"""The figures' error bars come from the stored 95 % intervals (no drawing needed to check them)."""

import pytest

from defdistill.evaluation.stats import MeanEstimate, Proportion
from defdistill.experiments.report.columns import BY_KEY
from defdistill.experiments.report.figures import ACCURACY_VARIATION, _error_bars, _fooled_percent


def row(name, accuracy_k, accuracy_n, pgd_k, pgd_n):
    acc, pgd = Proportion.of(accuracy_k, accuracy_n), Proportion.of(pgd_k, pgd_n)
    return {"name": name, "test_accuracy": acc.rate, "test_accuracy_interval": acc.to_dict(),
            "accuracy_variation_pp": 100 * acc.rate - 90.0,
            "attacks": {"pgd-margin": {"accuracy": pgd.rate,
                                       "accuracy_interval": pgd.to_dict()}}}  # fmt: skip


def test_error_bars_are_the_interval_around_the_value_in_percent():
    rows = [row("distilled-T5", 45, 50, 2, 10)]
    result = {"models": rows}
    below, above = _error_bars(result, rows, BY_KEY["pgd_margin_accuracy"])
    p = Proportion.of(2, 10)  # 20 % [5.7, 51.0]
    assert below == [pytest.approx(100 * (p.rate - p.low))]
    assert above == [pytest.approx(100 * (p.high - p.rate))]


def test_an_accuracy_under_attack_read_as_a_success_rate_flips_its_interval():
    rows = [row("distilled-T5", 45, 50, 2, 10)]
    fooled = _fooled_percent("pgd_margin_accuracy")
    p = Proportion.of(2, 10)
    assert fooled.shown(rows[0]) == pytest.approx(80.0)
    low, high, n = fooled.bounds(rows[0])
    assert (low, high, n) == (pytest.approx(1 - p.high), pytest.approx(1 - p.low), 10)


def test_the_accuracy_variation_bars_are_the_students_interval_in_pp_from_the_baseline():
    rows = [row("distilled-T5", 45, 50, 2, 10)]  # 90 % of 50, baseline at 90 %: Δ = 0 pp
    low, high, n = ACCURACY_VARIATION.bounds(rows[0])
    p = Proportion.of(45, 50)
    assert (low, high, n) == (pytest.approx(100 * p.low - 90.0), pytest.approx(100 * p.high - 90.0), 50)


def test_several_seeds_draw_no_interval_bars():
    rows = [row("distilled-T5", 45, 50, 2, 10)]
    result = {"models": rows, "per_seed": [{"seed": 0, "models": rows}, {"seed": 1, "models": rows}]}
    assert _error_bars(result, rows, BY_KEY["pgd_margin_accuracy"]) is None


def test_the_gradient_curve_bars_are_the_bootstrap_interval_of_the_mean_log10_amplitude():
    # exact log10 amplitudes of 4 images: mean -400, the bootstrap over them
    log10 = [-380.0, -390.0, -410.0, -420.0]
    estimate = MeanEstimate.of(log10, seed=0)
    rows = [{"name": "distilled-T100", "gradients": {"mean_log10": estimate.mean,
                                                     "log10_interval": estimate.to_dict()}}]  # fmt: skip
    below, above = _error_bars({"models": rows}, rows, BY_KEY["gradient_mean_log10"])
    assert estimate.mean == pytest.approx(-400.0)
    assert below == [pytest.approx(-400.0 - estimate.low)] and above == [pytest.approx(estimate.high + 400.0)]
    assert -420.0 <= estimate.low < -400.0 < estimate.high <= -380.0


def test_the_gradient_distribution_is_cumulative_over_every_measured_image():
    from defdistill.experiments.report.figures import cumulative_fractions

    # 5 images: 1 of exact amplitude 0 (below every edge), then 1, 2 and 1 in the three bins
    histogram = {"log10_edges": [-3.0, -2.0, -1.0, 0.0], "counts": [1, 2, 1], "zeros": 1}
    assert cumulative_fractions(histogram) == [0.2, 0.4, 0.8, 1.0]
    assert cumulative_fractions({"log10_edges": [-1.0, 0.0], "counts": [0], "zeros": 0}) == [0.0, 0.0]


@pytest.mark.parametrize(("values", "labelled"), [((14.4, 44.0), {"20"}), ((5.0, 3000.0), set())])
def test_a_log_axis_shorter_than_two_decades_gets_plain_labels_between_the_powers_of_ten(values, labelled):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from defdistill.experiments.report.figures import _label_short_log_axis

    fig, ax = plt.subplots()
    ax.plot([5, 20], values)
    ax.set_yscale("log")
    _label_short_log_axis(ax)
    fig.canvas.draw()
    low, high = ax.get_ylim()
    ticks = zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
    shown = {t.get_text() for t, v in ticks if low <= v <= high}
    plt.close(fig)
    # three decades: the powers of ten alone, as matplotlib labels them
    assert labelled <= shown and (labelled or not shown & {"20", "50", "200", "500"})
