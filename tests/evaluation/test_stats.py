"""Intervals against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from defdistill.evaluation.stats import MeanEstimate, Proportion, share, wilson_interval


def test_wilson_matches_the_closed_form_by_hand() -> None:
    # 48 of 50, z = 1.96: centre (0.96 + 1.96²/100) / (1 + 1.96²/50), half-width by the formula
    z, n, p = 1.959963984540054, 50, 0.96
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    low, high = wilson_interval(48, 50)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert (low, high) == pytest.approx((0.8654, 0.9890), abs=1e-4)  # published tables: 86.5 %-98.9 %


def test_wilson_edges_are_exact_and_inside_unit_interval() -> None:
    assert wilson_interval(0, 20)[0] == 0.0
    assert wilson_interval(20, 20)[1] == 1.0
    assert wilson_interval(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)  # 3.84 / 23.84
    assert all(math.isnan(b) for b in wilson_interval(0, 0))


@pytest.mark.parametrize(("k", "n"), [(-1, 3), (4, 3), (0, -1)])
def test_wilson_refuses_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(k, n)


def test_proportion_from_mask_complement_and_separation() -> None:
    p = Proportion.from_mask(torch.tensor([True, False, True, True]))
    assert (p.k, p.n, p.rate) == (3, 4, 0.75)
    assert p.complement().k == 1 and p.complement().low == pytest.approx(1 - p.high)
    assert Proportion.of(0, 100).separated_from(Proportion.of(100, 100))
    assert not Proportion.of(48, 50).separated_from(Proportion.of(45, 50))
    assert Proportion.of(0, 0).to_dict()["rate"] is None


def test_bootstrap_is_seeded_contains_the_mean_and_shrinks_with_n() -> None:
    values = torch.arange(10, dtype=torch.float64)
    a, b = MeanEstimate.of(values, seed=3), MeanEstimate.of(values, seed=3)
    assert a == b and a.mean == 4.5 and a.low < 4.5 < a.high
    # the percentile interval of a mean of 0..9 is about mean ± 1.96 * sd / sqrt(n) = ± 1.78
    expected = 2 * 1.96 * values.std(unbiased=False).item() / math.sqrt(10)
    assert a.high - a.low == pytest.approx(expected, rel=0.15)
    wide = MeanEstimate.of(torch.tensor([0.0, 1.0] * 5), seed=0)
    narrow = MeanEstimate.of(torch.tensor([0.0, 1.0] * 500), seed=0)
    assert narrow.high - narrow.low < (wide.high - wide.low) / 5
    assert MeanEstimate.of([2.0]).low == MeanEstimate.of([2.0]).high == 2.0
    assert MeanEstimate.of([]).to_dict()["mean"] is None


@pytest.mark.parametrize(("fraction", "text"), [
    (0.0, "0%"), (1.0, "100%"), (0.5, "50%"), (0.97, "97%"), (0.996, "99.6%"), (0.9999, "99.99%"),
    (0.004, "0.4%"), (0.99995, "99.995%"), (1 - 1e-9, "over 99.999%"), (1e-9, "under 0.001%"),
])  # fmt: skip
def test_a_share_reads_0_or_100_percent_only_when_exact(fraction: float, text: str) -> None:
    assert share(fraction) == text
