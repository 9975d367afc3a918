"""The Models and Live pages' data functions: each reads what its producer writes, with that producer's
own writers (stream store, loop records, drift latest.json, MLflow through tracking), and reshapes it
without computing anything a second way."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from finpulse import storage, tracking
from finpulse.dashboard import live_queries as lq
from finpulse.dashboard import model_queries as mq
from finpulse.data.schemas import POST_SCORES, SENTIMENT_LABELS
from finpulse.forecast.report import forecast_plot, forecast_vs_actual
from finpulse.forecast.walk_forward import PERSISTENCE, summarize
from finpulse.ingest import store
from finpulse.loop import records
from finpulse.paths import DataPaths

NOW = dt.datetime(2026, 3, 4, 22, 0, tzinfo=dt.UTC)  # a Wednesday, after the New York close


def _predictions(days: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2024-01-02", periods=days).date
    rows = []
    for ticker in ("AAPL", "MSFT"):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, days)))
        ret = rng.normal(0, 0.01, days)
        for model, pred in (("lstm", ret + rng.normal(0, 0.005, days)), (PERSISTENCE, np.zeros(days))):
            rows.append(pd.DataFrame({"ticker": ticker, "date": dates, "close": close, "target_ret": ret,
                                      "target_close": close * np.exp(ret), "fold": 0, "model": model, "pred": pred,
                                      "low": pred - 0.02 if model == "lstm" else np.nan,
                                      "high": pred + 0.02 if model == "lstm" else np.nan}))
    return pd.concat(rows, ignore_index=True)


def test_backtest_curves_are_the_walk_forwards_own() -> None:
    predictions = _predictions()
    table, _, _ = summarize(predictions, 5.0)
    curves = mq.backtest_curves(predictions, 5.0)
    assert set(curves["series"]) == {"lstm long/short", mq.BUY_HOLD}  # persistence never trades
    last = curves.groupby("series")["value"].last()
    assert last["lstm long/short"] == pytest.approx(1 + table.loc["lstm", "strategy_return"])
    assert last[mq.BUY_HOLD] == pytest.approx(1 + table.loc["lstm", "buy_hold_return"])
    dearer = mq.backtest_curves(predictions, 50.0).groupby("series")["value"].last()
    assert dearer["lstm long/short"] < last["lstm long/short"] and dearer[mq.BUY_HOLD] == last[mq.BUY_HOLD]


def test_forecast_vs_actual_is_in_prices_on_the_day_forecast() -> None:
    predictions = _predictions()
    frame = forecast_vs_actual(predictions, "lstm", "MSFT", last_n=None)
    g = predictions[(predictions["model"] == "lstm") & (predictions["ticker"] == "MSFT")]
    assert len(frame) == len(g) and set(frame["ticker"]) == {"MSFT"}
    np.testing.assert_allclose(frame["forecast"], g["close"] * np.exp(g["pred"]))
    np.testing.assert_allclose(frame["low"], g["close"] * np.exp(g["low"]))
    assert frame["date"].iloc[0] == pd.Timestamp(g["date"].iloc[0]) + pd.offsets.BDay(1)
    assert forecast_vs_actual(predictions, PERSISTENCE, "MSFT")["low"].isna().all()  # no interval: no band
    assert len(forecast_vs_actual(predictions, "lstm", "MSFT", last_n=10)) == 10
    import matplotlib.pyplot as plt

    fig = forecast_plot(predictions, "lstm")  # the report's plot draws the same frame
    assert len(fig.axes[0].lines) == 2
    plt.close(fig)


def test_confusion_frame_is_labelled_true_by_predicted() -> None:
    cm = mq.confusion_frame([[3, 1, 0], [0, 5, 1], [1, 0, 4]])
    assert list(cm.index) == list(SENTIMENT_LABELS) == list(cm.columns)
    assert cm.index.name == "true" and cm.columns.name == "predicted" and cm.loc["neutral", "positive"] == 1
    assert mq.confusion_frame(None) is None


def test_registry_versions_and_runs_read_back_through_tracking(finpulse_home: Path, tmp_path: Path) -> None:
    assert mq.registry_versions().empty and tracking.find_runs("nope") == []
    folder = tmp_path / "model_dir"
    folder.mkdir()
    (folder / "weights.txt").write_text("w")
    for i in range(2):
        with tracking.start_run(tracking.FORECAST_EXPERIMENT, run_name=f"train-{i}", tags={"finpulse.kind": "train"}):
            tracking.log_model_dir(folder, registered_model_name=tracking.FORECAST_MODEL)
    tracking.set_alias(tracking.FORECAST_MODEL, tracking.CHAMPION, "1")
    versions = mq.registry_versions()
    assert versions[["model", "version", "aliases"]].values.tolist() == [
        [tracking.FORECAST_MODEL, "2", "challenger"], [tracking.FORECAST_MODEL, "1", "champion"]]
    assert versions["run_id"].notna().all()
    assert (pd.Timestamp.now(tz="UTC").tz_localize(None) - versions["created_at"]).max() < pd.Timedelta("5min")
    runs = tracking.find_runs(tracking.FORECAST_EXPERIMENT, "tags.`finpulse.kind` = 'train'")
    assert [r["run_name"] for r in runs] == ["train-1", "train-0"]  # newest first
    assert mq.latest_evaluation() is None and mq.last_promotion() is None
    table = mq.champion_vs_challenger()  # aliases but no evaluation yet: rows that say so
    assert table[["role", "model"]].values.tolist() == [["champion", f"{tracking.FORECAST_MODEL}/v1"],
                                                        ["challenger", f"{tracking.FORECAST_MODEL}/v2"]]
    assert table["wf_key"].isna().all()


def _post_batch(paths: DataPaths, seq: int, created: list[pd.Timestamp], texts: list[str]) -> None:
    ids = [f"{seq}-{i}" for i in range(len(texts))]
    posts = pd.DataFrame({"post_id": ids, "ticker": "AAPL", "created_at": created, "text": texts, "author": "a",
                          "likes": 0, "reposts": 0, "source": "synthetic"})
    scores = pd.DataFrame({"post_id": ids, "ticker": "AAPL", "p_negative": 0.1, "p_neutral": 0.2,
                           "p_positive": 0.7, "label": "positive", "score": 0.6, "scorer": "s/1"})[POST_SCORES.names]
    store.write_posts(paths, store.batch_name(seq), posts, scores)


def test_live_posts_lag_and_feature_age_from_the_stream_store(tmp_path: Path) -> None:
    paths = DataPaths(str(tmp_path / "data"))
    assert lq.latest_posts(paths).empty and lq.ingestion_lag(paths, NOW) is None
    assert lq.feature_freshness(paths, NOW).empty
    t = pd.Timestamp("2026-03-04T21:00:00Z")
    _post_batch(paths, 1, [t, t + pd.Timedelta("1min")], ["first", "second"])
    _post_batch(paths, 2, [t + pd.Timedelta("5min")], ["third"])
    posts = lq.latest_posts(paths, n=2)
    assert posts["text"].tolist() == ["third", "second"] and posts["label"].tolist() == ["positive"] * 2
    assert list(posts.columns) == lq.POST_VIEW
    lag = lq.ingestion_lag(paths, NOW)
    assert lag["batches"] == 2 and lag["post_lag_s"] == pytest.approx(55 * 60)
    assert lag["last_batch_at"] == lq.batch_time(lq.live_batches(paths)[-1]) and lag["batch_lag_s"] is not None
    assert lq.batch_time("raw/posts/live/20260304T210000-000000000001.csv") == pd.Timestamp("2026-03-04T21:00Z")
    assert lq.batch_time("other.csv") is None
    frame = pd.DataFrame({"date": [dt.date(2026, 3, 2)], "provisional": [False]})
    store.write_features(paths, {"AAPL": frame, "MSFT": frame.assign(date=[dt.date(2026, 3, 4)])}, {})
    fresh = lq.feature_freshness(paths, NOW).set_index("ticker")
    assert fresh.loc["AAPL", "trading_days_behind"] == 2 and bool(fresh.loc["AAPL", "stale"])
    assert fresh.loc["MSFT", "trading_days_behind"] == 0 and not fresh.loc["MSFT", "stale"]


def test_drift_scores_from_latest_json(tmp_path: Path) -> None:
    paths = DataPaths(str(tmp_path / "data"))
    assert lq.drift_scores(paths)[0] is None
    storage.write_json(paths.drift_latest, {"created_at": "2026-01-02T03:04:05+00:00", "alarm": True,
                                            "reference_model": "f/v1", "report": None,
                                            "gauges": [{"signal": "features", "feature": "ret_1d", "test": "psi",
                                                        "score": 0.3}]})
    reading, scores = lq.drift_scores(paths)
    assert reading.alarm and reading.reference_model == "f/v1"
    assert scores.values.tolist() == [["features", "ret_1d", 0.3]]


def test_loop_turns_and_steps_from_turn_records(tmp_path: Path) -> None:
    assert lq.loop_turns(tmp_path).empty
    root = records.turns_root(tmp_path)
    for i, outcome in enumerate(["promoted", "rejected"]):
        tid = f"2026030{i + 1}T000000Z-abc{i}"
        records.write_json(root / tid / records.TURN_FILE, {
            "turn_id": tid, "trigger": "schedule", "started_at": 1000.0 + i, "status": "finished",
            "outcome": outcome, "reasons": [f"why {i}"], "attempts": [{}]})
        records.write_json(records.step_path(root / tid, "gate", "k"), {
            "name": "gate", "status": "completed", "started_at": 1.0, "error": None,
            "outputs": {"decision": "reject" if i else "promote", "reasons": ["a", "b"]}})
    turns = lq.loop_turns(tmp_path)
    assert turns["outcome"].tolist() == ["rejected", "promoted"] and turns["reasons"].iloc[0] == "why 1"
    steps = lq.turn_steps(tmp_path, turns["turn_id"].iloc[0])
    assert steps[["step", "decision", "reasons"]].values.tolist() == [["gate", "reject", "a; b"]]


def test_traffic_frame_joins_rps_and_p99_by_route() -> None:
    rps = [{"metric": {"route": "/v1/forecast"}, "value": [0, "12.5"]},
           {"metric": {"route": "/v1/signal"}, "value": [0, "3"]}]
    p99 = [{"metric": {"route": "/v1/forecast"}, "value": [0, "87"]}]
    frame = lq.traffic_frame(rps, p99)
    assert frame["route"].tolist() == ["/v1/forecast", "/v1/signal"]
    assert frame["rps"].tolist() == [12.5, 3.0] and frame["p99_ms"].iloc[0] == 87.0 and pd.isna(frame["p99_ms"].iloc[1])


def _models_doc() -> dict:
    """The shape of the Gateway's /v1/models (``Router.models``)."""
    slot = {"stable": {"version": "f/v1", "ready": True}, "canary": {"version": "f/v2", "ready": True}}
    return {"gateway": {}, "models": {"forecast": {"weights": {"stable": 0.75, "canary": 0.25}, **slot},
                                      "sentiment": {"weights": {"stable": 1.0, "canary": 0.0},
                                                    "stable": {"version": "s/v1", "ready": True},
                                                    "canary": {"ready": False, "error": "no canary"}}}}


