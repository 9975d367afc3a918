"""The training loop's pieces as plain functions, shared by every path that trains the LSTM.

Three callers use them: the Ray Train worker loop (:mod:`finpulse.forecast.train`, the registered
model), the walk-forward refits (:mod:`finpulse.forecast.evaluate`: k refits in-process, so evaluation
does not pay Ray Train's start-up k times) and the Tune trials (:mod:`finpulse.forecast.tune`: each
trial already is a Ray task). Same steps, same seeds, so the paths agree.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from finpulse.forecast.calibration import IntervalCalibration, fit_conformal
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.model import build_model, forecast_loss, predict_arrays
from finpulse.forecast.windows import (
    Scaler,
    Windows,
    build_windows,
    prepare_frame,
    split_dates,
    ticker_index,
    window_vol,
)


@dataclass
class TrainingData:
    """Windows for fitting and early stopping, plus what the saved model needs to repeat the transform."""

    train: Windows
    val: Windows
    scaler: Scaler
    tickers: dict[str, int]
    train_end: dt.date
    val_end: dt.date | None
    rest: Windows  # samples from val_end on (the test period of a walk-forward fold); may be empty

    @property
    def n_features(self) -> int:
        return len(self.scaler.columns)


def prepare_training_data(features: pd.DataFrame, config: ForecastConfig,
                          include_unknown_targets: bool = False) -> TrainingData:
    """Select tickers/dates, fit the scaler on training days only, and cut windows into train/val/rest.

    Train and validation windows always have a known target; ``rest`` keeps the last day (unknown
    target) only when ``include_unknown_targets`` (live forecasting)."""
    columns = config.feature_columns()
    df = features
    if config.tickers:
        df = df[df["ticker"].isin(config.tickers)]
    frame = prepare_frame(df, columns)
    if config.train_start is not None:
        frame = frame[frame["date"] >= pd.Timestamp(config.train_start).date()]
    known = frame[frame["target_ret_1d"].notna()]
    train_end, val_end = split_dates(known["date"].to_numpy(), config.train_end, config.val_end, config.val_fraction)
    scaler = Scaler.fit(known, columns, before=train_end)
    tickers = ticker_index(frame["ticker"].unique().tolist())
    windows = build_windows(frame, scaler, config.lookback, tickers, prepared=True)
    if not include_unknown_targets:
        windows = windows.with_target()
    train = windows.between(None, train_end).with_target()
    val = windows.between(train_end, val_end).with_target()
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"empty split: {len(train)} training and {len(val)} validation windows")
    rest = windows.between(val_end, None) if val_end is not None else windows.subset(np.zeros(len(windows), bool))
    return TrainingData(train, val, scaler, tickers, train_end, val_end, rest)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[np.ndarray]:
    """This rank's shuffled mini-batches for one epoch: same permutation on every rank, disjoint shards."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    shard = perm[rank::world]
    return [shard[i:i + batch_size] for i in range(0, len(shard), batch_size)]


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: Windows, config: ForecastConfig,
                epoch: int, rank: int = 0, world: int = 1) -> float:
    """One pass over this rank's shard; returns the mean training loss."""
    model.train()
    total, count = 0.0, 0
    x_all = torch.from_numpy(data.x)
    y_all = torch.from_numpy(data.y)
    t_all = torch.from_numpy(data.ticker_idx)
    for idx in epoch_batches(len(data), config.batch_size, config.seed, epoch, rank, world):
        ix = torch.from_numpy(idx)
        point, quant = model(x_all[ix], t_all[ix])
        loss = forecast_loss(point, quant, y_all[ix], config)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        total += float(loss.detach()) * len(idx)
        count += len(idx)
    return total / max(count, 1)


@torch.no_grad()
def evaluate_loss(model: nn.Module, data: Windows, config: ForecastConfig, batch_size: int = 4096) -> float:
    """Validation loss (same objective as training) over all of ``data``."""
    model.eval()
    total = 0.0
    for i in range(0, len(data), batch_size):
        sl = slice(i, i + batch_size)
        point, quant = model(torch.from_numpy(data.x[sl]), torch.from_numpy(data.ticker_idx[sl]))
        total += float(forecast_loss(point, quant, torch.from_numpy(data.y[sl]), config)) * len(data.x[sl])
    return total / max(len(data), 1)


@dataclass
class EarlyStopping:
    """Best validation loss so far, its weights and the epochs without improvement (checkpointed)."""

    patience: int
    best_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    best_state: dict | None = None

    def update(self, loss: float, epoch: int, model: nn.Module) -> bool:
        """Record an epoch; True when training should stop."""
        if loss < self.best_loss - 1e-9:
            self.best_loss, self.best_epoch, self.bad_epochs = loss, epoch, 0
            self.best_state = copy.deepcopy(getattr(model, "module", model).state_dict())
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def meta(self) -> dict[str, Any]:
        """The counters as JSON (a checkpoint's ``meta.json``); the best weights go with the tensors."""
        best = self.best_loss if math.isfinite(self.best_loss) else None
        return {"patience": self.patience, "best_loss": best, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs}

    @classmethod
    def restore(cls, meta: dict[str, Any], best_state: dict[str, torch.Tensor] | None) -> EarlyStopping:
        """The inverse of :meth:`meta` plus ``best_state``: no pickled object crosses a checkpoint."""
        best = meta.get("best_loss")
        return cls(int(meta["patience"]), math.inf if best is None else float(best), int(meta["best_epoch"]),
                   int(meta["bad_epochs"]), best_state or None)


@dataclass
class FitResult:
    model: nn.Module
    best_val_loss: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)


def make_optimizer(model: nn.Module, config: ForecastConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def fit_in_process(data: TrainingData, config: ForecastConfig,
                   on_epoch: Callable[[dict], bool | None] | None = None) -> FitResult:
    """Train in this process with early stopping; returns the best-validation weights.

    ``on_epoch(metrics)`` is called after every epoch (Tune reports through it); returning True stops.
    """
    seed_everything(config.seed)
    model = build_model(config, data.n_features, len(data.tickers))
    optimizer = make_optimizer(model, config)
    stopper = EarlyStopping(config.patience)
    history: list[dict] = []
    for epoch in range(config.max_epochs):
        train_loss = train_epoch(model, optimizer, data.train, config, epoch)
        val_loss = evaluate_loss(model, data.val, config)
        stop = stopper.update(val_loss, epoch, model)
        metrics = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "best_val_loss": stopper.best_loss}
        history.append(metrics)
        if on_epoch is not None and on_epoch(metrics):
            break
        if stop:
            break
    if stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)
    model.eval()
    return FitResult(model, stopper.best_loss, stopper.best_epoch, history)


def calibrate_intervals(model: nn.Module, data: TrainingData, config: ForecastConfig) -> IntervalCalibration:
    """Split-conformal (CQR) correction of the quantile interval, fitted on the validation windows:
    days the weights were not fitted on, before any test day."""
    _, quant = predict_arrays(model, data.val.x, data.val.ticker_idx, data.scaler.target_scale)
    return fit_conformal(quant[:, 0], quant[:, -1], data.val.target_ret, config.interval_level,
                         config.interval_calibration, window_vol(data.val.x, data.scaler), config.interval_track_rate)
