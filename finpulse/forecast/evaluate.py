"""Evaluate a forecaster and record the evidence: the walk-forward, its report, MLflow, the promotion gate's inputs.

Thin on purpose: the walk-forward itself is :mod:`finpulse.forecast.walk_forward` (pure), the table
and plots are :mod:`finpulse.forecast.report`, and MLflow is reached only through
:mod:`finpulse.tracking`. What is logged (metric keys, artifact names, tags) is what people and the
promotion gate (:mod:`finpulse.forecast.promote`) read, so it does not change casually.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finpulse import tracking
from finpulse.forecast import holdout
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.model import LoadedForecaster, load_forecaster
from finpulse.forecast.report import markdown_report, report_plots, write_report
from finpulse.forecast.walk_forward import PERSISTENCE, WalkForwardConfig, WalkForwardResult, walk_forward


def evaluate_model(features: pd.DataFrame, model: str | None = None, config: ForecastConfig | None = None,
                   wf: WalkForwardConfig | None = None, *, experiment: str = tracking.FORECAST_EXPERIMENT,
                   out_dir: str | Path | None = None, log_to_model_run: bool = True,
                   synthetic: bool | None = None) -> WalkForwardResult:
    """Walk-forward evaluation of a registered model (its configuration refit per fold, and its saved
    weights scored as they are) or of ``config``, logged to MLflow.

    Refuses weights whose training, validation or tuning reached into the test window. Logs an
    evaluation run (metrics of every model, table, report, plots, ``leakage_alarm``) and, when the
    model has a training run, :func:`promotion_evidence` on that run: what promotion reads.
    ``synthetic`` overrides what the features say about their posts (``attrs["synthetic_inputs"]``).
    """
    wf = wf or WalkForwardConfig()
    config, loaded, ref = _subject(model, config)
    result = walk_forward(features, config, wf, weights=loaded, synthetic=synthetic)
    name = f"lstm_{config.feature_set}"
    report = markdown_report(result, config, wf)
    plots = report_plots(result, name)
    log_evaluation(result, wf, report, plots, experiment=experiment, run_name=f"evaluate-{ref.label if ref else name}",
                   model_label=ref.label if ref else None)
    if ref is not None and ref.run_id and log_to_model_run:
        record_walk_forward(ref.run_id, result, name, wf)
    if out_dir:
        write_report(out_dir, report, result.table, plots)
    _close(plots)
    return result


def _subject(model: str | None, config: ForecastConfig | None
             ) -> tuple[ForecastConfig, LoadedForecaster | None, tracking.ModelRef | None]:
    """What is evaluated: a saved model's configuration and weights (``config`` may narrow its tickers), or ``config``."""
    if model is None:
        if config is None:
            raise ValueError("give a model spec or a ForecastConfig")
        return config, None, None
    loaded = load_forecaster(model)
    cfg = loaded.config.model_copy(update={"tickers": config.tickers if config else loaded.config.tickers})
    ref = tracking.resolve(model) if not Path(str(model)).is_dir() else None
    return cfg, loaded, ref


def log_evaluation(result: WalkForwardResult, wf: WalkForwardConfig, report: str, plots: dict[str, Any], *,
                   experiment: str = tracking.FORECAST_EXPERIMENT, run_name: str = "evaluate",
                   model_label: str | None = None) -> str:
    """One evaluation run: ``<model>.<metric>`` for every row, the tables, the report and the plots; returns its id."""
    tags = {"finpulse.kind": "evaluate", "wf_key": wf.key(), "leakage_alarm": str(result.leakage_alarm).lower(),
            "data_synthetic": str(result.synthetic).lower(), "wf_test_start": str(result.folds[0][0]),
            **({"model": model_label} if model_label else {})}
    with tracking.start_run(experiment, run_name=run_name, tags=tags) as run:
        for model_name, row in result.table.iterrows():
            run.log_metrics({f"{model_name}.{k}": float(v) for k, v in row.items()
                             if isinstance(v, int | float) and np.isfinite(v)})
        run.log_dict(json.loads(wf.model_dump_json()), "walk_forward_config.json")
        run.log_text(result.table.to_csv(), "metrics_table.csv")  # the index is the model name
        run.log_table(result.per_ticker, "metrics_per_ticker.csv")
        run.log_table(result.predictions, "predictions.csv")  # every model's forecasts: the dashboard's charts
        run.log_text(report, "report.md")
        for file, fig in plots.items():
            run.log_figure(fig, f"plots/{file}")
    return run.run_id


def promotion_evidence(result: WalkForwardResult, name: str) -> dict[str, float]:
    """What the promotion gate reads: ``wf_*`` of the saved weights (the ``registered`` row, scored on
    days none of their training or tuning saw), the configuration's refits (``wf_config_mae``),
    persistence on the same days, and the leakage alarm with the data's synthetic label (0/1)."""
    out = {"wf_persistence_mae": result.metric(PERSISTENCE, "mae") if PERSISTENCE in result.table.index else math.nan,
           "wf_config_mae": result.metric(name, "mae"), "wf_leakage_alarm": float(result.leakage_alarm),
           "wf_data_synthetic": float(result.synthetic)}
    if holdout.REGISTERED in result.table.index:
        row = result.table.loc[holdout.REGISTERED]
        out.update({"wf_mae": float(row["mae"]), "wf_mae_ratio_vs_persistence": float(row["mae_ratio_vs_persistence"]),
                    "wf_dm_pvalue": float(row["dm_pvalue"]), "wf_directional_accuracy": float(row["directional_accuracy"]),
                    "wf_coverage": float(row["coverage"]), "wf_out_of_sample": 1.0})
    accs = [float(result.table.loc[m, "directional_accuracy"]) for m in (holdout.REGISTERED, name, "lstm_price")
            if m in result.table.index]
    out["wf_leakage_accuracy"] = max(accs) if accs else math.nan  # the highest of the models the alarm watches
    return out


def record_walk_forward(run_id: str, result: WalkForwardResult, name: str, wf: WalkForwardConfig) -> None:
    """Write :func:`promotion_evidence` (finite values) and the protocol's ``wf_key`` onto a model's training
    run: the promotion gate reads them there."""
    tracking.annotate_run(run_id, metrics=promotion_evidence(result, name),
                          tags={"wf_key": wf.key(), "leakage_alarm": str(result.leakage_alarm).lower()})


def _close(plots: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    for fig in plots.values():
        plt.close(fig)
