"""Ray Train's overhead over plain PyTorch, whole epochs by wall clock (used by benchmarks/forecast.py).

Both sides run the same epoch: ``train_epoch`` + ``evaluate_loss`` + early-stopping bookkeeping +
the per-epoch metrics logged to MLflow (``RunLogger.log_metrics``) + a checkpoint saved to disk
(``TrainState.save``); the Ray side
also reports it (``ray.train.report``, which copies the checkpoint into the run's storage). The
Ray side is ``finpulse.forecast.train.fit_with_ray``, the code path that trains the registered model.

Whole-epoch times come from one clock on both sides: the timestamps of the per-epoch metrics in
MLflow (rank 0 stamps them after validation). The gap between two consecutive stamps is one whole
epoch cycle (checkpoint, report, training, validation, logging); epoch 0 (warm-up) has no gap and is
not counted. The plain side runs in a fresh process, as the Ray worker does. Runs alternate plain,
Ray, plain, Ray, ..., plain; each Ray run is compared with the
mean of the plain runs just before and after it, so drifting background load hits both sides alike.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from finpulse import tracking
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.loop import (
    EarlyStopping,
    TrainingData,
    evaluate_loss,
    make_optimizer,
    prepare_training_data,
    seed_everything,
    train_epoch,
)
from finpulse.forecast.model import build_model
from finpulse.forecast.train import TrainState, fit_with_ray

EXPERIMENT = "bench-train-overhead"


def overhead_config(quick: bool, epochs: int, threads: int) -> ForecastConfig:
    """The shipped five tickers, 2010-2018, a 2-layer LSTM big enough for >= 5 s epochs on 2 cores."""
    size = {"lookback": 20, "hidden_size": 32, "num_layers": 1} if quick else \
        {"lookback": 120, "hidden_size": 64, "num_layers": 2}
    return ForecastConfig(feature_set="price", batch_size=64, max_epochs=epochs, patience=epochs + 1,
                          num_workers=1, cpus_per_worker=float(threads), seed=0, val_end=dt.date(2019, 1, 1), **size)


def epoch_stamps(run_id: str) -> list[float]:
    """Wall-clock seconds at which each epoch's metrics were logged (one per epoch, in order)."""
    from mlflow import MlflowClient

    hist = MlflowClient(tracking.configure()).get_metric_history(run_id, "val_loss")
    return [m.timestamp / 1000 for m in sorted(hist, key=lambda m: m.step)]


def plain_fit(data: TrainingData, cfg: ForecastConfig, run_id: str, ckpt_root: Path) -> None:
    """The Ray Train worker loop's steps in this process: train, validate, log (the same RunLogger),
    checkpoint (the same TrainState.save)."""
    logger = tracking.RunLogger(run_id, tracking.configure())
    seed_everything(cfg.seed)
    model = build_model(cfg, data.n_features, len(data.tickers))
    optimizer = make_optimizer(model, cfg)
    state = TrainState(EarlyStopping(cfg.patience))
    for epoch in range(cfg.max_epochs):
        t0 = time.perf_counter()
        train_loss = train_epoch(model, optimizer, data.train, cfg, epoch)
        state.epoch_times.append(time.perf_counter() - t0)
        val_loss = evaluate_loss(model, data.val, cfg)
        state.stopper.update(val_loss, epoch, model)
        metrics = {"train_loss": train_loss, "val_loss": val_loss, "best_val_loss": state.stopper.best_loss,
                   "epoch_time_s": state.epoch_times[-1]}
        logger.log_metrics(metrics, step=epoch)
        state.save(ckpt_root / f"checkpoint_{epoch:06d}", model, optimizer, epoch)


def plain_job(config_json: str, run_id: str, threads: int) -> None:
    """The plain side in its own process: same data preparation, then :func:`plain_fit`."""
    from finpulse.forecast.inputs import daily_features
    from finpulse.resources import load_prices

    cfg = ForecastConfig.model_validate_json(config_json)
    torch.set_num_threads(threads)
    data = prepare_training_data(daily_features(load_prices(None)), cfg)
    plain_fit(data, cfg, run_id, Path(tempfile.mkdtemp(prefix="bench-plain-ckpt-")))


