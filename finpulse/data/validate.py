"""Validation of raw rows (the readers' layouts, strings as found) into the canonical PRICES and
POSTS schemas. Every row comes out valid or rejected with a reason, never dropped: a reader's own
reason (:data:`rawfile.REJECT`: a row it could not lay out, a file it could not read) comes first.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from finpulse.data.rawfile import DETAIL, READER_COLUMNS, REJECT

_TICKER_RE = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")
_INT64_LIMIT = 2.0**63  # a count at or above this does not fit the schema's int64


def normalize_ticker(value: object) -> str | None:
    """``$aapl`` / `` AAPL `` -> ``AAPL``; None when it is not a plausible ticker."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    t = str(value).strip().lstrip("$").strip().upper()
    return t if _TICKER_RE.match(t) else None


def _record(row: dict) -> str:
    """A rejected raw row as JSON: the layout's fields, and what the reader saw that did not fit."""
    fields = {k: v for k, v in row.items() if k not in READER_COLUMNS}
    if isinstance(row.get(DETAIL), str):
        fields[DETAIL] = row[DETAIL]
    return json.dumps(fields, ensure_ascii=False, sort_keys=True)


def _rejected(raw: pd.DataFrame, reasons: pd.Series) -> pd.DataFrame:
    bad = reasons.notna()
    records = raw.loc[bad].to_dict(orient="records")
    return pd.DataFrame({"raw": pd.Series([_record(r) for r in records], dtype=object),
                         "reason": pd.Series(reasons[bad].tolist(), dtype=object),
                         "source": pd.Series(raw.loc[bad, "source"].fillna("").tolist(), dtype=object),
                         "row": np.flatnonzero(bad.to_numpy())})  # position in the input (callers answer per row)


def _first_reason(checks: list[tuple[pd.Series, str]], raw: pd.DataFrame) -> pd.Series:
    """The reader's reason, else the first failing check's message, per row (None where all pass)."""
    reader = raw[REJECT] if REJECT in raw.columns else pd.Series(None, index=raw.index, dtype=object)
    reasons = reader.astype(object).where(reader.notna(), None)
    for failed, message in checks:
        reasons = reasons.where(reasons.notna() | ~failed.fillna(True).astype(bool), message)
    return reasons


def _parse_float(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


def _is_count(v: pd.Series) -> pd.Series:
    """A non-negative whole number that fits int64 (NaN and inf are not)."""
    return (v >= 0) & (v < _INT64_LIMIT) & (v == np.floor(v))


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
        (~_is_count(vol), "volume not a non-negative integer"),
    ]
    reasons = _first_reason(checks, raw)
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
        (~_is_count(likes), "likes not a non-negative integer"),
        (~_is_count(reposts), "reposts not a non-negative integer"),
    ]
    reasons = _first_reason(checks, raw)
    ok = reasons.isna()
    author = raw["author"].astype(object).where(raw["author"].notna(), "").astype(str).str.strip()
    valid = pd.DataFrame({
        "post_id": post_id[ok], "ticker": ticker[ok], "created_at": created[ok], "text": text[ok],
        "author": author[ok], "likes": likes[ok].astype("int64"), "reposts": reposts[ok].astype("int64"),
        "source": raw["source"][ok].fillna(""),
    }).reset_index(drop=True)
    return valid, _rejected(raw, reasons)
