"""Cached reads of the curated datasets, through :mod:`finpulse.data.catalog` only.

Every loader is keyed by the curated URI and the version id, so a new ETL version is read afresh and
an old one never again. Large frames use ``st.cache_resource`` (shared, not copied on each rerun:
callers must not mutate them); small derived tables use ``st.cache_data``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import streamlit as st

from finpulse import storage
from finpulse.dashboard import queries
from finpulse.dashboard.common import Missing, paths
from finpulse.data import catalog

POST_COLUMNS = ["ticker", "trading_day", "source", "label", "score"]  # what filters and the histogram need


def current() -> tuple[str, str]:
    """(curated URI, latest version id), or :class:`Missing` when no ETL has published a version."""
    uri = paths().curated
    try:
        return uri, catalog.latest_version(uri)
    except FileNotFoundError:
        raise Missing(f"No curated data under {uri}") from None


@st.cache_data(show_spinner=False, max_entries=16)
def manifest(uri: str, version: str) -> dict[str, Any]:
    return catalog.load_manifest(uri, version)


@st.cache_resource(show_spinner=False, max_entries=4)
def posts(uri: str, version: str) -> pd.DataFrame:
    """The version's curated posts, only the columns the charts filter and bin (no texts)."""
    df = catalog.load_dataset(uri, "scored_posts", version_id=version, columns=POST_COLUMNS)
    df["date"] = pd.to_datetime(df["trading_day"])
    return df


@st.cache_resource(show_spinner=False, max_entries=4)
def sources(uri: str, version: str) -> list[str]:
    return sorted(posts(uri, version)["source"].unique().tolist())


@st.cache_data(show_spinner=False, max_entries=16)
def daily(uri: str, version: str, chosen: tuple[str, ...] | None) -> pd.DataFrame:
    """Daily sentiment per (ticker, day): the ETL's daily features for every source, else the same
    aggregation over the chosen sources' posts."""
    if chosen is None or set(chosen) == set(sources(uri, version)):
        return queries.daily_from_features(features(uri, version))
    cols = ["ticker", "trading_day", "source", "label", "score", "likes", "reposts"]
    return queries.daily_for_sources(catalog.load_dataset(uri, "scored_posts", version_id=version, columns=cols),
                                     chosen)


@st.cache_data(show_spinner=False, max_entries=64)
def posts_of_day(uri: str, version: str, ticker: str, day: dt.date) -> pd.DataFrame:
    """One ticker's posts of one trading day, texts included."""
    cols = [*POST_COLUMNS, "created_at", "text", "author", "likes", "reposts"]
    return catalog.load_dataset(uri, "scored_posts", version_id=version, tickers=[ticker], columns=cols,
                                filters=[("trading_day", "=", day)])


@st.cache_resource(show_spinner=False, max_entries=4)
def prices(uri: str, version: str) -> pd.DataFrame:
    df = catalog.load_dataset(uri, "prices", version_id=version)
    df["date"] = pd.to_datetime(df["date"])
    return df


@st.cache_resource(show_spinner=False, max_entries=4)
def features(uri: str, version: str) -> pd.DataFrame:
    return catalog.load_dataset(uri, "daily_features", version_id=version)


@st.cache_data(show_spinner=False, ttl=30)
def versions(uri: str) -> list[dict[str, Any]]:
    """Every complete version's manifest under ``uri`` (a folder with a ``manifest.json``), newest first."""
    found = [f for f in storage.list_files(uri, "manifest.json") if "/v=" in f]
    ids = sorted({f.split("/v=", 1)[1].split("/", 1)[0] for f in found})
    ms = [catalog.load_manifest(uri, v) for v in ids]
    return sorted(ms, key=lambda m: m.get("created_at", ""), reverse=True)


@st.cache_data(show_spinner=False, max_entries=16)
def quarantine(uri: str, version: str) -> pd.DataFrame:
    return catalog.load_dataset(uri, "quarantine", version_id=version)
