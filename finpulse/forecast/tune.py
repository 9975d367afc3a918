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

import datetime as dt
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from finpulse import tracking
from finpulse.config import get_settings
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.holdout import check_tune_end, default_test_start
from finpulse.forecast.train import EXPERIMENT, TrainResult, train_forecaster
from finpulse.runtime import sigint_restored


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
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            out.append({
                "lookback": int(rng.choice(self.lookback)),
                "hidden_size": int(rng.choice(self.hidden_size)),
                "num_layers": int(rng.choice(self.num_layers)),
                "dropout": float(rng.uniform(*self.dropout)),
                "lr": float(math.exp(rng.uniform(math.log(self.lr[0]), math.log(self.lr[1])))),
                "batch_size": int(rng.choice(self.batch_size)),
                "feature_set": str(rng.choice(self.feature_set)),
            })
        return out


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


def _trial(params: dict, features: pd.DataFrame, base: dict, mlflow_info: dict | None) -> None:
    """One Tune trial: train in-process, report every epoch (ASHA decides), log an MLflow child run."""
    import torch
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param
    from ray import tune

    from finpulse.forecast.loop import fit_in_process, prepare_training_data

    base = dict(base)
    torch.set_num_threads(int(base.pop("_threads", 1)))
    config = ForecastConfig(**{**base, **params["trial"]})
    client, run_id = None, None
    if mlflow_info:
        client = MlflowClient(mlflow_info["tracking_uri"])
        run = client.create_run(mlflow_info["experiment_id"], run_name=f"trial-{uuid.uuid4().hex[:6]}",
                                tags={"mlflow.parentRunId": mlflow_info["parent_run_id"], "finpulse.kind": "tune-trial"})
        run_id = run.info.run_id
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params["trial"].items()])
    data = prepare_training_data(features, config)
    start = time.perf_counter()

    def report(m: dict) -> None:
        if client is not None:
            ts = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(k, float(m[k]), ts, m["epoch"]) for k in ("train_loss", "val_loss")])
        tune.report({"val_loss": m["val_loss"], "best_val_loss": m["best_val_loss"], "epoch": m["epoch"],
                     "mlflow_run_id": run_id or "", "elapsed_s": time.perf_counter() - start})

    fit_in_process(data, config, on_epoch=report)
    if client is not None:
        client.set_terminated(run_id)


def tune_forecaster(features: pd.DataFrame, base: ForecastConfig | None = None, *, space: SearchSpace | None = None,
                    configs: list[dict] | None = None, num_samples: int = 8, max_concurrent: int = 2,
                    cpus_per_trial: float = 1.0, scheduler: str = "asha", grace_period: int = 2,
                    reduction_factor: int = 3, seed: int = 0, retrain: bool = True, log_mlflow: bool = True,
                    experiment: str = EXPERIMENT, threads_per_trial: int = 1, reuse_actors: bool = True,
                    tune_end: dt.date | None = None, test_start: dt.date | None = None) -> TuneResult:
    """Search on the days before ``tune_end`` (:func:`tuning_base`), then (``retrain``) train the best
    configuration with Ray Train on the same days and register it (meta ``tuned_before=tune_end``).

    ``reuse_actors`` keeps trial processes alive between trials: a fresh process costs seconds
    (imports of torch and pandas), which on short trials eats the time ASHA saves."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    base = tuning_base(features, base or ForecastConfig(), tune_end, test_start)
    trials = configs or (space or SearchSpace()).sample(num_samples, seed)
    sched = (ASHAScheduler(max_t=base.max_epochs, grace_period=grace_period, reduction_factor=reduction_factor)
             if scheduler == "asha" else FIFOScheduler())
    base_dict = {**json.loads(base.model_dump_json()), "_threads": threads_per_trial}
    storage = os.path.abspath(os.path.join(get_settings().home, "ray_results"))
    start = time.perf_counter()
    parent_ctx = tracking.start_run(experiment, run_name=f"tune-{scheduler}", tags={"finpulse.kind": "tune"}) \
        if log_mlflow else None
    parent = parent_ctx.__enter__() if parent_ctx else None
    try:
        info = None
        if parent is not None:
            import mlflow

            mlflow.log_params({"scheduler": scheduler, "num_samples": len(trials), "max_concurrent": max_concurrent,
                               "cpus_per_trial": cpus_per_trial, "max_epochs": base.max_epochs,
                               "tune_end": str(base.val_end)})
            info = {"tracking_uri": tracking.configure(), "experiment_id": tracking.run_experiment_id(parent.run_id),
                    "parent_run_id": parent.run_id}
        trainable = tune.with_resources(tune.with_parameters(_trial, features=features, base=base_dict,
                                                             mlflow_info=info), {"cpu": cpus_per_trial})
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(trials)},
            tune_config=tune.TuneConfig(metric="val_loss", mode="min", scheduler=sched,
                                        max_concurrent_trials=max_concurrent, reuse_actors=reuse_actors),
            run_config=tune.RunConfig(name=f"tune-{uuid.uuid4().hex[:8]}", storage_path=storage, verbose=0),
        )
        with sigint_restored():
            grid = tuner.fit()
        wall = time.perf_counter() - start
        rows = []
        for r in grid:
            df = r.metrics_dataframe
            best = float(df["val_loss"].min()) if df is not None and len(df) else math.nan
            rows.append({**r.config["trial"], "best_val_loss": best,
                         "epochs": int(df["epoch"].max()) + 1 if df is not None and len(df) else 0,
                         "mlflow_run_id": (r.metrics or {}).get("mlflow_run_id", "")})
        table = pd.DataFrame(rows).sort_values("best_val_loss").reset_index(drop=True)
        best_params = {k: table.iloc[0][k] for k in trials[0]}
        best_cfg = base.model_copy(update={k: (v.item() if hasattr(v, "item") else v) for k, v in best_params.items()})
        if parent is not None:
            import mlflow
            from mlflow import MlflowClient

            client = MlflowClient()
            for rid in table["mlflow_run_id"]:
                if rid and client.get_run(rid).info.status == "RUNNING":  # ASHA stopped it mid-way
                    client.set_terminated(rid, status="KILLED")
            mlflow.log_metrics({"best_val_loss": float(table.iloc[0]["best_val_loss"]), "wall_s": wall})
            mlflow.log_dict(json.loads(best_cfg.model_dump_json()), "best_config.json")
            mlflow.log_text(table.to_csv(index=False), "trials.csv")
        result = TuneResult(best_cfg, float(table.iloc[0]["best_val_loss"]), table,
                            parent.run_id if parent else None, wall, tune_end=base.val_end)
    finally:
        if parent_ctx is not None:
            parent_ctx.__exit__(None, None, None)
    if retrain:
        result.train_result = train_forecaster(features, best_cfg, parent_run_id=result.parent_run_id,
                                               run_name="tune-best-retrain", experiment=experiment,
                                               log_mlflow=log_mlflow, register=log_mlflow, tuned_before=base.val_end)
    return result
