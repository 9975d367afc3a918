"""The in-process training path: determinism, save/load without Ray, the predict_next contract,
and the properties the issue asks for (planted signal, no signal, no leakage) on synthetic posts."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from ray import cloudpickle

from finpulse import checkpoints
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.inputs import synthetic_features
from finpulse.forecast.loop import (
    EarlyStopping,
    evaluate_loss,
    fit_in_process,
    make_optimizer,
    prepare_training_data,
    seed_everything,
    train_epoch,
)
from finpulse.forecast.metrics import dm_between
from finpulse.forecast.model import build_model, load_forecaster, predict_arrays
from finpulse.forecast.train import TrainOptions, TrainState, train_forecaster
from finpulse.forecast.walk_forward import WalkForwardConfig, walk_forward
from tests.support.faults import KillOnce

TICKERS = ["AAPL", "MSFT", "AMZN"]
SMALL = {"hidden_size": 16, "lookback": 10, "batch_size": 64, "patience": 4}
EPOCHS = {"max_epochs": 10}
WF = WalkForwardConfig(k=2, test_start=dt.date(2019, 1, 1), baselines=("persistence", "ridge", "lstm_price"))


@pytest.fixture(scope="module")
def signal_features() -> pd.DataFrame:
    return synthetic_features(TICKERS, start="2016-01-01", end="2020-01-01", signal_strength=1.0)


@pytest.fixture(scope="module")
def noise_features() -> pd.DataFrame:
    return synthetic_features(TICKERS, start="2016-01-01", end="2020-01-01", signal_strength=0.0)


def test_same_seed_same_predictions(noise_features):
    cfg = ForecastConfig(**SMALL, max_epochs=3, val_end=dt.date(2019, 1, 1))
    data = prepare_training_data(noise_features, cfg)
    a = predict_arrays(fit_in_process(data, cfg).model, data.val.x, data.val.ticker_idx, 1.0)[0]
    b = predict_arrays(fit_in_process(data, cfg).model, data.val.x, data.val.ticker_idx, 1.0)[0]
    np.testing.assert_array_equal(a, b)


def test_saved_model_loads_without_ray_and_predicts(noise_features, tmp_path):
    cfg = ForecastConfig(**SMALL, max_epochs=2)
    res = train_forecaster(noise_features, cfg, TrainOptions(use_ray=False, log_mlflow=False, out_dir=tmp_path))
    # loading and predicting must not need Ray: run it where `import ray` fails
    hist_file = tmp_path / "hist.parquet"
    noise_features[noise_features["ticker"] == "MSFT"].iloc[-30:].to_parquet(hist_file)
    code = ("import sys; sys.modules['ray'] = None\n"
            "import pandas as pd\nfrom finpulse.forecast.model import load_forecaster\n"
            f"f = load_forecaster({str(res.model_dir)!r})\n"
            f"print(f.predict_next(pd.read_parquet({str(hist_file)!r}))['predicted_close'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    f = load_forecaster(str(res.model_dir))
    assert f.tickers == sorted(TICKERS) and f.lookback == 10 and "sent_mean" in f.feature_columns
    hist = noise_features[noise_features["ticker"] == "MSFT"].iloc[-30:]
    out = f.predict_next(hist)
    assert set(out) == {"ticker", "as_of", "predicted_return", "predicted_close", "low", "high", "level"}
    assert out["ticker"] == "MSFT" and out["as_of"] == hist["date"].iloc[-1] and out["level"] == pytest.approx(0.9)
    assert out["low"] <= out["predicted_close"] * 1.05 and out["low"] <= out["high"]
    batch = f.predict_batch([hist, noise_features[noise_features["ticker"] == "AAPL"].iloc[-30:]])
    assert batch[0] == out and batch[1]["ticker"] == "AAPL"
    assert float(proc.stdout.strip()) == pytest.approx(out["predicted_close"])
    with pytest.raises(ValueError):
        f.predict_next(hist.iloc[-3:])


def test_planted_signal_beats_price_only_and_persistence(signal_features):
    r = walk_forward(signal_features, ForecastConfig(**SMALL, **EPOCHS), WF)
    name = "lstm_price_sentiment"
    assert r.metric(name, "dm_pvalue") < 0.05  # vs persistence
    assert r.metric(name, "mae") < r.metric("lstm_price", "mae")
    _, p_vs_price = dm_between(r.predictions, name, "lstm_price")
    assert p_vs_price < 0.05
    # a leakage alarm would be accuracy near 1; the planted signal is strong but noisy
    assert 0.55 < r.metric(name, "directional_accuracy") < 0.9


def test_no_signal_claims_no_significant_gain(noise_features):
    r = walk_forward(noise_features, ForecastConfig(**SMALL, **EPOCHS), WF)
    name = "lstm_price_sentiment"
    assert r.metric(name, "dm_pvalue") >= 0.05
    _, p_vs_price = dm_between(r.predictions, name, "lstm_price")
    assert p_vs_price >= 0.05


def test_no_leakage_future_rows_cannot_change_past_predictions(signal_features):
    """Scramble every row (features AND targets) from a date on; forecasts made before it must not move."""
    cut = dt.date(2019, 9, 2)
    changed = signal_features.copy()
    after = changed["date"] >= cut
    rng = np.random.default_rng(1)
    for col in ("close", "ret_1d", "ret_5d", "vol_20", "sent_mean", "sent_weighted", "target_ret_1d", "target_close"):
        changed.loc[after, col] = changed.loc[after, col].to_numpy() * rng.uniform(0.5, 1.5, after.sum())
    day_before = changed[changed["date"] < cut]["date"].max()
    # the last day before the cut has a target that depends on the first changed close: change it too
    changed.loc[changed["date"] == day_before, "target_ret_1d"] = 0.05
    wf = WalkForwardConfig(k=3, test_start=dt.date(2019, 1, 1), baselines=("persistence", "ridge"))
    cfg = ForecastConfig(**SMALL, max_epochs=3)
    a = walk_forward(signal_features, cfg, wf).predictions
    b = walk_forward(changed, cfg, wf).predictions
    key = ["model", "ticker", "date"]
    a = a[a["date"] < day_before].set_index(key).sort_index()
    b = b[b["date"] < day_before].set_index(key).sort_index()
    assert len(a) > 100 and a.index.equals(b.index)
    np.testing.assert_allclose(a["pred"].to_numpy(), b["pred"].to_numpy(), rtol=0, atol=0)


def test_early_stopping_goes_through_json_and_state_dicts(noise_features):
    fresh = EarlyStopping(3)
    assert EarlyStopping.restore(json.loads(json.dumps(fresh.meta())), None) == fresh  # inf best loss survives JSON
    cfg = ForecastConfig(**SMALL, max_epochs=1)
    data = prepare_training_data(noise_features, cfg)
    model = build_model(cfg, data.n_features, len(data.tickers))
    stopper = EarlyStopping(2)
    stopper.update(0.5, 0, model)
    stopper.update(0.7, 1, model)
    back = EarlyStopping.restore(json.loads(json.dumps(stopper.meta())), stopper.best_state)
    assert (back.best_loss, back.best_epoch, back.bad_epochs, back.patience) == (0.5, 0, 1, 2)
    assert back.update(0.8, 2, model)  # the restored counter still stops at patience


def test_checkpoint_resume_equals_uninterrupted_training(noise_features, tmp_path):
    """TrainState's checkpoint (state dicts + JSON, loaded weights_only) restores a run exactly."""
    cfg = ForecastConfig(**{**SMALL, "patience": 10}, max_epochs=3, dropout=0.0, val_end=dt.date(2019, 1, 1))
    data = prepare_training_data(noise_features, cfg)

    def run(epochs: range, model, optimizer, state: TrainState) -> None:
        for epoch in epochs:
            train_epoch(model, optimizer, data.train, cfg, epoch)
            state.stopper.update(evaluate_loss(model, data.val, cfg), epoch, model)

    def fresh():
        seed_everything(cfg.seed)
        model = build_model(cfg, data.n_features, len(data.tickers))
        return model, make_optimizer(model, cfg)

    straight, opt = fresh()
    run(range(3), straight, opt, TrainState(EarlyStopping(cfg.patience)))

    model, opt = fresh()
    first = TrainState(EarlyStopping(cfg.patience), epoch_times=[0.1, 0.2])
    run(range(2), model, opt, first)
    first.save(tmp_path, model, opt, epoch=1)
    state, meta = checkpoints.read(tmp_path)  # weights_only: would refuse a pickled object
    assert set(state) == {"model", "optimizer", "best"} and meta["stopper"] == first.stopper.meta()

    resumed, opt2 = fresh()
    torch.manual_seed(123)  # the restore must not depend on the fresh model's own initial weights
    resumed.load_state_dict(build_model(cfg, data.n_features, len(data.tickers)).state_dict())
    back, _ = TrainState.load(tmp_path, resumed, opt2)
    assert back.start_epoch == 2 and back.epoch_times == [0.1, 0.2] and back.stopper.meta() == first.stopper.meta()
    run(range(back.start_epoch, 3), resumed, opt2, back)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_no_pickled_checkpoints_in_forecast_code():
    for path in (Path(__file__).resolve().parents[2] / "finpulse" / "forecast").glob("*.py"):
        assert "weights_only=False" not in path.read_text(), path


