"""Hypothesis strategies for hostile reader input (issue 14): valid-looking rows with random
corruptions in chosen columns, line-level damage (extra or missing fields, bytes that are not UTF-8),
and whole files that are not what their name says.

A structured strategy returns a :class:`Case`: the file's bytes, how many input rows it holds
(``rows``) and how many of them are clean (``clean``: each must come out of the ETL, possibly as a
duplicate, never quarantined). Test functions take Cases, so a regression ``@example`` is literal bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from typing import NamedTuple

from hypothesis import strategies as st

# Values that have broken readers elsewhere: non-finite and out-of-range numbers, empty and
# blank strings, NUL, U+FFFD, line separators that str.splitlines() splits on, quotes, a field
# larger than Python's csv field limit (131072), a formula, an ambiguous number.
HOSTILE = st.one_of(
    st.sampled_from(["", " ", "nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1", "0", "1e30", "-0",
                     "9223372036854775808", "null", "None", "abc", "1,5", "\x00", "\ufffd", "2020-13-45",
                     "a\u2028b", "x\u0085y", '"', "'", "\r", "line\nbreak", "=HYPERLINK()", "\ufeffAAPL",
                     "99999999999", "0001-01-01", "9999-12-31T23:59:59Z", "Wed Feb 30 25:61:00 +9999 2014"]),
    st.text(max_size=12),
    st.just("x" * 140_000),
)
BAD_UTF8 = "caf\udce9"  # encoded with surrogateescape: the single byte 0xE9, invalid UTF-8 on its own


class Case(NamedTuple):
    data: bytes
    rows: int
    clean: int


class PairCase(NamedTuple):
    tweets: bytes
    companies: bytes
    rows: int
    clean: int


def csv_bytes(header: list[str], lines: list[list[str]], *, crlf: bool = False) -> bytes:
    """Header plus rows, quoted where needed, UTF-8 except :data:`BAD_UTF8`'s byte; LF line ends unless
    ``crlf`` (written as CRLF first: a field holding a lone CR is quoted only then, as RFC 4180 asks)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(lines)
    data = buf.getvalue().encode("utf-8", errors="surrogateescape")
    return data if crlf else data.replace(b"\r\n", b"\n")


@st.composite
def damaged(draw: st.DrawFn, fields: dict[str, str], frozen: tuple[str, ...] = ()) -> tuple[list[str], bool]:
    """A row's fields with some columns (not ``frozen``) corrupted and maybe a line-level fault:
    surplus fields, missing trailing fields, a byte that is not UTF-8. Returns (fields, clean)."""
    names = [n for n in fields if n not in frozen]
    row = dict(fields)
    for name in draw(st.sets(st.sampled_from(names), max_size=3)):
        row[name] = draw(HOSTILE)
    out = list(row.values())
    fault = draw(st.sampled_from(["none", "none", "none", "extra", "short", "bad_utf8"]))
    if fault == "extra":
        out += draw(st.lists(st.text(max_size=5), min_size=1, max_size=3))
    elif fault == "short":
        out = out[: draw(st.integers(max(2, len(frozen) + 1), len(out) - 1))]  # never a blank line
    elif fault == "bad_utf8":
        out[list(fields).index(draw(st.sampled_from(names)))] = BAD_UTF8
    return out, row == fields and fault == "none"


def clean_price(draw: st.DrawFn, day: dt.date) -> dict[str, str]:
    low = draw(st.floats(0.5, 5_000, allow_nan=False))
    high = low * draw(st.floats(1.0, 1.3))
    mid = [low + (high - low) * draw(st.floats(0, 1)) for _ in range(3)]
    return {"date": day.isoformat(), "open": repr(mid[0]), "high": repr(high), "low": repr(low),
            "close": repr(mid[1]), "adj_close": repr(mid[2]), "volume": str(draw(st.integers(0, 10**10)))}


YAHOO_HEADER = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]
AV_CSV_HEADER = ["timestamp", "open", "high", "low", "close", "volume"]


