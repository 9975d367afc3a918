"""Honest baselines, fit on the same training windows as the LSTM and scored on the same days.

- persistence: tomorrow's close = today's (predicted log return 0) -- the bar every model must clear;
- drift: each ticker's mean training return (a random walk with drift);
- ridge: a linear model on the same scaled lookback window, flattened.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge

from finpulse.forecast.windows import Windows


def persistence(test: Windows) -> np.ndarray:
    return np.zeros(len(test))


def drift(train: Windows, test: Windows) -> np.ndarray:
    """Mean training log return of the sample's ticker (overall mean for tickers unseen in training)."""
    overall = float(np.nanmean(train.target_ret)) if len(train) else 0.0
    means = {t: float(np.nanmean(train.target_ret[train.tickers == t])) for t in np.unique(train.tickers)}
    return np.array([means.get(t, overall) for t in test.tickers], dtype=float)


def ridge(train: Windows, test: Windows, alpha: float = 10.0) -> np.ndarray:
    """Ridge regression of the next-day return on the flattened window (already scaled on train days)."""
    if len(test) == 0:
        return np.zeros(0)
    model = Ridge(alpha=alpha)
    model.fit(train.x.reshape(len(train), -1), train.target_ret)
    return model.predict(test.x.reshape(len(test), -1))
