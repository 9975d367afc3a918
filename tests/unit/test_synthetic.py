"""Synthetic posts: deterministic, labelled synthetic, realistic times, a signal only when planted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finpulse.data import reference, sources, synthetic
from finpulse.data.schemas import POSTS, to_table
from finpulse.resources import load_prices


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return load_prices(["AAPL", "MSFT"])


def test_same_seed_same_bytes(prices: pd.DataFrame) -> None:
    a = synthetic.to_posts_csv(synthetic.generate_posts(prices, seed=5, start="2019-06-01"), corrupt_rate=0.01, seed=5)
    b = synthetic.to_posts_csv(synthetic.generate_posts(prices, seed=5, start="2019-06-01"), corrupt_rate=0.01, seed=5)
    c = synthetic.to_posts_csv(synthetic.generate_posts(prices, seed=6, start="2019-06-01"), corrupt_rate=0.01, seed=5)
    assert a == b and a != c


def test_labelled_synthetic_and_realistic(prices: pd.DataFrame) -> None:
    posts = synthetic.generate_posts(prices, seed=1, start="2019-01-01")
    to_table(posts, POSTS)
    assert set(posts["source"]) == {"synthetic"}
    assert posts["post_id"].str.startswith("syn-").all() and posts["author"].str.startswith("synth_").all()
    ny = posts["created_at"].dt.tz_convert("America/New_York")
    minutes = ny.dt.hour * 60 + ny.dt.minute
    in_session = (minutes >= 570) & (minutes < 960) & (ny.dt.dayofweek < 5)
    assert 0.4 < in_session.mean() < 0.8  # in and out of market hours
    assert (ny.dt.dayofweek >= 5).mean() > 0.02  # weekends too
    assert posts["text"].str.contains(r"\$").mean() > 0.6  # cashtags
    assert posts["text"].nunique() > 500  # varied wording
    assert posts["likes"].max() > 20 * max(1, posts["likes"].median())  # heavy-tailed engagement


def _daily_signal(prices: pd.DataFrame, strength: float) -> float:
    """Correlation of the day's mean VADER score with the next day's return, through the real pipeline."""
    posts = synthetic.generate_posts(prices, seed=11, signal_strength=strength, start="2016-01-01", posts_per_day=6)
    raw_posts = sources.read_posts_csv(synthetic.to_posts_csv(posts), "synthetic")
    out = reference.build_pandas(reference.prices_to_raw(prices), raw_posts)
    f = out["daily_features"].dropna(subset=["target_ret_1d"])
    f = f[f["has_posts"]]
    return float(np.corrcoef(f["sent_mean"], f["target_ret_1d"])[0, 1])


def test_planted_signal_is_recoverable_and_absent_at_zero(prices: pd.DataFrame) -> None:
    assert _daily_signal(prices, 1.0) > 0.3
    assert abs(_daily_signal(prices, 0.0)) < 0.06
