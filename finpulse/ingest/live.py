"""The live path's pure core: what the stream processor does with a micro-batch, without Ray or a broker.

A :class:`LiveBook` holds what the stream knows: daily bars (the batch ETL's history plus bars that
arrived since), scored posts of recent days, and the dedupe keys of every post accepted so far.
Posts are validated, aligned and deduplicated with the batch ETL's own functions
(:func:`~finpulse.data.sources.normalize_posts`, :func:`~finpulse.data.calendar.align_to_trading_day`,
:func:`~finpulse.data.curate.duplicate_mask`), and features are rebuilt with its own
:func:`~finpulse.data.features.aggregate_daily_sentiment` and
:func:`~finpulse.data.features.build_daily_features`: one definition of every feature.

The open trading day has no close yet. Its row is *provisional*: the latest quote (or the last close)
stands in for the close, and the day's posts so far give its sentiment. That is what a nowcast
means; the row is replaced when the day's bar arrives.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from finpulse.data.calendar import CLOSE_HOUR, align_to_trading_day, trading_calendar
from finpulse.data.curate import DEDUPE_WINDOW_S, dedupe_keys, dedupe_prices, duplicate_mask
from finpulse.data.features import aggregate_daily_sentiment, build_daily_features
from finpulse.data.schemas import POST_SCORES, TARGETS
from finpulse.data.sources import normalize_posts, normalize_prices

SCORE_COLUMNS = [c for c in POST_SCORES.names if c not in ("post_id", "ticker")]
HISTORY_ROWS = 160  # feature rows kept per ticker: longer than any forecaster window
WARMUP_BARS = 320  # extra bars before the first kept row: 20-day windows, and RSI's EWM weight on older bars < 1e-10
OPEN_DAYS_AHEAD = 7  # business days past the last bar that posts may align to (the open day, a long weekend)


@dataclass
class LiveBook:
    """What the stream knows. Frames are kept small: bars and posts of the last few months only."""

    bars: pd.DataFrame  # PRICES rows
    posts: pd.DataFrame  # POSTS rows + POST_SCORES columns (created_at kept: posts re-align as bars arrive)
    seen_ids: set[tuple[str, int]] = field(default_factory=set)  # (ticker, post_id hash) ever accepted
    recent_keys: pd.DataFrame | None = None  # dedupe keys inside the author+text window
    quotes: dict[str, float] = field(default_factory=dict)  # latest intraday price per ticker
    window_s: int = DEDUPE_WINDOW_S
    close_hour: int = CLOSE_HOUR


@dataclass
class PostBatch:
    """One micro-batch of posts after validation: what to score, what was refused and why."""

    accepted: pd.DataFrame  # POSTS rows, to be scored
    rejected: pd.DataFrame  # raw row as JSON + reason (the ETL's quarantine layout)
    duplicates: int
    ahead: pd.DataFrame = field(default_factory=pd.DataFrame)  # past the known bars: not processable yet


def live_calendar(bars: pd.DataFrame, days_ahead: int = OPEN_DAYS_AHEAD) -> np.ndarray:
    """The bars' trading days plus the business days after the last one (the open day has no bar yet)."""
    known = trading_calendar(bars["date"]) if len(bars) else np.array([], dtype="datetime64[D]")
    if len(known) == 0:
        return known
    ahead = pd.bdate_range(pd.Timestamp(known[-1]) + pd.Timedelta(days=1), periods=days_ahead)
    return np.union1d(known, ahead.to_numpy().astype("datetime64[D]"))


def _quarantine(raw: pd.DataFrame, reason: str) -> pd.DataFrame:
    return pd.DataFrame({
        "raw": [json.dumps({k: str(v) for k, v in r.items()}, ensure_ascii=False, sort_keys=True)
                for r in raw.to_dict(orient="records")],
        "reason": reason, "source": raw["source"].astype(str).tolist() if len(raw) else [],
    })


def accept_posts(book: LiveBook, raw: pd.DataFrame) -> PostBatch:
    """Validate, align and dedupe raw post rows against everything the book has accepted."""
    valid, rejected = normalize_posts(raw)
    day = align_to_trading_day(valid["created_at"], live_calendar(book.bars), close_hour=book.close_hour)
    outside = day.isna().to_numpy()
    # past the last bar's open window: its bars have not arrived yet (a redelivery can reorder the feed)
    ahead = outside & (valid["created_at"] > pd.Timestamp(book.bars["date"].max()).tz_localize("UTC")).to_numpy() \
        if len(book.bars) else outside  # no bars at all yet: everything waits for them
    if outside.any():
        gone = outside & ~ahead
        rejected = pd.concat([rejected, _quarantine(valid[gone], "outside the price calendar")], ignore_index=True)
    later = valid[ahead].reset_index(drop=True)
    valid = valid[~outside].reset_index(drop=True)
    if valid.empty:
        return PostBatch(valid, rejected, 0, later)
    keys = dedupe_keys(valid)
    seen = np.array([(t, int(p)) in book.seen_ids for t, p in zip(keys["ticker"], keys["_pid"], strict=True)],
                    dtype=bool)
    history = book.recent_keys if book.recent_keys is not None else keys.iloc[:0]
    both = pd.concat([history, keys], ignore_index=True)
    repeat = duplicate_mask(both, book.window_s)[len(history):] | seen
    return PostBatch(valid[~repeat].reset_index(drop=True), rejected, int(repeat.sum()), later)


