"""Where the forecaster's input frame comes from when it is not read from the ETL's output.

:func:`daily_features` runs the foundation's pandas path (the ETL's reference); the planted-signal
tests and the demo use :func:`synthetic_features`. :func:`simple_daily_features` is the price-only
part of the same feature code, for quick unit tests.
"""

from __future__ import annotations

import pandas as pd


def simple_daily_features(prices: pd.DataFrame) -> pd.DataFrame:
    """Price features and targets with no posts (``has_posts`` false): the ETL's feature code,
    without the post pipeline, for quick tests."""
    from finpulse.data.features import aggregate_daily_sentiment, build_daily_features

    return build_daily_features(prices, aggregate_daily_sentiment(pd.DataFrame()), "none")


def daily_features(prices: pd.DataFrame, posts: pd.DataFrame | None = None) -> pd.DataFrame:
    """DAILY_FEATURES from canonical prices and (unscored) posts through the foundation's pandas path
    (validation, trading-day alignment, VADER scores, dedupe, aggregates): what the ETL would write."""
    from finpulse.data import reference, sources

    posts_raw = None if posts is None else sources.raw_frame(posts, sources.RAW_POST_COLUMNS)
    return reference.build_pandas(reference.prices_to_raw(prices), posts_raw)["daily_features"]


def synthetic_features(tickers: list[str] | None = None, *, start: str | None = None, end: str | None = None,
                       signal_strength: float = 0.0, posts_per_day: float = 4.0, seed: int = 0) -> pd.DataFrame:
    """Shipped real prices + synthetic posts (a planted next-day signal of ``signal_strength``) -> features."""
    from finpulse.data.synthetic import generate_posts
    from finpulse.resources import load_prices

    prices = load_prices(tickers)
    if start:
        prices = prices[pd.to_datetime(prices["date"]) >= pd.Timestamp(start)]
    if end:
        prices = prices[pd.to_datetime(prices["date"]) < pd.Timestamp(end)]
    posts = generate_posts(prices, posts_per_day=posts_per_day, signal_strength=signal_strength, seed=seed)
    features = daily_features(prices, posts)
    features.attrs["synthetic_inputs"] = True  # evaluation waives the leakage alarm for a planted signal
    return features


def load_features(features_uri: str | None = None, *, embedded: bool = False, tickers: list[str] | None = None,
                  start: str | None = None, end: str | None = None, signal_strength: float = 0.0) -> pd.DataFrame:
    """The DAILY_FEATURES frame a job trains on: the ETL's latest version at ``features_uri`` (default
    ``<data_root>/curated``), or with ``embedded`` the shipped prices plus synthetic posts in process."""
    if embedded:
        return synthetic_features(tickers, start=start, end=end, signal_strength=signal_strength)
    from finpulse.data.catalog import load_dataset
    from finpulse.paths import data_paths

    df = load_dataset(features_uri or data_paths().curated, "daily_features", tickers=tickers)
    synthetic = df.attrs.get("synthetic_inputs", False)
    dates = pd.to_datetime(df["date"])
    if start:
        df = df[dates >= pd.Timestamp(start)]
    if end:
        df = df[pd.to_datetime(df["date"]) < pd.Timestamp(end)]
    df = df.reset_index(drop=True)
    df.attrs["synthetic_inputs"] = synthetic
    return df
