"""Pure forecaster pieces: windows, scaler, model heads and losses, baselines, metrics, backtest."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from finpulse.data.schemas import PRICE_FEATURES
from finpulse.forecast.backtest import backtest, positions
from finpulse.forecast.baselines import drift, persistence, ridge
from finpulse.forecast.config import ForecastConfig, feature_columns
from finpulse.forecast.inputs import simple_daily_features
from finpulse.forecast.metrics import diebold_mariano, directional_accuracy, forecast_metrics
from finpulse.forecast.model import LSTMForecaster, pinball_loss
from finpulse.forecast.stocknet import stocknet_labels
from finpulse.forecast.walk_forward import walk_forward_folds
from finpulse.forecast.windows import Scaler, build_windows, prepare_frame, ticker_index
from finpulse.resources import load_prices


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    df = simple_daily_features(load_prices(["AAPL", "MSFT"]))
    return df[(df["date"] >= dt.date(2018, 1, 1)) & (df["date"] < dt.date(2019, 1, 1))].reset_index(drop=True)


def test_feature_sets():
    assert feature_columns("price") == list(PRICE_FEATURES)
    assert feature_columns("price_sentiment")[-1] == "has_posts"
    with pytest.raises(ValueError):
        feature_columns("nope")  # type: ignore[arg-type]


def test_scaler_fits_on_training_days_only(features):
    cols = list(PRICE_FEATURES)
    cut = dt.date(2018, 7, 1)
    a = Scaler.fit(features, cols, before=cut)
    changed = features.copy()
    changed.loc[changed["date"] >= cut, cols] = 1e6  # anything after the cut must not matter
    b = Scaler.fit(changed, cols, before=cut)
    assert a.to_dict() == b.to_dict()
    assert Scaler.from_dict(a.to_dict()) == a
    assert a.target_scale == pytest.approx(features[features["date"] < cut]["target_ret_1d"].std(ddof=0), rel=1e-6)


def test_windows_never_cross_tickers_and_align_targets(features):
    cols = list(PRICE_FEATURES)
    frame = prepare_frame(features, cols)
    scaler = Scaler.fit(frame, cols)
    w = build_windows(frame, scaler, lookback=5, tickers=ticker_index(["AAPL", "MSFT"]), prepared=True)
    per_ticker = frame.groupby("ticker").size()
    assert len(w) == sum(n - 4 for n in per_ticker)
    # the last window row of sample i is the as-of day's features, and the target is that day's target
    i = 10
    row = frame[(frame["ticker"] == w.tickers[i]) & (frame["date"] == w.dates[i])].iloc[0]
    np.testing.assert_allclose(w.x[i, -1], scaler.transform(row.to_frame().T)[0], rtol=1e-5)
    assert w.target_ret[i] == pytest.approx(row["target_ret_1d"])
    # first MSFT window starts on MSFT's first row
    j = int(np.argmax(w.tickers == "MSFT"))
    first = frame[frame["ticker"] == "MSFT"].iloc[:5]
    np.testing.assert_allclose(w.x[j], scaler.transform(first), rtol=1e-5)
    np.testing.assert_allclose(w.y, w.target_ret / scaler.target_scale, rtol=1e-5)


def test_model_shapes_and_quantile_init():
    net = LSTMForecaster(n_features=6, n_tickers=3, hidden_size=8, num_layers=2, dropout=0.1)
    point, quant = net(torch.randn(5, 7, 6), torch.tensor([0, 1, 2, 3, 1]))
    assert point.shape == (5,) and quant.shape == (5, 3)
    b = net.quantile_head.bias.detach().numpy()
    assert b[0] == pytest.approx(-1.645, abs=1e-3) and b[2] == pytest.approx(1.645, abs=1e-3)


def test_pinball_loss_is_minimised_by_the_quantile():
    y = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    q = (0.05, 0.5, 0.95)
    grid = torch.linspace(-3, 3, 121)
    best = []
    for k, qq in enumerate(q):
        losses = [float(pinball_loss(torch.full((len(y), 3), float(g)), y, q)) for g in grid] if k == -1 else [
            float(pinball_loss(torch.full((len(y), 1), float(g)), y, (qq,))) for g in grid]
        best.append(float(grid[int(np.argmin(losses))]))
    assert best[0] == pytest.approx(-1.645, abs=0.1)
    assert best[1] == pytest.approx(0.0, abs=0.1)
    assert best[2] == pytest.approx(1.645, abs=0.1)


def test_baselines(features):
    cols = list(PRICE_FEATURES)
    frame = prepare_frame(features, cols)
    scaler = Scaler.fit(frame, cols)
    w = build_windows(frame, scaler, 5, ticker_index(["AAPL", "MSFT"]), prepared=True).with_target()
    train, test = w.between(None, dt.date(2018, 10, 1)), w.between(dt.date(2018, 10, 1))
    assert np.all(persistence(test) == 0)
    d = drift(train, test)
    assert d[test.tickers == "AAPL"][0] == pytest.approx(train.target_ret[train.tickers == "AAPL"].mean())
    assert ridge(train, test).shape == (len(test),)


def test_metrics_on_known_values():
    close = np.array([100.0, 100.0, 100.0, 100.0])
    true = np.log(np.array([101.0, 99.0, 102.0, 98.0]) / 100)
    target_close = close * np.exp(true)
    m = forecast_metrics(true, true, close, target_close, true - 0.01, true + 0.01)
    assert m["mae"] == pytest.approx(0.0, abs=1e-9) and m["directional_accuracy"] == 1.0 and m["mcc"] == 1.0
    assert m["coverage"] == 1.0
    p = forecast_metrics(np.zeros(4), true, close, target_close)
    assert p["mae"] == pytest.approx(1.5) and np.isnan(p["directional_accuracy"])  # no direction claimed
    assert directional_accuracy(-true, true) == 0.0


def test_diebold_mariano():
    rng = np.random.default_rng(0)
    base = np.abs(rng.standard_normal(300))
    better = base * 0.8
    stat, p = diebold_mariano(better, base)
    assert stat < 0 and p < 0.01
    same = np.abs(rng.standard_normal(300))
    _, p_same = diebold_mariano(same, np.abs(rng.standard_normal(300)))
    assert p_same > 0.01
    _, p_worse = diebold_mariano(base, better)
    assert p_worse > 0.99


def test_backtest_costs_and_turnover():
    dates = pd.date_range("2020-01-01", periods=4).date
    frame = pd.DataFrame({"ticker": "A", "date": dates, "target_ret": np.log([1.01, 0.99, 1.01, 0.99]),
                          "pred": [1.0, -1.0, 1.0, -1.0]})
    free = backtest(frame, cost_bps=0)
    assert free["strategy_return"] == pytest.approx(1.01**4 - 1)
    costly = backtest(frame, cost_bps=10)
    assert costly["strategy_return"] < free["strategy_return"]
    assert costly["turnover"] == pytest.approx((1 + 2 + 2 + 2) / 4)
    assert list(positions(np.array([0.1, -0.1, 0.0]))) == [1, -1, 0]


def test_stocknet_labels_thresholds():
    pct = np.array([0.0056, 0.0055, 0.001, -0.005, -0.0049, -0.02])
    labels = stocknet_labels(np.log1p(pct))
    assert labels[0] == 1 and np.isnan(labels[1]) and np.isnan(labels[2])
    assert labels[3] == 0 and np.isnan(labels[4]) and labels[5] == 0


def test_walk_forward_folds_are_consecutive_and_cover_the_test_period():
    days = list(pd.bdate_range("2020-01-01", "2020-12-31").date)
    folds = walk_forward_folds(days, 4, dt.date(2020, 7, 1), None)
    assert len(folds) == 4 and folds[0][0] == dt.date(2020, 7, 1)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(folds))
    assert folds[-1][1] > days[-1]


def test_config_interval_level():
    assert ForecastConfig().interval_level == pytest.approx(0.9)
