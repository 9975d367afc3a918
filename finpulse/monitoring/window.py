"""The current window the drift job looks at: the last trading days of features and the posts scored in them.

Features are the latest curated version's rows plus the stream processor's live rows (newer rows of
a ticker and day replace older ones, as serving does). Posts are the curated scored posts of those
days plus the live posts; their label and score are the MODEL's (``<data_root>/scores``: batch and
live POST_SCORES) wherever it scored them, so the current class mix is the same model's view as its
reference. All reads go through :mod:`finpulse.storage` (local or ``s3://``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from finpulse import storage
from finpulse.data import sources
from finpulse.data.catalog import load_dataset
from finpulse.paths import DataPaths

POST_COLUMNS = ["post_id", "ticker", "created_at", "text", "label", "score"]


@dataclass
class Window:
    history: pd.DataFrame  # every feature row known (the lookback windows need the days before `since`)
    features: pd.DataFrame  # rows dated >= since
    since: dt.date | None
    posts: pd.DataFrame  # POST_COLUMNS + scorer, in time order
    scorer: str


def _curated(paths: DataPaths, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    if not storage.exists(storage.join(paths.curated, "LATEST")):
        return pd.DataFrame()
    return load_dataset(paths.curated, name, columns=columns)


def feature_history(paths: DataPaths) -> pd.DataFrame:
    """Curated daily features + live feature rows, one row per (ticker, date), live winning."""
    frames = [_curated(paths, "daily_features")]
    for f in storage.list_files(paths.live_features, ".parquet"):
        frames.append(storage.read_frame(f))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["ticker", "date"])
    df = pd.concat(frames, ignore_index=True)
    df["date"] = pd.to_datetime(df["date"]).dt.date
    df = df.drop_duplicates(["ticker", "date"], keep="last")
    return df.sort_values(["ticker", "date"]).reset_index(drop=True)


def model_scores(paths: DataPaths) -> pd.DataFrame:
    """Every model score stored (batch and live), one per (post_id, ticker), the newest file winning."""
    files = storage.list_files(paths.scores, ".parquet")
    if not files:
        return pd.DataFrame(columns=["post_id", "ticker", "label", "score", "scorer"])
    df = pd.concat([storage.read_frame(f, columns=["post_id", "ticker", "label", "score", "scorer"]) for f in files],
                   ignore_index=True)
    return df.drop_duplicates(["post_id", "ticker"], keep="last")


def window_posts(paths: DataPaths, since: dt.date | None) -> tuple[pd.DataFrame, str]:
    """Posts from ``since`` on (curated by trading day, live by UTC time) with the model's scores."""
    cur = _curated(paths, "scored_posts", [*POST_COLUMNS, "trading_day", "scorer"])
    if len(cur) and since is not None:
        cur = cur[pd.to_datetime(cur["trading_day"]).dt.date >= since]
    live_files = storage.list_files(paths.live_posts, ".csv")
    live = pd.concat([sources.read_posts_csv(storage.read_bytes(f), f) for f in live_files], ignore_index=True) \
        if live_files else pd.DataFrame()
    if len(live):
        live, _ = sources.normalize_posts(live)
        if since is not None:
            live = live[live["created_at"] >= pd.Timestamp(since, tz="UTC")]
    posts = pd.concat([p for p in (cur, live) if len(p)], ignore_index=True) if len(cur) or len(live) else pd.DataFrame()
    if posts.empty:
        return pd.DataFrame(columns=[*POST_COLUMNS, "scorer"]), "none"
    posts = posts.drop(columns=[c for c in ("label", "score", "scorer") if c in posts]).merge(
        model_scores(paths), on=["post_id", "ticker"], how="left")
    if posts["score"].isna().all() and len(cur):  # no model scored these: the curated (VADER) view
        posts = posts.drop(columns=["label", "score", "scorer"]).merge(
            cur[["post_id", "ticker", "label", "score", "scorer"]], on=["post_id", "ticker"], how="left")
    posts = posts.dropna(subset=["score", "label"]).drop_duplicates(["post_id", "ticker"])
    posts = posts.sort_values("created_at", kind="mergesort").reset_index(drop=True)
    return posts[[*POST_COLUMNS, "scorer"]], "+".join(sorted(set(posts["scorer"].astype(str)))) or "none"


def current_window(paths: DataPaths, window_days: int) -> Window:
    """The last ``window_days`` trading days (of the feature rows) and the posts scored in them."""
    history = feature_history(paths)
    days = sorted(set(history["date"]))
    since = days[-window_days] if len(days) >= window_days else (days[0] if days else None)
    features = history[history["date"] >= since] if since is not None else history
    posts, scorer = window_posts(paths, since)
    return Window(history, features.reset_index(drop=True), since, posts, scorer)
