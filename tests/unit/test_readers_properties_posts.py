"""Hostile input for the post readers (issue 14): posts CSV, StockNet JSON lines, the Kaggle pair.

The same two properties as the price readers (see test_readers_properties.py), at the pure core the
Ray ETL maps per input (``sources.read_post_file`` -> ``curate.process_posts`` -> ``curate.dedupe_posts``;
``etl._posts_batch`` and ``etl._duplicates_batch`` call these), and once more through the
single-process reference (``reference.build_pandas``), whose counts must reconcile.
"""

from __future__ import annotations

import gzip
import hashlib
import json

import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from finpulse import storage
from finpulse.data import curate, reference, sources
from finpulse.data.calendar import trading_calendar
from finpulse.data.schemas import SCORED_POSTS, to_table
from tests.support.hostile_input import (
    CALENDAR_END,
    CALENDAR_START,
    HOSTILE,
    JSON_VALUES,
    Case,
    PairCase,
    kaggle_pair,
    posts_csv,
    stocknet_jsonl,
)

FAST = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DAYS = pd.bdate_range(CALENDAR_START, CALENDAR_END)
PRICES_RAW = reference.prices_to_raw(pd.DataFrame({
    "ticker": "AAPL", "date": DAYS.date, "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.0, "adj_close": 10.0,
    "volume": 1000, "source": "t"}))
CALENDAR = trading_calendar(pd.Series(DAYS.date))
HEADER = b"post_id,ticker,created_at,text,author,likes,reposts,source\n"
TWEETS = b"tweet_id,writer,post_date,body,comment_num,retweet_num,like_num\n"
COMPANIES = b"tweet_id,ticker_symbol\n"
UNREADABLE = "unreadable file: "


def check_posts(raw: pd.DataFrame, name: str) -> tuple[int, int, pd.DataFrame]:
    """Validate, align, score and dedupe raw posts; returns (kept, deduped, rejected), all checked."""
    scored, rejected = curate.process_posts(raw, CALENDAR)
    assert len(scored) + len(rejected) == len(raw)
    assert rejected["reason"].map(lambda r: isinstance(r, str) and r.strip() != "").all()
    assert all(isinstance(json.loads(r), dict) for r in rejected["raw"])
    unreadable = rejected["reason"].str.startswith(UNREADABLE)
    files = {name, name.rsplit("/", 1)[0] + "/Company_Tweet.csv"}  # the Kaggle pair's bad half is named
    assert rejected.loc[unreadable, "source"].isin(files).all()  # (a posts CSV row's source is its own column)
    kept, deduped = curate.dedupe_posts(scored)
    to_table(kept, SCORED_POSTS)
    assert not kept.duplicated(["post_id", "ticker"]).any()
    counts = reference.build_pandas(PRICES_RAW, raw)["counts"]["posts"]  # the reference ETL agrees
    counts.check("posts")
    assert (counts.rows_out, counts.deduped, counts.quarantined) == (len(kept), deduped, len(rejected))
    if unreadable.any():
        assert len(raw) == 1
    return len(kept), deduped, rejected


def check_accounting(raw: pd.DataFrame, name: str, rows: int, clean: int) -> None:
    kept, deduped, rejected = check_posts(raw, name)
    assert not rejected["reason"].str.startswith(UNREADABLE).any(), rejected["raw"].tolist()
    assert len(raw) == rows and kept + deduped + len(rejected) == rows
    assert kept + deduped >= clean, rejected.to_dict("records")


@FAST
@given(case=posts_csv())
@example(case=Case(HEADER + b"a,AAPL,2021-02-01T15:00:00Z,hi,u,inf,0,t\n", rows=1, clean=0))  # bug: IntCastingNaNError
@example(case=Case(HEADER + b"a,AAPL,2021-02-01T15:00:00Z,hi,u,1e30,0,t\n", rows=1, clean=0))  # bug: likes -2**63
@example(case=Case(HEADER + b"a,AAPL,2021-02-01T15:00:00Z,hi, there,u,0,0,t\nb,AAPL,2021-02-01T15:00:00Z,ok,u,0,0,t\n",
                   rows=2, clean=1))  # bug: an unquoted comma (one field too many) failed the whole file
def test_posts_csv_rows_are_accounted_for(case: Case) -> None:
    check_accounting(sources.read_post_file("raw/posts.csv", "posts_csv", case.data), "raw/posts.csv", case.rows,
                     case.clean)


def _line(**obj: object) -> bytes:
    return json.dumps({"created_at": "Mon Feb 01 15:00:00 +0000 2021", "user_id_str": "1", **obj},
                      ensure_ascii=False).encode()


@FAST
@given(case=stocknet_jsonl())
@example(case=Case(_line(text="up\u2028today") + b"\n", rows=1, clean=1))  # bug: str.splitlines split a JSON line
@example(case=Case(b"[1, 2]\n" + _line(text="ok") + b"\n", rows=2, clean=1))  # bug: AttributeError
@example(case=Case(_line(text=["up", 1]) + b"\n", rows=1, clean=0))  # bug: TypeError joining tokens
@example(case=Case(_line(text="a", id_str="1", favorite_count=1e400) + b"\n", rows=1, clean=0))  # bug: int cast
@example(case=Case(_line(text="caf\u00e9")[:-1] + b"\xff}\n" + _line(text="ok") + b"\n", 2, 1))  # bug: not UTF-8
@example(case=Case(_line(text={"a": 1}) + b"\n", rows=1, clean=0))  # bug: an object accepted as text
def test_stocknet_lines_are_accounted_for(case: Case) -> None:
    name = "raw/tweets_raw/AAPL.jsonl.gz"
    check_accounting(sources.read_post_file(name, "stocknet_jsonl", case.data), name, case.rows, case.clean)


