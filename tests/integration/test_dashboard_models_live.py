"""Pages 3 (Models) and 4 (Live and health) in Streamlit's headless AppTest, on an empty home and on one
filled by the project's own functions.

No Ray: the forecaster trains in process (``use_ray=False``) and is evaluated and promoted through the
functions the CLI calls, into the home's sqlite MLflow; the sentiment run is logged by the trainer's own
driver-side logging on a tiny random BERT; the loop turn, the live batch, the live features and the drift
report are written by the loop's, the stream store's and the drift job's own writers.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from finpulse import storage, tracking
from finpulse.config import get_settings
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.evaluate import evaluate_model
from finpulse.forecast.inputs import synthetic_features
from finpulse.forecast.promote import promote
from finpulse.forecast.train import TrainOptions, train_forecaster
from finpulse.forecast.walk_forward import WalkForwardConfig
from finpulse.paths import data_paths

pytestmark = pytest.mark.integration

TEST_START = dt.date(2019, 1, 1)
CFG = ForecastConfig(hidden_size=8, lookback=10, batch_size=128, patience=1, max_epochs=2, val_end=TEST_START)
WF = WalkForwardConfig(k=1, test_start=TEST_START, baselines=("persistence",))
TIMEOUT_S = 60


def models_page() -> None:
    from finpulse.dashboard.pages import models

    models.render()


def live_page() -> None:
    from finpulse.dashboard.pages import live

    live.render()


def _run(page) -> AppTest:
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_function(page, default_timeout=TIMEOUT_S).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_empty_home_shows_empty_states(finpulse_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FINPULSE_PROMETHEUS_URL", raising=False)
    models = _run(models_page)
    info = _texts(models.info)
    assert "No model is registered yet" in info and "finpulse train-forecaster" in info
    assert "No walk-forward evaluation is logged" in info and "finpulse evaluate" in info
    assert "No sentiment model is registered yet" in info
    assert not models.warning and not models.dataframe

    live = _run(live_page)
    info = _texts(live.info)
    for says in ("The live path is not running", "No live features yet", "No drift report yet",
                 "The serving app is not running", "The retraining loop has not run", "Prometheus is not configured"):
        assert says in info, says
    assert not live.warning


def _forecasters() -> tuple[str, str]:
    """v1 trained, evaluated and put through the gate (its decision recorded), then made champion whatever
    the gate said (the tiny model need not beat persistence); v2 trained and evaluated (challenger)."""
    df = synthetic_features(["AAPL", "MSFT"], start="2018-01-01", end="2019-03-01", signal_strength=2.0)
    first = train_forecaster(df, CFG, TrainOptions(use_ray=False))
    evaluate_model(df, tracking.model_spec(tracking.FORECAST_MODEL, tracking.CHALLENGER), wf=WF)
    promote(tracking.FORECAST_MODEL, dry_run=True)
    tracking.set_alias(tracking.FORECAST_MODEL, tracking.CHAMPION, first.ref.version)
    second = train_forecaster(df, CFG.model_copy(update={"seed": 1}), TrainOptions(use_ray=False))
    evaluate_model(df, tracking.model_spec(tracking.FORECAST_MODEL, tracking.CHALLENGER), wf=WF)
    return first.ref.label, second.ref.label


def _sentiment(tmp: Path) -> str:
    """A tiny classifier logged as the trainer's driver logs a run, registered as champion."""
    from finpulse.sentiment.evaluate import classification_metrics
    from finpulse.sentiment.train import _log_results
    from tests.support.tiny_models import build_tiny_model

    folder = build_tiny_model(tmp / "model_dir")
    truth = ["negative", "neutral", "positive", "positive", "neutral", "negative"]
    pred = ["negative", "neutral", "neutral", "positive", "neutral", "positive"]
    test = classification_metrics(truth, pred)
    summary = {"best_epoch": 1, "train_seconds": 1.0, "val_macro_f1": 0.5, "val_accuracy": 0.5, "test": test,
               "history": [{"epoch": 1}]}
    with tracking.start_run(tracking.SENTIMENT_EXPERIMENT, run_name="tiny") as run:
        _log_results(run, summary, {"val_confusion_matrix": [[1, 0, 0], [0, 2, 0], [1, 0, 1]]})
        ref = tracking.log_model_dir(folder, registered_model_name=tracking.SENTIMENT_MODEL, alias=tracking.CHAMPION)
    return ref.label


