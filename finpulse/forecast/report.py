"""The walk-forward report: a markdown table and the plots logged with every evaluation.

Pure presentation of a :class:`~finpulse.forecast.walk_forward.WalkForwardResult`: the evaluation
logs these to MLflow and, when asked, writes the same files to a folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from finpulse.forecast.walk_forward import PERSISTENCE

if TYPE_CHECKING:
    from finpulse.forecast.config import ForecastConfig
    from finpulse.forecast.walk_forward import WalkForwardConfig, WalkForwardResult

TABLE_COLUMNS = ["mae", "mape", "rmse", "mae_ratio_vs_persistence", "directional_accuracy", "mcc", "coverage",
                 "interval_width", "dm_stat", "dm_pvalue", "strategy_return", "strategy_sharpe", "turnover",
                 "buy_hold_return", "buy_hold_sharpe"]


def format_table(table: pd.DataFrame, columns: list[str] | None = None) -> str:
    """Markdown table (no tabulate dependency)."""
    cols = [c for c in (columns or TABLE_COLUMNS) if c in table.columns]
    lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in table.iterrows():
        cells = ["" if pd.isna(row[c]) else f"{row[c]:.4g}" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def forecast_vs_actual(predictions: pd.DataFrame, model: str, ticker: str | None = None,
                       last_n: int | None = 120) -> pd.DataFrame:
    """One model's next-day close forecasts of one ticker in prices (the calibrated interval as low/high,
    NaN when the model has none), dated the day forecast: what the report plots and the dashboard charts."""
    g = predictions[predictions["model"] == model]
    ticker = ticker or str(g["ticker"].iloc[0])
    g = g[g["ticker"] == ticker].sort_values("date")
    g = g.tail(last_n) if last_n else g
    return pd.DataFrame({"date": (pd.to_datetime(g["date"]) + pd.offsets.BDay(1)).to_numpy(), "ticker": ticker,
                         "actual": g["target_close"].to_numpy(), "forecast": (g["close"] * np.exp(g["pred"])).to_numpy(),
                         "low": (g["close"] * np.exp(g["low"])).to_numpy(), "high": (g["close"] * np.exp(g["high"])).to_numpy()})


def forecast_plot(predictions: pd.DataFrame, model: str, ticker: str | None = None, last_n: int = 120):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = forecast_vs_actual(predictions, model, ticker, last_n)
    ticker = str(f["ticker"].iloc[0])
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(f["date"], f["actual"], label="actual close", color="black", lw=1)
    ax.plot(f["date"], f["forecast"], label=f"{model} forecast", lw=1)
    if f["low"].notna().all():
        ax.fill_between(f["date"], f["low"], f["high"], alpha=0.25, label="90% interval")
    ax.set_title(f"{ticker}: next-day close, walk-forward")
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def backtest_plot(tests: dict[str, dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, bt in tests.items():
        if name != PERSISTENCE:
            ax.plot(pd.to_datetime(bt["curve"].index), bt["curve"]["strategy"], label=f"{name} long/short", lw=1)
    first = next(iter(tests.values()))
    ax.plot(pd.to_datetime(first["curve"].index), first["curve"]["buy_hold"], label="buy and hold", color="black")
    ax.set_title("Cumulative backtest (after costs)")
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def markdown_report(result: WalkForwardResult, config: ForecastConfig, wf: WalkForwardConfig,
                    stocknet: pd.DataFrame | None = None) -> str:
    lines = ["# Forecaster walk-forward evaluation", "",
             f"Feature set `{config.feature_set}`, lookback {config.lookback}, {wf.k} refits (expanding window), "
             f"folds: {', '.join(f'{a}..{b}' for a, b in result.folds)}. Costs {wf.cost_bps} bps per unit turnover.",
             "DM: Diebold-Mariano (HLN) on daily mean absolute relative price error vs persistence, one-sided p "
             "(H1: the model is more accurate).", "", format_table(result.table), ""]
    if stocknet is not None:
        lines += ["## StockNet protocol (Xu and Cohen, ACL 2018)", "", format_table(stocknet, ["n", "accuracy", "mcc"]),
                  ""]
    return "\n".join(lines)


def report_plots(result: WalkForwardResult, model: str) -> dict[str, Any]:
    """The evaluation's figures by file name (MLflow keeps them under ``plots/``, a report folder at its top)."""
    return {"forecast_vs_actual.png": forecast_plot(result.predictions, model),
            "backtest.png": backtest_plot(result.backtests)}


def write_report(out_dir: str | Path, report: str, table: pd.DataFrame, plots: dict[str, Any]) -> Path:
    """``report.md``, ``metrics_table.csv`` and the plots in ``out_dir`` (a copy to read without MLflow)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(report)
    table.to_csv(out / "metrics_table.csv")
    for file, fig in plots.items():
        fig.savefig(out / file)
    return out
