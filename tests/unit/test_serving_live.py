"""Fresh serving: the Forecaster takes the stream's rows as they land, without a restart or a config
edit, and every answer says how fresh its features are."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from finpulse.data.reference import build_pandas, prices_to_raw
from finpulse.ingest import live, store
from finpulse.paths import DataPaths
from finpulse.resources import load_prices
from finpulse.serving.router import configure_forecast
from finpulse.serving.schemas import ForecasterConfig
from finpulse.serving.services import ForecastService
from tests.support.serving import make_tiny_forecaster

TICKER = "AAPL"


def test_forecasts_follow_the_stream(tmp_path: Path) -> None:
    prices = load_prices([TICKER])
    prices = prices[pd.to_datetime(prices["date"]) >= pd.Timestamp("2019-01-01")]
    last_day = prices["date"].max()
    history = build_pandas(prices_to_raw(prices[prices["date"] < last_day]), None)
    batch = tmp_path / "features.parquet"
    history["daily_features"].to_parquet(batch)
    paths = DataPaths(str(tmp_path / "data"))
    service = ForecastService()
    configure_forecast(service, ForecasterConfig(
        model=str(make_tiny_forecaster(tmp_path / "fc", history["daily_features"])), features_uri=str(batch),
        live_features_uri=paths.live_features))
    before = service.predict([{"ticker": TICKER}])[0]
    assert before["as_of"] < last_day and not before["provisional"] and before["stale"]  # years-old data

    # the stream sees a post on the last day, before its close: a provisional row for that day
    book = live.LiveBook(bars=history["prices"], posts=pd.DataFrame())
    post = pd.DataFrame([{"post_id": "p1", "ticker": TICKER, "created_at": f"{last_day}T14:00:00Z",
                          "text": "great quarter", "author": "a", "likes": "1", "reposts": "0", "source": "t"}])
    accepted = live.accept_posts(book, post).accepted
    live.commit_posts(book, accepted.assign(p_negative=0.0, p_neutral=0.1, p_positive=0.9, label="positive",
                                            score=0.9, scorer="t"))
    store.write_features(paths, {TICKER: live.ticker_features(book, TICKER, "t")}, {})
    assert service.refresh_live() == [TICKER]
    now = service.predict([{"ticker": TICKER}])[0]
    assert now["as_of"] == last_day and now["provisional"]
    assert now["features_updated_at"] > before["features_updated_at"]
    assert now["predicted_return"] != before["predicted_return"]
    assert service.refresh_live() == []  # nothing new: nothing re-read

    # the day's bar arrives: the row is final, and earlier days still answer from the batch rows
    time.sleep(0.01)
    live.accept_bars(book, prices_to_raw(prices[prices["date"] == last_day]))
    store.write_features(paths, {TICKER: live.ticker_features(book, TICKER, "t")}, store.read_state(paths))
    assert service.refresh_live() == [TICKER]
    closed = service.predict([{"ticker": TICKER}, {"ticker": TICKER, "as_of": before["as_of"]}])
    assert closed[0]["as_of"] == last_day and not closed[0]["provisional"]
    assert closed[1]["as_of"] == before["as_of"]
