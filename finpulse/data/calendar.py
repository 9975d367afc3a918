"""Trading-day alignment in New York time.

A post counts for the trading session whose close it precedes: posts before the 16:00 close count
for that day; posts after the close, on weekends or on holidays count for the next trading day of
the *price calendar* (the days the price data actually has, so exchange holidays need no list).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NEW_YORK = "America/New_York"
CLOSE_HOUR = 16
MAX_GAP_DAYS = 5  # a long weekend plus a holiday; a larger gap means the post is outside the calendar


def trading_calendar(dates: pd.Series | np.ndarray) -> np.ndarray:
    """Sorted unique trading days as ``datetime64[D]``."""
    return np.unique(pd.to_datetime(pd.Series(dates)).to_numpy().astype("datetime64[D]"))


def align_to_trading_day(created_at: pd.Series, calendar: np.ndarray, *, close_hour: int = CLOSE_HOUR,
                         max_gap_days: int = MAX_GAP_DAYS) -> pd.Series:
    """Map UTC timestamps to the trading day they count for (``datetime64[D]``; NaT when the post
    falls outside the calendar: before its first day by more than ``max_gap_days``, after its last
    day, or in a gap of missing price data)."""
    local = pd.to_datetime(created_at, utc=True).dt.tz_convert(NEW_YORK)
    day = local.dt.tz_localize(None).dt.normalize().to_numpy().astype("datetime64[D]")
    after_close = (local.dt.hour >= close_hour).to_numpy()
    candidate = day + after_close.astype("timedelta64[D]")
    if len(calendar) == 0:
        return pd.Series(np.full(len(candidate), np.datetime64("NaT"), dtype="datetime64[D]"), index=created_at.index)
    idx = np.searchsorted(calendar, candidate, side="left")
    inside = idx < len(calendar)
    out = np.full(len(candidate), np.datetime64("NaT"), dtype="datetime64[D]")
    out[inside] = calendar[idx[inside]]
    gap = (out - candidate).astype("timedelta64[D]").astype("float64")
    out[~inside | (gap > max_gap_days)] = np.datetime64("NaT")
    return pd.Series(out, index=created_at.index)
