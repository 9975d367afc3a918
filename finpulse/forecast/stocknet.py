"""The StockNet protocol (Xu and Cohen, ACL 2018): up/down movement on their split, next to the paper.

Train on 2014-01..2015-08, validate to 2015-10, test the last quarter of 2015; a day is labelled up
above +0.55% and down at or below -0.5%, and the band in between is dropped. Pure (no Ray, no MLflow).
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
from pydantic import BaseModel

from finpulse.forecast import baselines
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.loop import fit_in_process, prepare_training_data
from finpulse.forecast.metrics import mcc
from finpulse.forecast.model import predict_arrays
from finpulse.forecast.windows import concat_windows

STOCKNET_PAPER = {"accuracy": 0.5823, "mcc": 0.081}  # Xu and Cohen (ACL 2018), StockNet (best variant)
STOCKNET_TICKERS = ("AAPL", "AMZN", "BAC", "FB", "GOOG", "INTC", "JPM", "MSFT", "WMT", "XOM")

def stocknet_labels(log_ret: np.ndarray, up: float = 0.0055, down: float = -0.005) -> np.ndarray:
    """1 (up: next close above +0.55%), 0 (down: at or below -0.5%), NaN in between (dropped)."""
    pct = np.expm1(np.asarray(log_ret, float))
    return np.where(pct > up, 1.0, np.where(pct <= down, 0.0, np.nan))


class StockNetConfig(BaseModel):
    """The paper's split and movement thresholds (defaults: the published protocol)."""

    train_start: dt.date = dt.date(2014, 1, 1)
    train_end: dt.date = dt.date(2015, 8, 1)
    val_end: dt.date = dt.date(2015, 10, 1)
    test_end: dt.date = dt.date(2016, 1, 1)
    up: float = 0.0055
    down: float = -0.005


def stocknet_evaluate(features: pd.DataFrame, config: ForecastConfig, sn: StockNetConfig | None = None) -> pd.DataFrame:
    """Train on the StockNet split, predict the test quarter, score movement on the labelled days.

    The LSTM is a regressor trained on every day (the dropped band included); its movement call is the
    sign of the forecast return. The table also lists ridge, the price-only LSTM and the paper.
    """
    sn = sn or StockNetConfig()
    rows = []
    for name, fs in (("lstm_" + config.feature_set, config.feature_set), ("lstm_price", "price")):
        if name == "lstm_price" and config.feature_set == "price":
            continue
        cfg = config.model_copy(update={"feature_set": fs, "train_start": sn.train_start, "train_end": sn.train_end,
                                        "val_end": sn.val_end})
        data = prepare_training_data(features, cfg)
        test = data.rest.between(sn.val_end, sn.test_end)
        labels = stocknet_labels(test.target_ret, sn.up, sn.down)
        keep = np.isfinite(labels)
        fit = fit_in_process(data, cfg)
        point, _ = predict_arrays(fit.model, test.x, test.ticker_idx, data.scaler.target_scale)
        rows.append(_movement_row(name, point[keep] > 0, labels[keep]))
        if name.startswith("lstm_") and fs == config.feature_set:
            ridge_pred = baselines.ridge(concat_windows([data.train, data.val]), test)
            rows.append(_movement_row("ridge", ridge_pred[keep] > 0, labels[keep]))
            rows.append(_movement_row("always_up", np.ones(keep.sum(), bool), labels[keep]))
    rows.append({"model": "StockNet (paper)", "n": math.nan, "accuracy": STOCKNET_PAPER["accuracy"],
                 "mcc": STOCKNET_PAPER["mcc"]})
    return pd.DataFrame(rows).set_index("model")


def _movement_row(name: str, pred_up: np.ndarray, labels: np.ndarray) -> dict:
    true_up = labels.astype(bool)
    return {"model": name, "n": float(len(labels)), "accuracy": float(np.mean(pred_up == true_up)) if len(labels)
            else math.nan, "mcc": mcc(pred_up, true_up)}
