"""The StockNet protocol (Xu and Cohen, ACL 2018): target-day split, Adj Close thresholds, the 5-day lag
window, the tweet alignment (nothing after the as-of day's close), the Wilson interval, and the reader."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finpulse.data import reference, sources
from finpulse.forecast.stocknet import (
    PRICE_COLUMNS,
    TWEET_COLUMNS,
    StockNetConfig,
    protocol_data,
    protocol_features,
    protocol_samples,
    stocknet_labels,
    wilson_interval,
)

SMALL = StockNetConfig(train_start=dt.date(2015, 6, 1), train_end=dt.date(2015, 8, 1), val_end=dt.date(2015, 8, 15),
                       test_end=dt.date(2015, 9, 1))


def _prices(moves: list[float], start: str = "2015-06-01", ticker: str = "AAA") -> pd.DataFrame:
    """Validated PRICES rows on business days; adj close moves by ``moves`` (close = adj close)."""
    days = pd.bdate_range(start, periods=len(moves) + 1)
    adj = 100.0 * np.cumprod([1.0, *[1.0 + m for m in moves]])
    return pd.DataFrame({"ticker": ticker, "date": days.date, "open": adj, "high": adj * 1.01, "low": adj * 0.99,
                         "close": adj, "adj_close": adj, "volume": 1000, "source": "test"})


def _alternating(n: int) -> list[float]:
    return [0.02 if i % 2 == 0 else -0.02 for i in range(n)]


def test_split_is_by_target_day_not_as_of_day() -> None:
    feats = protocol_features(_prices(_alternating(70)))
    data = protocol_data(feats, PRICE_COLUMNS, SMALL)
    target = dict(zip(feats["date"], feats["target_date"], strict=True))
    train_targets = {target[d] for d in data.train.dates}
    val_targets = {target[d] for d in data.val.dates}
    test_targets = {target[d] for d in data.rest.dates}
    assert max(train_targets) == dt.date(2015, 7, 31) and min(val_targets) == dt.date(2015, 8, 3)
    assert max(val_targets) == dt.date(2015, 8, 14) and min(test_targets) == dt.date(2015, 8, 17)
    assert max(test_targets) == dt.date(2015, 8, 31)
    # the sample whose as-of day is Friday 2015-07-31 predicts Monday 2015-08-03: validation, not training
    assert dt.date(2015, 7, 31) in set(data.val.dates) and dt.date(2015, 7, 31) not in set(data.train.dates)
    # the first target day is the split's start: the window needs 5 earlier days, so it starts later
    assert min(train_targets) >= SMALL.train_start


def test_thresholds_and_the_dropped_band() -> None:
    pct = np.array([0.0056, 0.0055, 0.0, -0.0049, -0.005, -0.02])
    labels = stocknet_labels(np.log1p(pct))
    assert labels[0] == 1 and labels[4] == 0 and labels[5] == 0
    assert np.isnan(labels[1:4]).all()  # +0.55% itself is not up; -0.5% itself is down
    moves = _alternating(70)
    moves[45] = 0.001  # a band day inside the window span: its sample is dropped
    feats = protocol_features(_prices(moves))
    windows, target_day, _, _ = protocol_samples(feats, PRICE_COLUMNS, SMALL)
    band_day = pd.bdate_range("2015-06-01", periods=71)[46].date()
    assert band_day not in set(target_day)
    assert np.isfinite(stocknet_labels(windows.target_ret)).all()


def test_movement_comes_from_adj_close() -> None:
    p = _prices([0.01, 0.01])
    p.loc[2, "close"] = p.loc[1, "close"] * 0.98  # close falls 2% (a dividend), adjusted close rises 1%
    feats = protocol_features(p)
    row = feats[feats["date"] == p.loc[1, "date"]].iloc[0]
    assert row["target_ret_1d"] == pytest.approx(np.log(1.01))
    assert stocknet_labels(np.array([row["target_ret_1d"]]))[0] == 1


def test_window_holds_the_five_trading_days_before_the_target() -> None:
    moves = [0.01 * ((i % 7) - 3) for i in range(70)]
    prices = _prices(moves)
    feats = protocol_features(prices)
    windows, target_day, scaler, _ = protocol_samples(feats, PRICE_COLUMNS, SMALL)
    i = int(np.flatnonzero(target_day == dt.date(2015, 8, 3))[0])
    col = PRICE_COLUMNS.index("sn_close")
    seen = windows.x[i, :, col] * scaler.std[col] + scaler.mean[col]
    days = list(pd.bdate_range("2015-07-27", "2015-07-31").date)  # d-5..d-1 for Monday 2015-08-03
    expected = feats.set_index("date").loc[days, "sn_close"].to_numpy()
    assert windows.x.shape[1] == 5
    np.testing.assert_allclose(seen, expected, rtol=1e-5, atol=1e-6)
    assert windows.dates[i] == dt.date(2015, 7, 31)


def _raw_prices(p: pd.DataFrame) -> pd.DataFrame:
    return reference.prices_to_raw(p.drop(columns="source"))


def _post(pid: str, when: str, text: str) -> dict:
    return {"post_id": pid, "ticker": "AAA", "created_at": pd.Timestamp(when, tz="America/New_York")
            .tz_convert("UTC").isoformat(), "text": text, "author": "a", "likes": "0", "reposts": "0", "source": "t"}


def test_no_tweet_after_the_as_of_close_reaches_a_sample() -> None:
    prices = _prices(_alternating(70))
    posts = pd.DataFrame([_post("before", "2015-07-31 15:59", "great stock, buy buy buy"),
                          _post("after", "2015-07-31 16:01", "terrible crash, sell everything"),
                          _post("weekend", "2015-08-01 12:00", "awful awful loss")])
    built = reference.build_pandas(_raw_prices(prices), posts)
    feats = protocol_features(built["prices"], built["daily_features"])
    by_day = feats.set_index("date")
    assert by_day.loc[dt.date(2015, 7, 31), "sent_count"] == pytest.approx(np.log1p(1))
    assert by_day.loc[dt.date(2015, 7, 31), "sent_mean"] > 0  # only the 15:59 tweet
    assert by_day.loc[dt.date(2015, 8, 3), "sent_count"] == pytest.approx(np.log1p(2))  # 16:01 Friday, Saturday
    windows, target_day, scaler, _ = protocol_samples(feats, PRICE_COLUMNS + TWEET_COLUMNS, SMALL)
    k = (PRICE_COLUMNS + TWEET_COLUMNS).index("sent_count")
    counts = windows.x[:, :, k] * scaler.std[k] + scaler.mean[k]
    i = int(np.flatnonzero(target_day == dt.date(2015, 8, 3))[0])  # as-of Friday: sees one tweet
    assert counts[i].sum() == pytest.approx(np.log1p(1), abs=1e-5)
    j = int(np.flatnonzero(target_day == dt.date(2015, 8, 4))[0])  # as-of Monday: sees all three
    assert counts[j].sum() == pytest.approx(np.log1p(1) + np.log1p(2), abs=1e-5)


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(50, 100)
    assert (lo, hi) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    lo, hi = wilson_interval(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(2166, 3720)  # the paper's 58.23% on its 3,720 test samples
    assert lo < 0.5823 < hi and hi - lo < 0.032
    assert all(np.isnan(wilson_interval(0, 0)))


def test_reader_on_the_raw_corpus(shared_data: Path) -> None:
    root = shared_data / "stocknet_full"
    prices = sources.read_stocknet_prices((root / "price_raw" / "PTR.csv").read_bytes(), "PTR", "ptr")
    assert "2016-06-29" not in set(prices["date"]) and len(prices) == 1257  # the all-null row dropped
    valid, rejected = sources.normalize_prices(prices)
    assert len(rejected) == 0 and (valid["adj_close"] != valid["close"]).mean() > 0.5
    bars, posts = sources.read_stocknet_dir(str(root), ["GMRE", "BRK-A"])
    assert set(bars["ticker"]) == {"GMRE", "BRK-A"} and set(posts["ticker"]) == {"BRK-A"}  # GMRE: no tweets
    valid_posts, bad = sources.normalize_posts(posts)
    assert len(valid_posts) == 15 and len(bad) == 0
    assert valid_posts["post_id"].str.fullmatch(r"\d+").all() and (valid_posts["likes"] == 0).all()
