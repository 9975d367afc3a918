"""Ray Train (2 workers, one killed mid-training and resumed), the registry, walk-forward evaluation,
the promotion gate, and a tiny Ray Tune search with MLflow child runs."""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from finpulse import storage, tracking
from finpulse.cli import app
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.evaluate import evaluate_model
from finpulse.forecast.holdout import NotOutOfSample
from finpulse.forecast.inputs import synthetic_features
from finpulse.forecast.model import load_forecaster
from finpulse.forecast.promote import PromotionPolicy, promote
from finpulse.forecast.train import TrainOptions, train_forecaster
from finpulse.forecast.walk_forward import WalkForwardConfig
from finpulse.sweeps import run_sweep
from finpulse.sweeps.report import report
from tests.support.faults import KillOnce

pytestmark = pytest.mark.integration

REGISTERED_NAME = tracking.FORECAST_MODEL

SMALL = {"hidden_size": 8, "lookback": 10, "batch_size": 64, "tickers": ["AAPL", "MSFT"]}


@pytest.fixture(scope="module")
def features():
    return synthetic_features(["AAPL", "MSFT"], start="2017-01-01", end="2020-01-01", signal_strength=1.0)


def test_killed_worker_resumes_then_evaluate_register_promote(ray_head, finpulse_home, features, tmp_path):
    marker, epoch_log = tmp_path / "killed", tmp_path / "epochs"
    # lr 3e-3: two DDP workers take half the optimizer steps per epoch, and the REGISTERED weights
    # (not only refits of their config) must beat persistence out of sample after 5 epochs
    cfg = ForecastConfig(**SMALL, num_workers=2, max_epochs=5, patience=10, lr=3e-3, val_end=dt.date(2019, 7, 1))
    # rank 1 dies once at the end of epoch 1, through the loop's generic epoch callback
    fault = KillOnce(epoch=1, rank=1, marker=str(marker), epoch_log=str(epoch_log))
    res = train_forecaster(features, cfg, TrainOptions(max_failures=2, on_epoch=fault))
    # rank 1 really died, and training resumed from a checkpoint (epoch 1's or 2's), not from epoch 0
    assert marker.exists()
    assert len(res.resume_points) == 1 and 1 <= res.resume_points[0] <= 2
    epochs = [int(x) for x in epoch_log.read_text().split()]
    assert epochs.count(0) == 1 and sorted(set(epochs)) == [0, 1, 2, 3, 4]
    assert epochs[-1] == 4

    assert res.ref is not None and res.ref.name == REGISTERED_NAME
    assert tracking.get_version(REGISTERED_NAME, tracking.CHALLENGER).version == res.ref.version
    run = MlflowClient().get_run(res.run_id)
    assert run.data.params["feature_set"] == "price_sentiment" and run.data.params["trainer"] == "ray_train"
    arts = {a.path for a in MlflowClient().list_artifacts(res.run_id)}
    assert {"feature_list.json", "scaler.json", "plots"} <= arts
    assert json.loads(run.data.tags["resume_points"]) == res.resume_points
    assert len(MlflowClient().get_metric_history(res.run_id, "val_loss")) >= 5  # rank 0 logged every epoch

    loaded = load_forecaster(f"{REGISTERED_NAME}@challenger")
    assert loaded.version == res.ref.label == f"{REGISTERED_NAME}/v{res.ref.version}"  # same label as sentiment
    out = loaded.predict_next(features[features["ticker"] == "AAPL"].tail(15))
    assert out["low"] <= out["high"]

    wf = WalkForwardConfig(k=2, test_start=dt.date(2019, 7, 1), baselines=("persistence", "ridge"))
    result = evaluate_model(features, f"{REGISTERED_NAME}@challenger", wf=wf, out_dir=tmp_path / "report")
    assert (tmp_path / "report" / "report.md").exists() and (tmp_path / "report" / "backtest.png").exists()
    metrics = tracking.run_metrics(res.run_id)
    # wf_mae is the registered weights themselves on days they never saw; the refits are wf_config_mae
    assert metrics["wf_mae"] == pytest.approx(result.metric("registered", "mae"))
    assert metrics["wf_config_mae"] == pytest.approx(result.metric("lstm_price_sentiment", "mae"))
    assert metrics["wf_out_of_sample"] == 1.0 and metrics["wf_data_synthetic"] == 1.0
    assert metrics["wf_mae"] < metrics["wf_persistence_mae"]  # the planted signal is there to find
    with pytest.raises(NotOutOfSample):  # a window the weights trained on is refused, not scored
        evaluate_model(features, f"{REGISTERED_NAME}@challenger", wf=wf.model_copy(update={"test_start": dt.date(2019, 1, 2)}))

    first = promote(REGISTERED_NAME)
    assert first.promote, first.reasons
    assert tracking.get_version(REGISTERED_NAME, tracking.CHAMPION).version == res.ref.version

    # a second challenger that must beat the champion by 50%: rejected, with the reason recorded
    res2 = train_forecaster(features, cfg.model_copy(update={"seed": 7}), TrainOptions(use_ray=False))
    evaluate_model(features, f"{REGISTERED_NAME}@challenger", wf=wf)
    second = promote(REGISTERED_NAME, PromotionPolicy(margin=0.5))
    assert not second.promote and any("margin" in r for r in second.reasons)
    assert tracking.get_version(REGISTERED_NAME, tracking.CHAMPION).version == res.ref.version
    assert MlflowClient().get_run(res2.run_id).data.tags["promotion_decision"] == "reject"


