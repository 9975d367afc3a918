"""A replay corpus splits cleanly at its start: history strictly before, replay from it on."""

from __future__ import annotations

import pandas as pd

from finpulse.data import sources
from finpulse.ingest.corpora import stocknet


def test_stocknet_corpus_splits_history_from_replay(shared_data) -> None:
    corpus = stocknet(shared_data / "stocknet_full", ["AAPL", "BRK-A"], start="2016-02-01", end="2016-03-31")
    assert pd.to_datetime(corpus.history["date"]).max() < pd.Timestamp("2016-02-01")
    days = pd.to_datetime(corpus.bars["date"])
    assert days.min() >= pd.Timestamp("2016-02-01") and days.max() <= pd.Timestamp("2016-03-31")
    assert set(corpus.bars["ticker"]) == {"AAPL", "BRK-A"}
    created = sources.parse_created_at(corpus.posts["created_at"])
    assert created.min() >= pd.Timestamp("2016-02-01", tz="UTC") and created.max() < pd.Timestamp("2016-04-01", tz="UTC")
    assert len(corpus.posts) > 500 and set(corpus.posts["ticker"]) <= {"AAPL", "BRK-A"}
