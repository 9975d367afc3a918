"""Readers per source format. Each returns *raw* rows (strings, as found) in one of two layouts;
:func:`normalize_prices` and :func:`normalize_posts` (:mod:`validate`) then validate them into the
canonical schemas and return the rejected rows with a reason, so nothing is dropped silently.

Readers take bytes, not paths, so the same code reads a local file or an S3 object
(:mod:`finpulse.storage` fetches the bytes). A reader raises :class:`UnreadableFile` for a file it
cannot read at all; the dispatchers the ETL calls (:func:`read_price_file`, :func:`read_post_file`)
never raise: such a file becomes one raw row with the reason, quarantined and counted like any row.
Rows a reader could not lay out carry their reason in ``rawfile.REJECT`` (see :mod:`rawfile`).
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from finpulse import storage
from finpulse.data import rawfile
from finpulse.data.rawfile import DETAIL, REJECT, UnreadableFile
from finpulse.data.validate import normalize_posts as normalize_posts
from finpulse.data.validate import normalize_prices as normalize_prices
from finpulse.data.validate import normalize_ticker as normalize_ticker
from finpulse.data.validate import parse_created_at as parse_created_at

RAW_PRICE_COLUMNS = ["ticker", "date", "open", "high", "low", "close", "adj_close", "volume", "source", "note"]
RAW_POST_COLUMNS = ["post_id", "ticker", "created_at", "text", "author", "likes", "reposts", "source"]


def raw_frame(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Everything as strings (None for missing), in the raw layout's column order; a reader's
    :data:`rawfile.READER_COLUMNS` follow only when some row has a reason (clean input: the layout exactly)."""
    if REJECT in df.columns and df[REJECT].notna().any():
        columns = columns + [c for c in rawfile.READER_COLUMNS if c in df.columns]
    out = pd.DataFrame({c: df[c] if c in df.columns else None for c in columns}, index=df.index).astype(object)
    return out.map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))


# ---------------------------------------------------------------- prices


def read_yahoo_csv(data: bytes, ticker: str, source: str) -> pd.DataFrame:
    """Yahoo daily CSV: ``Date,Open,High,Low,Close,Adj Close,Volume`` (oldest first; Adj Close optional)."""
    df = rawfile.read_csv_rows(data, source, ["Date", "Open", "High", "Low", "Close", "Volume"])
    df = df.rename(columns={"Date": "date", "Open": "open", "High": "high", "Low": "low", "Close": "close",
                            "Adj Close": "adj_close", "Volume": "volume"})
    df["ticker"], df["source"] = ticker, source
    return raw_frame(df, RAW_PRICE_COLUMNS)


def read_stocknet_prices(data: bytes, ticker: str, source: str) -> pd.DataFrame:
    """StockNet's Yahoo price files (``Adj Close`` kept: the paper labels with it); the all-``null`` rows
    (PTR, SNP, REX on 2016-06-29: no bar that day) are dropped here, not rejected as bad prices."""
    df = read_yahoo_csv(data, ticker, source)
    no_bar = df[["close", "adj_close"]].isin(["null", "", None]).any(axis=1)
    if REJECT in df.columns:
        no_bar &= df[REJECT].isna()
    return df[~no_bar].reset_index(drop=True)


