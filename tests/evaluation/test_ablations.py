"""The two ablations on a small trained network: scale alone saturates float32, float64 does not."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from defdistill.attacks.jsma import JSMA
from defdistill.evaluation.ablations import (
    ExactJSMA,
    InFloat64,
    ScaledLogits,
    gradient_row,
    jsma_success,
    run_ablations,
)
from defdistill.evaluation.gradients import gradient_amplitude


def test_scaled_logits_multiply_the_logits_and_keep_every_prediction(trained) -> None:
    model, ds = trained
    scaled = ScaledLogits(model, 1000.0)
    with torch.no_grad():
        z, zs = model(ds.x_test), scaled(ds.x_test)
    assert torch.allclose(zs, 1000 * z)
    assert torch.equal(zs.argmax(1), z.argmax(1))
    assert list(scaled.parameters()) == list(model.parameters())  # a wrapper, no copy, no training


@pytest.mark.parametrize("bad", [0.0, -2.0, math.inf, math.nan, True, "10"])
def test_scaled_logits_refuse_a_factor_that_is_not_positive_and_finite(trained, bad) -> None:
    with pytest.raises(ValueError, match="factor"):
        ScaledLogits(trained[0], bad)


def test_float64_copy_computes_in_float64_and_leaves_the_model_alone(trained) -> None:
    model, ds = trained
    wide = InFloat64(model)
    out = wide(ds.x_test[:5])
    assert out.dtype == torch.float64
    assert next(model.parameters()).dtype == torch.float32
    with torch.no_grad():
        assert torch.allclose(out.float(), model(ds.x_test[:5]), atol=1e-4)


def _logit_gaps(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        top = model(x).topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


# the small network's logit gaps are 9-12; x30 puts them at 270-360 nats: beyond float32's
# underflow of exp (about 104) and within float64's (about 745)
FACTOR = 30.0
GAMMA = 0.5  # 32 of the 64 pixels: JSMA's 14.5 % (8 pixels) breaks nothing on this network


def test_scaled_logits_zero_the_float32_jacobian_but_not_the_float64_one(trained) -> None:
    """The mechanism in miniature: scale alone makes float32 softmax Jacobians exactly 0 on
    most inputs; the same network in float64 still has a gradient on every one."""
    model, ds = trained
    x = ds.x_test[:60]
    scaled = ScaledLogits(model, FACTOR)
    gaps = FACTOR * _logit_gaps(model, x)
    assert bool((gaps > 110).all() and (gaps < 700).all())  # the premise
    assert float((gradient_amplitude(model, x) == 0).float().mean()) == 0.0
    zero32 = gradient_amplitude(scaled, x) == 0
    assert float(zero32.float().mean()) > 0.5
    amp64 = gradient_amplitude(InFloat64(scaled), x.double())
    assert amp64.dtype == torch.float64 and bool((amp64 > 0).all())
    row32, row64 = gradient_row(scaled, x), gradient_row(InFloat64(scaled), x.double())
    assert row32["zero_jacobian"]["k"] == int(zero32.sum()) and row32["zero_jacobian"]["n"] == 60
    assert row64["zero_jacobian"]["k"] == 0 and row64["dtype"] == "float64"
    assert row32["median_log10_exact"] == pytest.approx(row64["median_log10_exact"])
    # x1000 (gaps near 10,000) is beyond float64 too: precision alone cannot undo every scale
    assert bool((gradient_amplitude(InFloat64(ScaledLogits(model, 1000.0)), x.double()) == 0).all())


def test_jsma_keeps_float64_inputs_in_float64(trained) -> None:
    model, ds = trained
    x, y = ds.x_test[:4].double(), ds.y_test[:4]
    result = JSMA(gamma=0.5)(InFloat64(model), x, y, target=(y + 1) % 3)
    assert result.x_adv.dtype == torch.float64


def test_scale_fails_jsma_on_f_in_float32_and_float64_restores_it(trained) -> None:
    model, ds = trained
    x, y = ds.x_test[:12], ds.y_test[:12]
    plain = jsma_success(model, x, y, "probs", gamma=GAMMA)
    scaled = ScaledLogits(model, FACTOR)
    stalled = jsma_success(scaled, x, y, "probs", gamma=GAMMA)
    restored = jsma_success(InFloat64(scaled), x.double(), y, "probs", gamma=GAMMA)
    on_z = jsma_success(scaled, x, y, "logits", gamma=GAMMA)
    assert plain.n == stalled.n == restored.n == on_z.n == 24  # 12 images x 2 other classes
    assert stalled.high < plain.low and stalled.high < restored.low  # intervals apart
    assert on_z.k == jsma_success(model, x, y, "logits", gamma=GAMMA).k  # the map on Z ignores a scale


def test_exact_jsma_picks_jsma_on_f_pairs_where_f_is_representable_and_succeeds_where_it_is_not(
    trained,
) -> None:
    model, ds = trained
    x, y = ds.x_test[:12], ds.y_test[:12]
    target = (y + 1) % 3
    plain = JSMA(gamma=GAMMA, on="probs")(model, x, y, target=target)
    exact = ExactJSMA(gamma=GAMMA)(model, x, y, target=target)
    assert torch.equal(exact.x_adv, plain.x_adv) and bool(plain.success.all())  # same pairs
    huge = ScaledLogits(model, 1000.0)  # beyond float64: F_t underflows to 0 in both
    assert jsma_success(InFloat64(huge), x.double(), y, "probs", gamma=GAMMA).k == 0
    assert jsma_success(huge, x, y, "exact", gamma=GAMMA).k == 24


def test_run_ablations_reports_every_row_with_intervals(trained) -> None:
    model, ds = trained
    x, y = ds.x_test[:10], ds.y_test[:10]
    student = ScaledLogits(model, 20.0)  # a stand-in for a distilled network
    out = run_ablations(model, student, x, y, temperature=FACTOR, jsma_images=4)
    assert out["images"] == 10 and out["jsma_images"] == 4
    rows = out["rows"]
    assert set(rows) == {"baseline", "baseline_scaled", "baseline_scaled_float64", "student",
                         "student_float64"}
    for name, row in rows.items():
        assert row["jsma_f"]["n"] == 8 and 0 <= row["jsma_f"]["low"] <= row["jsma_f"]["high"] <= 1
        assert row["zero_jacobian"]["n"] == 10
        assert ("jsma_z" in row) == (not name.endswith("float64"))
        assert ("jsma_f_exact" in row) == (name in ("baseline_scaled", "student"))
        assert row["median_logit_gap"] > 0
    assert rows["baseline_scaled"]["zero_jacobian"]["k"] > rows["baseline"]["zero_jacobian"]["k"]
    assert rows["student_float64"]["zero_jacobian"]["k"] == 0
    assert set(out["comparisons"]) >= {"scaled_f_below_baseline_f", "student_float64_f_above_float32_f"}

