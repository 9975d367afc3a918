"""Rebuild the shipped price file from Yahoo daily CSVs (a maintainer's tool, not run by users).

Usage: ``python -m finpulse.resources.build ../shared/data/prices_yahoo_daily``
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from finpulse.data.schemas import PRICES, to_table
from finpulse.data.sources import normalize_prices, read_yahoo_csv
from finpulse.resources import PRICES_FILE, SHIPPED_TICKERS


def build(src: Path, out: Path) -> pd.DataFrame:
    frames = []
    for ticker in SHIPPED_TICKERS:
        raw = read_yahoo_csv((src / f"{ticker}.csv").read_bytes(), ticker, "yahoo")
        valid, rejected = normalize_prices(raw)
        if len(rejected):
            raise SystemExit(f"{ticker}: {len(rejected)} rejected rows: {rejected.reason.unique()}")
        d = pd.to_datetime(valid["date"])
        frames.append(valid[(d >= "2010-01-01") & (d <= "2020-12-31")])
    df = pd.concat(frames).sort_values(["ticker", "date"]).reset_index(drop=True)
    pq.write_table(to_table(df, PRICES), out, compression="zstd", compression_level=19)
    return df


if __name__ == "__main__":
    df = build(Path(sys.argv[1]), Path(__file__).parent / PRICES_FILE)
    print(df.groupby("ticker")["date"].agg(["min", "max", "count"]))
