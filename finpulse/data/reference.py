"""The single-process path: the same curation and features as the Ray ETL, in pandas, from raw frames.

The reference the Ray ETL is tested and benchmarked against, and the quick path for unit tests and
in-process features (``forecast.inputs``). It imports no Ray.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from finpulse import storage
from finpulse.data import curate, sources
from finpulse.data.calendar import trading_calendar
from finpulse.data.catalog import Counts
from finpulse.data.features import aggregate_daily_sentiment, build_daily_features


def build_pandas(prices_raw: pd.DataFrame, posts_raw: pd.DataFrame | None, *, close_hour: int = 16,
                 dedupe_window_s: int = curate.DEDUPE_WINDOW_S,
                 scores: pd.DataFrame | None = None) -> dict[str, Any]:
    """The same transformations in one process, from raw frames (the reader layouts) to frames.

    The reference the Ray ETL is benchmarked and tested against, and the quick path for tests.
    """
    valid_prices, rejected_prices = sources.normalize_prices(prices_raw)
    valid_prices, prices_deduped = curate.dedupe_prices(valid_prices)
    calendar = trading_calendar(valid_prices["date"])
    posts_raw = posts_raw if posts_raw is not None else pd.DataFrame(columns=sources.RAW_POST_COLUMNS)
    scored, rejected_posts = curate.process_posts(posts_raw, calendar, close_hour=close_hour)
    kept, posts_deduped = curate.dedupe_posts(scored, dedupe_window_s)
    if scores is not None:
        kept, _ = curate.apply_model_scores(kept, scores)
    aggregates = aggregate_daily_sentiment(kept)
    scorers = sorted(set(kept["scorer"])) if len(kept) else []
    features = build_daily_features(valid_prices, aggregates, "+".join(scorers) or "none")
    return {
        "prices": valid_prices, "scored_posts": kept, "daily_features": features,
        "rejected_prices": rejected_prices, "rejected_posts": rejected_posts,
        "counts": {"prices": Counts(len(prices_raw), len(valid_prices), prices_deduped, len(rejected_prices)),
                   "posts": Counts(len(posts_raw), len(kept), posts_deduped, len(rejected_posts))},
    }


def prices_to_raw(prices: pd.DataFrame) -> pd.DataFrame:
    """Canonical prices back to the raw layout (for feeding shipped prices through the pipeline)."""
    raw = prices.copy()
    raw["date"] = pd.to_datetime(raw["date"]).dt.strftime("%Y-%m-%d")
    raw["note"] = None
    return sources.raw_frame(raw, sources.RAW_PRICE_COLUMNS)


def write_prices_csv(prices: pd.DataFrame, out_uri: str) -> list[str]:
    """Write canonical prices as one Yahoo-format CSV per ticker (how the demo stages shipped data)."""
    written = []
    for ticker, g in prices.groupby("ticker", sort=True):
        df = pd.DataFrame({"Date": pd.to_datetime(g["date"]).dt.strftime("%Y-%m-%d"), "Open": g["open"],
                           "High": g["high"], "Low": g["low"], "Close": g["close"], "Adj Close": g["adj_close"],
                           "Volume": g["volume"]})
        uri = storage.join(out_uri, f"{ticker}.csv")
        storage.write_bytes(uri, df.to_csv(index=False, lineterminator="\n").encode())
        written.append(uri)
    return written