def _loop_turn() -> str:
    from finpulse.loop.records import turns_root
    from finpulse.loop.steps import Turn

    turn = Turn.start(turns_root(get_settings().home), "schedule", reason="new live data")
    turn.step("gate", {"challenger": "v2"}, lambda: {"decision": "reject", "reasons": ["does not beat the champion"]})
    turn.finish("rejected", reasons=["does not beat the champion"])
    return turn.turn_id


def _live_batch_and_features() -> None:
    from finpulse.data.schemas import POST_SCORES
    from finpulse.ingest import store

    paths = data_paths()
    now = pd.Timestamp.now(tz="UTC").floor("s")
    posts = pd.DataFrame({"post_id": ["1", "2"], "ticker": ["AAPL", "MSFT"], "created_at": [now - pd.Timedelta("2min"),
                          now - pd.Timedelta("1min")], "text": ["AAPL beats", "MSFT misses"], "author": ["a", "b"],
                          "likes": [1, 2], "reposts": [0, 1], "source": ["synthetic", "synthetic"]})
    scores = pd.DataFrame({"post_id": ["1", "2"], "ticker": ["AAPL", "MSFT"], "p_negative": [0.1, 0.8],
                           "p_neutral": [0.1, 0.1], "p_positive": [0.8, 0.1], "label": ["positive", "negative"],
                           "score": [0.7, -0.7], "scorer": ["finpulse-sentiment/v1"] * 2})[POST_SCORES.names]
    store.write_posts(paths, store.batch_name(1), posts, scores)
    day = dt.date.today()
    store.write_features(paths, {"AAPL": pd.DataFrame({"date": [day], "close": [1.0], "provisional": [True]})}, {})


def _drift_report() -> list[str]:
    from finpulse.monitoring import report
    from finpulse.monitoring.drift import detect
    from finpulse.monitoring.reference import build_snapshot

    rng = np.random.default_rng(0)
    columns = ["ret_1d", "sent_mean"]
    ref = build_snapshot(pd.DataFrame(rng.normal(0, 1, (300, 2)), columns=columns), columns, None, None, None)
    cur = build_snapshot(pd.DataFrame(rng.normal(1, 1, (300, 2)), columns=columns), columns, None, None, None)
    storage.write_json(data_paths().drift_latest, report.latest(detect(ref, cur), "finpulse-forecaster/v1"))
    return columns