def commit_posts(book: LiveBook, scored: pd.DataFrame) -> list[str]:
    """Add scored posts (POSTS + score columns) to the book; returns the tickers whose features changed."""
    if scored.empty:
        return []
    keys = dedupe_keys(scored)
    book.seen_ids.update((t, int(p)) for t, p in zip(keys["ticker"], keys["_pid"], strict=True))
    recent = pd.concat([k for k in (book.recent_keys, keys) if k is not None], ignore_index=True)
    newest = recent["created_at"].max()
    book.recent_keys = recent[recent["created_at"] >= newest - pd.Timedelta(seconds=book.window_s)]
    book.posts = pd.concat([book.posts, scored], ignore_index=True) if len(book.posts) else scored.copy()
    return sorted(scored["ticker"].unique())


def accept_bars(book: LiveBook, raw: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """Add daily bars (partial intraday bars are refused as the batch reader refuses them)."""
    valid, rejected = normalize_prices(raw)
    if len(valid):
        book.bars, _ = dedupe_prices(pd.concat([book.bars, valid], ignore_index=True))
    for ticker in valid["ticker"].unique():  # the quote stood in for this close: the close is here now
        book.quotes.pop(ticker, None)
    return sorted(valid["ticker"].unique()), rejected


def set_quote(book: LiveBook, ticker: str, price: float) -> list[str]:
    """An intraday quote: the provisional close of the open day (never stored as a close)."""
    book.quotes[ticker] = float(price)
    return [ticker]


def _provisional_bar(bars: pd.DataFrame, day: dt.date, quote: float | None) -> pd.DataFrame:
    last = bars.iloc[-1]
    close = float(quote) if quote is not None else float(last["close"])
    row = {**last.to_dict(), "date": day, "open": close, "high": close, "low": close, "close": close,
           "adj_close": close, "source": "provisional"}
    return pd.DataFrame([row])


def _open_days(book: LiveBook, posts: pd.DataFrame, last_bar: pd.Series, calendar: np.ndarray) -> dict[str, dt.date]:
    """Per ticker, the open session past its last bar that posts (or a quote) speak for."""
    out: dict[str, dt.date] = {}
    if len(posts):
        ahead = posts[posts["trading_day"].notna()]
        ahead = ahead[pd.to_datetime(ahead["trading_day"]).dt.date.to_numpy()
                      > ahead["ticker"].map(last_bar).to_numpy()]
        for ticker, days in ahead.groupby("ticker")["trading_day"]:
            out[str(ticker)] = pd.Timestamp(days.min()).date()
    for ticker in book.quotes:
        if ticker in last_bar.index and ticker not in out:
            nxt = calendar[calendar > np.datetime64(last_bar[ticker], "D")]
            if len(nxt):
                out[ticker] = pd.Timestamp(nxt[0]).date()
    return out


def features_for(book: LiveBook, tickers: list[str], sentiment_source: str) -> dict[str, pd.DataFrame]:
    """Each ticker's recent DAILY_FEATURES rows as the stream sees them, plus ``provisional``, in one pass.

    Closed days are exactly what the batch ETL computes from the same bars and scored posts (same
    calendar: every ticker's bar days; enough warm-up bars that even the RSI's exponential average has
    forgotten where the window starts). The open day gets a provisional row.
    """
    bars = book.bars[book.bars["ticker"].isin(tickers)].sort_values(["ticker", "date"])
    bars = bars.groupby("ticker", sort=False).tail(HISTORY_ROWS + WARMUP_BARS).reset_index(drop=True)
    if bars.empty:
        return {}
    calendar = live_calendar(book.bars)
    posts = book.posts[book.posts["ticker"].isin(tickers)] if len(book.posts) else book.posts
    if len(posts):
        posts = posts.assign(trading_day=align_to_trading_day(posts["created_at"], calendar,
                                                              close_hour=book.close_hour))
    last_bar = bars.groupby("ticker")["date"].max().map(lambda d: pd.Timestamp(d).date())
    open_days = _open_days(book, posts, last_bar, calendar)
    extra = [_provisional_bar(bars[bars["ticker"] == t], d, book.quotes.get(t)) for t, d in open_days.items()]
    bars = pd.concat([bars, *extra], ignore_index=True) if extra else bars
    aggregates = aggregate_daily_sentiment(posts.dropna(subset=["trading_day"])) if len(posts) else pd.DataFrame()
    feats = build_daily_features(bars, aggregates, sentiment_source)
    out = {}
    for ticker, rows in feats.groupby("ticker", sort=True):
        rows = rows.iloc[-HISTORY_ROWS:].reset_index(drop=True)
        rows["provisional"] = rows["date"] == open_days.get(str(ticker))
        # the last close's target is the next close, not the provisional one
        rows.loc[rows["provisional"].shift(-1, fill_value=False), list(TARGETS)] = np.nan
        out[str(ticker)] = rows
    return out


def ticker_features(book: LiveBook, ticker: str, sentiment_source: str) -> pd.DataFrame:
    """One ticker's rows (see :func:`features_for`)."""
    return features_for(book, [ticker], sentiment_source).get(ticker, pd.DataFrame())
