"""Walk-forward evaluation against honest baselines: the test blocks, the refits, the metrics table.

The test period is cut into ``k`` consecutive blocks; for each block the models are refit on
everything before it (an expanding window; the last ``val_fraction`` of those days is the
early-stopping validation set) and predict the block. Refits use the in-process loop
(:func:`finpulse.forecast.loop.fit_in_process`, the same steps as the Ray Train workers), so an
evaluation does not pay Ray Train's start-up ``k`` times. It evaluates a *configuration*: the
registered weights are one more fit of the same configuration on all the data before the test period.

Every model in the table sees the same windows, scaler and days: the LSTM (its feature set), the
price-only LSTM, ridge on the same windows, drift and persistence. Pure (no Ray, no MLflow).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from finpulse.forecast import baselines, holdout
from finpulse.forecast.backtest import backtest
from finpulse.forecast.calibration import IntervalCalibration, track_groups
from finpulse.forecast.config import ForecastConfig
from finpulse.forecast.loop import calibrate_intervals, fit_in_process, prepare_training_data
from finpulse.forecast.metrics import dm_vs, forecast_metrics, price_errors
from finpulse.forecast.model import LoadedForecaster, predict_arrays
from finpulse.forecast.windows import Scaler, Windows, concat_windows, window_vol

PERSISTENCE = "persistence"


class WalkForwardConfig(BaseModel):
    """Test period, number of refits and what to compare. Dates are as-of days of the forecasts."""

    test_start: dt.date | None = None  # None: the last ``test_fraction`` of the days
    test_end: dt.date | None = None
    test_fraction: float = Field(0.2, gt=0, lt=1)
    k: int = Field(4, ge=1, description="refits (one per consecutive test block)")
    baselines: tuple[str, ...] = ("persistence", "drift", "ridge", "lstm_price")
    ridge_alpha: float = 10.0
    cost_bps: float = 5.0

    def key(self) -> str:
        """A short id of the evaluation protocol: promotion compares MAEs only under the same key."""
        return hashlib.sha1(self.model_dump_json().encode(), usedforsecurity=False).hexdigest()[:12]


@dataclass
class WalkForwardResult:
    """Every model's forecasts on the same days and what they add up to (read by the report and the gate)."""

    predictions: pd.DataFrame  # one row per (model, ticker, date)
    table: pd.DataFrame  # one row per model
    per_ticker: pd.DataFrame  # one row per (model, ticker)
    backtests: dict[str, dict] = field(default_factory=dict)
    folds: list[tuple[dt.date, dt.date]] = field(default_factory=list)
    leakage_alarm: bool = False  # an LSTM's directional accuracy > 60% (see holdout.leakage_alarm)
    synthetic: bool = False  # the posts behind the features are labelled synthetic

    def metric(self, model: str, name: str) -> float:
        return float(self.table.loc[model, name])


def walk_forward_folds(dates: list[dt.date], k: int, test_start: dt.date | None, test_end: dt.date | None,
                       test_fraction: float = 0.2) -> list[tuple[dt.date, dt.date]]:
    """``k`` consecutive [start, end) blocks of (roughly) equal numbers of trading days."""
    days = np.array(sorted(set(dates)))
    if test_start is None:
        test_start = holdout.holdout_start(days, test_fraction)
    sel = days[(days >= test_start) & ((days < test_end) if test_end is not None else True)]
    if len(sel) < k:
        raise ValueError(f"{len(sel)} test days cannot make {k} folds")
    edges = [sel[int(round(i * len(sel) / k))] for i in range(k)]
    stop = test_end if test_end is not None else sel[-1] + dt.timedelta(days=1)
    return [(edges[i], edges[i + 1] if i + 1 < k else stop) for i in range(k)]


def _intervals(cal: IntervalCalibration, quant: np.ndarray, test: Windows, scaler: Scaler) -> tuple[np.ndarray, ...]:
    """The calibrated interval of a refit on its test block: static CQR, then online tracking per
    ticker from the block's first day (the refit never saw it), as serving does from ``seen_before``."""
    low, high = cal.apply(quant[:, 0], quant[:, -1], window_vol(test.x, scaler))
    return track_groups(low, high, test.target_ret, test.tickers, cal)


