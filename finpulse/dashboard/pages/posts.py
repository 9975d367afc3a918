"""Page 1, Posts and prices: volume and sentiment of posts per ticker and day, the class mix over time,
a day's most positive and negative posts, and the price with its volume."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from finpulse.dashboard import filters, loaders, queries
from finpulse.dashboard.common import chart, empty_state, safe
from finpulse.dashboard.queries import SYNTHETIC

TITLE = "Posts and prices"


@safe
def render() -> None:
    st.title(TITLE)
    uri, version = loaders.current()
    m = loaders.manifest(uri, version)
    feats = loaders.features(uri, version)
    posts = loaders.posts(uri, version)
    sources = loaders.sources(uri, version)
    f = filters.sidebar(m.get("tickers", []), filters.span(feats), sources or None)
    st.caption(f"ETL version `{version}` · sentiment by `{m.get('sentiment_source', 'none')}`")
    if f.sources and SYNTHETIC in f.sources:
        st.warning("Includes **synthetic posts** (generated for the demo, source `synthetic`), not real posts.",
                   icon=":material/science:")
    if posts.empty:
        empty_state("This version has no posts (only prices were curated)", "make demo")
    else:
        _posts_section(uri, version, posts, f)
    _price_section(uri, version, f)


def _posts_section(uri: str, version: str, posts: pd.DataFrame, f: filters.Filters) -> None:
    chosen = None if f.sources is None else tuple(f.sources)
    daily = queries.filter_rows(loaders.daily(uri, version, chosen), tickers=f.tickers, start=f.start, end=f.end)
    selected = queries.filter_rows(posts, tickers=f.tickers, start=f.start, end=f.end, sources=f.sources)
    c1, c2, c3 = st.columns(3)
    c1.metric("Posts", f"{len(selected):,}")
    c2.metric("Days with posts", f"{daily['date'].nunique():,}")
    c3.metric("Mean sentiment", f"{selected['score'].mean():+.3f}" if len(selected) else "n/a")
    if daily.empty:
        empty_state("No posts for these filters", "make demo")
        return
    st.subheader("Posts per ticker and day")
    fig = px.bar(daily, x="date", y="sent_count", color="ticker", labels={"sent_count": "posts", "date": ""})
    fig.update_layout(bargap=0, barmode="stack")
    chart(fig, daily[["ticker", "date", "sent_count", "sent_mean"]], "posts-per-day")
    left, right = st.columns(2)
    with left:
        st.subheader("Sentiment distribution")
        hist = queries.score_histogram(selected)
        fig = px.bar(hist, x="bin_center", y="count", color="label", labels={"bin_center": "score"},
                     color_discrete_map=COLORS)
        fig.update_layout(bargap=0.02, barmode="stack")
        chart(fig, hist, "sentiment-histogram")
    with right:
        st.subheader("Class mix per week")
        mix = queries.class_mix(daily, "W")
        fig = px.area(mix, x="period", y="share", color="label", color_discrete_map=COLORS, labels={"period": ""})
        chart(fig, mix, "class-mix")
    _top_posts(uri, version, daily, f)


COLORS = {"negative": "#d62728", "neutral": "#9e9e9e", "positive": "#2ca02c"}


def _top_posts(uri: str, version: str, daily: pd.DataFrame, f: filters.Filters) -> None:
    st.subheader("Top posts of a day")
    days = sorted(daily["date"].dt.date.unique())
    c1, c2 = st.columns(2)
    ticker = c1.selectbox("Ticker", sorted(daily["ticker"].unique()), key="top_ticker")
    day = c2.selectbox("Trading day", days[::-1], key="top_day")
    day_posts = loaders.posts_of_day(uri, version, ticker, day)
    if f.sources is not None:
        day_posts = day_posts[day_posts["source"].isin(f.sources)]
    if day_posts.empty:
        empty_state(f"No {ticker} posts on {day}", "make demo")
        return
    top = queries.top_posts(day_posts, n=5)
    for side, col in zip(("positive", "negative"), st.columns(2), strict=True):
        with col:
            st.markdown(f"**Most {side}** ({ticker}, {day})")
            table = top[side].assign(source=top[side]["source"].map(queries.source_label))
            st.dataframe(table[["score", "text", "author", "source"]], hide_index=True, width="stretch")


def _price_section(uri: str, version: str, f: filters.Filters) -> None:
    st.subheader("Price and volume")
    ticker = st.selectbox("Price of", f.tickers, key="price_ticker")
    px_ = queries.filter_rows(loaders.prices(uri, version), tickers=[ticker], start=f.start, end=f.end)
    if px_.empty:
        empty_state(f"No {ticker} prices in this range", "make demo")
        return
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.03)
    fig.add_trace(go.Scatter(x=px_["date"], y=px_["close"], name="close", mode="lines"), row=1, col=1)
    fig.add_trace(go.Bar(x=px_["date"], y=px_["volume"], name="volume", marker_color="#7f7f7f"), row=2, col=1)
    fig.update_layout(height=480, showlegend=False, hovermode="x unified")
    chart(fig, px_[["ticker", "date", "open", "high", "low", "close", "adj_close", "volume"]], f"price-{ticker}")
