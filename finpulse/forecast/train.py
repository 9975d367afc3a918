"""Training the registered forecaster with Ray Train (TorchTrainer over N CPU workers).

The worker loop is thin: it calls the shared steps in :mod:`finpulse.forecast.loop`, shards each
epoch's batches by rank (DDP averages the gradients), stops early on validation loss, and reports a
checkpoint every epoch (:mod:`finpulse.checkpoints`: state dicts plus JSON, nothing pickled). With
``FailureConfig(max_failures=...)`` a killed worker makes Ray Train restart the worker group, and
the loop resumes from ``ray.train.get_checkpoint()``: the epoch after the last checkpoint, the
optimizer state and the early-stopping state included.

The windows reach the workers as object refs (``ray.put`` once in the driver): workers on a node
read the same shared-memory arrays, a restarted worker group gets them again without the driver
re-sending anything, and each epoch iterates over in-memory arrays exactly as the in-process loop
does (same permutation, same shards), so Ray Train adds no per-epoch data cost.

The driver opens the MLflow run (:func:`finpulse.tracking.start_run`) and hands its picklable
:class:`~finpulse.tracking.RunLogger` to the workers; rank 0 logs the per-epoch metrics with
``step=epoch`` (:class:`~finpulse.tracking.EpochLogger`: when the tracking server is gone, training goes on,
the checkpoints keep the epochs it missed, and the driver logs them after fit, or fails with one line
naming the server if it is still gone). The driver then saves the best weights as a model folder (loads
without Ray), logs params, feature list, scaler and plots, and registers ``tracking.FORECAST_MODEL`` as
``challenger`` (one transaction: :mod:`finpulse.tracking.registry`).
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from finpulse import checkpoints, tracking
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
from finpulse.storage import ray_storage

EpochCallback = Callable[[dict[str, Any]], None]
EPOCH_METRICS = ("train_loss", "val_loss", "best_val_loss", "epoch_time_s")  # what rank 0 logs per epoch


@dataclass(kw_only=True)
class TrainOptions:
    """How a training run is carried out and recorded (what to train is the :class:`ForecastConfig`).

    ``on_epoch(metrics)`` runs on every Ray Train worker after each epoch's checkpoint is reported
    (``metrics`` carries ``epoch``, ``rank``, ``world_size``, ``resume_points``), or after each epoch
    in process; it must be picklable. Tests inject faults through it (``tests/support/faults.py``).
    """

    out_dir: str | Path | None = None
    use_ray: bool = True
    log_mlflow: bool = True
    register: bool = True
    registered_name: str = tracking.FORECAST_MODEL
    alias: str | None = tracking.CHALLENGER
    experiment: str = tracking.FORECAST_EXPERIMENT
    run_name: str | None = None
    parent_run_id: str | None = None
    tags: dict[str, str] | None = None
    max_failures: int = 2
    worker_resources: dict[str, float] | None = None  # extra Ray resources per worker (e.g. a node group's own)
    tuned_before: dt.date | None = None  # the tuning window's end, for a tuned configuration
    on_epoch: EpochCallback | None = None
    on_registration: Callable[[str], None] | None = None  # after each registry.STEPS step (a test's fault hook)


@dataclass
class TrainResult:
    model_dir: Path
    run_id: str | None
    ref: tracking.ModelRef | None
    metrics: dict[str, float]
    history: list[dict] = field(default_factory=list)
    resume_points: list[int] = field(default_factory=list)
    late_epochs: list[dict] = field(default_factory=list)  # not logged live (MLflow was gone): logged after fit


@dataclass
class TrainState:
    """What a checkpoint carries between attempts besides the weights: early stopping, resume points, timings,
    and the epochs rank 0 could not log to MLflow (``late_epochs``: the driver logs them after fit)."""

    stopper: EarlyStopping
    start_epoch: int = 0
    resume_points: list[int] = field(default_factory=list)
    epoch_times: list[float] = field(default_factory=list)
    late_epochs: list[dict[str, float]] = field(default_factory=list)

    def save(self, folder: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        state = {"model": getattr(model, "module", model).state_dict(), "optimizer": optimizer.state_dict(),
                 "best": self.stopper.best_state or {}}
        checkpoints.write(folder, state, {"epoch": epoch, "resume_points": self.resume_points,
                                          "epoch_times": self.epoch_times, "stopper": self.stopper.meta(),
                                          "late_epochs": self.late_epochs})

    @classmethod
    def load(cls, folder: str | Path, model: torch.nn.Module | None = None,
             optimizer: torch.optim.Optimizer | None = None) -> tuple[TrainState, dict[str, Any]]:
        """Restore into ``model``/``optimizer`` when given; returns the state (``start_epoch``: the
        epoch after the checkpoint's) and the raw tensors."""
        state, meta = checkpoints.read(folder)
        if model is not None:
            getattr(model, "module", model).load_state_dict(state["model"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
        return cls(EarlyStopping.restore(meta["stopper"], state.get("best")), int(meta["epoch"]) + 1,
                   list(meta["resume_points"]), list(meta["epoch_times"]), list(meta.get("late_epochs", []))), state


def _pack(w: Windows) -> dict[str, np.ndarray]:
    return {"x": w.x, "y": w.y, "ticker_idx": w.ticker_idx}


def _unpack(d: dict[str, np.ndarray]) -> Windows:
    n = len(d["y"])
    empty = np.zeros(n)
    return Windows(d["x"], d["y"], d["ticker_idx"], empty.astype(object), empty.astype(object), empty, empty, empty)


def _worker_setup(loop_cfg: dict) -> tuple[ForecastConfig, Windows, Windows]:
    """Threads, config and the windows (object-store arrays: shared, read-only, only ever indexed)."""
    import ray

    torch.set_num_threads(int(loop_cfg.get("threads_per_worker", 1)))
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    config = ForecastConfig(**loop_cfg["config"])
    return config, _unpack(ray.get(loop_cfg["train"])), _unpack(ray.get(loop_cfg["val"]))


def _resume(model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: ForecastConfig) -> TrainState:
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return TrainState(EarlyStopping(config.patience))
    with checkpoint.as_directory() as d:
        st = TrainState.load(d, model, optimizer)[0]
    st.resume_points.append(st.start_epoch)  # this attempt resumes here
    return st


def train_loop_per_worker(loop_cfg: dict) -> None:
    """The Ray Train worker function (one per worker process)."""
    import ray.train
    import ray.train.torch

    config, train, val = _worker_setup(loop_cfg)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    seed_everything(config.seed)
    model = ray.train.torch.prepare_model(build_model(config, loop_cfg["n_features"], loop_cfg["n_tickers"]))
    optimizer = make_optimizer(model, config)
    st = _resume(model, optimizer, config)
    epochs = tracking.EpochLogger(loop_cfg.get("logger") if rank == 0 else None, EPOCH_METRICS, st.late_epochs)
    progress: EpochCallback | None = loop_cfg.get("progress") if rank == 0 else None  # the driver's epoch bar
    on_epoch: EpochCallback | None = loop_cfg.get("on_epoch")
    stopped = st.stopper.bad_epochs >= config.patience
    for epoch in range(st.start_epoch, config.max_epochs):
        if stopped:
            break
        t0 = time.perf_counter()
        train_loss = train_epoch(model, optimizer, train, config, epoch, rank, world)
        st.epoch_times.append(time.perf_counter() - t0)
        val_loss = evaluate_loss(model, val, config)
        stopped = st.stopper.update(val_loss, epoch, model)
        metrics = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                   "best_val_loss": st.stopper.best_loss, "epoch_time_s": st.epoch_times[-1]}
        epochs.log(metrics, step=epoch)  # live while MLflow answers; else kept in st.late_epochs
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                if progress is not None:
                    progress(metrics)
                st.save(tmp, model, optimizer, epoch)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report({**metrics, "resume_points": list(st.resume_points)}, checkpoint=ckpt)
        if on_epoch is not None:
            on_epoch({**metrics, "rank": rank, "world_size": world, "resume_points": list(st.resume_points)})


def fit_with_ray(data: TrainingData, config: ForecastConfig, *, logger: tracking.RunLogger | None = None,
                 storage_path: str | None = None, max_failures: int = 2, on_epoch: EpochCallback | None = None,
                 threads_per_worker: int = 1, worker_resources: dict[str, float] | None = None
                 ) -> tuple[FitResult, TrainState]:
    """Run the TorchTrainer; returns the best-validation model and the last checkpoint's state (resume
    points, epoch times, the epochs MLflow missed). Checkpoints go to :func:`finpulse.storage.ray_storage`."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage = ray_storage(storage_path)
    loop_cfg: dict[str, Any] = {
        "config": json.loads(config.model_dump_json()),
        "train": ray.put(_pack(data.train)), "val": ray.put(_pack(data.val)),  # refs, not arrays in the config
        "n_features": data.n_features, "n_tickers": len(data.tickers),
        "logger": logger, "threads_per_worker": threads_per_worker, "on_epoch": on_epoch,
    }
    with epoch_bar("forecaster (Ray Train)", config.max_epochs) as sink, sigint_restored():
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={**loop_cfg, "progress": sink},
            scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=False,
                                         resources_per_worker={"CPU": config.cpus_per_worker,
                                                               **(worker_resources or {})}),
            run_config=RunConfig(name=f"forecaster-{uuid.uuid4().hex[:8]}", **storage.run_config_args(),
                                 failure_config=FailureConfig(max_failures=max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2)),
        )
        with storage.reaching("training the forecaster"):
            result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training produced no checkpoint: {result.error}")
    with result.checkpoint.as_directory() as d:
        st, state = TrainState.load(d)
    model = build_model(config, data.n_features, len(data.tickers))
    model.load_state_dict(st.stopper.best_state or state["model"])
    model.eval()
    history = [dict(m) for m in ([] if result.metrics_dataframe is None else
                                 result.metrics_dataframe.to_dict("records"))]
    fit = FitResult(model, st.stopper.best_loss, st.stopper.best_epoch, history)
    return fit, st


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


def train_forecaster(features: pd.DataFrame, config: ForecastConfig, options: TrainOptions | None = None) -> TrainResult:
    """Train, save the model folder, log it to MLflow and register it (alias ``challenger``).

    ``options.use_ray=False`` trains in this process with the same steps (tests, quick local runs).
    The model's meta records the first day it never saw (``seen_before``: its ``val_end``, or the day
    after its last validation day) and, for a tuned configuration, ``tuned_before``: evaluation
    refuses a test window that starts earlier.
    """
    opts = options or TrainOptions()
    data = prepare_training_data(features, config)
    # MLflow keeps the folder's base name under artifacts/, and tracking.download_model reads
    # artifacts/model_dir: so the folder is always called model_dir.
    out = Path(opts.out_dir or tempfile.mkdtemp(prefix="forecaster-")) / tracking.MODEL_DIR
    if not opts.log_mlflow:
        return _fit_and_save(data, config, opts, out, None)[0]
    with tracking.start_run(opts.experiment, run_name=opts.run_name or f"train-{config.feature_set}",
                            parent_run_id=opts.parent_run_id,
                            tags={"finpulse.kind": "train", **(opts.tags or {})}) as run:
        run.log_params(json.loads(config.model_dump_json()))
        run.log_params({"trainer": "ray_train" if opts.use_ray else "in_process",
                        "split_train_end": str(data.train_end), "split_val_end": str(data.val_end),
                        "n_train_windows": len(data.train), "n_val_windows": len(data.val)})
        result, extra, cal = _fit_and_save(data, config, opts, out, run)
        if late := tracking.log_late_epochs(run, result.late_epochs):
            run.set_tags({"epochs_logged_after_training": late})
        result.metrics["interval_calibration_q"] = cal.q
        run.set_tags({"seen_before": extra["seen_before"], "tuned_before": str(extra["tuned_before"]),
                      "resume_points": json.dumps(result.resume_points)})
        run.log_metrics({**result.metrics, "best_epoch": extra["best_epoch"]})
        run.log_dict({"feature_columns": data.scaler.columns}, "feature_list.json")
        run.log_dict(data.scaler.to_dict(), "scaler.json")
        run.log_figure(_curve_figure(result.history), "plots/training_curve.png")
        result.ref = tracking.log_model_dir(out, registered_model_name=opts.registered_name if opts.register else None,
                                            alias=opts.alias if opts.register else None, on_step=opts.on_registration)
        if result.ref.version:
            run.set_tags({"registered_version": result.ref.version})
    return result


def _fit_and_save(data: TrainingData, config: ForecastConfig, opts: TrainOptions, out: Path,
                  run: tracking.RunLogger | None) -> tuple[TrainResult, dict, IntervalCalibration]:
    """Fit (Ray Train or in process), calibrate the interval, save the model folder."""
    if opts.use_ray:
        fit, st = fit_with_ray(data, config, logger=run, max_failures=opts.max_failures, on_epoch=opts.on_epoch,
                               worker_resources=opts.worker_resources)
    else:
        fit, st = fit_in_process(data, config, on_epoch=opts.on_epoch), TrainState(EarlyStopping(config.patience))
    extra = _extra(data, fit, st.resume_points, opts.tuned_before)
    cal = calibrate_intervals(fit.model, data, config)
    save_forecaster(out, fit.model, config, data.scaler, data.tickers, extra=extra, calibration=cal)
    metrics = validation_metrics(fit.model, data, config, cal)
    return TrainResult(out, run.run_id if run else None, None, metrics, fit.history, st.resume_points,
                       st.late_epochs), extra, cal


def _extra(data: TrainingData, fit: FitResult, resume_points: list[int], tuned_before: Any = None) -> dict:
    return {"split_train_end": str(data.train_end), "split_val_end": str(data.val_end), "best_epoch": fit.best_epoch,
            "best_val_loss": fit.best_val_loss, "resume_points": resume_points,
            "seen_before": str(seen_before(data)), "tuned_before": None if tuned_before is None else str(tuned_before)}