def test_on_epoch_callback_sees_every_epoch_in_process(noise_features, tmp_path):
    seen: list[dict] = []
    cfg = ForecastConfig(**{**SMALL, "patience": 10}, max_epochs=3)
    res = train_forecaster(noise_features, cfg, TrainOptions(use_ray=False, log_mlflow=False, out_dir=tmp_path,
                                                             on_epoch=seen.append))
    assert [m["epoch"] for m in seen] == [0, 1, 2] == [h["epoch"] for h in res.history]
    assert all(np.isfinite(m["val_loss"]) for m in seen)


def test_kill_once_kills_its_rank_once_and_logs_rank_zero_epochs(tmp_path):
    marker, log = tmp_path / "killed", tmp_path / "epochs"
    fault = KillOnce(epoch=1, rank=1, marker=str(marker), epoch_log=str(log))
    fault({"epoch": 0, "rank": 1})
    fault({"epoch": 1, "rank": 0})
    assert not marker.exists() and log.read_text().split() == ["1"]
    code = ("import pickle, sys; fault = pickle.loads(sys.stdin.buffer.read()); "
            "fault({'epoch': 1, 'rank': 1}); print('survived')")
    env = {**os.environ, "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0"}
    # by value: a process without tests/ on its path (a Ray worker) can still unpickle it
    payload = cloudpickle.dumps(fault)
    first = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, env=env, timeout=60)
    assert first.returncode == 1 and marker.exists() and b"survived" not in first.stdout, first.stderr[-2000:]
    again = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, env=env, timeout=60)
    assert again.returncode == 0 and b"survived" in again.stdout  # once per marker
