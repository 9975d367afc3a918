"""The ETL: raw posts and prices -> curated, scored posts and daily features, on Ray Data.

Stages (each a thin Ray layer over the pure functions in ``curate`` and ``features``):

1. prices: one Ray Data task per file reads and validates bars; the small result comes back to
   the driver, which dedupes it and derives the trading calendar.
2. posts: one Ray Data task per file (or Kaggle file pair) parses, validates, aligns to trading
   days and scores with VADER, streaming into a staging folder partitioned by ticker (rejected
   rows into a quarantine partition). Memory is bounded by one file per task, whatever the corpus.
3. per ticker: one task dedupes that ticker's posts, applies model scores when given, writes the
   curated posts and returns the daily aggregates.
4. the driver joins aggregates onto price features and writes features, prices and quarantine.

Output is a version folder ``<out>/v=<id>/`` whose id hashes the inputs' bytes, the curation code's
source, library versions and the configuration (:mod:`lineage`; a rerun on the same inputs rewrites the
same bytes, a changed byte of input or code makes a new version), with ``manifest.json`` written
last and then ``<out>/LATEST`` pointing at it: a reader that goes through :func:`load_dataset`
never sees half a version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from finpulse import storage
from finpulse.data import curate, lineage, sources
from finpulse.data.calendar import trading_calendar
from finpulse.data.catalog import Counts, publish, write_by_ticker
from finpulse.data.features import AGGREGATE_COLUMNS, build_daily_features
from finpulse.data.schemas import (
    DAILY_FEATURES,
    POST_SCORES,
    PRICES,
    QUARANTINE,
    SCORED_POSTS,
    to_table,
)

log = logging.getLogger(__name__)

QUARANTINE_PART = "_quarantine"

# What the posts stage writes to staging: scored posts plus the quarantine columns, one schema.
STAGING = pa.schema([
    *[pa.field(f.name, f.type) for f in SCORED_POSTS],
    pa.field("raw", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("_rid", pa.int64()),  # input file index << 32 | row: names one raw row, deterministically
    pa.field("_pid", pa.uint64()),  # hashes of post_id, author, text: the dedupe keys (curate.dedupe_keys)
    pa.field("_ah", pa.uint64()),
    pa.field("_th", pa.uint64()),
    pa.field("_part", pa.string()),  # ticker, or the quarantine partition
    pa.field("_year", pa.string()),  # trading year: (ticker, year) partitions bound a task's memory
])


@dataclass(frozen=True)
class EtlConfig:
    """Knobs of the ETL. ``close_hour`` is New York time; ``dedupe_window_s`` is the "same author,
    same text" window."""

    close_hour: int = 16
    dedupe_window_s: int = curate.DEDUPE_WINDOW_S
    task_cpus: float = 1.0
    keep_staging: bool = False


@dataclass
class EtlResult:
    out_uri: str
    version: str
    manifest: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ inputs


def discover_post_inputs(posts_uri: str) -> list[dict[str, str]]:
    """Post files under ``posts_uri``; Kaggle's Tweet.csv and Company_Tweet.csv are one input."""
    files = [f for f in storage.list_files(posts_uri) if f.endswith((".csv", ".jsonl"))]
    items: list[dict[str, str]] = []
    kaggle: dict[str, dict[str, str]] = {}
    for f in files:
        fmt = sources.detect_post_format(f, storage.read_head(f) if f.endswith(".csv") else b"")
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
    uri, fmt = item["uri"], item["format"]
    data = storage.read_bytes(uri)
    if fmt == "posts_csv":
        return sources.read_posts_csv(data, uri)
    if fmt == "stocknet_jsonl":
        return sources.read_stocknet_jsonl(data, sources.ticker_from_name(uri), uri)
    if fmt == "kaggle_tweets":
        return sources.read_kaggle_tweets(data, storage.read_bytes(item["companies"]), uri)
    raise ValueError(f"{uri}: unsupported post format {fmt}")


# ------------------------------------------------------------------------------------------ stages (pure-ish)


