"""Page 4, Live and health: the live path, freshness, drift, canary, the retraining loop, traffic.

Each section reads where its producer leaves things (:mod:`finpulse.dashboard.live_queries`) and says
what is not running, and what starts it, when there is nothing to read. Live data changes by the
second, so caches last a few seconds only.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import plotly.express as px
import requests
import streamlit as st

from finpulse.dashboard import common
from finpulse.dashboard import live_queries as lq

TTL_S = 5


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _posts(root: str, n: int) -> pd.DataFrame:
    return lq.latest_posts(common.paths(), n=n)


@common.safe
def posts_section() -> None:
    st.subheader("Live path: latest ingested posts")
    paths = common.paths()
    lag = lq.ingestion_lag(paths, _now())
    if lag is None:
        common.empty_state("The live path is not running: no live batch is stored",
                           "finpulse broker, finpulse stream and finpulse replay (or make demo)")
        return
    a, b, c = st.columns(3)
    a.metric("live batches", lag["batches"])
    b.metric("since last batch", _duration(lag["batch_lag_s"]))
    c.metric("newest post behind now", _duration(lag["post_lag_s"]))
    st.dataframe(_posts(paths.root, 50), hide_index=True, key="live-posts")


@common.safe
def freshness_section() -> None:
    st.subheader("Feature and model age")
    features = lq.feature_freshness(common.paths(), _now())
    if features.empty:
        common.empty_state("No live features yet: the stream processor has not written any", "finpulse stream")
    else:
        st.dataframe(features, hide_index=True, key="live-features")
    models = lq.model_ages(_now(), common.settings().max_model_age_days)
    if models.empty:
        common.empty_state("No model is registered yet", "finpulse train-forecaster")
    else:
        st.dataframe(models, hide_index=True, key="live-model-age")


@common.safe
def drift_section() -> None:
    st.subheader("Drift scores")
    reading, scores = lq.drift_scores(common.paths())
    if reading is None:
        common.empty_state("No drift report yet", "finpulse drift")
        return
    st.caption(f"{reading.created_at}, against {reading.reference_model}: "
               + ("**alarm**" if reading.alarm else "no alarm"))
    fig = px.bar(scores, x="feature", y="score", color="signal", title="latest drift score per feature")
    common.chart(fig, scores, key="live-drift")
    st.dataframe(scores, hide_index=True, key="live-drift-table")
    history = lq.drift_history(common.paths())
    if history["created_at"].nunique() > 1:
        trend = px.line(history, x="created_at", y="score", color="feature", line_dash="signal", markers=True,
                        title="drift score per feature, report by report")
        common.chart(trend, history, key="live-drift-trend")


@common.safe
def canary_section() -> None:
    st.subheader("Canary weights")
    url = lq.serving_url()
    if url is None:
        common.empty_state("The serving app is not running", "finpulse serve serve_configs/local.yaml (or make demo)")
        return
    try:
        weights = lq.canary_weights(url)
    except requests.RequestException as exc:
        status = getattr(exc.response, "status_code", None)
        if status in (401, 403):
            st.warning(f"The serving app at {url} refused this machine's API key ({status}): set FINPULSE_API_KEY "
                       "to a key with the read scope.")
        else:
            st.warning(f"The serving app at {url} did not answer /v1/models ({type(exc).__name__}).")
        return
    st.caption(f"from {url}/v1/models")
    fig = px.bar(weights, x="model", y="weight", color="slot", hover_data=["version", "ready"], barmode="stack")
    common.chart(fig, weights, key="live-canary")


@common.safe
def loop_section() -> None:
    st.subheader("Retraining loop: last decisions")
    home = common.settings().home
    turns = lq.loop_turns(home)
    if turns.empty:
        common.empty_state("The retraining loop has not run", "finpulse pipeline run")
        return
    last = turns.iloc[0]
    st.markdown(f"Last turn `{last['turn_id']}` ({last['trigger']}): **{last['outcome'] or last['status']}**")
    st.dataframe(turns, hide_index=True, key="live-turns")
    st.dataframe(lq.turn_steps(home, last["turn_id"]), hide_index=True, key="live-turn-steps")


@common.safe
def traffic_section() -> None:
    st.subheader("Traffic: requests per second and p99 per route")
    url = common.settings().prometheus_url
    if not url:
        st.info("Prometheus is not configured: set FINPULSE_PROMETHEUS_URL to a Prometheus that scrapes Ray.")
        return
    try:
        traffic = lq.route_traffic(url)
    except (requests.RequestException, RuntimeError) as exc:
        st.warning(f"Prometheus at {url} did not answer ({type(exc).__name__}): check FINPULSE_PROMETHEUS_URL.")
        return
    if traffic.empty:
        st.info(f"Prometheus at {url} has no FinPulse request metrics yet: send traffic to the API.")
        return
    left, right = st.columns(2)
    with left:
        common.chart(px.bar(traffic, x="route", y="rps", title="requests/s (5 min)"), traffic, key="live-rps")
    with right:
        common.chart(px.bar(traffic, x="route", y="p99_ms", title="p99 latency, ms (5 min)"), traffic,
                     key="live-p99")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def render() -> None:
    """The Live and health page."""
    st.title("Live and health")
    posts_section()
    freshness_section()
    drift_section()
    canary_section()
    loop_section()
    traffic_section()
