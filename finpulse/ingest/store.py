"""Where the live path's effects land, in the formats the batch path reads, so live becomes history.

Under the data root (a local folder or an ``s3://`` prefix):

- ``raw/posts/live/<batch>.csv``: accepted posts in the canonical posts CSV the ETL reads;
- ``raw/prices/live/<batch>_<TICKER>.csv``: closing bars as Yahoo CSVs (the ETL's price reader);
- ``scores/live/<batch>.parquet``: the model's POST_SCORES for those posts (the ETL reads ``scores/``,
  the batch scorer's and these);
- ``live/quarantine/<batch>.parquet``: every refused row with its reason;
- ``live/features/<TICKER>.parquet`` and ``live/features/state.json``: what serving reads, rewritten
  whole (a reader never sees half a file on S3; locally a rename makes it atomic).

Every micro-batch writes its files before its messages are acknowledged: a processor killed in
between finds them on restart (:func:`load_book`) and treats the redelivered messages as duplicates.
"""

from __future__ import annotations

import datetime as dt
import time

import pandas as pd
import pyarrow as pa

from finpulse import storage
from finpulse.data import sources
from finpulse.data.catalog import load_dataset
from finpulse.data.curate import dedupe_keys
from finpulse.data.schemas import POST_SCORES, QUARANTINE
from finpulse.ingest.live import HISTORY_ROWS, WARMUP_BARS, LiveBook
from finpulse.paths import DataPaths

POST_COLUMNS = sources.RAW_POST_COLUMNS


def batch_name(seq: int) -> str:
    """Sortable and unique across restarts: UTC time, then the broker's stream sequence."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{seq:012d}"


def write_posts(paths: DataPaths, name: str, posts: pd.DataFrame, scores: pd.DataFrame) -> None:
    """Accepted posts (POSTS rows) and their scores; scores first, so posts never exist unscored."""
    if posts.empty:
        return
    storage.write_table(storage.join(paths.live_scores, f"{name}.parquet"),
                        pa.Table.from_pandas(scores[POST_SCORES.names], schema=POST_SCORES, preserve_index=False))
    raw = posts.assign(created_at=posts["created_at"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))[POST_COLUMNS]
    storage.write_bytes(storage.join(paths.live_posts, f"{name}.csv"), raw.to_csv(index=False).encode())


def write_bars(paths: DataPaths, name: str, bars: pd.DataFrame) -> None:
    for ticker, g in bars.groupby("ticker", sort=True):
        df = pd.DataFrame({"Date": pd.to_datetime(g["date"]).dt.strftime("%Y-%m-%d"), "Open": g["open"],
                           "High": g["high"], "Low": g["low"], "Close": g["close"], "Adj Close": g["adj_close"],
                           "Volume": g["volume"]})
        storage.write_bytes(storage.join(paths.live_prices, f"{name}_{ticker}.csv"),
                            df.to_csv(index=False, lineterminator="\n").encode())


def write_quarantine(paths: DataPaths, name: str, rejected: pd.DataFrame, dataset: str) -> None:
    if rejected.empty:
        return
    frame = pd.DataFrame({"dataset": dataset, "run_id": f"live-{name}", "raw": rejected["raw"].astype(str),
                          "reason": rejected["reason"].astype(str), "source": rejected["source"].astype(str)})
    storage.write_table(storage.join(paths.live_quarantine, f"{dataset}-{name}.parquet"),
                        pa.Table.from_pandas(frame[QUARANTINE.names], schema=QUARANTINE, preserve_index=False))


def write_features(paths: DataPaths, features: dict[str, pd.DataFrame], state: dict) -> dict:
    """Rewrite the changed tickers' live features, then the state file that points readers at them."""
    now = time.time()
    for ticker, frame in features.items():
        if frame.empty:
            continue
        storage.write_table(storage.join(paths.live_features, f"{ticker}.parquet"),
                            pa.Table.from_pandas(frame, preserve_index=False))
        last = frame.iloc[-1]
        state[ticker] = {"updated_at": now, "as_of": str(last["date"]), "provisional": bool(last["provisional"])}
    storage.write_json(storage.join(paths.live_features, "state.json"), state)
    return state


def read_state(paths: DataPaths) -> dict:
    uri = storage.join(paths.live_features, "state.json")
    return storage.read_json(uri) if storage.exists(uri) else {}


def read_live_features(paths: DataPaths, ticker: str) -> pd.DataFrame:
    return storage.read_frame(storage.join(paths.live_features, f"{ticker}.parquet"))


def _read_all(uri: str, suffix: str, reader) -> pd.DataFrame:
    frames = [reader(f) for f in storage.list_files(uri, suffix)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _history(paths: DataPaths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bars and scored posts of the latest batch ETL version (empty before the first ETL)."""
    if not storage.exists(storage.join(paths.curated, "LATEST")):
        return pd.DataFrame(), pd.DataFrame()
    return load_dataset(paths.curated, "prices"), load_dataset(paths.curated, "scored_posts")


def load_book(paths: DataPaths, window_s: int, close_hour: int) -> LiveBook:
    """Rebuild what the processor knows from storage: the batch ETL's history plus every live batch stored."""
    bars, posts = _history(paths)
    live_bars = _read_all(paths.live_prices, ".csv", lambda f: sources.read_price_file(f, storage.read_bytes(f)))
    if len(live_bars):
        valid, _ = sources.normalize_prices(live_bars)
        bars = pd.concat([bars, valid], ignore_index=True) if len(bars) else valid
        bars = bars.drop_duplicates(["ticker", "date"], keep="last")
    live_posts = _read_all(paths.live_posts, ".csv", lambda f: sources.read_posts_csv(storage.read_bytes(f), f))
    if len(live_posts):
        valid, _ = sources.normalize_posts(live_posts)
        scores = _read_all(paths.live_scores, ".parquet", storage.read_frame)
        valid = valid.merge(scores, on=["post_id", "ticker"], how="inner")
        posts = pd.concat([posts, valid], ignore_index=True) if len(posts) else valid
    book = LiveBook(bars=bars.sort_values(["ticker", "date"]).reset_index(drop=True) if len(bars) else bars,
                    posts=pd.DataFrame(), window_s=window_s, close_hour=close_hour)
    if len(posts):
        keys = dedupe_keys(posts)
        book.seen_ids = {(t, int(p)) for t, p in zip(keys["ticker"], keys["_pid"], strict=True)}
        newest = keys["created_at"].max()
        book.recent_keys = keys[keys["created_at"] >= newest - pd.Timedelta(seconds=window_s)]
        keep_from = (pd.Timestamp(newest) - pd.Timedelta(days=2 * (HISTORY_ROWS + WARMUP_BARS)))
        book.posts = posts[posts["created_at"] >= keep_from].reset_index(drop=True)
    return book
