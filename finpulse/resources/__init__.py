"""Small shipped data: real daily OHLCV (Yahoo, split-adjusted) 2010-2020 for five large tickers, and
a labelled financial sentiment corpus (Twitter Financial News Sentiment, MIT: see its SOURCE.md).

Prices are facts; the file is rebuilt from the Yahoo CSVs by ``python -m finpulse.resources.build``.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd
import pyarrow.parquet as pq

from finpulse.data.schemas import PRICES

SHIPPED_TICKERS: tuple[str, ...] = ("AAPL", "MSFT", "AMZN", "GOOG", "TSLA")
PRICES_FILE = "prices_2010_2020.parquet"


def prices_path() -> str:
    return str(resources.files(__name__) / PRICES_FILE)


def load_prices(tickers: list[str] | None = None) -> pd.DataFrame:
    """The shipped daily prices in the PRICES schema, sorted by ticker and date."""
    table = pq.read_table(prices_path()).cast(PRICES)
    df = table.to_pandas()
    if tickers:
        df = df[df["ticker"].isin(tickers)]
    return df.sort_values(["ticker", "date"]).reset_index(drop=True)


def labelled_root() -> str:
    """A data folder holding ``twitter_financial_news_sentiment/`` (what the sentiment readers take)."""
    return str(resources.files(__name__))