def _fold_predictions(features: pd.DataFrame, config: ForecastConfig, wf: WalkForwardConfig,
                      start: dt.date, end: dt.date, fold: int) -> list[pd.DataFrame]:
    cfg = config.model_copy(update={"train_end": None, "val_end": start})
    data = prepare_training_data(features, cfg)
    test = data.rest.between(start, end)
    if len(test) == 0:
        return []
    base = pd.DataFrame({"ticker": test.tickers, "date": test.dates, "close": test.close,
                         "target_ret": test.target_ret, "target_close": test.target_close, "fold": fold})
    out = []

    def add(name: str, pred: np.ndarray, low: np.ndarray | None = None, high: np.ndarray | None = None) -> None:
        out.append(base.assign(model=name, pred=pred, low=np.nan if low is None else low,
                               high=np.nan if high is None else high))

    fit = fit_in_process(data, cfg)
    point, quant = predict_arrays(fit.model, test.x, test.ticker_idx, data.scaler.target_scale)
    add(f"lstm_{config.feature_set}", point, *_intervals(calibrate_intervals(fit.model, data, cfg), quant, test,
                                                          data.scaler))
    fitted = concat_windows([data.train, data.val])
    for name in wf.baselines:
        if name == PERSISTENCE:
            add(name, baselines.persistence(test))
        elif name == "drift":
            add(name, baselines.drift(fitted, test))
        elif name == "ridge":
            add(name, baselines.ridge(fitted, test, wf.ridge_alpha))
        elif name == "lstm_price" and config.feature_set != "price":
            pcfg = cfg.model_copy(update={"feature_set": "price"})
            pdata = prepare_training_data(features, pcfg)
            ptest = pdata.rest.between(start, end)
            pfit = fit_in_process(pdata, pcfg)
            pp, pq = predict_arrays(pfit.model, ptest.x, ptest.ticker_idx, pdata.scaler.target_scale)
            plow, phigh = _intervals(calibrate_intervals(pfit.model, pdata, pcfg), pq, ptest, pdata.scaler)
            # the price-only frame keeps the same rows (sentiment never drops a row): align on key
            pframe = pd.DataFrame({"ticker": ptest.tickers, "date": ptest.dates, "pred": pp,
                                   "low": plow, "high": phigh})
            merged = base.merge(pframe, on=["ticker", "date"], how="left")
            add(name, merged["pred"].to_numpy(), merged["low"].to_numpy(), merged["high"].to_numpy())
    return out


