"""The Forecaster's features: daily rows per ticker with as-of look-ups, and a request's overrides
of the as-of day (its sentiment aggregate, recent closes), built with the ETL's own feature code so
that serving and training compute every feature the same way."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from finpulse.data.schemas import PRICE_FEATURES, SENTIMENT_FEATURES
from finpulse.serving.errors import NoFeatures, UnknownTicker


def day_aggregate(scores: Sequence[dict], likes: Sequence[int] | None = None,
                  reposts: Sequence[int] | None = None) -> dict:
    """The day's sentiment features from per-text scores, computed by the ETL's own
    :func:`finpulse.data.features.aggregate_daily_sentiment` (a second definition here was a
    training/serving skew: serving weighed every post the same while training weighed by engagement)."""
    from finpulse.data.features import AGGREGATE_COLUMNS, aggregate_daily_sentiment

    n = len(scores)
    if n == 0:
        return {"sent_mean": 0.0, "sent_count": 0, "sent_pos_share": 0.0, "sent_neg_share": 0.0, "sent_weighted": 0.0}
    posts = pd.DataFrame({"ticker": "_", "trading_day": dt.date(2000, 1, 3),
                          "score": [float(x["score"]) for x in scores], "label": [x["label"] for x in scores],
                          "likes": list(likes) if likes is not None else 0,
                          "reposts": list(reposts) if reposts is not None else 0})
    row = aggregate_daily_sentiment(posts).iloc[0]
    return {c: (int(row[c]) if c == "sent_count" else float(row[c])) for c in AGGREGATE_COLUMNS[2:]}



def _to_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else pd.Timestamp(value).date()


class FeatureStore:
    """Daily feature rows per ticker, indexed for fast as-of look-ups (one frame per ticker, by date)."""

    def __init__(self, frame: pd.DataFrame, source: str = "memory"):
        df = frame.copy()
        df["date"] = pd.to_datetime(df["date"]).dt.date
        df = df.sort_values(["ticker", "date"])
        if "provisional" not in df:
            df["provisional"] = False
        self._by_ticker = {str(t): g.reset_index(drop=True) for t, g in df.groupby("ticker", sort=True)}
        self._dates = {t: np.array(g["date"].to_numpy(), dtype="datetime64[D]") for t, g in self._by_ticker.items()}
        self.source = source
        self.loaded_at = time.time()
        self.rows = len(df)
        self.updated_at = dict.fromkeys(self._by_ticker, self.loaded_at)  # per ticker: when its rows last changed
        self.versions = dict.fromkeys(self._by_ticker, 0)  # bumped on every live update (cache key)

    def apply_live(self, ticker: str, live: pd.DataFrame, updated_at: float) -> None:
        """Overlay the stream's rows for ``ticker``: they replace rows from their first date on, and extend
        the history past the batch ETL's last day (the open day's row is provisional)."""
        if live.empty:
            return
        rows = live.copy()
        rows["date"] = pd.to_datetime(rows["date"]).dt.date
        first = rows["date"].min()
        base = self._by_ticker.get(ticker)
        kept = base[base["date"] < first] if base is not None else rows.iloc[:0]
        frame = pd.concat([kept, rows[kept.columns] if len(kept.columns) else rows], ignore_index=True)
        self._by_ticker[ticker] = frame.sort_values("date").reset_index(drop=True)
        self._dates[ticker] = np.array(self._by_ticker[ticker]["date"].to_numpy(), dtype="datetime64[D]")
        self.updated_at[ticker] = float(updated_at)
        self.versions[ticker] = self.versions.get(ticker, 0) + 1
        self.rows = sum(len(f) for f in self._by_ticker.values())

    @classmethod
    def from_uri(cls, uri: str) -> FeatureStore:
        """A parquet file/folder of DAILY_FEATURES rows, or an ETL output root (its ``daily_features``)."""
        from finpulse import storage

        if storage.exists(storage.join(uri, "LATEST")):
            from finpulse.data.catalog import load_dataset

            return cls(load_dataset(uri, "daily_features"), source=uri)
        return cls(storage.read_frame(uri), source=uri)

    @property
    def tickers(self) -> list[str]:
        return sorted(self._by_ticker)

    def last_date(self, ticker: str) -> dt.date:
        return self._by_ticker[ticker]["date"].iloc[-1]

    def end_row(self, ticker: str, as_of: dt.date | None = None, max_staleness_days: int = 7) -> int:
        """How many of ``ticker``'s rows are dated on or before ``as_of`` (all when None); 404-type
        errors for an unknown ticker or an ``as_of`` with no recent enough features."""
        frame = self._by_ticker.get(ticker)
        if frame is None:
            raise UnknownTicker(f"unknown ticker {ticker!r}; known: {', '.join(self.tickers) or 'none'}")
        if as_of is None:
            return len(frame)
        end = int(np.searchsorted(self._dates[ticker], np.datetime64(_to_date(as_of), "D"), side="right"))
        if end == 0:
            raise NoFeatures(f"no features for {ticker} on or before {as_of} (first day {frame['date'].iloc[0]})")
        last = frame["date"].iloc[end - 1]
        if (_to_date(as_of) - last).days > max_staleness_days:
            raise NoFeatures(f"no features for {ticker} within {max_staleness_days} days before {as_of} "
                             f"(latest {last})")
        return end

    def frame(self, ticker: str) -> pd.DataFrame:
        return self._by_ticker[ticker]

    def history(self, ticker: str, as_of: dt.date | None = None, rows: int = 120,
                max_staleness_days: int = 7) -> pd.DataFrame:
        """The last ``rows`` rows of ``ticker`` up to and including ``as_of`` (default: the latest day)."""
        end = self.end_row(ticker, as_of, max_staleness_days)
        return self._by_ticker[ticker].iloc[max(0, end - rows) : end]


def apply_signal(history: pd.DataFrame, aggregate: dict | None = None, closes: Sequence[float] | None = None,
                 source: str = "request") -> pd.DataFrame:
    """Replace the as-of day's sentiment features (and, given closes, the recent closes and all price
    features recomputed from them with the ETL's own ``price_features``)."""
    h = history.copy().reset_index(drop=True)
    if closes:
        from finpulse.data.features import price_features

        n = min(len(closes), len(h))
        h.loc[len(h) - n :, "close"] = np.asarray(closes[-n:], dtype=float)
        pf = price_features(h[["ticker", "date", "close", "volume"]])
        for col in PRICE_FEATURES:
            h[col] = pf[col].to_numpy()
    if aggregate is not None:
        last = h.index[-1]
        for col in SENTIMENT_FEATURES:
            h.loc[last, col] = aggregate[col]
        h.loc[last, "has_posts"] = aggregate["sent_count"] > 0
        if "sentiment_source" in h:
            h.loc[last, "sentiment_source"] = source
    return h
