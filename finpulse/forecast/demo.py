"""The forecaster's part of `make demo`: train (Ray Train), evaluate walk-forward, register, promote.

Called by ``finpulse.demo`` with the ETL's daily features (or, alone, on the shipped prices plus
synthetic posts). The gate is real: with posts that carry no signal the LSTM may not clear
persistence, and then the demo says so instead of promoting.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

import pandas as pd

from finpulse import tracking
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.evaluate import evaluate_model
from finpulse.forecast.promote import PromotionPolicy, promote
from finpulse.forecast.report import format_table
from finpulse.forecast.train import train_forecaster
from finpulse.forecast.walk_forward import WalkForwardConfig

DEMO_COLUMNS = ["mae", "mape", "rmse", "mae_ratio_vs_persistence", "directional_accuracy", "mcc", "coverage",
                "dm_pvalue", "strategy_sharpe", "buy_hold_sharpe"]


def run_forecast_demo(features: pd.DataFrame | None = None, *, config: ForecastConfig | None = None,
                      wf: WalkForwardConfig | None = None, policy: PromotionPolicy | None = None,
                      signal_strength: float = 0.5, max_epochs: int = 15, k: int = 2, echo=print) -> dict:
    """Train -> register (challenger) -> walk-forward evaluate -> promote; prints the metrics table."""
    from finpulse.forecast.inputs import connect_ray, synthetic_features

    if features is None:
        features = synthetic_features(["AAPL", "MSFT", "AMZN"], start="2017-01-01", signal_strength=signal_strength)
        echo(f"forecaster: real prices + SYNTHETIC posts with a planted next-day signal (strength "
             f"{signal_strength}): the gain below is the planted signal, not a market result")
    days = sorted(pd.to_datetime(features["date"]).dt.date.unique())
    test_start = days[int(len(days) * 0.8)]
    config = config or ForecastConfig(hidden_size=16, lookback=10, max_epochs=max_epochs, patience=4, batch_size=64,
                                      num_workers=2, val_end=test_start)
    wf = wf or WalkForwardConfig(k=k, test_start=test_start)
    connect_ray()
    echo(f"forecaster: training with Ray Train ({config.num_workers} workers) on {features['ticker'].nunique()} "
         f"tickers, {days[0]}..{days[-1]}")
    trained = train_forecaster(features, config)
    echo(f"forecaster: registered {trained.ref.label if trained.ref else trained.model_dir} as challenger")
    result = evaluate_model(features, tracking.model_spec(tracking.FORECAST_MODEL, tracking.CHALLENGER), wf=wf)
    echo(f"forecaster: walk-forward, {wf.k} refits, {result.folds[0][0]}..{result.folds[-1][1]}")
    echo(format_table(result.table, DEMO_COLUMNS))
    decision = promote(tracking.FORECAST_MODEL, policy or PromotionPolicy())
    echo(f"forecaster: {'PROMOTED to champion' if decision.promote else 'NOT promoted'}: " + "; ".join(decision.reasons))
    return {"model": trained.ref.label if trained.ref else None, "decision": asdict(decision),
            "table": result.table, "as_of": dt.date.today().isoformat()}
