"""Readers per source format. Each returns *raw* rows (strings, as found) in one of two layouts;
:func:`normalize_prices` and :func:`normalize_posts` then validate them into the canonical schemas
and return the rejected rows with a reason, so nothing is dropped silently.

Readers take bytes, not paths, so the same code reads a local file or an S3 object
(:mod:`finpulse.storage` fetches the bytes).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from finpulse import storage

RAW_PRICE_COLUMNS = ["ticker", "date", "open", "high", "low", "close", "adj_close", "volume", "source", "note"]
RAW_POST_COLUMNS = ["post_id", "ticker", "created_at", "text", "author", "likes", "reposts", "source"]
_TICKER_RE = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")


def raw_frame(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Everything as strings (None for missing), in the raw layout's column order."""
    out = pd.DataFrame({c: df[c] if c in df.columns else None for c in columns}, index=df.index).astype(object)
    return out.map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))


# ---------------------------------------------------------------- prices


def read_yahoo_csv(data: bytes, ticker: str, source: str) -> pd.DataFrame:
    """Yahoo daily CSV: ``Date,Open,High,Low,Close,Adj Close,Volume`` (oldest first)."""
    df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    df = df.rename(columns={"Date": "date", "Open": "open", "High": "high", "Low": "low", "Close": "close",
                            "Adj Close": "adj_close", "Volume": "volume"})
    df["ticker"], df["source"] = ticker, source
    return raw_frame(df, RAW_PRICE_COLUMNS)



def read_stocknet_prices(data: bytes, ticker: str, source: str) -> pd.DataFrame:
    """StockNet's Yahoo price files (``Adj Close`` kept: the paper labels with it); the all-``null`` rows
    (PTR, SNP, REX on 2016-06-29: no bar that day) are dropped here, not rejected as bad prices."""
    df = read_yahoo_csv(data, ticker, source)
    return df[~df[["close", "adj_close"]].isin(["null", "", None]).any(axis=1)].reset_index(drop=True)


