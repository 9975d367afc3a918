"""The catalog of ETL outputs: versions, the manifest, ``LATEST``, and reading a complete version.

Everything that reads a dataset comes here, never to the Ray ETL. A version folder
``<out>/v=<id>/`` is complete once its ``manifest.json`` exists and ``LATEST`` names it (written last,
by :func:`publish`); readers go through :func:`load_dataset`, so they never see half a version.
The id itself is made in :mod:`finpulse.data.lineage`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from finpulse import storage
from finpulse.data.features import AGGREGATE_COLUMNS, build_daily_features
from finpulse.data.schemas import DAILY_FEATURES, PRICES, QUARANTINE, SCORED_POSTS, to_table

if TYPE_CHECKING:
    from finpulse.data.etl import EtlConfig

DATASETS = ("prices", "scored_posts", "daily_features", "quarantine")


@dataclass
class Counts:
    """Rows in = rows out + deduped + quarantined, per dataset."""

    rows_in: int = 0
    rows_out: int = 0
    deduped: int = 0
    quarantined: int = 0

    def check(self, name: str) -> None:
        if self.rows_in != self.rows_out + self.deduped + self.quarantined:
            raise RuntimeError(f"{name} counts do not reconcile: {self}")


def write_by_ticker(df: pd.DataFrame, schema: pa.Schema, out_dir: str, name: str) -> list[str]:
    """One Parquet file per ticker under ``<out_dir>/<name>/ticker=<t>/``; returns their URIs."""
    written = []
    for ticker, g in df.groupby("ticker", sort=True):
        uri = storage.join(out_dir, name, f"ticker={ticker}", "part-0.parquet")
        storage.write_table(uri, to_table(g, schema))
        written.append(uri)
    return written


def publish(out_uri: str, out_dir: str, version_id: str, manifest: dict[str, Any]) -> None:
    """Write the manifest (the version's last file), then point ``LATEST`` at the version."""
    storage.write_json(storage.join(out_dir, "manifest.json"), manifest)  # last file of the version
    storage.write_bytes(storage.join(out_uri, "LATEST"), version_id.encode())


def latest_version(out_uri: str) -> str:
    """The id of the newest complete version under ``out_uri``."""
    pointer = storage.join(out_uri, "LATEST")
    if not storage.exists(pointer):
        raise FileNotFoundError(f"no ETL output under {out_uri} (run `finpulse etl` first)")
    return storage.read_bytes(pointer).decode().strip()


def load_manifest(out_uri: str, version_id: str | None = None) -> dict[str, Any]:
    v = version_id or latest_version(out_uri)
    return storage.read_json(storage.join(out_uri, f"v={v}", "manifest.json"))


DATASET_SCHEMAS = {"prices": PRICES, "scored_posts": SCORED_POSTS, "daily_features": DAILY_FEATURES,
                   "quarantine": QUARANTINE}


def load_dataset(out_uri: str, name: str, *, version_id: str | None = None, tickers: list[str] | None = None,
                 columns: list[str] | None = None, filters: list[tuple[str, str, Any]] | None = None) -> pd.DataFrame:
    """Read one dataset of a complete version (the latest by default), only the files its manifest
    lists, cast to its schema. ``filters``: equality terms pushed down to Parquet (``storage.read_table``)."""
    if name not in DATASET_SCHEMAS:
        raise ValueError(f"unknown dataset {name!r}; one of {sorted(DATASET_SCHEMAS)}")
    manifest = load_manifest(out_uri, version_id)
    base = storage.join(out_uri, f"v={manifest['version']}")
    schema = DATASET_SCHEMAS[name]
    files = manifest["files"].get(name, [])
    if tickers is not None:
        wanted = {f"ticker={t}" for t in tickers}
        files = [f for f in files if f.split("/")[1] in wanted]
    tables = [storage.read_table(storage.join(base, f), columns=columns, filters=filters) for f in files]
    if not tables:
        return (schema.empty_table() if columns is None else
                pa.schema([schema.field(c) for c in columns]).empty_table()).to_pandas()
    target = schema if columns is None else pa.schema([schema.field(c) for c in columns])
    frame = pa.concat_tables([t.cast(target) for t in tables]).to_pandas()
    frame.attrs["synthetic_inputs"] = bool(manifest.get("synthetic_inputs", False))  # read by the leakage alarm
    return frame


@dataclass
class VersionContents:
    """What one ETL run hands over to be published: the curated prices, per-ticker post counts
    (staged aggregates are read from the version folder), quarantined rows and reconciled counts."""

    prices: pd.DataFrame
    ticker_counts: pd.DataFrame
    quarantine: list[pd.DataFrame]
    price_counts: Counts
    post_counts: Counts


def publish_version(out_uri: str, out_dir: str, version_id: str, contents: VersionContents, identity: dict[str, Any],
                    cfg: EtlConfig, t0: float, **extra: Any) -> dict[str, Any]:
    """Finish a version: daily features from prices and the staged aggregates, prices, quarantine, then
    the manifest and ``LATEST`` (last, so readers never see half a version)."""
    agg_files = storage.list_files(storage.join(out_dir, "_aggregates"), ".parquet")
    aggregates = pd.concat([storage.read_frame(f) for f in agg_files], ignore_index=True) if agg_files \
        else pd.DataFrame(columns=AGGREGATE_COLUMNS)
    prices, ticker_counts = contents.prices, contents.ticker_counts
    source = _sentiment_source(ticker_counts)
    features = build_daily_features(prices, aggregates, source)
    files = {"prices": write_by_ticker(prices, PRICES, out_dir, "prices"),
             "daily_features": write_by_ticker(features, DAILY_FEATURES, out_dir, "daily_features")}
    q = pd.concat(contents.quarantine, ignore_index=True).sort_values(["dataset", "source", "raw", "reason"], kind="mergesort")
    qfile = storage.join(out_dir, "quarantine", "part-0.parquet")
    storage.write_table(qfile, to_table(q, QUARANTINE))
    files["quarantine"] = [qfile]
    files["scored_posts"] = storage.list_files(storage.join(out_dir, "scored_posts"), ".parquet")
    storage.delete_dir(storage.join(out_dir, "_aggregates"))
    for name, c in (("prices", contents.price_counts), ("posts", contents.post_counts)):
        c.check(name)
    manifest = {
        "version": version_id,
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "code_version": identity["code"]["package"],
        "config": asdict(cfg),
        "inputs": identity["inputs"],
        "identity": {"made_of": "sha256 of inputs[*].uri+sha256, identity.code, config",
                     **{k: identity[k] for k in ("hash", "code", "seconds", "bytes_hashed")}},
        "counts": {"prices": asdict(contents.price_counts), "posts": asdict(contents.post_counts)},
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


def _sentiment_source(ticker_counts: pd.DataFrame) -> str:
    scorers = sorted({s for s in ticker_counts.get("scorer", pd.Series(dtype=str)) if s and s != "none"})
    return scorers[0] if len(scorers) == 1 else ("+".join(scorers) or "none")


def features_per_ticker(out_uri: str, version: str | None = None) -> pd.DataFrame:
    """Rows per ticker of a version's daily features: price days, posts kept, days with posts, mean sentiment."""
    feats = load_dataset(out_uri, "daily_features", version_id=version)
    return feats.groupby("ticker").agg(days=("date", "size"), first=("date", "min"), last=("date", "max"),
                                       days_with_posts=("has_posts", "sum"), posts=("sent_count", "sum"),
                                       mean_sentiment=("sent_mean", "mean"))