def read_stocknet_dir(root: str, tickers: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The StockNet corpus folder (``price_raw/<T>.csv``, ``tweets_raw/<T>.jsonl.gz``) as raw (bars, posts);
    every price file when ``tickers`` is None. A stock without a tweet file (GMRE) has no posts."""
    root = root.rstrip("/")
    names = tickers or sorted(ticker_from_name(f) for f in storage.list_files(f"{root}/price_raw", ".csv"))
    bars, posts = [], []
    for t in names:
        price = f"{root}/price_raw/{t}.csv"
        bars.append(_whole_file(read_stocknet_prices, storage.read_bytes(price), t, price,
                                columns=RAW_PRICE_COLUMNS))
        if storage.exists(tweets := f"{root}/tweets_raw/{t}.jsonl.gz"):
            posts.append(_whole_file(read_stocknet_jsonl, storage.read_bytes(tweets), t, tweets,
                                     columns=RAW_POST_COLUMNS))
    return (pd.concat(bars, ignore_index=True),
            pd.concat(posts, ignore_index=True) if posts else pd.DataFrame(columns=RAW_POST_COLUMNS))


def read_alpha_vantage_csv(data: bytes, ticker: str, source: str) -> pd.DataFrame:
    """Alpha Vantage TIME_SERIES_DAILY, datatype=csv: ``timestamp,open,high,low,close,volume``,
    newest first, unadjusted (so ``adj_close`` = ``close``)."""
    df = rawfile.read_csv_rows(data, source, ["timestamp", "open", "high", "low", "close", "volume"])
    df = df.rename(columns={"timestamp": "date"})
    df["adj_close"], df["ticker"], df["source"] = df["close"], ticker, source
    return raw_frame(df.iloc[::-1].reset_index(drop=True), RAW_PRICE_COLUMNS)


def read_alpha_vantage_json(data: bytes, ticker: str | None, source: str) -> pd.DataFrame:
    """Alpha Vantage TIME_SERIES_DAILY JSON. Values are strings. The bar dated on the
    "Last Refreshed" day is marked ``note=intraday`` when that timestamp is before the 16:00 close:
    it is a partial day, not a close, and normalisation rejects it. A bar that is not an object is
    a rejected row; a document without the series (an API error message) is an unreadable file."""
    doc = rawfile.json_document(data, source)
    meta = doc.get("Meta Data") if isinstance(doc.get("Meta Data"), dict) else {}
    series = doc.get("Time Series (Daily)")
    if not isinstance(series, dict):
        raise UnreadableFile(source, "no 'Time Series (Daily)' object (an API error message?)",
                             json.dumps(doc, ensure_ascii=False)[:200])
    refreshed = str(meta.get("3. Last Refreshed", ""))
    intraday_day = None
    if len(refreshed) > 10:  # a time is given: "2019-01-22 12:41:14" (US/Eastern)
        day, clock = refreshed[:10], refreshed[11:]
        if clock < "16:00:00":
            intraday_day = day
    rows = []
    for day, bar in sorted(series.pairs, key=lambda pair: pair[0]):  # a repeated date: both rows, in file order
        if not isinstance(bar, dict):
            rows.append({"date": day, REJECT: "bar is not a JSON object", DETAIL: json.dumps(bar)[:200]})
            continue
        rows.append({"date": day, "open": bar.get("1. open"), "high": bar.get("2. high"),
                     "low": bar.get("3. low"), "close": bar.get("4. close"),
                     "adj_close": bar.get("5. adjusted close", bar.get("4. close")),
                     "volume": bar.get("6. volume", bar.get("5. volume")),
                     "note": f"intraday: last refreshed {refreshed}" if day == intraday_day else None})
    df = pd.DataFrame(rows, columns=["date", "open", "high", "low", "close", "adj_close", "volume", "note",
                                     REJECT, DETAIL])
    df["ticker"], df["source"] = ticker or meta.get("2. Symbol", ""), source
    return raw_frame(df, RAW_PRICE_COLUMNS)


# ---------------------------------------------------------------- posts


def read_posts_csv(data: bytes, source: str) -> pd.DataFrame:
    """A CSV that already has the canonical post columns (the synthetic generator writes these;
    author, likes, reposts and source may be absent)."""
    df = rawfile.read_csv_rows(data, source, ["post_id", "ticker", "created_at", "text"])
    return raw_frame(df, RAW_POST_COLUMNS)


def read_kaggle_tweets(tweets: bytes, companies: bytes, source: str) -> pd.DataFrame:
    """Kaggle "Tweets about the top companies 2015-2020": ``Tweet.csv`` (tweet_id, writer,
    post_date in epoch seconds, body, comment_num, retweet_num, like_num) joined with
    ``Company_Tweet.csv`` (tweet_id, ticker_symbol). A tweet on several tickers becomes one row
    per ticker; a tweet with no ticker row is kept with an empty ticker (and rejected for it); a
    ticker row whose tweet is not in Tweet.csv is a rejected row too (nothing is dropped)."""
    t = rawfile.read_csv_rows(tweets, source, ["tweet_id", "post_date", "body"])
    c = rawfile.read_csv_rows(companies, source.rsplit("/", 1)[0] + "/Company_Tweet.csv", ["tweet_id", "ticker_symbol"])
    c = c.rename(columns={REJECT: "_c_reject", DETAIL: "_c_detail"})
    cols = ["tweet_id", "ticker_symbol", "_c_reject", "_c_detail"]
    df = t.merge(c[cols], on="tweet_id", how="outer", sort=False, indicator=True)
    orphan = (df["_merge"] == "right_only").to_numpy()
    df[REJECT] = df[REJECT].where(df[REJECT].notna(), df["_c_reject"])
    df.loc[orphan, REJECT] = "a Company_Tweet.csv row whose tweet is not in Tweet.csv"
    df[DETAIL] = df[DETAIL].where(df[DETAIL].notna(), df["_c_detail"])
    df = df.rename(columns={"tweet_id": "post_id", "ticker_symbol": "ticker", "post_date": "created_at",
                            "body": "text", "writer": "author", "like_num": "likes", "retweet_num": "reposts"})
    df["source"] = source
    return raw_frame(df, RAW_POST_COLUMNS)


def read_stocknet_jsonl(data: bytes, ticker: str, source: str) -> pd.DataFrame:
    """StockNet tweets, one JSON object a line, ``created_at`` in Twitter's format; gzip or plain.

    The preprocessed corpus (``text`` a token list) has no tweet ids or engagement: the id is a hash of
    author, time and text, and likes/reposts are 0. The raw corpus (``stocknet_full``) keeps ``id_str``
    and the counts at capture time (``favorite_count``, ``retweet_count``). Lines are split on ``\\n``
    only (JSON text may hold U+2028); a line that is not a tweet object is a rejected row, and a gzip
    stream that ends early adds one rejected row saying so."""
    data, truncated = rawfile.gunzip(data, source)
    rows = [_stocknet_row(line) for line in data.removeprefix(b"\xef\xbb\xbf").split(b"\n") if line.strip()]
    if truncated:
        rows.append({REJECT: "truncated gzip stream: rows after this point are lost"})
    df = pd.DataFrame(rows, columns=["post_id", "text", "created_at", "author", "likes", "reposts", REJECT, DETAIL])
    df["likes"], df["reposts"] = df["likes"].fillna(0), df["reposts"].fillna(0)
    df["ticker"], df["source"] = ticker, source
    return raw_frame(df, RAW_POST_COLUMNS)


_SCALARS = (str, int, float, type(None))


def _stocknet_row(line: bytes) -> dict[str, object]:
    """One StockNet line as a raw post, or a row with the reason it is not one."""
    obj, problem = rawfile.json_line(line)
    if obj is None:
        return {REJECT: problem, DETAIL: line[:500].decode("utf-8", errors="replace")}
    tokens = obj.get("text")
    token_list = isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)
    keys = ("id_str", "created_at", "user_id_str", "favorite_count", "retweet_count")
    if not (token_list or isinstance(tokens, _SCALARS)) or not all(isinstance(obj.get(k), _SCALARS) for k in keys):
        return {REJECT: "a tweet field of the wrong JSON type", DETAIL: line[:500].decode()}
    text = " ".join(tokens) if token_list else ("" if tokens is None else str(tokens))
    author = str(obj.get("user_id_str") or "")
    created = obj.get("created_at")
    key = f"{author}|{created}|{text}".encode()
    post_id = obj.get("id_str") or "sn-" + hashlib.sha1(key, usedforsecurity=False).hexdigest()[:16]
    return {"post_id": post_id, "text": text, "created_at": created, "author": author,
            "likes": obj.get("favorite_count", 0), "reposts": obj.get("retweet_count", 0)}


# ---------------------------------------------------------------- format detection and dispatch


def detect_price_format(name: str, head: bytes) -> str:
    """Guess a price file's format from its name and first bytes (a UTF-8 byte-order mark is skipped)."""
    text = head.lstrip().removeprefix(b"\xef\xbb\xbf")[:200].decode("utf-8", errors="replace")
    if name.endswith(".json") or text.startswith("{"):
        return "alpha_vantage_json"
    if text.startswith("timestamp,"):
        return "alpha_vantage_csv"
    if text.startswith("Date,"):
        return "yahoo_csv"
    raise UnreadableFile(name, "unknown price file format", f"header {text[:40]!r}")


def detect_post_format(name: str, head: bytes) -> str:
    """Guess a post file's format from its name and first bytes."""
    base = name.rsplit("/", 1)[-1]
    if base.endswith((".jsonl", ".jsonl.gz")):
        return "stocknet_jsonl"
    if base == "Tweet.csv":
        return "kaggle_tweets"
    if base == "Company_Tweet.csv":
        return "kaggle_companies"
    if base.endswith(".csv") and head.removeprefix(b"\xef\xbb\xbf").split(b"\n", 1)[0].strip().startswith(b"post_id"):
        return "posts_csv"
    raise UnreadableFile(name, "unknown post file format")


def ticker_from_name(name: str) -> str:
    """``.../AAPL.csv``, ``daily_MSFT.csv``, ``TIME_SERIES_DAILY_MSFT.json`` -> the ticker."""
    stem = name.rsplit("/", 1)[-1].split(".", 1)[0]
    return stem.rsplit("_", 1)[-1].upper()


def _whole_file(reader, *args: object, columns: list[str]) -> pd.DataFrame:
    """``reader(*args)``, or the one raw row that says why its file (the last argument) cannot be read."""
    try:
        return reader(*args)
    except UnreadableFile as exc:
        return rawfile.unreadable_row(exc, columns)


def read_price_file(name: str, data: bytes) -> pd.DataFrame:
    """Any supported price file in the raw price layout. Never raises: an unreadable file is one row."""
    return _whole_file(_read_price_file, name, data, columns=RAW_PRICE_COLUMNS)


def _read_price_file(name: str, data: bytes) -> pd.DataFrame:
    fmt = detect_price_format(name, data[:256])
    if fmt == "yahoo_csv":
        return read_yahoo_csv(data, ticker_from_name(name), name)
    if fmt == "alpha_vantage_csv":
        return read_alpha_vantage_csv(data, ticker_from_name(name), name)
    return read_alpha_vantage_json(data, None, name)


def read_post_file(name: str, fmt: str, data: bytes, companies: bytes | None = None) -> pd.DataFrame:
    """A post file of a format :func:`discover_post_inputs` found (for ``kaggle_tweets``, ``companies``
    holds Company_Tweet.csv) in the raw post layout. Never raises: an unreadable file is one row."""
    return _whole_file(_read_post_file, name, fmt, data, companies, columns=RAW_POST_COLUMNS)


def _read_post_file(name: str, fmt: str, data: bytes, companies: bytes | None) -> pd.DataFrame:
    if fmt == "posts_csv":
        return read_posts_csv(data, name)
    if fmt == "stocknet_jsonl":
        return read_stocknet_jsonl(data, ticker_from_name(name), name)
    if fmt == "kaggle_tweets" and companies is not None:
        return read_kaggle_tweets(data, companies, name)
    if fmt == "kaggle_tweets":
        raise UnreadableFile(name, "Tweet.csv without Company_Tweet.csv")
    if fmt == "kaggle_companies":
        raise UnreadableFile(name, "Company_Tweet.csv without Tweet.csv")
    raise UnreadableFile(name, "unknown post file format")


def discover_post_inputs(posts_uri: str) -> list[dict[str, str]]:
    """Post files under ``posts_uri``; Kaggle's Tweet.csv and Company_Tweet.csv are one input. A file
    of no known format, or half a Kaggle pair, is an input too: reading it yields its rejection."""
    files = [f for f in storage.list_files(posts_uri) if f.endswith((".csv", ".jsonl", ".jsonl.gz"))]
    items: list[dict[str, str]] = []
    kaggle: dict[str, dict[str, str]] = {}
    for f in files:
        try:
            fmt = detect_post_format(f, storage.read_head(f) if f.endswith(".csv") else b"")
        except UnreadableFile:
            fmt = "unknown"
        if fmt in ("kaggle_tweets", "kaggle_companies"):
            kaggle.setdefault(f.rsplit("/", 1)[0], {})[fmt] = f
        else:
            items.append({"uri": f, "format": fmt, "companies": ""})
    for _, pair in sorted(kaggle.items()):
        if set(pair) == {"kaggle_tweets", "kaggle_companies"}:
            items.append({"uri": pair["kaggle_tweets"], "format": "kaggle_tweets",
                          "companies": pair["kaggle_companies"]})
        else:
            items += [{"uri": uri, "format": fmt, "companies": ""} for fmt, uri in pair.items()]
    return items


def read_raw_posts(item: dict[str, str]) -> pd.DataFrame:
    """One input of :func:`discover_post_inputs` read into the raw post layout (never raises on content)."""
    companies = storage.read_bytes(item["companies"]) if item["companies"] else None
    return read_post_file(item["uri"], item["format"], storage.read_bytes(item["uri"]), companies)
