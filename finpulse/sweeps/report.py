"""A sweep's leaderboard, read back from the Ray experiment at the storage path (local or ``s3://``), and
what the MLflow parent run gets: the leaderboard as a table and a plot of each parameter against the metric.

The leaderboard comes from Tune's saved state (``ExperimentAnalysis``), not from the driver's memory, so
``finpulse tune-report <name>`` shows the same table for a running, interrupted or finished sweep.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from finpulse import storage
from finpulse.sweeps.spec import SweepSpec


def _row(trial: Any, df: pd.DataFrame | None, spec: SweepSpec) -> dict[str, Any]:
    m = spec.metric
    ran = df is not None and len(df) > 0 and m in df
    best = (df[m].min() if spec.mode == "min" else df[m].max()) if ran else math.nan
    config = {k: v for k, v in trial.config.items() if v is not None}
    return {"trial": trial.trial_id, "status": trial.status, **{k: config.get(k) for k in spec.params},
            f"best_{m}": float(best), "epochs": int(len(df)) if ran else 0,
            "mlflow_run_id": (trial.last_result or {}).get("mlflow_run_id", ""), "config": config}


def leaderboard(experiment_path: str, spec: SweepSpec, filesystem: Any = None) -> pd.DataFrame:
    """One row per trial, best first: rank, trial id, status, searched values (None: inactive), the best
    ``metric`` over its epochs, epochs run, its MLflow run, and ``config`` (its searched values as a dict)."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(experiment_path, storage_filesystem=filesystem)
    frames = analysis.trial_dataframes
    rows = [_row(t, frames.get(t.trial_id), spec) for t in analysis.trials]
    board = pd.DataFrame(rows, columns=["trial", "status", *spec.params, f"best_{spec.metric}", "epochs",
                                        "mlflow_run_id", "config"])
    board = board.sort_values(f"best_{spec.metric}", ascending=spec.mode == "min", na_position="last")
    board.insert(0, "rank", range(1, len(board) + 1))
    return board.reset_index(drop=True)


def report(name: str) -> tuple[SweepSpec, pd.DataFrame]:
    """The spec and leaderboard of the sweep ``name`` under the configured Ray storage."""
    from finpulse.sweeps.run import SPEC_FILE, sweep_path
    from finpulse.sweeps.spec import SweepSpecError, parse_spec

    uri = sweep_path(name)
    if not storage.exists(storage.join(uri, SPEC_FILE)):
        raise SweepSpecError(f"no sweep named {name!r} at {uri}")
    spec = parse_spec(storage.read_json(storage.join(uri, SPEC_FILE)), name)
    rs = storage.ray_storage()
    path = storage.join(rs.storage_path, name) if rs.filesystem is not None else uri
    return spec, leaderboard(path, spec, filesystem=rs.filesystem)


def printable(board: pd.DataFrame) -> str:
    return board.drop(columns=["config"]).to_string(index=False)


def parameter_plot(board: pd.DataFrame, spec: SweepSpec) -> Any:
    """A matplotlib figure: one scatter per parameter, its value against the trial's best metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(spec.params)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False)
    y = board[f"best_{spec.metric}"]
    for ax, name in zip(axes[0], names, strict=True):
        x = board[name]
        if spec.params[name].kind == "choice":
            labels = [str(c) for c in spec.params[name].choice]
            ax.scatter([labels.index(str(v)) if v is not None else -1 for v in x], y, alpha=0.7)
            ax.set_xticks(range(len(labels)), labels)
        else:
            ax.scatter(pd.to_numeric(x, errors="coerce"), y, alpha=0.7)
            ax.set_xscale("log" if spec.params[name].kind == "loguniform" else "linear")
        ax.set_xlabel(name)
    axes[0][0].set_ylabel(f"best {spec.metric}")
    fig.tight_layout()
    return fig


def log_leaderboard(parent: Any, board: pd.DataFrame, spec: SweepSpec) -> None:
    """The parent run's artifacts: ``leaderboard.csv`` and ``parameters.png`` (parameter vs metric)."""
    import matplotlib.pyplot as plt

    parent.log_table(board.drop(columns=["config"]), "leaderboard.csv")
    fig = parameter_plot(board, spec)
    try:
        parent.log_figure(fig, "parameters.png")
    finally:
        plt.close(fig)
