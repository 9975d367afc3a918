"""Page 2, Signal: does a day's sentiment say anything about the next day's return? Scatter with the
OLS line and its confidence band, Pearson r with its p-value, lagged cross-correlation and a rolling
correlation; per ticker and pooled. Reads the ETL's daily features (``sent_mean``, ``target_ret_1d``)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from finpulse.dashboard import filters, loaders, queries
from finpulse.dashboard.common import chart, empty_state, fmt_p, safe

TITLE = "Signal"
POOLED = "pooled (all selected tickers)"


@st.cache_data(show_spinner=False, max_entries=32)
def _selected(uri: str, version: str, tickers: tuple[str, ...], start: object, end: object) -> pd.DataFrame:
    """The chosen tickers' daily features over the chosen dates (every trading day)."""
    return queries.filter_rows(loaders.features(uri, version), tickers=tickers, start=start, end=end)


@safe
def render() -> None:
    st.title(TITLE)
    uri, version = loaders.current()
    m = loaders.manifest(uri, version)
    feats = loaders.features(uri, version)
    f = filters.sidebar(m.get("tickers", []), filters.span(feats))
    only_post_days = st.sidebar.toggle("Only days with posts", value=True, key="sig_post_days")
    selected = _selected(uri, version, tuple(f.tickers), f.start, f.end)
    sig = queries.signal_frame(selected, only_post_days=only_post_days)
    st.caption(f"Daily mean sentiment (`{m.get('sentiment_source', 'none')}`, all post sources) against the next "
               f"trading day's log return · ETL version `{version}`"
               + (" · posts are **synthetic** (generated)" if m.get("synthetic_inputs") else ""))
    if len(sig) < 3:
        empty_state("Too few days with both sentiment and a next-day return for these filters", "make demo")
        return
    table = queries.correlation_table(sig)
    scope = st.radio("Scope", [POOLED, *sorted(sig["ticker"].unique())], horizontal=True, key="sig_scope")
    sel = sig if scope == POOLED else sig[sig["ticker"] == scope]
    feats = selected if scope == POOLED else selected[selected["ticker"] == scope]
    row = table[table["scope"] == ("pooled" if scope == POOLED else scope)].iloc[0]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Pearson r", f"{row['r']:+.3f}")
    c2.metric("p-value", fmt_p(row["p"]))
    c3.metric("Slope (return per unit sentiment)", f"{row['slope']:+.4f}")
    c4.metric("Days", f"{int(row['n']):,}")
    _scatter(sel, scope)
    st.subheader("Per ticker and pooled")
    st.dataframe(table.assign(p=table["p"].map(fmt_p)), hide_index=True, width="stretch")
    left, right = st.columns(2)
    with left:
        _xcorr(feats, scope, only_post_days)
    with right:
        _rolling(sel, scope)


def _scatter(sel: pd.DataFrame, scope: str) -> None:
    st.subheader("Sentiment against next-day return")
    band = queries.fit_line(sel["sent_mean"], sel["target_ret_1d"])
    fig = px.scatter(sel, x="sent_mean", y="target_ret_1d", color="ticker", opacity=0.5,
                     hover_data=["date", "sent_count"], labels={"sent_mean": "daily mean sentiment",
                                                                "target_ret_1d": "next-day log return"})
    if len(band):
        fig.add_trace(go.Scatter(x=band["x"], y=band["hi"], mode="lines", line={"width": 0}, showlegend=False,
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=band["x"], y=band["lo"], mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor="rgba(0,0,0,0.15)", name="95% confidence band"))
        fig.add_trace(go.Scatter(x=band["x"], y=band["fit"], mode="lines", line={"color": "black"}, name="OLS fit"))
    chart(fig, sel[["ticker", "date", "sent_mean", "sent_count", "target_ret_1d"]], f"signal-scatter-{_slug(scope)}")


def _xcorr(feats: pd.DataFrame, scope: str, only_post_days: bool) -> None:
    st.subheader("Lagged cross-correlation")
    xc = queries.lagged_xcorr(feats, only_post_days=only_post_days)
    fig = px.bar(xc, x="lag", y="r", hover_data=["p", "n"],
                 labels={"lag": "lag k (sentiment at t, return at t+k)", "r": "Pearson r"})
    st.caption("k = 1 is the next day's return; k ≤ 0 asks whether posts follow moves already made.")
    chart(fig, xc, f"signal-xcorr-{_slug(scope)}")


def _rolling(sel: pd.DataFrame, scope: str) -> None:
    st.subheader("Rolling correlation")
    window = st.slider("Window (trading days)", 20, 250, 60, step=10, key="sig_window")
    roll = queries.rolling_corr(sel, window=window)
    fig = px.line(roll, x="date", y="r", hover_data=["n"], labels={"r": "Pearson r", "date": ""})
    fig.add_hline(y=0, line_dash="dot")
    chart(fig, roll, f"signal-rolling-{_slug(scope)}")


def _slug(scope: str) -> str:
    return "pooled" if scope == POOLED else scope
