"""Training the registered forecaster with Ray Train (TorchTrainer over N CPU workers).

The worker loop is thin: it calls the shared steps in :mod:`finpulse.forecast.loop`, shards each
epoch's batches by rank (DDP averages the gradients), stops early on validation loss, and reports a
checkpoint every epoch. With ``FailureConfig(max_failures=...)`` a killed worker makes Ray Train
restart the worker group, and the loop resumes from ``ray.train.get_checkpoint()``: the epoch after
the last checkpoint, the optimizer state and the early-stopping state included.

Rank 0 logs the per-epoch metrics to the MLflow run the driver opened; the driver then saves the
best weights as a model folder (loads without Ray), logs params, feature list, scaler and plots, and
registers ``finpulse-forecaster`` with the alias ``challenger``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from finpulse import tracking
from finpulse.config import get_settings
from finpulse.forecast.calibration import IntervalCalibration
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.holdout import seen_before
from finpulse.forecast.loop import (
    EarlyStopping,
    FitResult,
    TrainingData,
    calibrate_intervals,
    evaluate_loss,
    fit_in_process,
    make_optimizer,
    prepare_training_data,
    seed_everything,
    train_epoch,
)
from finpulse.forecast.model import build_model, forecast_loss, predict_arrays, save_forecaster
from finpulse.forecast.windows import Windows, window_vol
from finpulse.progress import epoch_bar
from finpulse.runtime import sigint_restored

REGISTERED_NAME = "finpulse-forecaster"
EXPERIMENT = "finpulse-forecast"
CKPT_FILE = "train_state.pt"


@dataclass
class TrainResult:
    model_dir: Path
    run_id: str | None
    ref: tracking.ModelRef | None
    metrics: dict[str, float]
    history: list[dict] = field(default_factory=list)
    resume_points: list[int] = field(default_factory=list)


def _pack(w: Windows) -> dict[str, np.ndarray]:
    return {"x": w.x, "y": w.y, "ticker_idx": w.ticker_idx}


def _unpack(d: dict[str, np.ndarray]) -> Windows:
    n = len(d["y"])
    empty = np.zeros(n)
    return Windows(d["x"], d["y"], d["ticker_idx"], empty.astype(object), empty.astype(object), empty, empty, empty)


def _maybe_fail(loop_cfg: dict, rank: int, epoch: int) -> None:
    """Test hook: kill this worker process once (the marker file makes it once per training run)."""
    fail_epoch, marker = loop_cfg.get("fail_at_epoch"), loop_cfg.get("fail_marker")
    if fail_epoch is None or not marker or epoch != fail_epoch:
        return
    if rank == loop_cfg.get("fail_rank", 1) and not os.path.exists(marker):
        Path(marker).write_text(f"killed rank {rank} at epoch {epoch}\n")
        # Ray Train's controller collects reported checkpoints when it polls the workers (every
        # RAY_TRAIN_HEALTH_CHECK_INTERVAL_S). Epochs here take milliseconds, so dying at once could
        # beat the first poll and leave no checkpoint to resume from: wait two polls first.
        time.sleep(2 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2.0")) + 0.5)
        os._exit(1)


def train_loop_per_worker(loop_cfg: dict) -> None:
    """The Ray Train worker function (one per worker process)."""
    import ray.train
    import ray.train.torch
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    torch.set_num_threads(int(loop_cfg.get("threads_per_worker", 1)))
    config = ForecastConfig(**loop_cfg["config"])
    train, val = _unpack(loop_cfg["train"]), _unpack(loop_cfg["val"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()

    seed_everything(config.seed)
    model = build_model(config, loop_cfg["n_features"], loop_cfg["n_tickers"])
    model = ray.train.torch.prepare_model(model)
    optimizer = make_optimizer(model, config)
    stopper = EarlyStopping(config.patience)
    start_epoch, resume_points, epoch_times = 0, [], []

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / CKPT_FILE, map_location="cpu", weights_only=False)
        getattr(model, "module", model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        stopper = state["stopper"]
        start_epoch = state["epoch"] + 1
        resume_points = [*state["resume_points"], start_epoch]
        epoch_times = state.get("epoch_times", [])

    client = MlflowClient(loop_cfg["tracking_uri"]) if rank == 0 and loop_cfg.get("run_id") else None
    stopped = stopper.bad_epochs >= config.patience
    for epoch in range(start_epoch, config.max_epochs):
        if stopped:
            break
        _maybe_fail(loop_cfg, rank, epoch)
        t0 = time.perf_counter()
        train_loss = train_epoch(model, optimizer, train, config, epoch, rank, world)
        epoch_times.append(time.perf_counter() - t0)
        val_loss = evaluate_loss(model, val, config)
        stopped = stopper.update(val_loss, epoch, model)
        metrics = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                   "best_val_loss": stopper.best_loss, "epoch_time_s": epoch_times[-1]}
        if client is not None:
            ts = int(time.time() * 1000)
            client.log_batch(loop_cfg["run_id"], metrics=[Metric(k, float(v), ts, epoch) for k, v in metrics.items()
                                                          if k != "epoch"])
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                (loop_cfg.get("progress") or (lambda _m: None))(metrics)  # the driver's epoch bar
                torch.save({"model": getattr(model, "module", model).state_dict(), "optimizer": optimizer.state_dict(),
                            "stopper": stopper, "epoch": epoch, "resume_points": resume_points,
                            "epoch_times": epoch_times}, Path(tmp) / CKPT_FILE)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report({**metrics, "resume_points": list(resume_points)}, checkpoint=ckpt)
        if loop_cfg.get("epoch_log") and rank == 0:  # test hook: which epochs ran, across attempts
            with open(loop_cfg["epoch_log"], "a") as f:
                f.write(f"{epoch}\n")


def fit_with_ray(data: TrainingData, config: ForecastConfig, *, run_id: str | None = None,
                 storage_path: str | None = None, max_failures: int = 2, test_hooks: dict | None = None,
                 threads_per_worker: int = 1) -> tuple[FitResult, list[int], list[float]]:
    """Run the TorchTrainer; returns the best-validation model, the resume points and epoch times."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    s = get_settings()
    storage = storage_path or os.path.abspath(os.path.join(s.home, "ray_results"))
    loop_cfg: dict[str, Any] = {
        "config": json.loads(config.model_dump_json()),
        "train": _pack(data.train), "val": _pack(data.val),
        "n_features": data.n_features, "n_tickers": len(data.tickers),
        "tracking_uri": tracking.configure() if run_id else None, "run_id": run_id,
        "threads_per_worker": threads_per_worker,
        **(test_hooks or {}),
    }
    with epoch_bar("forecaster (Ray Train)", config.max_epochs) as sink, sigint_restored():
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={**loop_cfg, "progress": sink},
            scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=False,
                                         resources_per_worker={"CPU": config.cpus_per_worker}),
            run_config=RunConfig(name=f"forecaster-{uuid.uuid4().hex[:8]}", storage_path=storage,
                                 failure_config=FailureConfig(max_failures=max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2)),
        )
        result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training produced no checkpoint: {result.error}")
    with result.checkpoint.as_directory() as d:
        state = torch.load(Path(d) / CKPT_FILE, map_location="cpu", weights_only=False)
    stopper: EarlyStopping = state["stopper"]
    model = build_model(config, data.n_features, len(data.tickers))
    model.load_state_dict(stopper.best_state or state["model"])
    model.eval()
    history = [dict(m) for m in ([] if result.metrics_dataframe is None else
                                 result.metrics_dataframe.to_dict("records"))]
    return FitResult(model, stopper.best_loss, stopper.best_epoch, history), state["resume_points"], state["epoch_times"]


