"""The StockNet protocol (Xu and Cohen, ACL 2018) exactly, next to the paper's 58.23% / MCC 0.081.

- Samples are (stock, target day d); the split is by the TARGET day: train 2014-01-01..2015-08-01,
  validation ..2015-10-01, test ..2016-01-01.
- Movement from Adj Close: up when adj_d / adj_{d-1} - 1 > +0.55%, down when <= -0.5%; the days in
  between are dropped from every split.
- Features: a 5-trading-day lag window d-5..d-1. Prices as the paper's: adjusted close, high and low of
  each day relative to the previous adjusted close. Tweets: FinPulse's daily sentiment aggregates.
- Alignment (no leakage): a tweet counts for the first trading day whose 16:00 New York close is after
  it (FinPulse's :func:`finpulse.data.calendar.align_to_trading_day`); the window ends on d-1, so only
  tweets before the close of the as-of day d-1 reach a sample, never one of the target day's session.

Pure (no Ray, no MLflow). The LSTM is FinPulse's forecaster (``ForecastConfig``, ``fit_in_process``): a
regressor of the next log return whose movement call is its sign.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
from pydantic import BaseModel

from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.loop import TrainingData, fit_in_process
from finpulse.forecast.metrics import mcc
from finpulse.forecast.model import predict_arrays
from finpulse.forecast.windows import Scaler, Windows, build_windows, prepare_frame, ticker_index

STOCKNET_PAPER = {"accuracy": 0.5823, "mcc": 0.081}  # Xu and Cohen (ACL 2018), StockNet (HedgeFundAnalyst)
PRICE_COLUMNS = ["sn_close", "sn_high", "sn_low"]  # the paper's price vector, relative to the previous adj close
TWEET_COLUMNS = ["sent_mean", "sent_count", "sent_pos_share", "sent_neg_share", "has_posts"]


class StockNetConfig(BaseModel):
    """The paper's target-day split, movement thresholds and lag window (defaults: the published protocol)."""

    train_start: dt.date = dt.date(2014, 1, 1)
    train_end: dt.date = dt.date(2015, 8, 1)
    val_end: dt.date = dt.date(2015, 10, 1)
    test_end: dt.date = dt.date(2016, 1, 1)
    up: float = 0.0055
    down: float = -0.005
    lag: int = 5


def stocknet_labels(log_ret: np.ndarray, up: float = 0.0055, down: float = -0.005) -> np.ndarray:
    """1 (up: above +0.55%), 0 (down: at or below -0.5%), NaN in between (dropped)."""
    pct = np.expm1(np.asarray(log_ret, float))
    return np.where(pct > up, 1.0, np.where(pct <= down, 0.0, np.nan))


