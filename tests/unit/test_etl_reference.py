"""The single-process ETL reference: counts reconcile, bad rows quarantined with reasons."""

from __future__ import annotations

import pandas as pd

from finpulse.data import reference, sources, synthetic
from finpulse.resources import load_prices


def test_counts_reconcile_and_quarantine_reasons() -> None:
    prices = load_prices(["AAPL", "TSLA"])
    posts = synthetic.generate_posts(prices, seed=2, start="2020-06-01", duplicate_rate=0.02)
    raw = sources.read_posts_csv(synthetic.to_posts_csv(posts, corrupt_rate=0.03, seed=2), "synthetic")
    raw_prices = reference.prices_to_raw(prices)
    raw_prices.loc[5, "high"] = "0.001"  # high below low
    raw_prices = pd.concat([raw_prices, raw_prices.iloc[[10]]], ignore_index=True)  # a duplicate bar
    out = reference.build_pandas(raw_prices, raw)
    for name, c in out["counts"].items():
        assert c.rows_in == c.rows_out + c.deduped + c.quarantined, name
    posts_counts = out["counts"]["posts"]
    assert posts_counts.deduped >= round(0.02 * len(posts)) * 0.9
    assert posts_counts.quarantined >= round(0.03 * len(posts)) * 0.9
    assert set(out["rejected_posts"]["reason"]) <= {"empty text", "unparseable created_at", "invalid ticker",
                                                    "likes not a non-negative integer", "outside the price calendar"}
    assert out["counts"]["prices"].deduped == 1 and out["counts"]["prices"].quarantined == 1
    assert out["rejected_prices"]["reason"].tolist() == ["high below low"]