def test_canary_weights_read_the_apps_models_endpoint(monkeypatch) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the Gateway's /v1/models: 401 without this machine's API key
            ok = self.path == "/v1/models" and self.headers.get("X-API-Key") == "fp_local"
            body = json.dumps(_models_doc()).encode() if ok else b"{}"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    monkeypatch.setenv("FINPULSE_API_KEY", "fp_local")
    try:
        weights = lq.canary_weights(url).set_index(["model", "slot"])
        with pytest.raises(requests.HTTPError, match="401"):
            lq.canary_weights(url, api_key="fp_other")  # pragma: allowlist secret - wrong on purpose
    finally:
        server.shutdown()
        server.server_close()
    assert weights.loc[("forecast", "canary"), "weight"] == 0.25 and weights.loc[("forecast", "canary"), "version"] == "f/v2"
    assert weights.loc[("sentiment", "canary"), "error"] == "no canary"
    assert len(weights) == 4


def test_drift_history_keeps_each_reports_strongest_test_per_feature(tmp_path: Path) -> None:
    from finpulse.monitoring.drift import DriftEntry, DriftReport
    from finpulse.monitoring.report import to_json

    paths = DataPaths(str(tmp_path / "data"))
    for day, (psi, ks_p) in enumerate([(0.05, 0.5), (0.40, 0.001)]):
        report = DriftReport([DriftEntry("features", "ret_1d", "psi", psi, 0.2),
                              DriftEntry("features", "ret_1d", "ks", 0.3, ks_p),
                              DriftEntry("sentiment", "score", "ks", 0.1 * (day + 1), 0.9)],
                             alarm=bool(day), reasons=[], alpha=0.05, created_at=f"2026-01-0{day + 1}T00:00:00+00:00")
        storage.write_bytes(storage.join(paths.drift_reports, f"2026010{day + 1}T000000Z", "report.json"),
                            to_json(report).encode())
    history = lq.drift_history(paths)
    assert list(history["created_at"].dt.day.unique()) == [1, 2]
    ret = history[history["feature"] == "ret_1d"]
    ret = ret.set_index(ret["created_at"].dt.day)
    assert ret.loc[1, "test"] == "psi" and ret.loc[2, "test"] == "ks"  # the smaller p-value wins, per report
    assert history[history["feature"] == "score"]["score"].tolist() == pytest.approx([0.1, 0.2])
    assert history["alarm"].tolist().count(True) == 2
