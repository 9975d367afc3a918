"""Hyperparameter search with Ray Tune (ASHA by default) and the retrain of the best configuration.

Each trial is a Tune function trainable that trains in its own Ray worker process with the shared
in-process loop (:func:`finpulse.forecast.loop.fit_in_process`) and reports the validation loss
every epoch, so ASHA can stop it early; a trial already is a Ray task, and a TorchTrainer per trial
would add Ray Train's start-up (~20 s here) to every trial. The best configuration is then retrained
with Ray Train (:func:`finpulse.forecast.train.train_forecaster`) and registered as ``challenger``.

Tuning ends at ``tune_end``: trials fit and validate on as-of days before it, and the best
configuration is retrained on the same days, so its weights and its selection have never seen a day
from ``tune_end`` on. The model's meta records ``tuned_before``; the walk-forward that judges it for
promotion must start at or after it (:func:`holdout.check_out_of_sample` refuses otherwise). By
default ``tune_end`` is ``base.val_end``, else the start of the last 20% of days: the default test window.

Configurations are sampled up front from the space with a seed and run as a grid, so the same
``num_samples`` configurations can be run under ASHA and FIFO (the benchmark compares the two).
Every trial is an MLflow run under one parent run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel

from finpulse import tracking
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.holdout import check_tune_end, default_test_start
from finpulse.forecast.train import TrainOptions, TrainResult, train_forecaster
from finpulse.tuning import make_scheduler, plain, run_grid, sample_configs, trial_table


class SearchSpace(BaseModel):
    """Choices (lists) and log/linear ranges (tuples) of the searched knobs."""

    lookback: list[int] = [10, 20, 30]
    hidden_size: list[int] = [16, 32, 64]
    num_layers: list[int] = [1, 2]
    dropout: tuple[float, float] = (0.0, 0.3)
    lr: tuple[float, float] = (3e-4, 3e-3)  # log-uniform
    batch_size: list[int] = [64, 128, 256]
    feature_set: list[str] = ["price", "price_sentiment"]

    def sample(self, n: int, seed: int) -> list[dict[str, Any]]:
        return sample_configs(self, n, seed, log_fields=("lr",))


class TuneOptions(BaseModel):
    """How the search runs: which configurations (``configs``, else ``num_samples`` drawn from
    ``space`` with ``seed``), the scheduler, the resources, the tuning window and what is recorded.

    ``reuse_actors`` keeps trial processes alive between trials: a fresh process costs seconds
    (imports of torch and pandas), which on short trials eats the time ASHA saves."""

    space: SearchSpace | None = None
    configs: list[dict[str, Any]] | None = None
    num_samples: int = 8
    seed: int = 0
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_period: int = 2
    reduction_factor: int = 3
    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    threads_per_trial: int = 1
    reuse_actors: bool = True
    tune_end: dt.date | None = None
    test_start: dt.date | None = None
    retrain: bool = True
    log_mlflow: bool = True
    experiment: str = tracking.FORECAST_EXPERIMENT


@dataclass
class TuneResult:
    best_config: ForecastConfig
    best_val_loss: float
    trials: pd.DataFrame
    parent_run_id: str | None
    wall_s: float
    train_result: TrainResult | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    tune_end: dt.date | None = None


def tuning_base(features: pd.DataFrame, base: ForecastConfig, tune_end: dt.date | None = None,
                test_start: dt.date | None = None) -> ForecastConfig:
    """The base configuration every trial and the retrain use: all data before ``tune_end``.

    ``tune_end`` defaults to ``base.val_end``, else the start of the last 20% of days (the default
    walk-forward window). It must not be after ``test_start`` when one is known."""
    end = tune_end or base.val_end or default_test_start(features)
    end = pd.Timestamp(end).date()
    check_tune_end(end, test_start)
    if base.val_end is not None and pd.Timestamp(base.val_end).date() > end:
        raise ValueError(f"base.val_end {base.val_end} is after tune_end {end}")
    return base.model_copy(update={"val_end": end})


def _trial(params: dict, features: pd.DataFrame, base: dict, parent: tracking.RunLogger | None) -> None:
    """One Tune trial: train in-process, report every epoch (ASHA decides), log an MLflow child run."""
    import torch
    from ray import tune

    from finpulse.forecast.loop import fit_in_process, prepare_training_data

    base = dict(base)
    torch.set_num_threads(int(base.pop("_threads", 1)))
    config = ForecastConfig(**{**base, **params["trial"]})
    run = None
    if parent is not None:
        run = tracking.child_run(parent, f"trial-{uuid.uuid4().hex[:6]}", tags={"finpulse.kind": "tune-trial"})
        run.log_params(params["trial"])
    data = prepare_training_data(features, config)
    start = time.perf_counter()

    def report(m: dict) -> None:
        if run is not None:
            run.log_metrics({k: m[k] for k in ("train_loss", "val_loss")}, step=m["epoch"])
            if m["epoch"] == config.max_epochs - 1:  # ASHA stops every trial at max_t: code after this report may not run
                run.end()
        tune.report({"val_loss": m["val_loss"], "best_val_loss": m["best_val_loss"], "epoch": m["epoch"],
                     "mlflow_run_id": run.run_id if run else "", "elapsed_s": time.perf_counter() - start})

    fitted = fit_in_process(data, config, on_epoch=report)
    if run is not None and len(fitted.history) < config.max_epochs:  # early-stopped (the last epoch ended it already);
        run.end()  # a trial ASHA stops never gets here: the driver ends those runs as KILLED


def _run_trials(features: pd.DataFrame, base: ForecastConfig, trials: list[dict], opts: TuneOptions,
                parent: tracking.RunLogger | None) -> pd.DataFrame:
    """Run the grid of ``trials`` under the scheduler; one row per trial, best first."""
    sched = make_scheduler(opts.scheduler, max_t=base.max_epochs, grace_period=opts.grace_period,
                           reduction_factor=opts.reduction_factor)
    base_dict = {**json.loads(base.model_dump_json()), "_threads": opts.threads_per_trial}
    grid = run_grid(_trial, trials, metric="val_loss", mode="min", scheduler=sched,
                    resources={"cpu": opts.cpus_per_trial},
                    tune_options={"max_concurrent_trials": opts.max_concurrent, "reuse_actors": opts.reuse_actors},
                    features=features, base=base_dict, parent=parent)
    return trial_table(grid, "val_loss", "min", best_column="best_val_loss")


def tune_forecaster(features: pd.DataFrame, base: ForecastConfig | None = None,
                    options: TuneOptions | None = None) -> TuneResult:
    """Search on the days before ``tune_end`` (:func:`tuning_base`), then (``retrain``) train the best
    configuration with Ray Train on the same days and register it (meta ``tuned_before=tune_end``)."""
    opts = options or TuneOptions()
    base = tuning_base(features, base or ForecastConfig(), opts.tune_end, opts.test_start)
    trials = opts.configs or (opts.space or SearchSpace()).sample(opts.num_samples, opts.seed)
    start = time.perf_counter()
    parent_run = tracking.start_run(opts.experiment, run_name=f"tune-{opts.scheduler}", tags={"finpulse.kind": "tune"}) \
        if opts.log_mlflow else contextlib.nullcontext()
    with parent_run as parent:
        if parent is not None:
            parent.log_params({"scheduler": opts.scheduler, "num_samples": len(trials),
                               "max_concurrent": opts.max_concurrent, "cpus_per_trial": opts.cpus_per_trial,
                               "max_epochs": base.max_epochs, "tune_end": str(base.val_end)})
        table = _run_trials(features, base, trials, opts, parent)
        best = table.iloc[0]
        best_cfg = base.model_copy(update={k: plain(best[k]) for k in trials[0]})
        result = TuneResult(best_cfg, float(best["best_val_loss"]), table, parent.run_id if parent else None,
                            time.perf_counter() - start, tune_end=base.val_end)
        if parent is not None:
            tracking.end_unfinished_children(parent.run_id)  # trials ASHA stopped mid-way
            parent.log_metrics({"best_val_loss": result.best_val_loss, "wall_s": result.wall_s})
            parent.log_dict(json.loads(best_cfg.model_dump_json()), "best_config.json")
            parent.log_table(table, "trials.csv")
    if opts.retrain:
        result.train_result = train_forecaster(features, best_cfg, TrainOptions(
            parent_run_id=result.parent_run_id, run_name="tune-best-retrain", experiment=opts.experiment,
            log_mlflow=opts.log_mlflow, register=opts.log_mlflow, tuned_before=base.val_end))
    return result
