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


# Pinned from the generator before it was cut into steps (issue 9): the same seed must keep giving
# the same posts, value for value, whatever the code's shape.
PINNED = {
    "defaults": ({"seed": 5, "start": "2019-06-01"},
                 "5559ebebe9511528a20616df51a2fb8de174d3007bad1ce88b08cf9f86b459fe"),  # pragma: allowlist secret - sha256 pin
    "signal": ({"seed": 11, "signal_strength": 1.0, "start": "2016-01-01", "end": "2018-12-31", "posts_per_day": 6,
                "duplicate_rate": 0.02}, "cedc0aa484ac6ad52568d044bed90cb467e6865ec0b2d2356f584245737b4784"),  # pragma: allowlist secret - sha256 pin
    "knobs": ({"seed": 3, "start": "2020-01-01", "style": synthetic.PostStyle(
        reaction=0.8, day_noise=0.3, post_noise=0.9, n_authors=50, with_latent=True)}, "06de5b6aaaac8c25c7303deb2818d3ac6b8a57af4c6222d0418b8c56c94bc9d5"),  # pragma: allowlist secret - sha256 pin
}


@pytest.mark.parametrize("case", sorted(PINNED))
def test_posts_match_the_pinned_frames(prices: pd.DataFrame, case: str) -> None:
    import hashlib

    kwargs, expected = PINNED[case]
    posts = synthetic.generate_posts(prices, **kwargs)
    digest = hashlib.sha256(pd.util.hash_pandas_object(posts, index=True).to_numpy().tobytes()).hexdigest()
    assert digest == expected
    assert str(posts["created_at"].dtype) == "datetime64[us, UTC]" and posts["likes"].dtype == np.int64
