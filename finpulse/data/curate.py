"""Pure curation steps shared by the Ray ETL and its single-process reference: validate, align
posts to trading days, score them with VADER, and dedupe. No Ray here: the ETL maps these over
files and tickers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from finpulse.data import vader
from finpulse.data.calendar import align_to_trading_day
from finpulse.data.features import aggregate_daily_sentiment
from finpulse.data.schemas import SCORED_POSTS
from finpulse.data.sources import normalize_posts

DEDUPE_WINDOW_S = 60


def text_hash(text: pd.Series) -> np.ndarray:
    """A stable 64-bit hash of each text (compact dedupe key; the text itself need not be kept)."""
    return pd.util.hash_array(text.to_numpy(dtype=object), categorize=False).astype("uint64")


def process_posts(raw: pd.DataFrame, calendar: np.ndarray, *, close_hour: int = 16) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw post rows -> (scored posts with trading_day and VADER score, rejected rows with reason)."""
    valid, rejected = normalize_posts(raw)
    day = align_to_trading_day(valid["created_at"], calendar, close_hour=close_hour)
    outside = day.isna()
    if outside.any():
        extra = valid[outside]
        import json  # local: rare path

        rejected = pd.concat([rejected, pd.DataFrame({
            "raw": [json.dumps({k: str(v) for k, v in r.items()}, ensure_ascii=False, sort_keys=True)
                    for r in extra.to_dict(orient="records")],
            "reason": "outside the price calendar",
            "source": extra["source"].tolist(),
        })], ignore_index=True)
        valid, day = valid[~outside].reset_index(drop=True), day[~outside].reset_index(drop=True)
    valid["trading_day"] = pd.to_datetime(day.to_numpy()).date
    return vader.score_posts(valid), rejected


KEY_COLUMNS = ["ticker", "created_at", "_pid", "_ah", "_th"]
_EMPTY_AUTHOR = int(pd.util.hash_array(np.array([""], dtype=object), categorize=False)[0])


def dedupe_keys(posts: pd.DataFrame) -> pd.DataFrame:
    """Compact dedupe keys: 64-bit hashes of post_id, author and text, plus ticker and time.

    Deduplication needs only these (about 40 bytes a post, whatever the text length), so the Ray
    ETL can dedupe a ticker's posts without holding their texts.
    """
    return pd.DataFrame({
        "ticker": posts["ticker"].to_numpy(), "created_at": posts["created_at"].to_numpy(),
        "_pid": text_hash(posts["post_id"]), "_ah": text_hash(posts["author"]), "_th": text_hash(posts["text"]),
    }, index=posts.index)


def duplicate_mask(keys: pd.DataFrame, window_s: int = DEDUPE_WINDOW_S) -> np.ndarray:
    """True for each row (in ``keys``' order) that repeats an earlier post.

    Two rules: the same ``(post_id, ticker)`` seen twice (a file read twice, overlapping exports)
    keeps the earliest; the same author posting the same text about the same ticker within
    ``window_s`` seconds (bots, double submits) keeps the first. Posts without an author are only
    deduplicated by id. The answer does not depend on the rows' order.
    """
    df = keys[KEY_COLUMNS].reset_index(drop=True)
    df = df.sort_values(["ticker", "_pid", "created_at", "_th", "_ah"], kind="mergesort")
    dup = df.duplicated(["ticker", "_pid"], keep="first")
    rest = df[~dup].sort_values(["ticker", "_ah", "_th", "created_at", "_pid"], kind="mergesort")
    same = (rest["ticker"].eq(rest["ticker"].shift()) & rest["_ah"].eq(rest["_ah"].shift())
            & rest["_th"].eq(rest["_th"].shift()) & (rest["_ah"] != _EMPTY_AUTHOR))
    gap = (rest["created_at"] - rest["created_at"].shift()).dt.total_seconds()
    mask = np.zeros(len(df), dtype=bool)
    mask[dup[dup].index.to_numpy()] = True
    mask[rest.index[(same & (gap < window_s)).to_numpy()].to_numpy()] = True
    return mask


def sort_posts(posts: pd.DataFrame) -> pd.DataFrame:
    """The canonical order of curated posts, so output bytes never depend on input order."""
    return posts.sort_values(["ticker", "trading_day", "created_at", "post_id"], kind="mergesort").reset_index(drop=True)


def dedupe_posts(posts: pd.DataFrame, window_s: int = DEDUPE_WINDOW_S) -> tuple[pd.DataFrame, int]:
    """Drop repeated posts (see :func:`duplicate_mask`); returns ``(kept, n_dropped)`` in canonical order."""
    if posts.empty:
        return posts, 0
    mask = duplicate_mask(dedupe_keys(posts), window_s)
    kept = sort_posts(posts[~mask])
    return kept, len(posts) - len(kept)


def dedupe_prices(prices: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One bar per (ticker, date): the last one read wins (a later file is a later revision)."""
    kept = prices[~prices.duplicated(["ticker", "date"], keep="last")]
    return kept.sort_values(["ticker", "date"]).reset_index(drop=True), len(prices) - len(kept)


def apply_model_scores(posts: pd.DataFrame, scores: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Replace VADER scores with a model's (POST_SCORES rows keyed by post_id, ticker). Posts the
    model did not score keep VADER; returns ``(posts, n_model_scored)``."""
    cols = ["p_negative", "p_neutral", "p_positive", "label", "score", "scorer"]
    s = scores.drop_duplicates(["post_id", "ticker"], keep="last").set_index(["post_id", "ticker"])[cols]
    key = pd.MultiIndex.from_frame(posts[["post_id", "ticker"]])
    hit = key.isin(s.index)
    out = posts.copy()
    if hit.any():
        matched = s.loc[key[hit]]
        for c in cols:
            out.loc[hit, c] = matched[c].to_numpy()
    return out, int(hit.sum())


def curate_partition(posts: pd.DataFrame, drop_rids: np.ndarray, scores: pd.DataFrame | None
                     ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """One (ticker, year) of staged posts -> (curated scored posts, daily aggregates, counts)."""
    dropped = posts["_rid"].isin(drop_rids).to_numpy()
    kept = sort_posts(posts[~dropped][SCORED_POSTS.names])
    n_model = 0
    if scores is not None and len(kept):
        kept, n_model = apply_model_scores(kept, scores)
    counts = {"rows": len(posts), "kept": len(kept), "deduped": int(dropped.sum()), "model_scored": n_model}
    return kept, aggregate_daily_sentiment(kept), counts
