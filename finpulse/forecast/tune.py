"""The forecaster's side of a sweep (:mod:`finpulse.sweeps`): the Tune trial and the retrain of the best.

Each trial is a Tune function trainable that trains in its own Ray worker process with the shared
in-process loop (:func:`finpulse.forecast.loop.fit_in_process`) and reports the validation loss
every epoch, so a scheduler (ASHA, HyperBand, median stopping) can stop it early; a trial already is
a Ray task, and a TorchTrainer per trial would add Ray Train's start-up (~20 s here) to every trial.
The best configuration is then retrained with Ray Train (:func:`finpulse.forecast.train.train_forecaster`)
and registered as ``challenger``; the walk-forward evaluation and the promotion gate judge it like any other.

Tuning ends at ``tune_end``: trials fit and validate on as-of days before it, and the best
configuration is retrained on the same days, so its weights and its selection have never seen a day
from ``tune_end`` on. The model's meta records ``tuned_before``; the walk-forward that judges it for
promotion must start at or after it (:func:`holdout.check_out_of_sample` refuses otherwise). By
default ``tune_end`` is ``base.val_end``, else the start of the last 20% of days: the default test window.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pandas as pd

from finpulse import tracking
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.holdout import check_tune_end, default_test_start
from finpulse.sweeps.models import ForecasterOptions, Target, trial_run
from finpulse.sweeps.space import active
from finpulse.sweeps.spec import SweepSpec


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


def _trial(params: dict, features: pd.DataFrame, base: dict, parent: tracking.RunLogger) -> None:
    """One Tune trial: train in-process, report every epoch (the scheduler decides), log an MLflow child run."""
    import torch
    from ray import tune

    from finpulse.forecast.loop import fit_in_process, prepare_training_data

    base = dict(base)
    torch.set_num_threads(int(base.pop("_threads", 1)))
    searched = active(params)
    config = ForecastConfig(**{**base, **searched})
    run = trial_run(parent, searched)
    data = prepare_training_data(features, config)
    start = time.perf_counter()

    def report(m: dict) -> None:
        run.log_metrics({k: m[k] for k in ("train_loss", "val_loss", "best_val_loss")}, step=m["epoch"])
        if m["epoch"] == config.max_epochs - 1:  # a scheduler stops every trial at max_t: code after this may not run
            run.end()
        tune.report({"val_loss": m["val_loss"], "best_val_loss": m["best_val_loss"], "train_loss": m["train_loss"],
                     "epoch": m["epoch"], "mlflow_run_id": run.run_id, "elapsed_s": time.perf_counter() - start})

    fitted = fit_in_process(data, config, on_epoch=report)
    if len(fitted.history) < config.max_epochs:  # early-stopped by patience (the last epoch ended it already);
        run.end()  # a trial the scheduler stops never gets here: the driver ends those runs as KILLED


def sweep_target(spec: SweepSpec, features: pd.DataFrame | None = None) -> Target:
    """The forecaster's Target: trials on ``features`` (default: loaded as ``spec.options`` say) before
    ``tune_end``, and the retrain of the best on the same days (meta ``tuned_before=tune_end``)."""
    from finpulse.forecast.inputs import load_features
    from finpulse.forecast.train import TrainOptions, train_forecaster

    opts = ForecasterOptions(**spec.options)
    base = ForecastConfig(**spec.base)
    if spec.budget.max_epochs:
        base = base.model_copy(update={"max_epochs": spec.budget.max_epochs})
    df = features if features is not None else load_features(opts.features, embedded=opts.embedded,
                                                             tickers=base.tickers)
    base = tuning_base(df, base, opts.tune_end, opts.test_start)

    def retrain(best: dict[str, Any], parent_run_id: str) -> tuple[str | None, Any]:
        result = train_forecaster(df, ForecastConfig(**{**base.model_dump(), **best}), TrainOptions(
            parent_run_id=parent_run_id, run_name="tune-best-retrain", experiment=tracking.FORECAST_EXPERIMENT,
            register=True, tuned_before=base.val_end))
        return (result.ref.label if result.ref else None), result

    return Target(_trial, {"features": df, "base": {**json.loads(base.model_dump_json()),
                                                    "_threads": opts.threads_per_trial}},
                  {"cpu": spec.budget.cpus_per_trial}, base.max_epochs, tracking.FORECAST_EXPERIMENT, retrain,
                  opts.reuse_actors, {"tune_end": str(base.val_end)})
