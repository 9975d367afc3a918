"""Corpora to replay through the live path: raw price bars and raw posts in the batch readers' layouts.

``stocknet`` reads the StockNet corpus as published (``stocknet_full/``: raw tweets with their ids for
87 stocks, 2014-01 to 2016-03, and Yahoo prices); ``embedded`` is the default: the shipped prices'
last days with synthetic posts (labelled synthetic), the days the demo's batch history stops before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from finpulse.data import sources

if TYPE_CHECKING:
    from finpulse.data.synthetic import PostStyle


@dataclass
class Corpus:
    """What a replay publishes (``bars``, ``posts``: raw layouts) and the bars before it (``history``)."""

    history: pd.DataFrame
    bars: pd.DataFrame
    posts: pd.DataFrame


def split_at(bars: pd.DataFrame, posts: pd.DataFrame, start: str, end: str | None = None) -> Corpus:
    """Bars before ``start`` are history; bars and posts from ``start`` (to ``end``) are replayed."""
    day = pd.to_datetime(bars["date"])
    created = sources.parse_created_at(posts["created_at"])
    begin = pd.Timestamp(start)
    stop = pd.Timestamp(end) + pd.Timedelta(days=1) if end else None
    in_bars = (day >= begin) & (day < stop) if stop is not None else day >= begin
    in_posts = created >= begin.tz_localize("UTC")
    if stop is not None:
        in_posts &= created < stop.tz_localize("UTC")
    return Corpus(bars[day < begin].reset_index(drop=True), bars[in_bars].reset_index(drop=True),
                  posts[in_posts.fillna(False).to_numpy()].reset_index(drop=True))


def stocknet(root: str | Path, tickers: list[str], start: str = "2015-10-01", end: str | None = "2016-03-31") -> Corpus:
    """StockNet's raw tweets and Yahoo prices for ``tickers``, replayed from ``start``."""
    bars, posts = sources.read_stocknet_dir(str(root), tickers)
    return split_at(bars, posts, start, end)


def embedded_cutoff(days: int) -> str:
    """The last day of the embedded history when the final ``days`` trading days are replayed."""
    from finpulse.resources import load_prices

    dates = sorted(set(load_prices()["date"]))
    return str(dates[-days - 1])


def embedded(days: int = 10, *, posts_per_day: float = 6.0, signal_strength: float = 0.0, seed: int = 43,
             style: PostStyle | None = None) -> Corpus:
    """The shipped prices' last ``days`` trading days with synthetic posts, as raw rows (history before).

    The seed differs from the batch staging's, so the replayed posts' ids never repeat a staged post's.
    ``style`` can plant a shift (``PostStyle(vocabulary_shift=..., mood_shift=...)``): the demo's drift.
    """
    from finpulse.data.reference import prices_to_raw
    from finpulse.data.synthetic import generate_posts, to_posts_csv
    from finpulse.resources import load_prices

    prices = load_prices()
    start = embedded_cutoff(days)
    replayed = prices[prices["date"] > pd.Timestamp(start).date()]
    posts = generate_posts(prices, posts_per_day=posts_per_day, signal_strength=signal_strength, seed=seed,
                           start=str(replayed["date"].min()), style=style)
    raw_posts = sources.read_posts_csv(to_posts_csv(posts, corrupt_rate=0.0, seed=seed), "synthetic-replay")
    first = (pd.Timestamp(start) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    return split_at(prices_to_raw(prices), raw_posts, first)
