"""A daily long/short backtest of the forecasts, with transaction costs, against buy-and-hold.

Each day and ticker the position is +1 when the forecast return is above ``threshold``, -1 when below
``-threshold``, else 0; the portfolio is the equal-weighted mean over tickers. Trading costs
``cost_bps`` per unit of position change (turnover), charged on the day of the change.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

TRADING_DAYS = 252


def positions(pred_ret: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    p = np.asarray(pred_ret, float)
    return np.where(p > threshold, 1.0, np.where(p < -threshold, -1.0, 0.0))


def backtest(frame: pd.DataFrame, pred_col: str = "pred", cost_bps: float = 5.0, threshold: float = 0.0) -> dict:
    """``frame`` has ticker, date, target_ret (log) and ``pred_col``. Returns summary stats and the daily curve."""
    df = frame[["ticker", "date", "target_ret", pred_col]].sort_values(["ticker", "date"]).copy()
    df["pos"] = positions(df[pred_col].to_numpy(), threshold)
    df["turn"] = df.groupby("ticker")["pos"].diff().abs().fillna(df["pos"].abs())
    simple = np.expm1(df["target_ret"].to_numpy())
    df["strat"] = df["pos"] * simple - df["turn"] * cost_bps / 1e4
    df["hold"] = simple
    daily = df.groupby("date")[["strat", "hold", "turn"]].mean().sort_index()
    return {
        **_stats(daily["strat"], "strategy"),
        **_stats(daily["hold"], "buy_hold"),
        "turnover": float(daily["turn"].mean()),
        "curve": pd.DataFrame({"strategy": (1 + daily["strat"]).cumprod(), "buy_hold": (1 + daily["hold"]).cumprod()}),
    }


def _stats(daily: pd.Series, name: str) -> dict[str, float]:
    std = float(daily.std())
    return {
        f"{name}_return": float((1 + daily).prod() - 1),
        f"{name}_sharpe": float(daily.mean() / std * math.sqrt(TRADING_DAYS)) if std > 0 else math.nan,
    }
