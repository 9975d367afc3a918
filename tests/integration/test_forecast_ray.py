"""Ray Train (2 workers, one killed mid-training and resumed), the registry, walk-forward evaluation,
the promotion gate, and a tiny Ray Tune search with MLflow child runs."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from mlflow import MlflowClient

from finpulse import tracking
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.evaluate import evaluate_model
from finpulse.forecast.holdout import NotOutOfSample
from finpulse.forecast.inputs import synthetic_features
from finpulse.forecast.model import load_forecaster
from finpulse.forecast.promote import PromotionPolicy, promote
from finpulse.forecast.train import TrainOptions, train_forecaster
from finpulse.forecast.tune import TuneOptions, tune_forecaster
from finpulse.forecast.walk_forward import WalkForwardConfig
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


def test_tune_asha_child_runs_and_best_retrained(ray_head, finpulse_home, features):
    base = ForecastConfig(**SMALL, num_workers=1, max_epochs=4, val_end=dt.date(2019, 7, 1))
    configs = [{"hidden_size": 8, "lr": 3e-3, "feature_set": "price_sentiment"},
               {"hidden_size": 8, "lr": 1e-4, "feature_set": "price"},
               {"hidden_size": 4, "lr": 1e-3, "feature_set": "price"}]
    # one trial at a time: with two, which trial ASHA stops depends on which reports first
    result = tune_forecaster(features, base, TuneOptions(configs=configs, max_concurrent=1, cpus_per_trial=1,
                                                         grace_period=1, reduction_factor=2))
    assert len(result.trials) == 3
    children = MlflowClient().search_runs(
        [tracking.experiment(tracking.FORECAST_EXPERIMENT)],
        filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}' and tags.`finpulse.kind` = 'tune-trial'")
    assert len(children) == 3
    assert result.best_config.feature_set == "price_sentiment"  # the only config that can use the signal
    assert result.train_result is not None
    challenger = tracking.get_version(REGISTERED_NAME, tracking.CHALLENGER)
    assert challenger.version == result.train_result.ref.version
    assert result.tune_end == dt.date(2019, 7, 1)  # the base's val_end: tuning never saw a later day
    assert load_forecaster(f"{REGISTERED_NAME}@challenger").meta["extra"]["tuned_before"] == "2019-07-01"