def read_stocknet_dir(root: str, tickers: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The StockNet corpus folder (``price_raw/<T>.csv``, ``tweets_raw/<T>.jsonl.gz``) as raw (bars, posts);
    every price file when ``tickers`` is None. A stock without a tweet file (GMRE) has no posts."""
    root = root.rstrip("/")
    names = tickers or sorted(ticker_from_name(f) for f in storage.list_files(f"{root}/price_raw", ".csv"))
    bars, posts = [], []
    for t in names:
        bars.append(read_stocknet_prices(storage.read_bytes(price := f"{root}/price_raw/{t}.csv"), t, price))
        if storage.exists(tweets := f"{root}/tweets_raw/{t}.jsonl.gz"):
            posts.append(read_stocknet_jsonl(storage.read_bytes(tweets), t, tweets))
    return (pd.concat(bars, ignore_index=True),
            pd.concat(posts, ignore_index=True) if posts else pd.DataFrame(columns=RAW_POST_COLUMNS))

def read_alpha_vantage_csv(data: bytes, ticker: str, source: str) -> pd.DataFrame:
    """Alpha Vantage TIME_SERIES_DAILY, datatype=csv: ``timestamp,open,high,low,close,volume``,
    newest first, unadjusted (so ``adj_close`` = ``close``)."""
    df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False).rename(columns={"timestamp": "date"})
    df["adj_close"], df["ticker"], df["source"] = df["close"], ticker, source
    return raw_frame(df.iloc[::-1].reset_index(drop=True), RAW_PRICE_COLUMNS)


def read_alpha_vantage_json(data: bytes, ticker: str | None, source: str) -> pd.DataFrame:
    """Alpha Vantage TIME_SERIES_DAILY JSON. Values are strings. The bar dated on the
    "Last Refreshed" day is marked ``note=intraday`` when that timestamp is before the 16:00 close:
    it is a partial day, not a close, and normalisation rejects it."""
    doc = json.loads(data)
    meta = doc.get("Meta Data", {})
    series = doc.get("Time Series (Daily)")
    if series is None:
        raise ValueError(f"{source}: no 'Time Series (Daily)' key (an API error message?)")
    symbol = ticker or meta.get("2. Symbol", "")
    refreshed = str(meta.get("3. Last Refreshed", ""))
    intraday_day = None
    if len(refreshed) > 10:  # a time is given: "2019-01-22 12:41:14" (US/Eastern)
        day, clock = refreshed[:10], refreshed[11:]
        if clock < "16:00:00":
            intraday_day = day
    rows = []
    for day in sorted(series):
        bar = series[day]
        rows.append({"date": day, "open": bar.get("1. open"), "high": bar.get("2. high"),
                     "low": bar.get("3. low"), "close": bar.get("4. close"),
                     "adj_close": bar.get("5. adjusted close", bar.get("4. close")),
                     "volume": bar.get("6. volume", bar.get("5. volume")),
                     "note": f"intraday: last refreshed {refreshed}" if day == intraday_day else None})
    df = pd.DataFrame(rows, columns=["date", "open", "high", "low", "close", "adj_close", "volume", "note"])
    df["ticker"], df["source"] = symbol, source
    return raw_frame(df, RAW_PRICE_COLUMNS)


# ---------------------------------------------------------------- posts


def read_posts_csv(data: bytes, source: str) -> pd.DataFrame:
    """A CSV that already has the canonical post columns (the synthetic generator writes these)."""
    df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[])
    return raw_frame(df, RAW_POST_COLUMNS)


def read_kaggle_tweets(tweets: bytes, companies: bytes, source: str) -> pd.DataFrame:
    """Kaggle "Tweets about the top companies 2015-2020": ``Tweet.csv`` (tweet_id, writer,
    post_date in epoch seconds, body, comment_num, retweet_num, like_num) joined with
    ``Company_Tweet.csv`` (tweet_id, ticker_symbol). A tweet on several tickers becomes one row
    per ticker; a tweet with no ticker row is kept with an empty ticker (and rejected for it)."""
    t = pd.read_csv(io.BytesIO(tweets), dtype=str, keep_default_na=False)
    c = pd.read_csv(io.BytesIO(companies), dtype=str, keep_default_na=False)
    df = t.merge(c, on="tweet_id", how="left")
    df = df.rename(columns={"tweet_id": "post_id", "ticker_symbol": "ticker", "post_date": "created_at",
                            "body": "text", "writer": "author", "like_num": "likes",
                            "retweet_num": "reposts"})
    df["source"] = source
    return raw_frame(df, RAW_POST_COLUMNS)


def read_stocknet_jsonl(data: bytes, ticker: str, source: str) -> pd.DataFrame:
    """StockNet tweets, one JSON object a line, ``created_at`` in Twitter's format; gzip or plain.

    The preprocessed corpus (``text`` a token list) has no tweet ids or engagement: the id is a hash of
    author, time and text, and likes/reposts are 0. The raw corpus (``stocknet_full``) keeps ``id_str``
    and the counts at capture time (``favorite_count``, ``retweet_count``)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    rows = []
    for line in data.decode("utf-8").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            rows.append({"text": line, "created_at": None, "author": None, "post_id": None})
            continue
        tokens = obj.get("text")
        text = " ".join(tokens) if isinstance(tokens, list) else (tokens or "")
        author = str(obj.get("user_id_str") or "")
        created = obj.get("created_at")
        key = f"{author}|{created}|{text}".encode()
        post_id = obj.get("id_str") or "sn-" + hashlib.sha1(key, usedforsecurity=False).hexdigest()[:16]
        rows.append({"post_id": post_id, "text": text, "created_at": created, "author": author,
                     "likes": obj.get("favorite_count", 0), "reposts": obj.get("retweet_count", 0)})
    df = pd.DataFrame(rows, columns=["post_id", "text", "created_at", "author", "likes", "reposts"])
    df["likes"], df["reposts"] = df["likes"].fillna(0), df["reposts"].fillna(0)
    df["ticker"], df["source"] = ticker, source
    return raw_frame(df, RAW_POST_COLUMNS)


# ---------------------------------------------------------------- validation


def normalize_ticker(value: object) -> str | None:
    """``$aapl`` / `` AAPL `` -> ``AAPL``; None when it is not a plausible ticker."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    t = str(value).strip().lstrip("$").strip().upper()
    return t if _TICKER_RE.match(t) else None


def _rejected(raw: pd.DataFrame, reasons: pd.Series) -> pd.DataFrame:
    bad = reasons.notna()
    records = raw.loc[bad].to_dict(orient="records")
    return pd.DataFrame({"raw": [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records],
                         "reason": reasons[bad].tolist(), "source": raw.loc[bad, "source"].fillna("").tolist(),
                         "row": np.flatnonzero(bad.to_numpy())})  # position in the input, for callers that answer per row


def _first_reason(checks: list[tuple[pd.Series, str]], index: pd.Index) -> pd.Series:
    """The first failing check's message per row (None where every check passes)."""
    reasons = pd.Series([None] * len(index), index=index, dtype=object)
    for failed, message in checks:
        reasons = reasons.where(reasons.notna() | ~failed.fillna(True).astype(bool), message)
    return reasons


def _parse_float(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


def normalize_prices(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate raw price rows into the PRICES schema. Returns ``(valid, rejected)``; rejected has
    ``raw`` (JSON), ``reason`` and ``source``."""
    raw = raw.reset_index(drop=True)
    ticker = raw["ticker"].map(normalize_ticker)
    date = pd.to_datetime(raw["date"], errors="coerce", format="%Y-%m-%d")
    o, h, lo, c = (_parse_float(raw[k]) for k in ("open", "high", "low", "close"))
    adj = _parse_float(raw["adj_close"]).fillna(c)
    vol = _parse_float(raw["volume"])
    finite = np.isfinite
    checks = [
        (ticker.isna(), "invalid ticker"),
        (date.isna(), "unparseable date"),
        (raw["note"].notna(), "intraday bar: not a close"),
        (~(finite(o) & finite(h) & finite(lo) & finite(c) & finite(adj)), "non-numeric price"),
        (~((o > 0) & (h > 0) & (lo > 0) & (c > 0) & (adj > 0)), "non-positive price"),
        (h < lo, "high below low"),
        (~(finite(vol) & (vol >= 0) & (vol == np.floor(vol))), "volume not a non-negative integer"),
    ]
    reasons = _first_reason(checks, raw.index)
    ok = reasons.isna()
    valid = pd.DataFrame({
        "ticker": ticker[ok], "date": date[ok].dt.date, "open": o[ok], "high": h[ok], "low": lo[ok],
        "close": c[ok], "adj_close": adj[ok], "volume": vol[ok].astype("int64"), "source": raw["source"][ok],
    }).reset_index(drop=True)
    return valid, _rejected(raw, reasons)


def parse_created_at(values: pd.Series) -> pd.Series:
    """Parse post times to UTC: ISO 8601 (naive means UTC), epoch seconds, or Twitter's
    ``Wed Jan 01 03:59:03 +0000 2014``. Unparseable values become NaT."""
    s = values.astype(object).where(values.notna(), "").astype(str).str.strip()
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us, UTC]")
    epoch = s.str.fullmatch(r"\d{9,11}(\.\d+)?")
    if epoch.any():
        out[epoch] = pd.to_datetime(s[epoch].astype(float), unit="s", utc=True)
    twitter = s.str.fullmatch(r"[A-Z][a-z]{2} [A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2} [+-]\d{4} \d{4}")
    if twitter.any():
        out[twitter] = pd.to_datetime(s[twitter], format="%a %b %d %H:%M:%S %z %Y", errors="coerce", utc=True)
    rest = ~epoch & ~twitter & (s != "")
    if rest.any():
        out[rest] = pd.to_datetime(s[rest], errors="coerce", utc=True, format="ISO8601")
    return out


def _parse_count(s: pd.Series) -> pd.Series:
    v = pd.to_numeric(s.where(s.notna() & (s.astype(str).str.strip() != ""), "0"), errors="coerce")
    return v.astype("float64")


def normalize_posts(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate raw post rows into the POSTS schema. Returns ``(valid, rejected)``.

    Empty likes/reposts count as 0 (many corpora omit them); text is stripped of surrounding
    whitespace and must not be empty; an author may be empty (not every corpus has one).
    """
    raw = raw.reset_index(drop=True)
    ticker = raw["ticker"].map(normalize_ticker)
    created = parse_created_at(raw["created_at"])
    text = raw["text"].astype(object).where(raw["text"].notna(), "").astype(str).str.strip()
    post_id = raw["post_id"].astype(object).where(raw["post_id"].notna(), "").astype(str).str.strip()
    likes, reposts = _parse_count(raw["likes"]), _parse_count(raw["reposts"])
    checks = [
        (post_id == "", "missing post_id"),
        (ticker.isna(), "invalid ticker"),
        (created.isna(), "unparseable created_at"),
        (text == "", "empty text"),
        (~((likes >= 0) & (likes == np.floor(likes))), "likes not a non-negative integer"),
        (~((reposts >= 0) & (reposts == np.floor(reposts))), "reposts not a non-negative integer"),
    ]
    reasons = _first_reason(checks, raw.index)
    ok = reasons.isna()
    author = raw["author"].astype(object).where(raw["author"].notna(), "").astype(str).str.strip()
    valid = pd.DataFrame({
        "post_id": post_id[ok], "ticker": ticker[ok], "created_at": created[ok], "text": text[ok],
        "author": author[ok], "likes": likes[ok].astype("int64"), "reposts": reposts[ok].astype("int64"),
        "source": raw["source"][ok].fillna(""),
    }).reset_index(drop=True)
    return valid, _rejected(raw, reasons)


# ---------------------------------------------------------------- format detection

PriceReader = Callable[[bytes, str, str], pd.DataFrame]


def detect_price_format(name: str, head: bytes) -> str:
    """Guess a price file's format from its name and first bytes."""
    text = head.lstrip()[:200].decode("utf-8", errors="replace")
    if name.endswith(".json") or text.startswith("{"):
        return "alpha_vantage_json"
    if text.startswith("timestamp,"):
        return "alpha_vantage_csv"
    if text.startswith("Date,"):
        return "yahoo_csv"
    raise ValueError(f"{name}: unknown price file format (header {text[:40]!r})")


def detect_post_format(name: str, head: bytes) -> str:
    """Guess a post file's format from its name and first bytes."""
    base = name.rsplit("/", 1)[-1]
    if base.endswith((".jsonl", ".jsonl.gz")):
        return "stocknet_jsonl"
    if base == "Tweet.csv":
        return "kaggle_tweets"
    if base == "Company_Tweet.csv":
        return "kaggle_companies"
    if base.endswith(".csv") and head.split(b"\n", 1)[0].strip().startswith(b"post_id"):
        return "posts_csv"
    raise ValueError(f"{name}: unknown post file format")


def ticker_from_name(name: str) -> str:
    """``.../AAPL.csv``, ``daily_MSFT.csv``, ``TIME_SERIES_DAILY_MSFT.json`` -> the ticker."""
    stem = name.rsplit("/", 1)[-1].split(".", 1)[0]
    return stem.rsplit("_", 1)[-1].upper()


def read_price_file(name: str, data: bytes) -> pd.DataFrame:
    """Read any supported price file into the raw price layout."""
    fmt = detect_price_format(name, data[:256])
    ticker = ticker_from_name(name)
    if fmt == "yahoo_csv":
        return read_yahoo_csv(data, ticker, name)
    if fmt == "alpha_vantage_csv":
        return read_alpha_vantage_csv(data, ticker, name)
    return read_alpha_vantage_json(data, None, name)


def discover_post_inputs(posts_uri: str) -> list[dict[str, str]]:
    """Post files under ``posts_uri``; Kaggle's Tweet.csv and Company_Tweet.csv are one input."""
    files = [f for f in storage.list_files(posts_uri) if f.endswith((".csv", ".jsonl", ".jsonl.gz"))]
    items: list[dict[str, str]] = []
    kaggle: dict[str, dict[str, str]] = {}
    for f in files:
        fmt = detect_post_format(f, storage.read_head(f) if f.endswith(".csv") else b"")
        folder = f.rsplit("/", 1)[0]
        if fmt in ("kaggle_tweets", "kaggle_companies"):
            kaggle.setdefault(folder, {})[fmt] = f
        else:
            items.append({"uri": f, "format": fmt, "companies": ""})
    for folder, pair in sorted(kaggle.items()):
        if set(pair) != {"kaggle_tweets", "kaggle_companies"}:
            raise ValueError(f"{folder}: Kaggle input needs both Tweet.csv and Company_Tweet.csv")
        items.append({"uri": pair["kaggle_tweets"], "format": "kaggle_tweets", "companies": pair["kaggle_companies"]})
    return items


def read_raw_posts(item: dict[str, str]) -> pd.DataFrame:
    """One input of :func:`discover_post_inputs` read into the raw post layout."""
    uri, fmt = item["uri"], item["format"]
    data = storage.read_bytes(uri)
    if fmt == "posts_csv":
        return read_posts_csv(data, uri)
    if fmt == "stocknet_jsonl":
        return read_stocknet_jsonl(data, ticker_from_name(uri), uri)
    if fmt == "kaggle_tweets":
        return read_kaggle_tweets(data, storage.read_bytes(item["companies"]), uri)
    raise ValueError(f"{uri}: unsupported post format {fmt}")
