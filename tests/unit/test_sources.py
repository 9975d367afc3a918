"""Readers: each source format becomes the canonical schema; bad rows are rejected with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from finpulse.data import sources
from finpulse.data.schemas import POSTS, PRICES, to_table

YAHOO = b"""Date,Open,High,Low,Close,Adj Close,Volume
2020-01-02,10.0,11.0,9.5,10.5,10.4,1000
2020-01-03,10.5,10.0,11.0,10.7,10.6,1200
2020-01-06,-1,11.0,9.0,10.0,10.0,900
2020-01-07,null,11.0,9.0,10.0,10.0,900
not-a-date,10,11,9,10,10,900
2020-01-08,10,11,9,10,10,1.5
2020-01-09,10,11,9,10,10,67867200.0
"""

AV_CSV = b"""timestamp,open,high,low,close,volume
2018-11-29,110.3300,111.1150,109.0300,110.1900,27776067
2018-11-28,107.8900,111.3300,107.8600,111.1200,46788461
"""


def av_json(refreshed: str) -> bytes:
    return json.dumps({
        "Meta Data": {"2. Symbol": "MSFT", "3. Last Refreshed": refreshed, "5. Time Zone": "US/Eastern"},
        "Time Series (Daily)": {
            "2019-01-22": {"1. open": "106.75", "2. high": "107.09", "3. low": "105.89", "4. close": "106.10",
                           "5. volume": "11593990"},
            "2019-01-18": {"1. open": "107.46", "2. high": "107.90", "3. low": "105.91", "4. close": "107.71",
                           "5. volume": "37427587"},
        },
    }).encode()


def test_yahoo_csv_valid_rows_and_reasons() -> None:
    valid, rejected = sources.normalize_prices(sources.read_yahoo_csv(YAHOO, "aapl", "f.csv"))
    to_table(valid, PRICES)  # canonical schema or it raises
    assert valid["date"].astype(str).tolist() == ["2020-01-02", "2020-01-09"]
    assert valid["ticker"].unique().tolist() == ["AAPL"]
    assert valid["volume"].tolist() == [1000, 67867200]  # float-written volume accepted when integral
    assert sorted(rejected["reason"]) == sorted([
        "high below low", "non-positive price", "non-numeric price", "unparseable date",
        "volume not a non-negative integer"])
    first = json.loads(rejected["raw"].iloc[0])
    assert set(first) >= {"date", "open", "high", "low", "close"}  # the raw row is kept, not just a reason


def test_alpha_vantage_csv_is_reordered_oldest_first() -> None:
    valid, rejected = sources.normalize_prices(sources.read_alpha_vantage_csv(AV_CSV, "MSFT", "av.csv"))
    assert rejected.empty
    assert valid["date"].astype(str).tolist() == ["2018-11-28", "2018-11-29"]
    assert (valid["adj_close"] == valid["close"]).all()  # unadjusted series


def test_alpha_vantage_json_flags_intraday_bar() -> None:
    valid, rejected = sources.normalize_prices(sources.read_alpha_vantage_json(av_json("2019-01-22 12:41:14"), None, "x"))
    assert valid["date"].astype(str).tolist() == ["2019-01-18"]
    assert rejected["reason"].tolist() == ["intraday bar: not a close"]
    assert valid["close"].iloc[0] == pytest.approx(107.71)
    # after the close the same bar is a real close
    valid, rejected = sources.normalize_prices(sources.read_alpha_vantage_json(av_json("2019-01-22 16:30:00"), None, "x"))
    assert len(valid) == 2 and rejected.empty
    valid, _ = sources.normalize_prices(sources.read_alpha_vantage_json(av_json("2019-01-22"), None, "x"))
    assert len(valid) == 2  # a date without a time is a completed day


def test_alpha_vantage_json_error_message_is_clear() -> None:
    with pytest.raises(ValueError, match="Time Series"):
        sources.read_alpha_vantage_json(b'{"Note": "API call frequency exceeded"}', None, "x")


def test_kaggle_pair_one_row_per_ticker() -> None:
    tweets = (b"tweet_id,writer,post_date,body,comment_num,retweet_num,like_num\n"
              b"1,alice,1420070457,$AAPL and $MSFT both up,0,2,5\n"
              b"2,bob,1420070500,\"multi\nline text about $TSLA\",1,0,0\n"
              b"3,carol,1420070600,orphan tweet,0,0,0\n")
    companies = b"tweet_id,ticker_symbol\n1,AAPL\n1,MSFT\n2,TSLA\n"
    raw = sources.read_kaggle_tweets(tweets, companies, "kaggle")
    valid, rejected = sources.normalize_posts(raw)
    to_table(valid, POSTS)
    assert sorted(zip(valid["post_id"], valid["ticker"], strict=True)) == [("1", "AAPL"), ("1", "MSFT"), ("2", "TSLA")]
    row = valid[valid["ticker"] == "AAPL"].iloc[0]
    assert row["author"] == "alice" and row["likes"] == 5 and row["reposts"] == 2
    assert row["created_at"] == pd.Timestamp(1420070457, unit="s", tz="UTC")
    assert "\n" in valid[valid["ticker"] == "TSLA"]["text"].iloc[0]
    assert rejected["reason"].tolist() == ["invalid ticker"]  # the orphan is kept in quarantine


def test_stocknet_jsonl_tokens_joined_and_twitter_time_parsed() -> None:
    lines = [
        {"file_date": "2014-01-01", "text": ["$", "aapl", "up", "today"], "created_at": "Wed Jan 01 03:59:03 +0000 2014",
         "user_id_str": "42"},
        {"file_date": "2014-01-01", "text": [], "created_at": "Wed Jan 01 04:00:00 +0000 2014", "user_id_str": "7"},
    ]
    data = ("\n".join(json.dumps(x) for x in lines) + "\nnot json\n").encode()
    valid, rejected = sources.normalize_posts(sources.read_stocknet_jsonl(data, "AAPL", "sn"))
    assert valid["text"].tolist() == ["$ aapl up today"]
    assert valid["created_at"].iloc[0] == pd.Timestamp("2014-01-01 03:59:03", tz="UTC")
    assert valid["post_id"].iloc[0].startswith("sn-")
    assert sorted(rejected["reason"]) == ["empty text", "not JSON"]


@pytest.mark.parametrize(("raw", "expected"), [("$aapl", "AAPL"), (" AAPL ", "AAPL"), ("brk.b", "BRK.B"),
                                               ("", None), ("not a ticker", None), (None, None), ("$", None)])
def test_normalize_ticker(raw: str | None, expected: str | None) -> None:
    assert sources.normalize_ticker(raw) == expected


def test_post_validation_reasons() -> None:
    raw = pd.DataFrame([
        {"post_id": "a", "ticker": "$aapl", "created_at": "2020-01-02T15:00:00Z", "text": " hi ", "author": "u",
         "likes": "", "reposts": None, "source": "s"},
        {"post_id": "b", "ticker": "AAPL", "created_at": "someday", "text": "x", "author": "u", "likes": "1",
         "reposts": "0", "source": "s"},
        {"post_id": "c", "ticker": "AAPL", "created_at": "2020-01-02", "text": "   ", "author": "u", "likes": "1",
         "reposts": "0", "source": "s"},
        {"post_id": "d", "ticker": "AAPL", "created_at": "2020-01-02", "text": "x", "author": "u", "likes": "-1",
         "reposts": "0", "source": "s"},
        {"post_id": "e", "ticker": "AAPL", "created_at": "2020-01-02", "text": "x", "author": "u", "likes": "1.5",
         "reposts": "abc", "source": "s"},
    ])
    valid, rejected = sources.normalize_posts(raw)
    assert valid["post_id"].tolist() == ["a"]
    assert valid.iloc[0]["text"] == "hi" and valid.iloc[0]["ticker"] == "AAPL" and valid.iloc[0]["likes"] == 0
    assert rejected["reason"].tolist() == ["unparseable created_at", "empty text", "likes not a non-negative integer",
                                           "likes not a non-negative integer"]


def test_format_detection() -> None:
    assert sources.detect_price_format("x/AAPL.csv", YAHOO) == "yahoo_csv"
    assert sources.detect_price_format("daily_MSFT.csv", AV_CSV) == "alpha_vantage_csv"
    assert sources.detect_price_format("TIME_SERIES_DAILY_MSFT.json", av_json("2019-01-22")) == "alpha_vantage_json"
    assert sources.ticker_from_name("s3://b/daily_MSFT.csv") == "MSFT"
    with pytest.raises(ValueError, match="unknown price file format"):
        sources.detect_price_format("x.csv", b"a,b,c\n")


# ---------------------------------------------------------------- the real files, when present


def test_real_price_files(shared_data: Path) -> None:
    for name, min_rows in [("prices_yahoo_daily/NVDA.csv", 5500), ("alpha_vantage_fixture/daily_MSFT.csv", 100),
                           ("alpha_vantage_fixture/TIME_SERIES_DAILY_AAPL.json", 99)]:
        path = shared_data / name
        valid, rejected = sources.normalize_prices(sources.read_price_file(str(path), path.read_bytes()))
        to_table(valid, PRICES)
        assert len(valid) >= min_rows
        assert valid["date"].is_monotonic_increasing
    # NVDA has one all-NaN row; XOM's 1968-02-20 bar has High < Low (and Open 0): both quarantined
    nvda = shared_data / "prices_yahoo_daily/NVDA.csv"
    _, rejected = sources.normalize_prices(sources.read_price_file(str(nvda), nvda.read_bytes()))
    assert rejected["reason"].tolist() == ["non-numeric price"]
    xom = shared_data / "prices_yahoo_daily/XOM.csv"
    valid, rejected = sources.normalize_prices(sources.read_price_file(str(xom), xom.read_bytes()))
    assert "1968-02-20" not in set(valid["date"].astype(str))
    assert any('"1968-02-20"' in r for r in rejected["raw"])


def test_real_stocknet_file(shared_data: Path) -> None:
    path = shared_data / "stocknet/tweets_preprocessed/MSFT.jsonl"
    valid, rejected = sources.normalize_posts(sources.read_stocknet_jsonl(path.read_bytes(), "MSFT", str(path)))
    to_table(valid, POSTS)
    assert len(valid) + len(rejected) == 3117
    assert valid["created_at"].min() >= pd.Timestamp("2013-12-31", tz="UTC")


def test_stocknet_raw_tweets_keep_their_ids_and_counts(shared_data) -> None:
    path = shared_data / "stocknet_full" / "tweets_raw" / "BRK-A.jsonl.gz"
    raw = sources.read_stocknet_jsonl(path.read_bytes(), sources.ticker_from_name(str(path)), str(path))
    assert sources.detect_post_format(str(path), b"") == "stocknet_jsonl"
    valid, rejected = sources.normalize_posts(raw)
    assert len(valid) == 15 and rejected.empty  # SOURCES.md: BRK-A has 15 tweets
    assert valid["post_id"].str.fullmatch(r"\d{15,20}").all()  # Twitter's id_str, not a hash
    assert (valid["ticker"] == "BRK-A").all() and valid["created_at"].dt.year.between(2014, 2016).all()
