"""What an evaluation and a promotion leave in MLflow: the names people and the promotion gate read.

In process, no Ray: the model is trained in this process and registered in a private sqlite MLflow,
then evaluated walk-forward, then put through the gate, all through the functions the CLI calls.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from finpulse import tracking
from finpulse.forecast import holdout
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.evaluate import evaluate_model
from finpulse.forecast.inputs import synthetic_features
from finpulse.forecast.promote import promote
from finpulse.forecast.train import TrainOptions, train_forecaster
from finpulse.forecast.walk_forward import WalkForwardConfig

TEST_START = dt.date(2019, 1, 1)
CFG = ForecastConfig(hidden_size=16, lookback=10, batch_size=64, patience=4, max_epochs=10, val_end=TEST_START)
WF = WalkForwardConfig(k=1, test_start=TEST_START, baselines=("persistence",))


def _runs(client: MlflowClient, kind: str) -> list:
    exp = client.get_experiment_by_name(tracking.FORECAST_EXPERIMENT)
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`finpulse.kind` = '{kind}'")


def _artifacts(client: MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, folder)}


def test_evaluation_and_promotion_runs_keep_their_names(finpulse_home: Path, tmp_path: Path) -> None:
    # a strong planted signal on synthetic posts: the saved weights clear persistence (alarm waived)
    df = synthetic_features(["AAPL", "MSFT"], start="2016-01-01", end="2019-07-01", signal_strength=2.0)
    trained = train_forecaster(df, CFG, TrainOptions(use_ray=False))
    assert trained.ref is not None and trained.ref.name == tracking.FORECAST_MODEL

    result = evaluate_model(df, tracking.model_spec(tracking.FORECAST_MODEL, tracking.CHALLENGER), wf=WF,
                            out_dir=tmp_path / "report")
    client = MlflowClient(tracking.configure())
    [run] = _runs(client, "evaluate")
    assert run.info.run_name == f"evaluate-{trained.ref.label}"
    assert {k: run.data.tags[k] for k in ("wf_key", "leakage_alarm", "data_synthetic", "wf_test_start", "model")} == {
        "wf_key": WF.key(), "leakage_alarm": str(result.leakage_alarm).lower(), "data_synthetic": "true",
        "wf_test_start": str(result.folds[0][0]), "model": trained.ref.label}
    assert run.data.metrics["registered.mae"] == pytest.approx(result.metric(holdout.REGISTERED, "mae"))
    assert run.data.metrics["persistence.mae_ratio_vs_persistence"] == 1.0
    assert {"walk_forward_config.json", "metrics_table.csv", "metrics_per_ticker.csv", "report.md",
            "plots"} <= _artifacts(client, run.info.run_id)
    assert _artifacts(client, run.info.run_id, "plots") == {"plots/forecast_vs_actual.png", "plots/backtest.png"}
    local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "logged")))
    assert pd.read_csv(local / "metrics_table.csv", index_col="model").index.tolist() == result.table.index.tolist()
    assert set(pd.read_csv(local / "metrics_per_ticker.csv")["ticker"]) == {"AAPL", "MSFT"}
    assert json.loads((local / "walk_forward_config.json").read_text())["k"] == 1
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"report.md", "metrics_table.csv",
                                                                 "forecast_vs_actual.png", "backtest.png"}

    # the evidence written back onto the training run: what the gate reads
    trained_run = client.get_run(trained.run_id)
    assert trained_run.data.metrics["wf_mae"] == pytest.approx(result.metric(holdout.REGISTERED, "mae"))
    assert trained_run.data.metrics["wf_out_of_sample"] == 1.0 and trained_run.data.metrics["wf_data_synthetic"] == 1.0
    assert trained_run.data.tags["wf_key"] == WF.key()
    assert trained_run.data.metrics["wf_mae"] < trained_run.data.metrics["wf_persistence_mae"]

    decision = promote(tracking.FORECAST_MODEL)
    assert decision.promote, decision.reasons
    assert tracking.get_version(tracking.FORECAST_MODEL, tracking.CHAMPION).version == trained.ref.version
    [gate] = _runs(client, "promotion")
    assert gate.info.run_name == f"promote-{trained.ref.label}"
    assert {k: gate.data.tags[k] for k in ("decision", "challenger", "champion")} == {
        "decision": "promote", "challenger": trained.ref.label, "champion": "none"}
    assert json.loads(gate.data.tags["reasons"]) == decision.reasons
    assert gate.data.params == {"margin": "0.0", "persistence_tolerance": "0.0", "require_same_protocol": "True",
                                "dry_run": "False"}
    assert gate.data.metrics["challenger_wf_mae"] == pytest.approx(trained_run.data.metrics["wf_mae"])
    logged = json.loads(Path(client.download_artifacts(gate.info.run_id, "decision.json", str(tmp_path))).read_text())
    assert logged["promote"] is True and logged["challenger"] == trained.ref.label
    assert client.get_run(trained.run_id).data.tags["promotion_decision"] == "promote"

    again = promote(tracking.FORECAST_MODEL)  # the challenger is the champion now: nothing to do, and it says so
    assert not again.promote and again.reasons == ["the challenger already is the champion"]
    assert client.get_run(trained.run_id).data.tags["promotion_decision"] == "reject"
