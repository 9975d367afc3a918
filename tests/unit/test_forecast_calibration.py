"""Split-conformal (CQR) calibration of the forecast interval: a pure function of validation residuals."""

from __future__ import annotations

import numpy as np
import pytest

from finpulse.forecast.calibration import IntervalCalibration, conformity_scores, coverage, fit_conformal


def _heads(n: int, rng: np.random.Generator, sigma: np.ndarray, claimed: float) -> tuple[np.ndarray, ...]:
    """Over-confident quantile heads: they claim the 90% interval but use ``claimed`` x the true sigma."""
    y = rng.normal(0.0, sigma, n)
    half = 1.645 * claimed * sigma
    return -half, half, y


@pytest.mark.parametrize("method", ["additive", "scaled"])
@pytest.mark.parametrize("claimed", [0.6, 1.6])  # too narrow (the forecaster's case) and too wide
def test_calibrated_coverage_lands_near_nominal(method, claimed):
    rng = np.random.default_rng(0)
    sigma_cal, sigma_test = rng.uniform(0.5, 2.0, 2000), rng.uniform(0.5, 2.0, 20000)
    lo, hi, y = _heads(2000, rng, sigma_cal, claimed)
    cal = fit_conformal(lo, hi, y, level=0.9, method=method)
    tlo, thi, ty = _heads(20000, rng, sigma_test, claimed)
    raw = coverage(tlo, thi, ty)
    assert abs(raw - 0.9) > 0.08  # the raw interval is badly off
    assert coverage(*cal.apply(tlo, thi), ty) == pytest.approx(0.9, abs=0.02)
    assert (cal.q > 0) == (claimed < 1)  # widen when over-confident, narrow when under-confident


def test_finite_sample_quantile_and_scores():
    lo, hi = np.zeros(9), np.ones(9)
    y = np.array([-3.0, -2.0, -1.0, 0.5, 0.5, 0.5, 2.0, 3.0, 5.0])  # scores 3,2,1,-.5,-.5,-.5,1,2,4
    np.testing.assert_allclose(conformity_scores(lo, hi, y), [3, 2, 1, -0.5, -0.5, -0.5, 1, 2, 4])
    cal = fit_conformal(lo, hi, y, level=0.8)  # ceil(10 * 0.8) = 8th smallest of 9
    assert cal.q == 3.0 and cal.n == 9
    assert fit_conformal(lo, hi, y, level=0.99).q == 4.0  # k capped at n


def test_narrowing_never_crosses_and_identity_round_trip():
    cal = IntervalCalibration(level=0.9, q=-1.0, n=10, method="additive")
    low, high = cal.apply(np.array([0.0, 0.0]), np.array([4.0, 1.0]))
    np.testing.assert_allclose(low, [1.0, 0.5])
    np.testing.assert_allclose(high, [3.0, 0.5])
    assert IntervalCalibration.from_dict(cal.to_dict(), 0.9) == cal
    ident = IntervalCalibration.from_dict(None, 0.9)  # a model saved before calibration existed
    np.testing.assert_array_equal(ident.apply(np.array([1.0]), np.array([2.0]))[1], [2.0])
    f32 = cal.apply(np.zeros(2, np.float32), np.full(2, 4, np.float32))
    assert f32[0].dtype == np.float32  # model outputs stay float32 (same rounding as before calibration)


def test_online_tracking_recovers_nominal_coverage_after_a_regime_change():
    from finpulse.forecast.calibration import track_groups, tracked_offsets

    rng = np.random.default_rng(1)
    lo, hi, y = _heads(1000, rng, np.ones(1000), claimed=1.0)  # a calm validation period
    cal = fit_conformal(lo, hi, y, level=0.9, track_rate=0.1)
    assert cal.step > 0
    sigma = np.r_[np.ones(900), np.full(900, 2.0)]  # volatility doubles; the heads do not notice
    tlo, thi, ty = _heads(1800, rng, np.ones(1800), claimed=1.0)
    ty = ty * sigma
    static = cal.apply(tlo, thi)
    assert coverage(*static, ty) < 0.8  # split conformal alone misses the regime change
    tracked = track_groups(*static, ty, np.zeros(1800), cal)
    assert coverage(*tracked, ty) == pytest.approx(0.9, abs=0.02)
    assert coverage(tracked[0][900:], tracked[1][900:], ty[900:]) > 0.85
    # an offset uses only earlier outcomes: changing outcome i leaves offsets 0..i unchanged
    base = tracked_offsets(*static, ty, 0.9, cal.step)
    shocked = ty.copy()
    shocked[900:] += 50.0
    np.testing.assert_array_equal(tracked_offsets(*static, shocked, 0.9, cal.step)[:901], base[:901])
    # unknown outcomes (the latest day) do not move it
    unknown = ty.copy()
    unknown[-5:] = np.nan
    off = tracked_offsets(*static, unknown, 0.9, cal.step)
    assert off[-1] == off[-5]
