"""What makes walk-forward evidence admissible for promotion (pure functions, no Ray, no MLflow).

Three rules, all about the days a number was measured on:
- **Out of sample.** A model's ``meta.json`` says the first as-of day its fitting, early stopping,
  interval calibration and tuning never saw (``seen_before``, ``tuned_before``). The evaluation of
  those weights refuses a test window that starts earlier.
- **The promoted weights are scored themselves**, not only re-fits of their configuration: the
  ``registered`` row of a walk-forward is the saved weights predicting every test day.
- **Leakage alarm.** A daily directional accuracy above 60% on real data is far beyond what daily
  returns allow (good published models reach 55-58%): it is almost always a look-ahead bug. Evaluation
  marks such a run; promotion refuses it unless the data is labelled synthetic (a planted signal).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from finpulse.forecast.loop import TrainingData
    from finpulse.forecast.model import LoadedForecaster

REGISTERED = "registered"  # the walk-forward row of the saved weights (no refit)
LEAKAGE_ACCURACY = 0.60


class NotOutOfSample(ValueError):
    """The weights (or their tuning) saw days inside the test window."""


def seen_before(data: TrainingData) -> dt.date:
    """The first as-of day that fitting, validation and calibration never saw."""
    if data.val_end is not None:
        return data.val_end
    return max(pd.to_datetime(pd.Series(data.val.dates)).dt.date) + dt.timedelta(days=1)


def _meta_day(meta: dict, key: str) -> dt.date | None:
    value = (meta.get("extra") or {}).get(key)
    return None if value in (None, "", "None") else pd.Timestamp(value).date()


def check_out_of_sample(meta: dict, test_start: dt.date) -> None:
    """Raise :class:`NotOutOfSample` unless training, validation and tuning all ended before ``test_start``."""
    seen = _meta_day(meta, "seen_before")
    if seen is None:
        raise NotOutOfSample("the model's meta.json does not say which days it saw (saved by an older "
                             "version): retrain it with a val_end before the test window")
    if seen > test_start:
        raise NotOutOfSample(f"the model trained or validated on days up to {seen - dt.timedelta(days=1)}, "
                             f"but the test window starts {test_start}: retrain with val_end <= {test_start} "
                             f"or evaluate from --test-start {seen}")
    tuned = _meta_day(meta, "tuned_before")
    if tuned is not None and tuned > test_start:
        raise NotOutOfSample(f"the configuration was tuned on days up to {tuned - dt.timedelta(days=1)}, "
                             f"but the test window starts {test_start}: tune with tune_end <= {test_start}")


def holdout_start(dates: pd.Series | np.ndarray, fraction: float = 0.2) -> dt.date:
    """The first day of the last ``fraction`` of the trading days: the default evaluation window, and so
    the default end of tuning and of training (``train-forecaster`` without ``val_end``)."""
    days = np.array(sorted(set(pd.to_datetime(pd.Series(dates)).dt.date)))
    return days[int(len(days) * (1 - fraction))]


def default_test_start(features: pd.DataFrame, fraction: float = 0.2) -> dt.date:
    """:func:`holdout_start` over the days a forecast can be scored on (those with a known next-day
    target): the one definition that evaluation, tuning and training agree on."""
    return holdout_start(features.loc[features["target_ret_1d"].notna(), "date"], fraction)


def check_tune_end(tune_end: dt.date, test_start: dt.date | None) -> None:
    if test_start is not None and tune_end > test_start:
        raise NotOutOfSample(f"tune_end {tune_end} is after the evaluation window's start {test_start}")


def weights_predictions(features: pd.DataFrame, weights: LoadedForecaster, keys: pd.DataFrame) -> pd.DataFrame:
    """The saved weights' forecasts for the (ticker, date) rows of ``keys`` (no refit): columns
    ``pred``, ``low``, ``high`` aligned to ``keys``, NaN where the model has no window."""
    parts = [weights.predict_history(g).assign(ticker=t)
             for t, g in features[features["ticker"].isin(set(keys["ticker"]))].groupby("ticker", sort=True)]
    preds = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["ticker", "date", "pred", "low", "high"])
    preds["date"] = pd.to_datetime(preds["date"]).dt.date
    out = keys[["ticker", "date"]].assign(date=pd.to_datetime(keys["date"]).dt.date)
    return out.merge(preds, on=["ticker", "date"], how="left")


def leakage_alarm(table: pd.DataFrame, models: list[str], threshold: float = LEAKAGE_ACCURACY) -> bool:
    """True when any of ``models`` has a walk-forward directional accuracy above ``threshold``."""
    accs = [float(table.loc[m, "directional_accuracy"]) for m in models if m in table.index]
    return any(math.isfinite(a) and a > threshold for a in accs)


def data_is_synthetic(features: pd.DataFrame, synthetic: bool | None = None) -> bool:
    """Whether the posts behind ``features`` are labelled synthetic: an explicit answer wins, else the
    frame's ``attrs["synthetic_inputs"]`` (set by the ETL reader and :func:`inputs.synthetic_features`).
    Unknown counts as real: the alarm then blocks promotion."""
    if synthetic is not None:
        return bool(synthetic)
    return bool(features.attrs.get("synthetic_inputs", False))