def _quarantine_frame(rejected: pd.DataFrame, dataset: str, run_id: str) -> pd.DataFrame:
    return pd.DataFrame({"dataset": dataset, "source": rejected["source"].astype(str), "raw": rejected["raw"],
                         "reason": rejected["reason"], "run_id": run_id})


def _prices_batch(batch: dict[str, np.ndarray]) -> pd.DataFrame:
    """Ray Data map_batches: price file URIs -> validated bars plus rejected rows (``reason`` set)."""
    frames = []
    for uri in batch["uri"]:
        raw = sources.read_price_file(str(uri), storage.read_bytes(str(uri)))
        valid, rejected = sources.normalize_prices(raw)
        valid["raw"], valid["reason"] = None, None
        bad = pd.DataFrame({"raw": rejected["raw"], "reason": rejected["reason"], "source": rejected["source"]})
        frames += [valid, bad]
    df = pd.concat(frames, ignore_index=True)
    df["date"] = df["date"].astype(str)  # keep a single Arrow type across blocks
    return df


def _posts_batch(batch: dict[str, np.ndarray], calendar: np.ndarray, close_hour: int) -> pa.Table:
    """Ray Data map_batches: post inputs -> staging rows (scored posts with dedupe keys, rejected rows)."""
    frames = []
    for uri, fmt, companies, index in zip(batch["uri"], batch["format"], batch["companies"], batch["index"],
                                          strict=True):
        raw = read_raw_posts({"uri": str(uri), "format": str(fmt), "companies": str(companies)})
        valid, rejected = curate.process_posts(raw, calendar, close_hour=close_hour)
        valid = pd.concat([valid, curate.dedupe_keys(valid)[["_pid", "_ah", "_th"]]], axis=1)
        valid["_rid"] = (int(index) << 32) + np.arange(len(valid), dtype=np.int64)
        valid["raw"], valid["reason"], valid["_part"] = None, None, valid["ticker"]
        valid["_year"] = pd.to_datetime(valid["trading_day"]).dt.strftime("%Y")
        frames.append(valid)
        if len(rejected):
            bad = pd.DataFrame({c: None for c in STAGING.names}, index=range(len(rejected)))
            bad["raw"], bad["reason"] = rejected["raw"].to_numpy(), rejected["reason"].to_numpy()
            bad["source"], bad["_part"], bad["_year"] = rejected["source"].to_numpy(), QUARANTINE_PART, "none"
            frames.append(bad)
    df = pd.concat(frames, ignore_index=True)
    return pa.Table.from_pandas(df[STAGING.names], schema=STAGING, preserve_index=False)


def _duplicates_batch(batch: dict[str, np.ndarray], staging: str, dedupe_window_s: int) -> pd.DataFrame:
    """Ray Data map_batches: ticker -> the row ids of its duplicates, from the key columns alone."""
    frames = []
    for ticker in batch["ticker"]:
        keys = storage.read_frame(storage.join(staging, f"_part={ticker}"), columns=["created_at", "_pid", "_ah",
                                                                                       "_th", "_rid"])
        keys["ticker"] = str(ticker)
        mask = curate.duplicate_mask(keys, dedupe_window_s)
        frames.append(pd.DataFrame({"ticker": str(ticker), "_rid": keys["_rid"].to_numpy()[mask]}))
    return pd.concat(frames, ignore_index=True)