def test_filled_home_shows_models_and_health(finpulse_home: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    champion, challenger = _forecasters()
    sentiment = _sentiment(tmp_path)
    turn_id = _loop_turn()
    _live_batch_and_features()
    features = _drift_report()
    monkeypatch.setenv("FINPULSE_PROMETHEUS_URL", "http://127.0.0.1:9")  # nothing listens: a message, no trace
    get_settings.cache_clear()

    models = _run(models_page)
    assert not models.warning, _texts(models.warning)
    versions = models.dataframe[0].value
    rows = {(r.model, r.version): r.aliases for r in versions.itertuples()}
    assert rows[(tracking.FORECAST_MODEL, champion.split("/v")[1])] == "champion"
    assert rows[(tracking.FORECAST_MODEL, challenger.split("/v")[1])] == "challenger"
    assert rows[(tracking.SENTIMENT_MODEL, sentiment.split("/v")[1])] == "champion"
    table = models.dataframe[1].value
    assert list(table["role"]) == ["champion", "challenger", "refit", "baseline"]
    assert list(table["model"]) == [champion, challenger, f"lstm_{CFG.feature_set}", "persistence"]
    assert table["mae"].notna().all() and table["wf_key"].nunique() == 1
    assert "Last promotion gate" in _texts(models.caption)
    charts = models.get("plotly_chart")
    assert len(charts) == 3  # forecast vs actual, backtest, confusion matrix
    assert len(models.get("download_button")) == 3
    assert len(models.get("image")) == 1  # the validation confusion matrix logged as an image

    live = _run(live_page)
    assert "could not" not in _texts(live.info)
    tables = [d.value for d in live.dataframe]
    posts = tables[0]
    assert list(posts["text"]) == ["MSFT misses", "AAPL beats"] and set(posts["source"]) == {"synthetic"}
    assert list(posts["label"]) == ["negative", "positive"]
    assert tables[1]["ticker"].tolist() == ["AAPL"] and tables[1]["provisional"].tolist() == [True]
    assert set(tables[2]["version"]) == {champion, challenger, sentiment}
    assert set(tables[3]["feature"]) == set(features)
    turns = tables[4]
    assert turns["turn_id"].iloc[0] == turn_id and turns["outcome"].iloc[0] == "rejected"
    assert "**rejected**" in _texts(live.markdown)
    assert tables[5]["step"].tolist() == ["gate"] and tables[5]["decision"].tolist() == ["reject"]
    assert "The serving app is not running" in _texts(live.info)
    assert _texts(live.warning) == "Prometheus at http://127.0.0.1:9 did not answer (ConnectionError): check " \
                                   "FINPULSE_PROMETHEUS_URL."  # unreachable: one line, no stack trace


class _Gateway:
    """Serves the Gateway's request metrics in Prometheus text, counters growing with every scrape:
    what Ray's metrics port exports for the Gateway (no Serve needed to query them)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        scrapes = [0]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                scrapes[0] += 1
                n = scrapes[0]
                lines = ["# TYPE ray_finpulse_requests_total counter",
                         f'ray_finpulse_requests_total{{route="/v1/forecast",status="200",slot="stable"}} {100 * n}',
                         f'ray_finpulse_requests_total{{route="/v1/signal",status="200",slot="stable"}} {10 * n}',
                         "# TYPE ray_finpulse_request_latency_ms histogram"]
                for route, fast in (("/v1/forecast", 1.0), ("/v1/signal", 0.5)):
                    for le, share in (("50.0", fast), ("200.0", 1.0), ("+Inf", 1.0)):
                        lines.append(f'ray_finpulse_request_latency_ms_bucket{{route="{route}",slot="stable",'
                                     f'le="{le}"}} {share * 100 * n}')
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_traffic_per_route_from_a_real_prometheus(finpulse_home: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import subprocess

    from finpulse.dashboard import live_queries
    from tests.conftest import free_port, prometheus_query, wait_http

    binary = shutil.which("prometheus")
    if binary is None:  # reported by the skip policy (a failure under FINPULSE_STRICT_SKIPS, as in .ci/run)
        pytest.skip("prometheus not on PATH (Debian package `prometheus`; .ci/run installs it)")
    gateway = _Gateway()
    (tmp_path / "p.yml").write_text("global: {scrape_interval: 500ms}\nscrape_configs:\n"
                                    f"  - job_name: ray\n    static_configs: [{{targets: ['{gateway.target}']}}]\n")
    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'p.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address={url.removeprefix('http://')}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_http(f"{url}/-/ready", timeout=30)
        prometheus_query(url, "rate(ray_finpulse_requests_total[10s]) > 0", timeout=30)  # two scrapes in
        traffic = live_queries.route_traffic(url, window="10s").set_index("route")
        monkeypatch.setenv("FINPULSE_PROMETHEUS_URL", url)
        get_settings.cache_clear()
        live = _run(live_page)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        gateway.close()
    assert list(traffic.index) == ["/v1/forecast", "/v1/signal"]
    assert traffic.loc["/v1/forecast", "rps"] > traffic.loc["/v1/signal", "rps"] > 0
    assert traffic.loc["/v1/forecast", "p99_ms"] == pytest.approx(49.5)  # 99% of a bucket [0, 50]
    assert traffic.loc["/v1/signal", "p99_ms"] == pytest.approx(50 + 150 * 0.49 / 0.5)  # half below 50, all below 200
    assert not live.warning and len(live.get("plotly_chart")) == 2  # requests/s and p99 charts