def summarize(predictions: pd.DataFrame, cost_bps: float = 5.0) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Metrics table per model (with DM vs persistence and the backtest), per-ticker MAE ratios."""
    preds = predictions.dropna(subset=["pred"])
    persist = preds[preds["model"] == PERSISTENCE].set_index(["ticker", "date"])
    rows, ticker_rows, tests = [], [], {}
    for name, g in preds.groupby("model", sort=False):
        m = forecast_metrics(g["pred"].to_numpy(), g["target_ret"].to_numpy(), g["close"].to_numpy(),
                             g["target_close"].to_numpy(),
                             g["low"].to_numpy() if g["low"].notna().all() else None,
                             g["high"].to_numpy() if g["high"].notna().all() else None)
        err = price_errors(g["pred"].to_numpy(), g["close"].to_numpy(), g["target_close"].to_numpy())
        if len(persist) and name != PERSISTENCE:
            p = persist.reindex(pd.MultiIndex.from_frame(g[["ticker", "date"]]))
            perr = price_errors(p["pred"].to_numpy(), p["close"].to_numpy(), p["target_close"].to_numpy())
            m["dm_stat"], m["dm_pvalue"] = dm_vs(g["date"].to_numpy(), err, perr, g["close"].to_numpy())
            m["mae_ratio_vs_persistence"] = m["mae"] / float(np.mean(np.abs(perr)))
        else:
            m["dm_stat"], m["dm_pvalue"] = math.nan, math.nan
            m["mae_ratio_vs_persistence"] = 1.0 if name == PERSISTENCE else math.nan
        bt = backtest(g, "pred", cost_bps=cost_bps)
        tests[name] = bt
        m.update({k: v for k, v in bt.items() if k != "curve"})
        rows.append({"model": name, **m})
        for ticker, tg in g.groupby("ticker"):
            terr = np.abs(price_errors(tg["pred"].to_numpy(), tg["close"].to_numpy(), tg["target_close"].to_numpy()))
            pr = persist.reindex(pd.MultiIndex.from_frame(tg[["ticker", "date"]])) if len(persist) else None
            pmae = float(np.mean(np.abs(tg["target_close"] - tg["close"]))) if pr is None else float(
                np.mean(np.abs(pr["target_close"].to_numpy() - pr["close"].to_numpy())))
            ticker_rows.append({"model": name, "ticker": ticker, "mae": float(terr.mean()),
                                "mae_ratio_vs_persistence": float(terr.mean()) / pmae if pmae > 0 else math.nan,
                                "directional_accuracy": forecast_metrics(
                                    tg["pred"].to_numpy(), tg["target_ret"].to_numpy(), tg["close"].to_numpy(),
                                    tg["target_close"].to_numpy())["directional_accuracy"]})
    table = pd.DataFrame(rows).set_index("model")
    return table, pd.DataFrame(ticker_rows), tests


def evaluation_folds(features: pd.DataFrame, config: ForecastConfig, wf: WalkForwardConfig) -> list[tuple[dt.date, dt.date]]:
    """The walk-forward's test blocks for these features (the first block's start is the test start)."""
    df = features[features["ticker"].isin(config.tickers)] if config.tickers else features
    known = df[df["target_ret_1d"].notna()]
    return walk_forward_folds(list(pd.to_datetime(known["date"]).dt.date), wf.k, wf.test_start, wf.test_end,
                              wf.test_fraction)


def walk_forward(features: pd.DataFrame, config: ForecastConfig, wf: WalkForwardConfig | None = None,
                 weights: LoadedForecaster | None = None, synthetic: bool | None = None) -> WalkForwardResult:
    """Expanding-window walk-forward with ``wf.k`` refits; every model on the same days.

    With ``weights`` (a saved model), its forecasts on the same days form the ``registered`` row: the
    weights a promotion would serve, scored without a refit. They must not have seen the test window
    (:func:`holdout.check_out_of_sample` raises otherwise)."""
    wf = wf or WalkForwardConfig()
    synthetic = holdout.data_is_synthetic(features, synthetic)
    df = features[features["ticker"].isin(config.tickers)] if config.tickers else features
    folds = evaluation_folds(df, config, wf)
    if weights is not None:
        holdout.check_out_of_sample(weights.meta, folds[0][0])
    parts: list[pd.DataFrame] = []
    for i, (start, end) in enumerate(folds):
        parts.extend(_fold_predictions(df, config, wf, start, end, i))
    predictions = pd.concat(parts, ignore_index=True)
    if weights is not None:
        base = predictions[predictions["model"] == f"lstm_{config.feature_set}"].drop(columns=["pred", "low", "high"])
        scored = holdout.weights_predictions(df, weights, base)
        predictions = pd.concat([predictions, base.assign(model=holdout.REGISTERED, pred=scored["pred"].to_numpy(),
                                                          low=scored["low"].to_numpy(), high=scored["high"].to_numpy())],
                                ignore_index=True)
    table, per_ticker, tests = summarize(predictions, wf.cost_bps)
    alarm = holdout.leakage_alarm(table, [holdout.REGISTERED, f"lstm_{config.feature_set}", "lstm_price"])
    return WalkForwardResult(predictions, table, per_ticker, tests, folds, alarm, synthetic)