def _partitions_batch(batch: dict[str, np.ndarray], staging: str, out_dir: str, drops: dict[str, np.ndarray],
                      scores_uri: str | None) -> pd.DataFrame:
    """Ray Data map_batches: (ticker, year) partitions -> curated posts and aggregates written, counts.

    A task holds one year of one ticker's posts, however large the corpus.
    """
    rows = []
    for ticker, year in zip(batch["ticker"], batch["year"], strict=True):
        ticker, year = str(ticker), str(year)
        scores = None
        if scores_uri:
            scores = storage.read_table(scores_uri, schema=POST_SCORES, filters=[("ticker", "=", ticker)]).to_pandas()
        posts = storage.read_frame(storage.join(staging, f"_part={ticker}", f"_year={year}"))
        posts["ticker"] = ticker
        kept, aggregates, counts = curate.curate_partition(posts, drops.get(ticker, np.array([], dtype=np.int64)), scores)
        storage.write_table(storage.join(out_dir, "scored_posts", f"ticker={ticker}", f"year={year}", "part-0.parquet"),
                            to_table(kept, SCORED_POSTS))
        storage.write_table(storage.join(out_dir, "_aggregates", f"{ticker}-{year}.parquet"),
                            pa.Table.from_pandas(aggregates, preserve_index=False))
        scorer = kept["scorer"].mode().iat[0] if len(kept) else "none"
        rows.append({"ticker": ticker, "year": year, **counts, "scorer": scorer})
    return pd.DataFrame(rows)


def _partitions(tickers: list[str], staging: str) -> list[dict[str, str]]:
    """The (ticker, year) partitions present in staging."""
    items = []
    for ticker in tickers:
        files = storage.list_files(storage.join(staging, f"_part={ticker}"), ".parquet")
        years = sorted({f.split("_year=", 1)[1].split("/", 1)[0] for f in files})
        items += [{"ticker": ticker, "year": y} for y in years]
    return items


# ------------------------------------------------------------------------------------------ driver


def _sentiment_source(ticker_counts: pd.DataFrame) -> str:
    scorers = sorted({s for s in ticker_counts.get("scorer", pd.Series(dtype=str)) if s and s != "none"})
    return scorers[0] if len(scorers) == 1 else ("+".join(scorers) or "none")