def _curve_figure(history: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if history:
        h = pd.DataFrame(history)
        for col in ("train_loss", "val_loss"):
            if col in h:
                ax.plot(h["epoch"], h[col], label=col)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    return fig


def validation_metrics(model: torch.nn.Module, data: TrainingData, config: ForecastConfig,
                       calibration: IntervalCalibration | None = None) -> dict[str, float]:
    """Metrics on the validation windows; the interval calibrated there (so its coverage is in-sample)."""
    from finpulse.forecast.metrics import forecast_metrics

    v = data.val
    point, quant = predict_arrays(model, v.x, v.ticker_idx, data.scaler.target_scale)
    low, high = (calibration or IntervalCalibration(config.interval_level)).apply(quant[:, 0], quant[:, -1],
                                                                                  window_vol(v.x, data.scaler))
    m = forecast_metrics(point, v.target_ret, v.close, v.target_close, low, high)
    m["val_loss"] = float(forecast_loss(*(torch.from_numpy(a) for a in (point / data.scaler.target_scale,
                                                                          quant / data.scaler.target_scale,
                                                                          v.y)), config))
    return {f"val_{k}" if not k.startswith("val_") else k: v for k, v in m.items()}


def train_forecaster(features: pd.DataFrame, config: ForecastConfig, *, out_dir: str | Path | None = None,
                     use_ray: bool = True, register: bool = True, registered_name: str = REGISTERED_NAME,
                     alias: str | None = tracking.CHALLENGER, experiment: str = EXPERIMENT, max_failures: int = 2,
                     run_name: str | None = None, parent_run_id: str | None = None,
                     tags: dict[str, str] | None = None, test_hooks: dict | None = None,
                     log_mlflow: bool = True, tuned_before: Any = None) -> TrainResult:
    """Train, save the model folder, log it to MLflow and register it (alias ``challenger``).

    ``use_ray=False`` trains in this process with the same steps (tests, quick local runs). The model's
    meta records the first day it never saw (``seen_before``: its ``val_end``, or the day after its
    last validation day) and, for a tuned configuration, ``tuned_before``: evaluation refuses a test
    window that starts earlier.
    """
    data = prepare_training_data(features, config)
    # MLflow keeps the folder's base name under artifacts/, and tracking.download_model reads
    # artifacts/model_dir: so the folder is always called model_dir.
    out = Path(out_dir or tempfile.mkdtemp(prefix="forecaster-")) / tracking.MODEL_DIR
    if not log_mlflow:
        fit, resume_points = _fit(data, config, use_ray, None, max_failures, test_hooks)
        cal = calibrate_intervals(fit.model, data, config)
        save_forecaster(out, fit.model, config, data.scaler, data.tickers,
                        extra=_extra(data, fit, resume_points, tuned_before), calibration=cal)
        return TrainResult(out, None, None, validation_metrics(fit.model, data, config, cal), fit.history,
                           resume_points)

    import mlflow

    with tracking.start_run(experiment, run_name=run_name or f"train-{config.feature_set}",
                            parent_run_id=parent_run_id, tags={"finpulse.kind": "train", **(tags or {})}) as run:
        run_id = run.run_id
        mlflow.log_params({k: (json.dumps(v) if isinstance(v, list | tuple) else v)
                           for k, v in json.loads(config.model_dump_json()).items()})
        mlflow.log_params({"trainer": "ray_train" if use_ray else "in_process",
                           "split_train_end": str(data.train_end), "split_val_end": str(data.val_end),
                           "n_train_windows": len(data.train), "n_val_windows": len(data.val)})
        fit, resume_points = _fit(data, config, use_ray, run_id, max_failures, test_hooks)
        extra = _extra(data, fit, resume_points, tuned_before)
        cal = calibrate_intervals(fit.model, data, config)
        save_forecaster(out, fit.model, config, data.scaler, data.tickers, extra=extra, calibration=cal)
        metrics = {**validation_metrics(fit.model, data, config, cal), "interval_calibration_q": cal.q}
        mlflow.set_tags({"seen_before": extra["seen_before"], "tuned_before": str(extra["tuned_before"])})
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_metric("best_epoch", fit.best_epoch)
        mlflow.log_dict({"feature_columns": data.scaler.columns}, "feature_list.json")
        mlflow.log_dict(data.scaler.to_dict(), "scaler.json")
        mlflow.set_tag("resume_points", json.dumps(resume_points))
        fig = _curve_figure(fit.history)
        tracking.log_figure(fig, "plots/training_curve.png")
        ref = tracking.log_model_dir(out, registered_model_name=registered_name if register else None,
                                     alias=alias if register else None)
        if ref.version:
            mlflow.set_tag("registered_version", ref.version)
    return TrainResult(out, run_id, ref, metrics, fit.history, resume_points)


def _fit(data: TrainingData, config: ForecastConfig, use_ray: bool, run_id: str | None, max_failures: int,
         test_hooks: dict | None) -> tuple[FitResult, list[int]]:
    if use_ray:
        fit, resume_points, _ = fit_with_ray(data, config, run_id=run_id, max_failures=max_failures,
                                             test_hooks=test_hooks)
        return fit, resume_points
    return fit_in_process(data, config), []


def _extra(data: TrainingData, fit: FitResult, resume_points: list[int], tuned_before: Any = None) -> dict:
    return {"split_train_end": str(data.train_end), "split_val_end": str(data.val_end), "best_epoch": fit.best_epoch,
            "best_val_loss": fit.best_val_loss, "resume_points": resume_points,
            "seen_before": str(seen_before(data)), "tuned_before": None if tuned_before is None else str(tuned_before)}
