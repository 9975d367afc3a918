"""What both Ray Tune searches share (the forecaster's and the sentiment model's).

Configurations are sampled up front from a space with a seed (:func:`sample_configs`) and run as a
grid (:func:`run_grid`), so the same configurations can run under ASHA and FIFO; every trial reports
once per epoch and ASHA decides after each report (:func:`make_scheduler`). :func:`trial_table`
turns the result grid into one row per trial, best first. MLflow stays in :mod:`finpulse.tracking`:
each trial opens its own child run under the search's parent run.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from finpulse.runtime import sigint_restored
from finpulse.storage import ray_storage

Mode = Literal["min", "max"]


def sample_configs(space: BaseModel, n: int, seed: int, log_fields: Iterable[str] = ()) -> list[dict[str, Any]]:
    """``n`` configurations from ``space``, drawn field by field in declaration order with one seeded rng:
    a list field is a choice, a ``(low, high)`` tuple is uniform, or log-uniform when named in ``log_fields``."""
    rng = np.random.default_rng(seed)
    log = set(log_fields)
    out = []
    for _ in range(n):
        config: dict[str, Any] = {}
        for name in type(space).model_fields:
            values = getattr(space, name)
            if isinstance(values, tuple) and name in log:
                config[name] = float(math.exp(rng.uniform(math.log(values[0]), math.log(values[1]))))
            elif isinstance(values, tuple):
                config[name] = float(rng.uniform(*values))
            else:
                config[name] = rng.choice(values).item()
        out.append(config)
    return out


def make_scheduler(kind: Literal["asha", "fifo"], *, max_t: int, grace_period: int, reduction_factor: int) -> Any:
    """ASHA over epochs (one report per epoch = one ``training_iteration``), or FIFO (every trial runs to its end)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if kind == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(max_t=max_t, grace_period=min(grace_period, max_t), reduction_factor=reduction_factor)


def run_grid(trainable: Callable[..., None], trials: list[dict[str, Any]], *, metric: str, mode: Mode,
             scheduler: Any, resources: dict[str, float], tune_options: dict[str, Any], **shared: Any) -> Any:
    """Run ``trainable(params, **shared)`` once per configuration (``params["trial"]``) and return the ResultGrid.

    ``shared`` goes through ``tune.with_parameters``: the object store holds it once and every trial reads it
    from there. ``tune_options`` holds ``max_concurrent_trials`` and ``reuse_actors``."""
    from ray import tune

    storage = ray_storage()  # FINPULSE_RAY_STORAGE_PATH: every trial's results and checkpoints
    runnable = tune.with_resources(tune.with_parameters(trainable, **shared), resources)
    tuner = tune.Tuner(
        runnable,
        param_space={"trial": tune.grid_search(trials)},
        tune_config=tune.TuneConfig(metric=metric, mode=mode, scheduler=scheduler, **tune_options),
        run_config=tune.RunConfig(name=f"tune-{uuid.uuid4().hex[:8]}", verbose=0, **storage.run_config_args()),
    )
    with sigint_restored(), storage.reaching("running a Tune search"):
        return tuner.fit()


def trial_table(grid: Any, metric: str, mode: Mode, *, best_column: str, epochs_column: str = "epochs",
                also: Iterable[str] = ()) -> pd.DataFrame:
    """One row per trial: its configuration, its best ``metric``, the epochs it ran and its MLflow run; best first.
    ``also`` names other reported metrics to show at the trial's best epoch (``best_<name>``).

    A trial that never reported gets NaN and 0 epochs and sorts last."""
    rows = []
    for r in grid:
        df = r.metrics_dataframe
        ran = df is not None and len(df) > 0 and metric in df
        at = (df[metric].idxmin() if mode == "min" else df[metric].idxmax()) if ran else None
        rows.append({**r.config["trial"], best_column: float(df.loc[at, metric]) if ran else math.nan,
                     **{f"best_{m}": float(df.loc[at, m]) if ran else math.nan for m in also},
                     epochs_column: int(df["epoch"].max()) + 1 if ran else 0,
                     "mlflow_run_id": (r.metrics or {}).get("mlflow_run_id", "")})
    table = pd.DataFrame(rows)
    return table.sort_values(best_column, ascending=mode == "min", na_position="last").reset_index(drop=True)


def plain(value: Any) -> Any:
    """A table cell as a plain Python value (numpy scalars to int/float/str), for configs and JSON."""
    return value.item() if hasattr(value, "item") else value