@contextmanager
def _one_operator_stages() -> Iterator[None]:
    """Each ETL stage is one fused Ray Data operator, yet Ray Data by default reserves half the
    cluster's CPUs for other operators. On 2 cores that ran the (ticker, year) stage on one core
    (measured here: eight quarter-second map tasks took 1.9 s with the reservation, 1.1 s without).
    The reservation is off while the ETL runs and restored after."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    before = ctx.op_resource_reservation_enabled
    ctx.op_resource_reservation_enabled = False
    try:
        yield
    finally:
        ctx.op_resource_reservation_enabled = before


ETL_STAGES = ("prices", "posts_to_staging", "duplicates", "partitions", "features_and_manifest")


def run_etl(prices_uri: str, posts_uri: str | None, out_uri: str, *, scores_uri: str | None = None,
            config: EtlConfig | None = None, on_stage: Callable[[str], None] | None = None) -> EtlResult:
    """Run the whole ETL on Ray Data, on the Ray this process is connected to (``runtime.connect``).

    ``on_stage(name)`` is called as each of :data:`ETL_STAGES` ends (a progress bar's hook)."""
    with _one_operator_stages():
        return _run_etl(prices_uri, posts_uri, out_uri, scores_uri=scores_uri, config=config or EtlConfig(),
                        on_stage=on_stage or (lambda _stage: None))


def _run_etl(prices_uri: str, posts_uri: str | None, out_uri: str, *, scores_uri: str | None,
             config: EtlConfig, on_stage: Callable[[str], None]) -> EtlResult:
    import ray

    cfg = config
    t0 = time.time()
    price_files = [f for f in storage.list_files(prices_uri) if f.endswith((".csv", ".json"))]
    if not price_files:
        raise FileNotFoundError(f"no price files (.csv, .json) under {prices_uri}")
    post_items = discover_post_inputs(posts_uri) if posts_uri else []
    post_files = [i["uri"] for i in post_items] + [i["companies"] for i in post_items if i["companies"]]
    score_files = storage.list_files(scores_uri, ".parquet") if scores_uri else []
    identity = lineage.version_identity({"prices": price_files, "posts": post_files, "scores": score_files},
                                        asdict(cfg))
    version_id = identity["hash"]
    out_dir = storage.join(out_uri, f"v={version_id}")
    staging = storage.join(out_dir, "_staging")
    storage.delete_dir(out_dir)

    remote = storage.ray_remote_args()
    timings: dict[str, float] = {}
    mark = time.time()

    def lap(stage: str) -> None:
        nonlocal mark
        timings[stage] = round(time.time() - mark, 3)
        mark = time.time()
        on_stage(stage)

    # 1. prices
    price_rows = ray.data.from_items([{"uri": u} for u in price_files], override_num_blocks=len(price_files)) \
        .map_batches(_prices_batch, batch_size=1, batch_format="pandas", num_cpus=cfg.task_cpus, **remote).to_pandas()
    rejected_prices = price_rows[price_rows["reason"].notna()]
    valid_prices = price_rows[price_rows["reason"].isna()][PRICES.names].copy()
    valid_prices["date"] = pd.to_datetime(valid_prices["date"]).dt.date
    valid_prices["volume"] = valid_prices["volume"].astype("int64")
    valid_prices, prices_deduped = curate.dedupe_prices(valid_prices)
    price_counts = Counts(len(price_rows), len(valid_prices), prices_deduped, len(rejected_prices))
    calendar = trading_calendar(valid_prices["date"])
    lap("prices")

    # 2. posts -> staging, partitioned by ticker (streaming; one input file per task)
    post_counts = Counts()
    ticker_counts = pd.DataFrame(columns=["ticker", "rows", "kept", "deduped", "model_scored", "scorer"])
    quarantine = [_quarantine_frame(rejected_prices, "prices", version_id)]
    if post_items:
        fs, staging_path = storage.filesystem(staging)
        items = [{**item, "index": i} for i, item in enumerate(post_items)]
        ray.data.from_items(items, override_num_blocks=len(items)) \
            .map_batches(_posts_batch, batch_size=1, batch_format="numpy", num_cpus=cfg.task_cpus,
                         fn_kwargs={"calendar": calendar, "close_hour": cfg.close_hour}, **remote) \
            .write_parquet(staging_path, filesystem=fs, partition_cols=["_part", "_year"])
        lap("posts_to_staging")
        parts = sorted({p.split("_part=", 1)[1].split("/", 1)[0] for p in storage.list_files(staging, ".parquet")})
        tickers = [p for p in parts if p != QUARANTINE_PART]
        if QUARANTINE_PART in parts:
            bad = storage.read_frame(storage.join(staging, f"_part={QUARANTINE_PART}"),
                                     columns=["source", "raw", "reason"])
            quarantine.append(_quarantine_frame(bad, "posts", version_id))
            post_counts.quarantined = len(bad)
        if tickers:
            # 3. per ticker: duplicates from the compact keys; 4. per (ticker, year): write posts, aggregate
            dups = ray.data.from_items([{"ticker": t} for t in tickers], override_num_blocks=len(tickers)) \
                .map_batches(_duplicates_batch, batch_size=1, batch_format="numpy", num_cpus=cfg.task_cpus,
                             fn_kwargs={"staging": staging, "dedupe_window_s": cfg.dedupe_window_s}, **remote) \
                .to_pandas()
            drops = {t: g["_rid"].to_numpy() for t, g in dups.groupby("ticker")}
            lap("duplicates")
            groups = _partitions(tickers, staging)
            # a few (ticker, year) groups per task: one task per group left a core idle (tasks of ~50 ms)
            blocks = min(len(groups), 4 * max(1, int(ray.cluster_resources().get("CPU", 1))))
            part_counts = ray.data.from_items(groups, override_num_blocks=blocks) \
                .map_batches(_partitions_batch, batch_size=None, batch_format="numpy", num_cpus=cfg.task_cpus,
                             fn_kwargs={"staging": staging, "out_dir": out_dir, "drops": drops,
                                        "scores_uri": scores_uri}, **remote) \
                .to_pandas()
            ticker_counts = part_counts.groupby("ticker").agg(
                rows=("rows", "sum"), kept=("kept", "sum"), deduped=("deduped", "sum"),
                model_scored=("model_scored", "sum"),
                scorer=("scorer", lambda v: v[v != "none"].mode().iat[0] if (v != "none").any() else "none"),
            ).reset_index()
            lap("partitions")
        post_counts.rows_out = int(ticker_counts["kept"].sum())
        post_counts.deduped = int(ticker_counts["deduped"].sum())
        post_counts.rows_in = int(ticker_counts["rows"].sum()) + post_counts.quarantined

    manifest = _finish(out_uri, out_dir, version_id, valid_prices, ticker_counts, quarantine,
                       price_counts, post_counts, identity, cfg, t0, scores_uri=scores_uri, stage_seconds=timings)
    if not cfg.keep_staging:
        storage.delete_dir(staging)
    timings["features_and_manifest"] = round(time.time() - mark, 3)
    on_stage("features_and_manifest")
    return EtlResult(out_uri, version_id, manifest)


def _finish(out_uri: str, out_dir: str, version_id: str, prices: pd.DataFrame, ticker_counts: pd.DataFrame,
            quarantine: list[pd.DataFrame], price_counts: Counts, post_counts: Counts, identity: dict[str, Any],
            cfg: EtlConfig, t0: float, **extra: Any) -> dict[str, Any]:
    """Driver side of every ETL flavour: features, prices, quarantine, manifest, LATEST."""
    agg_files = storage.list_files(storage.join(out_dir, "_aggregates"), ".parquet")
    aggregates = pd.concat([storage.read_frame(f) for f in agg_files], ignore_index=True) if agg_files \
        else pd.DataFrame(columns=AGGREGATE_COLUMNS)
    source = _sentiment_source(ticker_counts)
    features = build_daily_features(prices, aggregates, source)
    files = {"prices": write_by_ticker(prices, PRICES, out_dir, "prices"),
             "daily_features": write_by_ticker(features, DAILY_FEATURES, out_dir, "daily_features")}
    q = pd.concat(quarantine, ignore_index=True).sort_values(["dataset", "source", "raw", "reason"], kind="mergesort")
    qfile = storage.join(out_dir, "quarantine", "part-0.parquet")
    storage.write_table(qfile, to_table(q, QUARANTINE))
    files["quarantine"] = [qfile]
    files["scored_posts"] = storage.list_files(storage.join(out_dir, "scored_posts"), ".parquet")
    storage.delete_dir(storage.join(out_dir, "_aggregates"))
    for name, c in (("prices", price_counts), ("posts", post_counts)):
        c.check(name)
    manifest = {
        "version": version_id,
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "code_version": identity["code"]["package"],
        "config": asdict(cfg),
        "inputs": identity["inputs"],
        "identity": {"made_of": "sha256 of inputs[*].uri+sha256, identity.code, config",
                     **{k: identity[k] for k in ("hash", "code", "seconds", "bytes_hashed")}},
        "counts": {"prices": asdict(price_counts), "posts": asdict(post_counts)},
        "quarantine_reasons": q.groupby(["dataset", "reason"]).size().rename("n").reset_index().to_dict("records"),
        "sentiment_source": source,
        "synthetic_inputs": bool(len(ticker_counts)) and _any_synthetic(files["scored_posts"]),
        "per_ticker": ticker_counts.to_dict("records"),
        "tickers": sorted(prices["ticker"].unique().tolist()),
        "date_range": [str(prices["date"].min()), str(prices["date"].max())] if len(prices) else [],
        "feature_rows": len(features),
        "schemas": {name: str(s) for name, s in (("prices", PRICES), ("scored_posts", SCORED_POSTS),
                                                 ("daily_features", DAILY_FEATURES), ("quarantine", QUARANTINE))},
        "files": {k: [f.rsplit(f"v={version_id}/", 1)[1] for f in v] for k, v in files.items()},
        "seconds": round(time.time() - t0, 3),
        **extra,
    }
    publish(out_uri, out_dir, version_id, manifest)
    return manifest


def _any_synthetic(files: list[str]) -> bool:
    for f in files[:1]:
        fs, path = storage.filesystem(f)
        col = pq.read_table(path, columns=["source"], filesystem=fs).column("source")
        return "synthetic" in set(col.to_pylist()[:1000])
    return False


