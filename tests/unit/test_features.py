"""Feature math: values, and no information from after day t in any feature of day t."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from finpulse.data.features import aggregate_daily_sentiment, build_daily_features, price_features, rsi
from finpulse.data.schemas import DAILY_FEATURES, PRICE_FEATURES, to_table
from finpulse.resources import load_prices


def _prices(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    dates = pd.bdate_range("2020-01-01", periods=n).date
    return pd.DataFrame({"ticker": "AAA", "date": dates, "open": close, "high": close * 1.01, "low": close * 0.99,
                         "close": close, "adj_close": close, "volume": rng.integers(1_000, 5_000, n), "source": "t"})


def test_returns_and_targets_are_consistent() -> None:
    p = _prices()
    f = price_features(p)
    logc = np.log(p["close"].to_numpy())
    assert np.allclose(f["ret_1d"].to_numpy()[1:], np.diff(logc))
    assert np.allclose(f["ret_5d"].to_numpy()[5:], logc[5:] - logc[:-5])
    assert np.allclose(f["target_ret_1d"].to_numpy()[:-1], np.diff(logc))
    assert np.allclose(f["target_close"].to_numpy()[:-1], p["close"].to_numpy()[1:])
    assert np.isnan(f["target_ret_1d"].iloc[-1]) and np.isnan(f["target_close"].iloc[-1])


def test_rsi_bounds_and_extremes() -> None:
    up = pd.Series(np.arange(1.0, 40.0))
    assert rsi(up).dropna().eq(100.0).all()
    values = rsi(_prices(200)["close"]).dropna()
    assert ((values >= 0) & (values <= 100)).all()


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(min_value=25, max_value=58), seed=st.integers(0, 10_000))
def test_no_feature_uses_the_future(cut: int, seed: int) -> None:
    """Changing every row after day `cut` cannot change any feature up to `cut`."""
    p = _prices(60, seed=1)
    q = p.copy()
    rng = np.random.default_rng(seed)
    q.loc[cut + 1 :, ["close", "adj_close", "open"]] *= rng.uniform(0.5, 1.5, (len(q) - cut - 1, 1))
    q.loc[cut + 1 :, "volume"] = rng.integers(1, 10**7, len(q) - cut - 1)
    a, b = price_features(p), price_features(q)
    cols = list(PRICE_FEATURES)
    pd.testing.assert_frame_equal(a.loc[:cut, cols], b.loc[:cut, cols])
    # the target of day `cut` is the only thing allowed to see day cut+1
    assert not np.isclose(a.loc[cut, "target_close"], b.loc[cut, "target_close"]) or np.isclose(
        p.loc[cut + 1, "close"], q.loc[cut + 1, "close"])


def test_daily_aggregates_and_days_without_posts() -> None:
    p = _prices(30)
    days = p["date"].tolist()
    scored = pd.DataFrame({
        "ticker": "AAA", "trading_day": [days[25], days[25], days[25], days[27]],
        "score": [0.5, -0.5, 1.0, 0.2], "label": ["positive", "negative", "positive", "neutral"],
        "likes": [0, 0, 100, 0], "reposts": [0, 0, 0, 0],
    })
    agg = aggregate_daily_sentiment(scored)
    first = agg.iloc[0]
    assert first["sent_count"] == 3 and np.isclose(first["sent_mean"], 1 / 3)
    assert np.isclose(first["sent_pos_share"], 2 / 3) and np.isclose(first["sent_neg_share"], 1 / 3)
    assert first["sent_weighted"] > first["sent_mean"]  # the liked positive post weighs more
    f = build_daily_features(p, agg, "vader")
    to_table(f, DAILY_FEATURES)
    assert len(f) == len(p)  # every price day kept
    assert f["has_posts"].sum() == 2 and (f.loc[~f["has_posts"], "sent_count"] == 0).all()
    assert set(f.loc[~f["has_posts"], "sentiment_source"]) == {"none"}


def test_shipped_prices_build_features() -> None:
    prices = load_prices()
    assert sorted(prices["ticker"].unique()) == ["AAPL", "AMZN", "GOOG", "MSFT", "TSLA"]
    assert str(prices["date"].min()) == "2010-01-04" and str(prices["date"].max()) == "2020-12-31"
    f = build_daily_features(prices, aggregate_daily_sentiment(pd.DataFrame()), "none")
    assert len(f) == len(prices)
    late = f[pd.to_datetime(f["date"]) > pd.Timestamp("2010-08-01")]  # TSLA listed 2010-06-29
    assert late[list(PRICE_FEATURES)].notna().all().all()