@FAST
@given(case=kaggle_pair())
@example(case=PairCase(TWEETS + b"1,w,1612191600,hi,0,0,0\n", COMPANIES + b"1,AAPL\n9,MSFT\n", rows=2, clean=1))
def test_kaggle_pair_rows_are_accounted_for(case: PairCase) -> None:  # the example: a ticker row without its tweet
    name = "raw/kaggle/Tweet.csv"
    raw = sources.read_post_file(name, "kaggle_tweets", case.tweets, case.companies)
    check_accounting(raw, name, case.rows, case.clean)


def _truncated(files: st.SearchStrategy[Case]) -> st.SearchStrategy[bytes]:
    return st.tuples(files, st.floats(0, 1)).map(lambda t: t[0].data[: int(len(t[0].data) * t[1])])


ANY_POST_BYTES = st.one_of(
    st.binary(max_size=300), st.binary(max_size=200).map(lambda b: HEADER + b),
    st.binary(max_size=200).map(lambda b: TWEETS + b), st.binary(max_size=200).map(lambda b: gzip.compress(b)[:-3]),
    _truncated(posts_csv()), _truncated(stocknet_jsonl()), kaggle_pair().map(lambda c: c.tweets),
    st.lists(JSON_VALUES | HOSTILE, max_size=4).map(lambda vs: b"\n".join(json.dumps(v).encode() for v in vs)),
    st.sampled_from(["utf-16", "latin-1"]).map(lambda e: ("post_id,ticker,created_at,text\n"
                                                          "1,AAPL,2021-02-01,caf\u00e9\n").encode(e)),
    st.sampled_from([b"", b"\n", b"post_id\n", b"tweet_id,ticker_symbol\n", b"\x1f\x8b\x08\x00", b'post_id,x\n"1']),
)
POST_FORMATS = ["posts_csv", "stocknet_jsonl", "kaggle_tweets", "kaggle_companies", "unknown"]


@FAST
@given(fmt=st.sampled_from(POST_FORMATS), data=ANY_POST_BYTES,
       companies=st.none() | ANY_POST_BYTES | kaggle_pair().map(lambda c: c.companies))
@example(fmt="posts_csv", data=b"", companies=None)  # bug: EmptyDataError
@example(fmt="stocknet_jsonl", data=gzip.compress(b'{"text": "a"}\n')[:-3], companies=None)  # bug: EOFError
@example(fmt="stocknet_jsonl", data=b"\x1f\x8b garbage", companies=None)  # bug: BadGzipFile
@example(fmt="kaggle_tweets", data=b"a,b\n1,2\n", companies=COMPANIES)  # bug: KeyError 'tweet_id'
@example(fmt="kaggle_tweets", data=TWEETS + b"1,w,1612191600,hi,0,0,0\n", companies=b"garbage")  # bug: KeyError
@example(fmt="kaggle_tweets", data=TWEETS, companies=None)  # bug: ValueError (Kaggle pair incomplete) ended the ETL
@example(fmt="unknown", data=b"hello", companies=None)  # bug: ValueError (unknown post format) ended the ETL
def test_no_bytes_crash_a_post_reader(fmt: str, data: bytes, companies: bytes | None) -> None:
    name = {"stocknet_jsonl": "raw/AAPL.jsonl"}.get(fmt, "raw/Tweet.csv" if fmt.startswith("kaggle") else "raw/p.csv")
    check_posts(sources.read_post_file(name, fmt, data, companies), name)


def test_stray_post_files_are_quarantined_not_fatal(tmp_path) -> None:
    """A folder with a file of no known format, half a Kaggle pair and a truncated .jsonl.gz: the ETL's
    inputs still read, each bad file clear quarantined rows. Before, discover_post_inputs raised on the
    first two, and storage (pyarrow decompressing .gz on the way) raised on the third, in read_bytes and
    in the version hash (file_sha256): each stopped the ETL."""
    (tmp_path / "notes.csv").write_text("hello,world\n")
    tweets = b"".join(_line(text=f"tweet {i}", id_str=str(i)) + b"\n" for i in range(50))
    truncated = gzip.compress(tweets)[:-30]
    (tmp_path / "AAPL.jsonl.gz").write_bytes(truncated)
    assert storage.read_bytes(str(tmp_path / "AAPL.jsonl.gz")) == truncated
    assert storage.file_sha256(str(tmp_path / "AAPL.jsonl.gz")) == (hashlib.sha256(truncated).hexdigest(), len(truncated))
    (tmp_path / "kaggle").mkdir()
    (tmp_path / "kaggle" / "Tweet.csv").write_bytes(TWEETS + b"1,w,1612191600,hi,0,0,0\n")
    (tmp_path / "posts.csv").write_bytes(HEADER + b"a,AAPL,2021-02-01T15:00:00Z,hi,u,0,0,t\n")
    items = sources.discover_post_inputs(str(tmp_path))
    reasons = {}
    for item in items:
        _, rejected = sources.normalize_posts(sources.read_raw_posts(item))
        reasons[item["uri"].rsplit("/", 1)[-1]] = rejected["reason"].tolist()
    truncation = reasons.pop("AAPL.jsonl.gz")
    assert truncation[-1] == "truncated gzip stream: rows after this point are lost" and len(truncation) <= 2
    assert reasons == {"notes.csv": ["unreadable file: unknown post file format"],
                       "Tweet.csv": ["unreadable file: Tweet.csv without Company_Tweet.csv"], "posts.csv": []}
