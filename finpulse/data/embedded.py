"""Stage the embedded defaults as raw inputs: shipped real prices as Yahoo CSVs and synthetic
posts as posts CSVs, so `make demo` and `finpulse etl --embedded` run the same ETL as real data."""

from __future__ import annotations

import pandas as pd

from finpulse import storage
from finpulse.data import reference, synthetic
from finpulse.paths import DataPaths
from finpulse.resources import load_prices


def stage_embedded(paths: DataPaths, *, start: str = "2018-01-01", end: str | None = None,
                   posts_per_day: float = 6.0, signal_strength: float = 0.0, corrupt_rate: float = 0.002,
                   files: int = 4, seed: int = 42) -> dict[str, int]:
    """Write the shipped prices and synthetic posts (labelled synthetic) under ``paths``' raw folders,
    up to ``end`` (the days after it are what the live replay brings in).

    Posts are split over ``files`` CSVs (one ETL task each). Returns row counts.
    """
    prices = load_prices()
    if end:
        prices = prices[prices["date"] <= pd.Timestamp(end).date()]
    storage.delete_dir(paths.raw_prices)
    storage.delete_dir(paths.raw_posts)
    reference.write_prices_csv(prices, paths.raw_prices)
    posts = synthetic.generate_posts(prices, posts_per_day=posts_per_day, signal_strength=signal_strength,
                                     seed=seed, start=start, end=end)
    n = len(posts)
    for i in range(files):
        part = posts.iloc[i * n // files:(i + 1) * n // files]
        data = synthetic.to_posts_csv(part, corrupt_rate=corrupt_rate, seed=seed + i)
        storage.write_bytes(storage.join(paths.raw_posts, f"synthetic-{i:03d}.csv"), data)
    return {"prices": len(prices), "posts": n}
