"""Page 5, Data quality: per ETL version, rows in = rows out + deduped + quarantined; the quarantine's
reasons with examples; the inputs and code version each version's manifest records."""

from __future__ import annotations

import json

import plotly.express as px
import streamlit as st

from finpulse.dashboard import loaders, queries
from finpulse.dashboard.common import Missing, chart, empty_state, safe

TITLE = "Data quality"


@safe
def render() -> None:
    st.title(TITLE)
    uri, latest = loaders.current()
    manifests = loaders.versions(uri)
    if not manifests:
        raise Missing(f"No complete ETL version under {uri}")
    counts = queries.version_counts(manifests)
    bad = counts[~counts["reconciles"]]
    c1, c2, c3 = st.columns(3)
    c1.metric("ETL versions", len(manifests))
    c2.metric("Latest", latest)
    c3.metric("Counts reconcile", "all" if bad.empty else f"{len(bad)} do not")
    st.subheader("Rows per version: in = out + deduped + quarantined")
    st.dataframe(counts, hide_index=True, width="stretch")
    long = counts.melt(id_vars=["version", "dataset"], value_vars=["rows_out", "deduped", "quarantined"],
                       var_name="fate", value_name="rows")
    fig = px.bar(long, x="version", y="rows", color="fate", facet_col="dataset", barmode="stack")
    fig.update_yaxes(matches=None, showticklabels=True)
    chart(fig, counts, "etl-counts")
    ids = [m["version"] for m in manifests]
    version = st.selectbox("Version", ids, index=ids.index(latest) if latest in ids else 0, key="dq_version",
                           format_func=lambda v: f"{v} (latest)" if v == latest else v)
    m = next(x for x in manifests if x["version"] == version)
    _quarantine(uri, version)
    _provenance(m)


def _quarantine(uri: str, version: str) -> None:
    st.subheader("Quarantine: why rows were rejected")
    q = loaders.quarantine(uri, version)
    if q.empty:
        empty_state(f"Version {version} quarantined nothing (no rejected rows)", "finpulse etl --embedded")
        return
    reasons = q.groupby(["dataset", "reason"]).size().rename("rows").reset_index().sort_values("rows", ascending=False)
    fig = px.bar(reasons, x="rows", y="reason", color="dataset", orientation="h")
    chart(fig, reasons, f"quarantine-reasons-{version}")
    st.markdown("**Examples** (first rows of each reason)")
    examples = queries.quarantine_examples(q, per_reason=3)
    st.dataframe(examples, hide_index=True, width="stretch")
    st.download_button("Download CSV", q.to_csv(index=False).encode(), file_name=f"quarantine-{version}.csv",
                       mime="text/csv", key=f"csv-quarantine-{version}")


def _provenance(m: dict) -> None:
    st.subheader("Inputs and code")
    c1, c2, c3 = st.columns(3)
    c1.metric("Code version", m.get("code_version", "?"))
    c2.metric("Sentiment source", m.get("sentiment_source", "?"))
    c3.metric("Synthetic inputs", "yes (generated posts)" if m.get("synthetic_inputs") else "no")
    st.dataframe(queries.inputs_table(m), hide_index=True, width="stretch")
    with st.expander("Configuration, identity and timings"):
        st.code(json.dumps({k: m.get(k) for k in ("config", "identity", "scores_uri", "date_range", "seconds",
                                                  "stage_seconds", "created_at")}, indent=2, default=str),
                language="json")
