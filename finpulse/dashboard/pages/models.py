"""Page 3, Models: the registry, champion against challenger, forecasts, backtest, sentiment confusion.

Reads MLflow through :mod:`finpulse.dashboard.model_queries` (which goes through ``finpulse.tracking``);
aggregates are cached for a minute per tracking URI, so a page switch does not re-download artifacts.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from finpulse import tracking
from finpulse.dashboard import common
from finpulse.dashboard import model_queries as mq
from finpulse.forecast.holdout import REGISTERED
from finpulse.forecast.report import forecast_vs_actual

TTL_S = 60


def _uri() -> str:
    """The cache key of everything on this page: another MLflow is another set of answers."""
    return common.settings().mlflow_tracking_uri


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _versions(uri: str) -> pd.DataFrame:
    return mq.registry_versions()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _comparison(uri: str) -> pd.DataFrame:
    return mq.champion_vs_challenger()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _promotion(uri: str) -> dict[str, Any] | None:
    return mq.last_promotion()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _evaluation(uri: str) -> tuple[str | None, dict[str, Any] | None]:
    """The evaluation the charts show: the champion's newest, else the challenger's, else the newest one."""
    for alias in mq.ALIASES:
        ref = tracking.get_version(tracking.FORECAST_MODEL, alias)
        run = mq.evaluation_run(ref.label) if ref else None
        if run is not None:
            return f"{alias} {ref.label}", run
    run = mq.latest_evaluation()
    return ("newest evaluation", run) if run else (None, None)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _predictions(uri: str, run_id: str) -> tuple[pd.DataFrame | None, float]:
    return mq.evaluation_predictions(run_id), mq.cost_bps(run_id)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _curves(uri: str, run_id: str) -> pd.DataFrame:
    predictions, cost = _predictions(uri, run_id)
    return mq.backtest_curves(predictions, cost) if predictions is not None else pd.DataFrame()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _confusion(uri: str, alias: str) -> dict[str, Any] | None:
    return mq.sentiment_confusion(alias)


@common.safe
def registry_section() -> None:
    st.subheader("Registry versions")
    versions = _versions(_uri())
    if versions.empty:
        common.empty_state("No model is registered yet", "finpulse train-forecaster")
        return
    st.dataframe(versions, hide_index=True, key="models-versions")


@common.safe
def comparison_section() -> None:
    st.subheader("Champion against challenger (walk-forward)")
    table = _comparison(_uri())
    if table.empty:
        common.empty_state("No forecaster has a champion or challenger alias", "finpulse train-forecaster")
        return
    if table.loc[table["role"] != "baseline", "wf_key"].isna().any():
        common.empty_state("A model has no walk-forward evaluation yet", "finpulse evaluate")
    keys = set(table.loc[table["role"] != "baseline", "wf_key"].dropna())
    if len(keys) > 1:
        st.warning("Champion and challenger were evaluated under different protocols: their MAEs do not compare.")
    st.dataframe(table, hide_index=True, key="models-comparison")
    decision = _promotion(_uri())
    if decision:
        st.caption(f"Last promotion gate ({decision['at']:%Y-%m-%d %H:%M} UTC): **{decision['decision']}** "
                   f"{decision['challenger']} over {decision['champion']}")
        st.markdown("\n".join(f"- {r}" for r in decision["reasons"]))


@common.safe
def forecast_section() -> None:
    st.subheader("Forecast against actual, with the calibrated interval")
    label, run = _evaluation(_uri())
    if run is None:
        common.empty_state("No walk-forward evaluation is logged", "finpulse evaluate")
        return
    predictions, _ = _predictions(_uri(), run["run_id"])
    if predictions is None:
        common.empty_state("This evaluation predates the logged forecasts", "finpulse evaluate")
        return
    models = list(dict.fromkeys(predictions["model"]))
    left, right = st.columns(2)
    model = left.selectbox("Model", models, index=models.index(REGISTERED) if REGISTERED in models else 0,
                           key="models-forecast-model")
    ticker = right.selectbox("Ticker", sorted(predictions["ticker"].unique()), key="models-forecast-ticker")
    frame = forecast_vs_actual(predictions, model, ticker, last_n=None)
    fig = go.Figure()
    if frame["low"].notna().all():
        fig.add_trace(go.Scatter(x=frame["date"], y=frame["high"], line={"width": 0}, showlegend=False,
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=frame["date"], y=frame["low"], fill="tonexty", line={"width": 0},
                                 name="90% interval", fillcolor="rgba(31,119,180,0.2)"))
    fig.add_trace(go.Scatter(x=frame["date"], y=frame["actual"], name="actual close", line={"color": "black"}))
    fig.add_trace(go.Scatter(x=frame["date"], y=frame["forecast"], name=f"{model} forecast"))
    fig.update_layout(title=f"{ticker}: next-day close ({label}, run {run['run_id'][:8]})", hovermode="x unified")
    common.chart(fig, frame, key="models-forecast")


@common.safe
def backtest_section() -> None:
    st.subheader("Backtest after costs against buy-and-hold")
    _, run = _evaluation(_uri())
    if run is None:
        common.empty_state("No walk-forward evaluation is logged", "finpulse evaluate")
        return
    curves = _curves(_uri(), run["run_id"])
    if curves.empty:
        common.empty_state("This evaluation predates the logged forecasts", "finpulse evaluate")
        return
    _, cost = _predictions(_uri(), run["run_id"])
    fig = px.line(curves, x="date", y="value", color="series", labels={"value": "growth of 1"},
                  title=f"Daily long/short, equal-weighted over tickers, {cost:g} bps per unit turnover")
    common.chart(fig, curves, key="models-backtest")


@common.safe
def sentiment_section() -> None:
    st.subheader("Sentiment model: confusion matrices")
    found = None
    for alias in mq.ALIASES:
        found = _confusion(_uri(), alias)
        if found:
            break
    if not found:
        common.empty_state("No sentiment model is registered yet", "finpulse train-sentiment")
        return
    st.caption(f"{found['model']} ({alias}); rows: true class, columns: predicted")
    left, right = st.columns(2)
    with left:
        cm = found["test"]
        if cm is None:
            common.empty_state("Its training run has no test metrics", "finpulse train-sentiment")
        else:
            fig = px.imshow(cm, text_auto=True, color_continuous_scale="Blues", title="test set")
            common.chart(fig, cm.reset_index(), key="models-confusion-test")
            metrics = found["metrics"]
            if metrics:
                st.caption(", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k != "n"))
    with right:
        if found["validation_png"] is not None:
            st.image(str(found["validation_png"]), caption="validation set (best epoch)")


def render() -> None:
    """The Models page."""
    st.title("Models")
    registry_section()
    comparison_section()
    forecast_section()
    backtest_section()
    sentiment_section()
