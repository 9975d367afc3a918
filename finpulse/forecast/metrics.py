"""Forecast metrics on price and direction, interval quality, and the Diebold-Mariano test.

Forecasts are log returns r_hat; the price forecast is close_t * exp(r_hat), so MAE/MAPE/RMSE are
on price, in the ticker's currency. A prediction of exactly 0 claims no direction: a model that
always says 0 (persistence) gets NaN directional accuracy and MCC rather than a made-up score.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import matthews_corrcoef


def price_errors(pred_ret: np.ndarray, close: np.ndarray, target_close: np.ndarray) -> np.ndarray:
    return close * np.exp(pred_ret) - target_close


def directional_accuracy(pred_ret: np.ndarray, true_ret: np.ndarray) -> float:
    pred_ret, true_ret = np.asarray(pred_ret), np.asarray(true_ret)
    if not np.any(pred_ret != 0):
        return math.nan
    return float(np.mean((pred_ret > 0) == (true_ret > 0)))


def mcc(pred_up: np.ndarray, true_up: np.ndarray) -> float:
    pred_up, true_up = np.asarray(pred_up, bool), np.asarray(true_up, bool)
    if pred_up.size == 0:
        return math.nan
    return float(matthews_corrcoef(true_up, pred_up))


def forecast_metrics(pred_ret: np.ndarray, true_ret: np.ndarray, close: np.ndarray, target_close: np.ndarray,
                     low_ret: np.ndarray | None = None, high_ret: np.ndarray | None = None) -> dict[str, float]:
    """MAE, MAPE (%), RMSE on price; directional accuracy and MCC; interval coverage and mean width (price)."""
    err = price_errors(pred_ret, close, target_close)
    out = {
        "n": float(len(err)),
        "mae": float(np.mean(np.abs(err))),
        "mape": float(np.mean(np.abs(err) / np.abs(target_close)) * 100),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "rmse_return": float(np.sqrt(np.mean((np.asarray(pred_ret) - true_ret) ** 2))),
        "directional_accuracy": directional_accuracy(pred_ret, true_ret),
        "mcc": mcc(np.asarray(pred_ret) > 0, np.asarray(true_ret) > 0) if np.any(np.asarray(pred_ret) != 0) else math.nan,
        "coverage": math.nan,
        "interval_width": math.nan,
    }
    if low_ret is not None and high_ret is not None:
        lo, hi = close * np.exp(low_ret), close * np.exp(high_ret)
        out["coverage"] = float(np.mean((target_close >= lo) & (target_close <= hi)))
        out["interval_width"] = float(np.mean(hi - lo))
    return out


def diebold_mariano(loss_model: np.ndarray, loss_base: np.ndarray, h: int = 1) -> tuple[float, float]:
    """DM statistic with the Harvey-Leybourne-Newbold small-sample correction, and the ONE-sided p-value
    for 'the model's loss is lower than the baseline's' (Student t, n-1 df).

    Inputs are per-period losses (e.g. a day's mean absolute price error across tickers).
    """
    d = np.asarray(loss_model, float) - np.asarray(loss_base, float)
    n = d.size
    if n < 3:
        return math.nan, math.nan
    mean = d.mean()
    gamma = [np.sum((d[k:] - mean) * (d[: n - k] - mean)) / n for k in range(h)]
    var = (gamma[0] + 2 * sum(gamma[1:])) / n
    if var <= 0:
        return (0.0, 0.5) if mean == 0 else (math.copysign(math.inf, mean), 0.0 if mean < 0 else 1.0)
    dm = mean / math.sqrt(var)
    hln = math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    stat = dm * hln
    return float(stat), float(stats.t.cdf(stat, df=n - 1))


def daily_loss(dates: np.ndarray, abs_err: np.ndarray, scale: np.ndarray | None = None) -> pd.Series:
    """Per-day mean loss across tickers (the series the DM test runs on). ``scale`` (e.g. today's
    close) makes tickers of different price levels comparable: the loss becomes a relative error."""
    loss = np.abs(abs_err) / (scale if scale is not None else 1.0)
    return pd.Series(loss).groupby(pd.Series(dates)).mean().sort_index()


def dm_vs(dates: np.ndarray, err_model: np.ndarray, err_base: np.ndarray, close: np.ndarray) -> tuple[float, float]:
    """DM test of the model's absolute relative price error against a baseline's, on daily means."""
    a = daily_loss(dates, err_model, close)
    b = daily_loss(dates, err_base, close)
    return diebold_mariano(a.to_numpy(), b.reindex(a.index).to_numpy())


def dm_between(predictions: pd.DataFrame, model: str, baseline: str) -> tuple[float, float]:
    """DM test (one-sided: ``model`` more accurate) of any two models in a walk-forward's predictions."""
    a = predictions[predictions["model"] == model].set_index(["ticker", "date"]).sort_index()
    b = predictions[predictions["model"] == baseline].set_index(["ticker", "date"]).reindex(a.index)
    ea = price_errors(a["pred"].to_numpy(), a["close"].to_numpy(), a["target_close"].to_numpy())
    eb = price_errors(b["pred"].to_numpy(), b["close"].to_numpy(), b["target_close"].to_numpy())
    return dm_vs(a.index.get_level_values("date").to_numpy(), ea, eb, a["close"].to_numpy())