@st.composite
def price_csv(draw: st.DrawFn, fmt: str) -> Case:
    """A Yahoo or Alpha Vantage CSV whose rows are valid-looking bars, some damaged (dates may repeat)."""
    days = draw(st.lists(st.dates(dt.date(2019, 1, 1), dt.date(2019, 3, 1)), max_size=10))
    lines, clean = [], 0
    for day in days:
        bar = clean_price(draw, day)
        if fmt == "alpha_vantage_csv":
            bar.pop("adj_close")
        fields, ok = draw(damaged(bar))
        lines.append(fields)
        clean += ok
    header = YAHOO_HEADER if fmt == "yahoo_csv" else AV_CSV_HEADER
    return Case(csv_bytes(header, lines, crlf=draw(st.booleans())), len(lines), clean)


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@st.composite
def alpha_vantage_json(draw: st.DrawFn) -> Case:
    """An Alpha Vantage daily JSON document: bars with corrupted values (any JSON type), bars that
    are not objects, a Meta Data block of the wrong shape, an intraday "Last Refreshed"."""
    days = draw(st.lists(st.dates(dt.date(2019, 1, 1), dt.date(2019, 3, 1)), max_size=8, unique=True))
    series, clean = {}, 0
    for day in days:
        bar = clean_price(draw, day)
        doc_bar: object = {"1. open": bar["open"], "2. high": bar["high"], "3. low": bar["low"],
                           "4. close": bar["close"], "5. volume": bar["volume"]}
        kind = draw(st.sampled_from(["clean", "clean", "values", "not_an_object"]))
        if kind == "values":
            for key in draw(st.sets(st.sampled_from(list(doc_bar)), min_size=1, max_size=2)):
                doc_bar[key] = draw(JSON_VALUES | HOSTILE)
        elif kind == "not_an_object":
            doc_bar = draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict)))
        series[day.isoformat()] = doc_bar
        clean += kind == "clean"
    good_meta = {"2. Symbol": "MSFT", "3. Last Refreshed": "2019-03-02"}
    meta = draw(st.one_of(st.just(good_meta), JSON_VALUES))
    return Case(json.dumps({"Meta Data": meta, "Time Series (Daily)": series}).encode(), len(series),
                clean if meta == good_meta else 0)  # without the symbol no bar has a ticker


# ---------------------------------------------------------------- posts

CALENDAR_START, CALENDAR_END = dt.date(2021, 1, 4), dt.date(2021, 6, 30)  # the price days tests build
_MOMENTS = st.datetimes(dt.datetime(2021, 1, 4), dt.datetime(2021, 6, 25), timezones=st.just(dt.UTC))
TICKERS = st.sampled_from(["AAPL", "$msft", " TSLA ", "BRK.B"])
# Clean text has no U+FFFD: in a file that is not UTF-8 it marks the rows with invalid bytes.
TEXTS = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "" and "\ufffd" not in s)


def stamp(draw: st.DrawFn, moment: dt.datetime) -> str:
    """A post time in one of the formats the readers accept."""
    fmt = draw(st.sampled_from(["iso_z", "iso_naive", "iso_offset", "epoch", "twitter"]))
    return {"iso_z": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "iso_naive": moment.strftime("%Y-%m-%d %H:%M:%S"),
            "iso_offset": moment.astimezone(dt.timezone(dt.timedelta(hours=-5))).isoformat(),
            "epoch": str(int(moment.timestamp())), "twitter": moment.strftime("%a %b %d %H:%M:%S +0000 %Y")}[fmt]


POSTS_HEADER = ["post_id", "ticker", "created_at", "text", "author", "likes", "reposts", "source"]


@st.composite
def posts_csv(draw: st.DrawFn) -> Case:
    """A posts CSV: valid-looking posts (ids and texts repeat: duplicates), some damaged."""
    lines, clean = [], 0
    for _ in range(draw(st.integers(0, 10))):
        post = {"post_id": draw(st.from_regex(r"[a-z0-9]{1,3}", fullmatch=True)), "ticker": draw(TICKERS),
                "created_at": stamp(draw, draw(_MOMENTS)), "text": draw(TEXTS),
                "author": draw(st.sampled_from(["", "u1"])),
                "likes": draw(st.sampled_from(["", "0", "7"])), "reposts": str(draw(st.integers(0, 10**6))),
                "source": "t"}
        fields, ok = draw(damaged(post))
        lines.append(fields)
        clean += ok
    return Case(csv_bytes(POSTS_HEADER, lines, crlf=draw(st.booleans())), len(lines), clean)