def tiny_sweep(points: list[dict], **over) -> dict:
    """A forecaster sweep file's content: the given points first (so ASHA's cuts are known), then random draws."""
    return {"model": "forecaster", "metric": "val_loss", "mode": "min",
            "params": {"hidden_size": {"choice": [4, 8]}, "lr": {"loguniform": [1e-4, 3e-3]},
                       "feature_set": {"choice": ["price", "price_sentiment"]}},
            "base": {"lookback": 10, "batch_size": 64, "tickers": ["AAPL", "MSFT"], "num_workers": 1,
                     "val_end": "2019-07-01"},
            "budget": {"samples": len(points), "max_concurrent": 1, "cpus_per_trial": 1, "max_epochs": 4},
            "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 2},
            "search": {"kind": "random", "seed": 0, "points": points}, **over}


def test_tune_asha_child_runs_and_best_retrained(ray_head, finpulse_home, features):
    points = [{"hidden_size": 8, "lr": 3e-3, "feature_set": "price_sentiment"},
              {"hidden_size": 8, "lr": 1e-4, "feature_set": "price"},
              {"hidden_size": 4, "lr": 1e-3, "feature_set": "price"}]
    # one trial at a time: with two, which trial ASHA stops depends on which reports first
    result = run_sweep(tiny_sweep(points), name="asha-3", data=features)
    board = result.leaderboard
    assert len(board) == 3 and set(board["status"]) == {"TERMINATED"} and board["rank"].tolist() == [1, 2, 3]
    client = MlflowClient()
    children = client.search_runs(
        [tracking.experiment(tracking.FORECAST_EXPERIMENT)],
        filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}' and tags.`finpulse.kind` = 'tune-trial'")
    assert {c.info.run_id for c in children} == set(board["mlflow_run_id"])
    for child in children:  # params, per-epoch metrics (step = epoch) and the best so far, per trial
        row = board[board["mlflow_run_id"] == child.info.run_id].iloc[0]
        assert child.data.params["lr"] == str(row["lr"]) and child.data.tags["finpulse.trial_id"] == row["trial"]
        steps = client.get_metric_history(child.info.run_id, "val_loss")
        assert sorted(s.step for s in steps) == list(range(row["epochs"]))
        assert child.data.metrics["best_val_loss"] == pytest.approx(row["best_val_loss"])
    assert result.best_params == points[0]  # the only config that can use the signal
    assert result.registered is not None and result.retrain.ref is not None
    challenger = tracking.get_version(REGISTERED_NAME, tracking.CHALLENGER)
    assert challenger.version == result.retrain.ref.version  # challenger only: the gate promotes
    assert tracking.get_version(REGISTERED_NAME, tracking.CHAMPION) is None
    assert load_forecaster(f"{REGISTERED_NAME}@challenger").meta["extra"]["tuned_before"] == "2019-07-01"
    arts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"leaderboard.csv", "parameters.png", "sweep.json", "best_params.json"} <= arts
    assert client.get_run(result.parent_run_id).info.run_name == "asha-3"
    # the leaderboard read back from the storage path, as `finpulse tune-report` prints it
    out = CliRunner().invoke(app, ["tune-report", "asha-3"])
    assert out.exit_code == 0, out.output
    assert "3 of 3 trials" in out.output and board["trial"].iloc[0] in out.output.splitlines()[2]
    again = CliRunner().invoke(app, ["tune", "--space", "forecaster", "--name", "asha-3"])
    assert again.exit_code == 2 and "--resume asha-3" in again.output  # a name is never silently reused


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(ray_head, finpulse_home, s3_server, tmp_path,
                                                                     monkeypatch):
    """`finpulse tune` in its own process with its results on S3 (as on a cluster), Ctrl-C (SIGINT) once a trial
    has ended, then `--resume`."""
    import boto3

    from finpulse.config import get_settings

    boto3.client("s3", endpoint_url=s3_server["endpoint"], aws_access_key_id=s3_server["key"],
                 aws_secret_access_key=s3_server["secret"], region_name="us-east-1").create_bucket(Bucket="sweeps")
    monkeypatch.setenv("FINPULSE_RAY_STORAGE_PATH", "s3://sweeps/ray")
    get_settings.cache_clear()
    spec = tiny_sweep([], budget={"samples": 5, "max_concurrent": 1, "cpus_per_trial": 1, "max_epochs": 3},
                      scheduler="fifo", options={"embedded": True})
    spec["base"] = {**spec["base"], "hidden_size": 4, "lookback": 5}
    spec["params"].pop("hidden_size")
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec))
    env = {**os.environ, "FINPULSE_RAY_ADDRESS": ray_head["address"]}
    cmd = [sys.executable, "-m", "finpulse.cli", "tune", "--no-register"]
    proc = subprocess.Popen([*cmd, "--space", str(tmp_path / "sweep.yaml"), "--name", "stopped"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    experiment = tracking.experiment(tracking.FORECAST_EXPERIMENT)  # configures MLflow: before the client
    client = MlflowClient()
    ended = "tags.`finpulse.kind` = 'tune-trial' and attributes.status = 'FINISHED'"
    deadline = time.monotonic() + 120
    while not client.search_runs([experiment], filter_string=ended):  # a trial has ended: Ctrl-C
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130 and "--resume stopped" in out, out[-3000:]
    _, before = report("stopped")  # Tune's saved state: the trials it counts as ended
    finished = set(before.loc[before["status"] == "TERMINATED", "trial"])
    assert 1 <= len(finished) < 5, before

    resumed = subprocess.run([*cmd, "--resume", "stopped"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    (parent,) = client.search_runs([experiment], filter_string="tags.`finpulse.sweep` = 'stopped'")
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    runs_of = collections.Counter(c.data.tags["finpulse.trial_id"] for c in children)
    assert len(runs_of) == 5  # the budget, not more: the resumed sweep drew only the missing trials
    assert all(runs_of[t] == 1 for t in finished), runs_of  # a trial that had ended was not run again
    _, board = report("stopped")
    assert len(board) == 5 and set(board["status"]) == {"TERMINATED"} and board["epochs"].min() >= 1
    assert storage.exists("s3://sweeps/ray/stopped/sweep.json")  # the sweep lives on S3, not on this disk
    assert not (finpulse_home / "ray_results" / "stopped").exists()