def _run(side: str, data: TrainingData, cfg: ForecastConfig, threads: int, exp_id: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    run_id = MlflowClient(tracking.configure()).create_run(exp_id, run_name=side).info.run_id
    t0 = time.time()
    if side == "plain":  # a fresh process, like the Ray worker (not the driver that hosts Ray and MLflow)
        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
                f"from _train_overhead import plain_job; plain_job({cfg.model_dump_json()!r}, {run_id!r}, {threads})")
        subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603 - this Python, argv built here, no shell
    else:
        fit_with_ray(data, cfg, logger=tracking.RunLogger(run_id, tracking.configure()), max_failures=0,
                     threads_per_worker=threads)
    wall = time.time() - t0
    stamps = epoch_stamps(run_id)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    epoch_s = statistics.median(gaps)
    return {"side": side, "epoch_s": epoch_s, "epochs_s": [round(g, 3) for g in gaps], "fit_wall_s": wall,
            # before the first epoch starts: the first stamp minus one epoch (the first includes warm-up)
            "startup_s": stamps[0] - t0 - epoch_s, "fixed_s": wall - len(stamps) * epoch_s}


def train_overhead(df: pd.DataFrame, *, quick: bool, reps: int, epochs: int, threads: int,
                   settle_s: float = 3.0) -> dict[str, Any]:
    """Interleaved plain/Ray runs; ``train_overhead_ratio`` is the median over Ray runs of
    (Ray whole epoch / mean of the neighbouring plain runs' whole epoch)."""
    load_before = os.getloadavg()
    cfg = overhead_config(quick, epochs, threads)
    data = prepare_training_data(df, cfg)
    exp_id = tracking.experiment(EXPERIMENT)
    runs: list[dict[str, Any]] = []
    for i in range(2 * reps + 1):
        side = "plain" if i % 2 == 0 else "ray"
        time.sleep(settle_s)  # let the previous run's worker exit
        runs.append(_run(side, data, cfg, threads, exp_id))
        print(f"  {side}: whole epoch {runs[-1]['epoch_s']:.3f} s {runs[-1]['epochs_s']}", flush=True)
    ratios = [runs[i]["epoch_s"] / ((runs[i - 1]["epoch_s"] + runs[i + 1]["epoch_s"]) / 2)
              for i in range(1, len(runs), 2)]
    ray_runs = [r for r in runs if r["side"] == "ray"]
    plain_runs = [r for r in runs if r["side"] == "plain"]
    return {
        "train_overhead_ratio": statistics.median(ratios),
        "train_overhead_spread": max(ratios) - min(ratios),
        "train_overhead_ratios": ratios,
        "train_startup_s": statistics.median(r["startup_s"] for r in ray_runs),
        "train_fixed_cost_s": statistics.median(r["fixed_s"] for r in ray_runs),
        "plain_epoch_s": statistics.median(r["epoch_s"] for r in plain_runs),
        "ray_epoch_s": statistics.median(r["epoch_s"] for r in ray_runs),
        "repeats": reps, "epochs_per_run": epochs, "threads": threads, "windows": len(data.train),
        "val_windows": len(data.val), "cpus": os.cpu_count(),
        "loadavg_1_5_15_before_after": [load_before, os.getloadavg()],  # a shared box: others' load, for context
        "config": {k: getattr(cfg, k) for k in ("lookback", "hidden_size", "num_layers", "batch_size")},
        "runs": runs,
        "note": "whole epochs by wall clock (train + validate + MLflow log_batch + checkpoint [+ ray.train.report]), "
                "gaps between consecutive per-epoch MLflow stamps, epoch 0 excluded; Ray = 1 TorchTrainer worker x "
                f"{threads} threads vs plain = a fresh Python process with {threads} threads; runs interleaved "
                "plain, ray, ..., plain; each ratio = Ray run / mean of the plain runs beside it; spread = max - min "
                "ratio; startup = fit() call to the first epoch's start (first stamp - one epoch); fixed cost = "
                "fit() wall - epochs x whole epoch",
    }