NOT_JSON = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "" and "\n" not in s)


@st.composite
def stocknet_jsonl(draw: st.DrawFn) -> Case:
    """StockNet JSON lines (preprocessed: token lists, or raw: id_str and counts), plain or gzip: some
    keys hold any JSON value, some lines are not objects, not JSON or not UTF-8; blank lines are no rows."""
    lines: list[bytes] = []
    rows = clean = 0
    for _ in range(draw(st.integers(0, 10))):
        text = draw(TEXTS)
        obj: dict[str, object] = {"created_at": stamp(draw, draw(_MOMENTS)), "user_id_str": "42",
                                  "text": draw(st.sampled_from([text, text.split() or [text]]))}
        if draw(st.booleans()):
            obj |= {"id_str": draw(st.from_regex(r"[0-9]{1,3}", fullmatch=True)), "favorite_count": 0,
                    "retweet_count": draw(st.integers(0, 5))}
        kind = draw(st.sampled_from(["clean", "clean", "values", "not_an_object", "not_json", "bad_utf8", "blank"]))
        if kind == "values":
            for key in draw(st.sets(st.sampled_from(list(obj)), min_size=1, max_size=2)):
                obj[key] = draw(JSON_VALUES | HOSTILE)
        line = json.dumps(obj, ensure_ascii=False).encode()  # raw U+2028/U+0085 in text, as the corpus has
        line = {"not_an_object": json.dumps(draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict)))).encode(),
                "not_json": draw(NOT_JSON).encode(), "bad_utf8": line[:-1] + b"\xff}", "blank": b"   "}.get(kind, line)
        lines.append(line)
        rows += kind != "blank"
        clean += kind == "clean"
    data = b"\n".join(lines) + b"\n"
    return Case(gzip.compress(data, mtime=0) if draw(st.booleans()) else data, rows, clean)


KAGGLE_TWEETS_HEADER = ["tweet_id", "writer", "post_date", "body", "comment_num", "retweet_num", "like_num"]


@st.composite
def kaggle_pair(draw: st.DrawFn) -> PairCase:
    """Tweet.csv with damaged rows (never the id) and Company_Tweet.csv: a tweet on 0..2 tickers, repeated
    ticker rows, ticker rows for tweets that are not in Tweet.csv."""
    tweets, oks, companies = [], [], []
    for _ in range(draw(st.integers(0, 8))):
        tweet_id = str(draw(st.integers(1, 12)))  # ids repeat: the same tweet twice
        tweet = {"tweet_id": tweet_id, "writer": draw(st.sampled_from(["", "w1"])),
                 "post_date": str(int(draw(_MOMENTS).timestamp())), "body": draw(TEXTS), "comment_num": "0",
                 "retweet_num": str(draw(st.integers(0, 9))), "like_num": draw(st.sampled_from(["0", "3", ""]))}
        fields, ok = draw(damaged(tweet, frozen=("tweet_id",)))
        tweets.append(fields)
        oks.append(ok)
        companies += [[tweet_id, draw(st.sampled_from(["AAPL", "MSFT", "TSLA"]))]
                      for _ in range(draw(st.integers(0, 2)))]
    companies += [[str(draw(st.integers(1, 20))), "AMZN"] for _ in range(draw(st.integers(0, 2)))]
    matches = [sum(c[0] == t[0] for c in companies) for t in tweets]
    ids = {t[0] for t in tweets}
    rows = sum(max(1, m) for m in matches) + sum(c[0] not in ids for c in companies)
    clean = sum(m for m, ok in zip(matches, oks, strict=True) if ok)  # a tweet without a ticker is rejected
    return PairCase(csv_bytes(KAGGLE_TWEETS_HEADER, tweets), csv_bytes(["tweet_id", "ticker_symbol"], companies),
                    rows, clean)
