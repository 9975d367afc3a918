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

from finpulse import storage
from finpulse.data import catalog, curate, lineage, sources
from finpulse.data.calendar import trading_calendar
from finpulse.data.catalog import Counts
from finpulse.data.schemas import (
    POST_SCORES,
    PRICES,
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
        raw = sources.read_raw_posts({"uri": str(uri), "format": str(fmt), "companies": str(companies)})
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


# Ray Data retries each file write up to 10 times (backoff up to 32 s) on these errors, on top of the S3
# client's own bounded retries (settings.s3_max_attempts): with S3 killed at a task's first staging write,
# the ETL was still retrying after 6 minutes; without them it failed in ~3 s (tests/integration/
# test_storage_faults.py). Connection errors are left to the S3 client; throttling is still retried.
_UNRETRIED_IO_ERRORS = ("AWS Error NETWORK_CONNECTION", "AWS Error INTERNAL_FAILURE")


@contextmanager
def _etl_data_context() -> Iterator[None]:
    """Ray Data settings for the ETL's run, restored after. Each stage is one fused operator, yet Ray
    Data by default reserves half the cluster's CPUs for other operators: on 2 cores that ran the
    (ticker, year) stage on one core (eight quarter-second tasks: 1.9 s with the reservation, 1.1 s
    without). And connection errors are not retried by Ray Data (see ``_UNRETRIED_IO_ERRORS``)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    before = ctx.op_resource_reservation_enabled, list(ctx.retried_io_errors)
    ctx.op_resource_reservation_enabled = False
    ctx.retried_io_errors = [e for e in before[1] if e not in _UNRETRIED_IO_ERRORS]
    try:
        yield
    finally:
        ctx.op_resource_reservation_enabled, ctx.retried_io_errors = before


ETL_STAGES = ("prices", "posts_to_staging", "duplicates", "partitions", "features_and_manifest")


def run_etl(prices_uri: str, posts_uri: str | None, out_uri: str, *, scores_uri: str | None = None,
            config: EtlConfig | None = None, on_stage: Callable[[str], None] | None = None) -> EtlResult:
    """Run the whole ETL on Ray Data, on the Ray this process is connected to (``runtime.connect``).

    ``on_stage(name)`` is called as each of :data:`ETL_STAGES` ends (a progress bar's hook). When an S3
    endpoint stops answering, the run fails with one :class:`~finpulse.outages.ServiceUnreachable` that
    names it; what was published before stays as it was (``LATEST`` moves only after a whole version)."""
    done: list[str] = []

    def stage_done(stage: str) -> None:
        done.append(stage)
        (on_stage or (lambda _stage: None))(stage)

    def action() -> str:
        return f"running the ETL into {out_uri} (stages done: {', '.join(done) or 'none'})"

    with _etl_data_context(), storage.reaching_s3([prices_uri, posts_uri, out_uri, scores_uri], action):
        return _run_etl(prices_uri, posts_uri, out_uri, scores_uri=scores_uri, config=config or EtlConfig(),
                        on_stage=stage_done)


@dataclass
class _Run:
    """What every stage of one ETL run shares: where it writes, its settings, its clock."""

    cfg: EtlConfig
    version_id: str
    out_dir: str
    on_stage: Callable[[str], None]
    remote: dict[str, Any] = field(default_factory=storage.ray_remote_args)
    timings: dict[str, float] = field(default_factory=dict)
    mark: float = field(default_factory=time.time)

    @property
    def staging(self) -> str:
        return storage.join(self.out_dir, "_staging")

    def lap(self, stage: str) -> None:
        self.timings[stage] = round(time.time() - self.mark, 3)
        self.mark = time.time()
        self.on_stage(stage)

    def map(self, items: list[dict], fn: Callable, *, blocks: int | None = None, batch_size: int | None = 1,
            batch_format: str = "numpy", **fn_kwargs: Any) -> Any:
        """``items`` as a Ray Dataset mapped by ``fn`` (one task per block): every stage's shape."""
        import ray.data

        return ray.data.from_items(items, override_num_blocks=blocks or len(items)).map_batches(
            fn, batch_size=batch_size, batch_format=batch_format, num_cpus=self.cfg.task_cpus,
            fn_kwargs=fn_kwargs or None, **self.remote)


def _run_etl(prices_uri: str, posts_uri: str | None, out_uri: str, *, scores_uri: str | None,
             config: EtlConfig, on_stage: Callable[[str], None]) -> EtlResult:
    t0 = time.time()
    price_files = [f for f in storage.list_files(prices_uri) if f.endswith((".csv", ".json"))]
    if not price_files:
        raise FileNotFoundError(f"no price files (.csv, .json) under {prices_uri}")
    post_items = sources.discover_post_inputs(posts_uri) if posts_uri else []
    post_files = [i["uri"] for i in post_items] + [i["companies"] for i in post_items if i["companies"]]
    score_files = storage.list_files(scores_uri, ".parquet") if scores_uri else []
    identity = lineage.version_identity({"prices": price_files, "posts": post_files, "scores": score_files},
                                        asdict(config))
    run = _Run(config, identity["hash"], storage.join(out_uri, f"v={identity['hash']}"), on_stage)
    storage.delete_dir(run.out_dir)

    prices, rejected_prices, price_counts = _stage_prices(run, price_files)
    quarantine = [_quarantine_frame(rejected_prices, "prices", run.version_id)]
    post_counts = Counts()
    ticker_counts = pd.DataFrame(columns=["ticker", "rows", "kept", "deduped", "model_scored", "scorer"])
    if post_items:
        tickers, bad = _stage_posts(run, post_items, trading_calendar(prices["date"]))
        if bad is not None:
            quarantine.append(_quarantine_frame(bad, "posts", run.version_id))
            post_counts.quarantined = len(bad)
        if tickers:
            ticker_counts = _stage_partitions(run, tickers, _stage_duplicates(run, tickers), scores_uri)
        post_counts.rows_out = int(ticker_counts["kept"].sum())
        post_counts.deduped = int(ticker_counts["deduped"].sum())
        post_counts.rows_in = int(ticker_counts["rows"].sum()) + post_counts.quarantined

    contents = catalog.VersionContents(prices, ticker_counts, quarantine, price_counts, post_counts)
    manifest = catalog.publish_version(out_uri, run.out_dir, run.version_id, contents, identity, config, t0,
                                       scores_uri=scores_uri, stage_seconds=run.timings)
    if not config.keep_staging:
        storage.delete_dir(run.staging)
    run.lap("features_and_manifest")
    return EtlResult(out_uri, run.version_id, manifest)


def _stage_prices(run: _Run, price_files: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, Counts]:
    """1. One task per price file reads and validates bars; the driver dedupes the small result."""
    rows = run.map([{"uri": u} for u in price_files], _prices_batch, batch_format="pandas").to_pandas()
    rejected = rows[rows["reason"].notna()]
    valid = rows[rows["reason"].isna()][PRICES.names].copy()
    valid["date"] = pd.to_datetime(valid["date"]).dt.date
    valid["volume"] = valid["volume"].astype("int64")
    valid, deduped = curate.dedupe_prices(valid)
    run.lap("prices")
    return valid, rejected, Counts(len(rows), len(valid), deduped, len(rejected))


def _stage_posts(run: _Run, post_items: list[dict[str, str]], calendar: np.ndarray
                 ) -> tuple[list[str], pd.DataFrame | None]:
    """2. One task per post input -> staging partitioned by (ticker, year); returns the tickers staged
    and the quarantined rows (None when there are none)."""
    fs, staging_path = storage.filesystem(run.staging)
    items = [{**item, "index": i} for i, item in enumerate(post_items)]
    run.map(items, _posts_batch, calendar=calendar, close_hour=run.cfg.close_hour) \
        .write_parquet(staging_path, filesystem=fs, partition_cols=["_part", "_year"])
    run.lap("posts_to_staging")
    parts = sorted({p.split("_part=", 1)[1].split("/", 1)[0] for p in storage.list_files(run.staging, ".parquet")})
    bad = None
    if QUARANTINE_PART in parts:
        bad = storage.read_frame(storage.join(run.staging, f"_part={QUARANTINE_PART}"),
                                 columns=["source", "raw", "reason"])
    return [p for p in parts if p != QUARANTINE_PART], bad


def _stage_duplicates(run: _Run, tickers: list[str]) -> dict[str, np.ndarray]:
    """3. Per ticker, the row ids of duplicates, found from the compact key columns alone."""
    dups = run.map([{"ticker": t} for t in tickers], _duplicates_batch, staging=run.staging,
                   dedupe_window_s=run.cfg.dedupe_window_s).to_pandas()
    run.lap("duplicates")
    if "ticker" not in dups.columns:  # no duplicates anywhere: Ray Data hands back a frame without columns
        return {}
    return {t: g["_rid"].to_numpy() for t, g in dups.groupby("ticker")}


def _stage_partitions(run: _Run, tickers: list[str], drops: dict[str, np.ndarray],
                      scores_uri: str | None) -> pd.DataFrame:
    """4. Per (ticker, year): curated posts written, daily aggregates staged; returns counts per ticker."""
    import ray

    groups = _partitions(tickers, run.staging)
    # a few (ticker, year) groups per task: one task per group left a core idle (tasks of ~50 ms)
    blocks = min(len(groups), 4 * max(1, int(ray.cluster_resources().get("CPU", 1))))
    part_counts = run.map(groups, _partitions_batch, blocks=blocks, batch_size=None, staging=run.staging,
                          out_dir=run.out_dir, drops=drops, scores_uri=scores_uri).to_pandas()
    counts = part_counts.groupby("ticker").agg(
        rows=("rows", "sum"), kept=("kept", "sum"), deduped=("deduped", "sum"),
        model_scored=("model_scored", "sum"),
        scorer=("scorer", lambda v: v[v != "none"].mode().iat[0] if (v != "none").any() else "none"),
    ).reset_index()
    run.lap("partitions")
    return counts


