"""One Arrow schema per dataset. Every reader produces one of these; every writer checks it.

Columns and their meaning:
- prices: one row per (ticker, trading day); ``close`` is split-adjusted as the source gives it,
  ``adj_close`` also adjusts for dividends; ``volume`` is shares.
- posts: one row per (post_id, ticker): a tweet tagged with two tickers is two rows.
  ``source`` names the corpus (``synthetic`` for generated posts, always).
- scored_posts: a curated post plus its trading day (New York close alignment) and sentiment.
- daily_features: one row per (ticker, trading day): technical features, sentiment aggregates and
  the targets; features at day t use nothing after t's close, targets are t+1.
- quarantine: a rejected raw row (as JSON), where it came from and why.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")

PRICES = pa.schema(
    [
        pa.field("ticker", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("adj_close", pa.float64(), nullable=False),
        pa.field("volume", pa.int64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)

POSTS = pa.schema(
    [
        pa.field("post_id", pa.string(), nullable=False),
        pa.field("ticker", pa.string(), nullable=False),
        pa.field("created_at", UTC_TS, nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("author", pa.string(), nullable=False),
        pa.field("likes", pa.int64(), nullable=False),
        pa.field("reposts", pa.int64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)

SENTIMENT_LABELS: tuple[str, str, str] = ("negative", "neutral", "positive")

SCORED_POSTS = pa.schema(
    [
        *POSTS,
        pa.field("trading_day", pa.date32(), nullable=False),
        pa.field("p_negative", pa.float64()),  # null when scored by VADER (no probabilities)
        pa.field("p_neutral", pa.float64()),
        pa.field("p_positive", pa.float64()),
        pa.field("label", pa.string(), nullable=False),  # one of SENTIMENT_LABELS
        pa.field("score", pa.float64(), nullable=False),  # in [-1, 1]: p(pos) - p(neg), or VADER compound
        pa.field("scorer", pa.string(), nullable=False),  # "vader" or the model's name and version
    ]
)

# What a model scorer writes: keyed by (post_id, ticker), joined onto curated posts by the ETL.
POST_SCORES = pa.schema(
    [
        pa.field("post_id", pa.string(), nullable=False),
        pa.field("ticker", pa.string(), nullable=False),
        pa.field("p_negative", pa.float64(), nullable=False),
        pa.field("p_neutral", pa.float64(), nullable=False),
        pa.field("p_positive", pa.float64(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("scorer", pa.string(), nullable=False),
    ]
)

PRICE_FEATURES: tuple[str, ...] = (
    "ret_1d",
    "ret_5d",
    "ret_20d",
    "ma_ratio_5",
    "ma_ratio_20",
    "vol_20",
    "volume_z_20",
    "rsi_14",
)
SENTIMENT_FEATURES: tuple[str, ...] = (
    "sent_mean",
    "sent_count",
    "sent_pos_share",
    "sent_neg_share",
    "sent_weighted",
)
TARGETS: tuple[str, ...] = ("target_ret_1d", "target_close")

DAILY_FEATURES = pa.schema(
    [
        pa.field("ticker", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.int64(), nullable=False),
        *[pa.field(name, pa.float64()) for name in PRICE_FEATURES],
        pa.field("sent_mean", pa.float64()),
        pa.field("sent_count", pa.int64(), nullable=False),
        pa.field("sent_pos_share", pa.float64()),
        pa.field("sent_neg_share", pa.float64()),
        pa.field("sent_weighted", pa.float64()),
        pa.field("has_posts", pa.bool_(), nullable=False),
        pa.field("sentiment_source", pa.string(), nullable=False),  # "vader", a model version, or "none"
        pa.field("target_ret_1d", pa.float64()),  # null on the last day: the future is unknown
        pa.field("target_close", pa.float64()),
    ]
)

QUARANTINE = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),  # "posts" or "prices"
        pa.field("source", pa.string(), nullable=False),  # input file URI
        pa.field("raw", pa.string(), nullable=False),  # the rejected row as JSON
        pa.field("reason", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "prices": PRICES,
    "posts": POSTS,
    "scored_posts": SCORED_POSTS,
    "post_scores": POST_SCORES,
    "daily_features": DAILY_FEATURES,
    "quarantine": QUARANTINE,
}


class SchemaError(ValueError):
    """A frame does not have the columns, types or nullability its dataset requires."""


def to_table(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Convert a frame to an Arrow table of exactly ``schema`` (column order, types, no extra columns).

    Raises :class:`SchemaError` naming the problem when a column is missing, a value cannot be cast,
    or a non-nullable column holds a null. Writers call this, so nothing off-schema reaches storage.
    """
    missing = [n for n in schema.names if n not in df.columns]
    if missing:
        raise SchemaError(f"missing columns {missing}")
    try:
        table = pa.Table.from_pandas(df[schema.names], preserve_index=False).cast(
            pa.schema([pa.field(f.name, f.type) for f in schema])
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise SchemaError(f"cannot cast to schema: {exc}") from exc
    for field in schema:
        if not field.nullable and table.column(field.name).null_count:
            raise SchemaError(f"column {field.name!r} has {table.column(field.name).null_count} nulls")
    return table.cast(schema)


def check_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Validate an Arrow table against ``schema`` (same rules as :func:`to_table`)."""
    return to_table(table.to_pandas(), schema) if not table.schema.equals(schema) else table
