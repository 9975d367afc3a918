"""The live core computes what the batch ETL computes, on the same posts and bars, one micro-batch at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finpulse.data import sources
from finpulse.data.reference import build_pandas, prices_to_raw
from finpulse.data.synthetic import generate_posts
from finpulse.data.vader import label_from_compound, vader_compound
from finpulse.ingest import live
from finpulse.resources import load_prices

TICKERS = ["AAPL", "MSFT"]


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    p = load_prices()
    p = p[p["ticker"].isin(TICKERS)]
    # three and a half years of bars: far longer than the stream keeps, so a window that cut the RSI's
    # exponential average short would show here
    return p[(p["date"] >= pd.Timestamp("2016-01-01").date()) & (p["date"] <= pd.Timestamp("2019-06-28").date())]


@pytest.fixture(scope="module")
def posts_raw(prices: pd.DataFrame) -> pd.DataFrame:
    recent = prices[prices["date"] >= pd.Timestamp("2019-01-01").date()]
    posts = generate_posts(recent, posts_per_day=6, duplicate_rate=0.05, seed=3)
    return sources.raw_frame(posts.assign(created_at=posts["created_at"].astype(str)), sources.RAW_POST_COLUMNS)


def vader_scored(accepted: pd.DataFrame) -> pd.DataFrame:
    """Score the way the batch reference does (VADER), so both sides see the same scores."""
    compound = vader_compound(accepted["text"])
    return accepted.assign(p_negative=np.nan, p_neutral=np.nan, p_positive=np.nan,
                           label=label_from_compound(compound), score=compound, scorer="vader")


def empty_book(bars: pd.DataFrame) -> live.LiveBook:
    return live.LiveBook(bars=bars.reset_index(drop=True), posts=pd.DataFrame())


def test_streamed_batches_give_the_batch_etl_features(prices: pd.DataFrame, posts_raw: pd.DataFrame) -> None:
    batch = build_pandas(prices_to_raw(prices), posts_raw)
    book = empty_book(batch["prices"])
    ordered = posts_raw.sort_values("created_at", kind="mergesort")
    duplicates = 0
    for idx in np.array_split(np.arange(len(ordered)), 25):  # micro-batches in arrival order
        chunk = ordered.iloc[idx]
        got = live.accept_posts(book, chunk)
        duplicates += got.duplicates
        live.commit_posts(book, vader_scored(got.accepted))
    assert duplicates == batch["counts"]["posts"].deduped > 0
    for ticker in TICKERS:
        streamed = live.ticker_features(book, ticker, "vader")
        assert not streamed["provisional"].any()  # every post's day has its bar
        expected = batch["daily_features"]
        expected = expected[expected["ticker"] == ticker].iloc[-len(streamed):].reset_index(drop=True)
        pd.testing.assert_frame_equal(streamed.drop(columns="provisional"), expected, check_dtype=False)


def test_repeats_and_bad_rows_are_counted_not_lost(prices: pd.DataFrame, posts_raw: pd.DataFrame) -> None:
    book = empty_book(build_pandas(prices_to_raw(prices), None)["prices"])
    first = live.accept_posts(book, posts_raw.iloc[:50])
    live.commit_posts(book, vader_scored(first.accepted))
    again = live.accept_posts(book, posts_raw.iloc[:50])  # a redelivered batch
    assert len(again.accepted) == 0 and again.duplicates == 50 - len(first.rejected)
    bad = posts_raw.iloc[50:53].copy()
    bad.loc[bad.index[0], "text"] = "  "
    bad.loc[bad.index[1], "created_at"] = "yesterday-ish"
    bad.loc[bad.index[2], "created_at"] = "2031-01-02T15:00:00Z"
    bad = pd.concat([bad, bad.iloc[[0]].assign(text="old news", created_at="1999-01-04T15:00:00Z")])
    got = live.accept_posts(book, bad)
    assert sorted(got.rejected["reason"]) == ["empty text", "outside the price calendar", "unparseable created_at"]
    # a post past the known bars is not refused: its day's bars may still be on their way (a redelivery
    # reorders the feed), so the processor offers it again later
    assert got.ahead["created_at"].tolist() == [pd.Timestamp("2031-01-02T15:00:00Z")]


def test_the_open_day_is_provisional_until_its_bar_arrives(prices: pd.DataFrame) -> None:
    bars = build_pandas(prices_to_raw(prices), None)["prices"]
    last_day = bars["date"].max()
    book = empty_book(bars[bars["date"] < last_day])  # the last day has not closed yet
    post = pd.DataFrame([{"post_id": "p1", "ticker": "AAPL", "created_at": f"{last_day}T14:00:00Z",
                          "text": "AAPL beats, great quarter", "author": "a", "likes": "3", "reposts": "1",
                          "source": "test"}])
    got = live.accept_posts(book, post)
    live.commit_posts(book, vader_scored(got.accepted))
    before = live.ticker_features(book, "AAPL", "vader")
    assert before["provisional"].iloc[-1] and before["date"].iloc[-1] == last_day
    assert before["sent_count"].iloc[-1] == 1 and before["sent_mean"].iloc[-1] > 0
    assert np.isnan(before["target_ret_1d"].iloc[-2])  # no target from a provisional close
    live.set_quote(book, "AAPL", float(before["close"].iloc[-2]) * 1.02)
    quoted = live.ticker_features(book, "AAPL", "vader")
    assert quoted["ret_1d"].iloc[-1] == pytest.approx(np.log(1.02))
    closed, rejected = live.accept_bars(book, prices_to_raw(prices[prices["date"] == last_day]))
    assert closed == TICKERS and rejected.empty
    after = live.ticker_features(book, "AAPL", "vader")
    assert not after["provisional"].any() and after["date"].iloc[-1] == last_day
    assert after["sent_count"].iloc[-1] == 1


def test_intraday_bars_are_refused_like_the_batch_reader_refuses_them(prices: pd.DataFrame) -> None:
    book = empty_book(build_pandas(prices_to_raw(prices), None)["prices"])
    raw = prices_to_raw(prices.tail(1)).assign(note="intraday: last refreshed 2019-06-28 12:41:14")
    changed, rejected = live.accept_bars(book, raw)
    assert changed == [] and rejected["reason"].tolist() == ["intraday bar: not a close"]