def wilson_interval(successes: float, n: float, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% by default); (nan, nan) when n is 0."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def protocol_features(prices: pd.DataFrame, daily: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (ticker, trading day t): the paper's price vector of t from adjusted prices, t's tweet
    aggregates (from ``daily``: FinPulse's daily features, tweets aligned to the 16:00 close), and the
    movement to the next trading day (``target_date``, ``target_ret_1d`` = log adj_{t+1} / adj_t).

    ``prices``: validated PRICES rows (``sources.normalize_prices``) with ``adj_close``."""
    p = prices.sort_values(["ticker", "date"]).reset_index(drop=True).copy()
    p["date"] = pd.to_datetime(p["date"]).dt.date
    factor = p["adj_close"].astype(float) / p["close"].astype(float)  # dividends and splits
    prev = p.groupby("ticker")["adj_close"].shift(1).astype(float)
    p["sn_close"] = p["adj_close"].astype(float) / prev - 1.0
    p["sn_high"] = p["high"].astype(float) * factor / prev - 1.0
    p["sn_low"] = p["low"].astype(float) * factor / prev - 1.0
    nxt = p.groupby("ticker")["adj_close"].shift(-1).astype(float)
    p["target_ret_1d"] = np.log(nxt / p["adj_close"].astype(float))
    p["target_date"] = p.groupby("ticker")["date"].shift(-1)
    p["target_close"] = nxt
    out = p[["ticker", "date", "close", "target_date", "target_ret_1d", "target_close", *PRICE_COLUMNS]]
    out = out[np.isfinite(out[PRICE_COLUMNS].to_numpy(float)).all(axis=1)]
    if daily is None:
        return out.assign(**{c: 0.0 for c in TWEET_COLUMNS}).reset_index(drop=True)
    tweets = daily[["ticker", "date", *TWEET_COLUMNS]].copy()
    tweets["date"] = pd.to_datetime(tweets["date"]).dt.date
    out = out.merge(tweets, on=["ticker", "date"], how="left")
    out[TWEET_COLUMNS] = out[TWEET_COLUMNS].astype(float).fillna(0.0)
    out["sent_count"] = np.log1p(out["sent_count"])  # counts span 0..hundreds; the log keeps the scale sane
    return out


def _target_dates(frame: pd.DataFrame, w: Windows) -> np.ndarray:
    key = pd.DataFrame({"ticker": w.tickers.astype(str), "date": w.dates})
    return key.merge(frame[["ticker", "date", "target_date"]], on=["ticker", "date"], how="left")["target_date"].to_numpy()


def protocol_samples(features: pd.DataFrame, columns: list[str], sn: StockNetConfig) -> tuple[Windows, np.ndarray, Scaler, dict]:
    """Every labelled sample (the dropped band removed) with its target day; the scaler is fit on the rows
    whose target day is in the training period only."""
    frame = prepare_frame(features, columns)
    frame = frame[frame["target_date"].notna()]
    fit_rows = frame[(frame["target_date"] >= sn.train_start) & (frame["target_date"] < sn.train_end)]
    scaler = Scaler.fit(fit_rows, columns)
    tickers = ticker_index(frame["ticker"].unique().tolist())
    windows = build_windows(frame, scaler, sn.lag, tickers, prepared=True)
    target_day = _target_dates(frame, windows)
    labels = stocknet_labels(windows.target_ret, sn.up, sn.down)
    keep = np.isfinite(labels) & (target_day >= sn.train_start) & (target_day < sn.test_end)
    return windows.subset(keep), target_day[keep], scaler, tickers


def protocol_data(features: pd.DataFrame, columns: list[str], sn: StockNetConfig) -> TrainingData:
    """Train / validation / test (``rest``) windows split by the target day."""
    windows, target_day, scaler, tickers = protocol_samples(features, columns, sn)
    split = {name: windows.subset((target_day >= lo) & (target_day < hi)) for name, lo, hi in (
        ("train", sn.train_start, sn.train_end), ("val", sn.train_end, sn.val_end), ("test", sn.val_end, sn.test_end))}
    return TrainingData(split["train"], split["val"], scaler, tickers, sn.train_end, sn.val_end, split["test"])


def movement_row(name: str, pred_up: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy with its Wilson 95% interval, and MCC, of movement calls against the labels."""
    true_up = np.asarray(labels).astype(bool)
    n = len(true_up)
    hits = float(np.sum(np.asarray(pred_up, bool) == true_up))
    lo, hi = wilson_interval(hits, n)
    return {"model": name, "n": float(n), "accuracy": hits / n if n else math.nan, "ci_low": lo, "ci_high": hi,
            "mcc": mcc(np.asarray(pred_up, bool), true_up), "up_share": float(true_up.mean()) if n else math.nan}


def evaluate_lstm(name: str, features: pd.DataFrame, columns: list[str], config: ForecastConfig,
                  sn: StockNetConfig) -> dict:
    """Fit FinPulse's LSTM on the protocol's train split (early stopping on validation), score the test."""
    data = protocol_data(features, columns, sn)
    cfg = config.model_copy(update={"lookback": sn.lag})
    fit = fit_in_process(data, cfg)
    point, _ = predict_arrays(fit.model, data.rest.x, data.rest.ticker_idx, data.scaler.target_scale)
    labels = stocknet_labels(data.rest.target_ret, sn.up, sn.down)
    row = movement_row(name, point > 0, labels)
    return {**row, "n_train": float(len(data.train)), "n_val": float(len(data.val)), "best_epoch": float(fit.best_epoch)}


def stocknet_evaluate(tweet_features: dict[str, pd.DataFrame], config: ForecastConfig,
                      sn: StockNetConfig | None = None) -> pd.DataFrame:
    """The comparison table: the LSTM with price + tweet features per tweet scorer (``{name: features}``
    from :func:`protocol_features`), the price-only LSTM, always-up, and the paper."""
    sn = sn or StockNetConfig()
    rows = [evaluate_lstm(f"lstm_price_tweets_{name}", feats, PRICE_COLUMNS + TWEET_COLUMNS, config, sn)
            for name, feats in tweet_features.items()]
    first = next(iter(tweet_features.values()))
    rows.append(evaluate_lstm("lstm_price", first, PRICE_COLUMNS, config, sn))
    windows, target_day, _, _ = protocol_samples(first, PRICE_COLUMNS, sn)
    test = windows.subset((target_day >= sn.val_end) & (target_day < sn.test_end))
    labels = stocknet_labels(test.target_ret, sn.up, sn.down)
    rows.append(movement_row("always_up", np.ones(len(labels), bool), labels))
    rows.append({"model": "StockNet (paper)", "n": math.nan, **STOCKNET_PAPER})
    return pd.DataFrame(rows).set_index("model")
