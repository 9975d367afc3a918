"""How far behind the market a ticker's features are, in trading days (weekdays; exchange holidays
are not known here, so the day after a holiday can read one day behind).

``as_of`` is the date of the newest feature row (a provisional row counts for its open day); the
market's newest *closed* session is today after the 16:00 New York close on a weekday, else the
weekday before. Features are *stale* when they are more than one trading day behind it.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from finpulse.data.calendar import CLOSE_HOUR, NEW_YORK

STALE_AFTER_TRADING_DAYS = 1


def last_closed_session(now: dt.datetime, close_hour: int = CLOSE_HOUR) -> dt.date:
    """The newest trading day whose close has passed at ``now`` (timezone-aware)."""
    local = pd.Timestamp(now).tz_convert(NEW_YORK)
    day = local.date()
    if local.weekday() < 5 and local.hour >= close_hour:
        return day
    return pd.Timestamp(np.busday_offset(np.datetime64(day, "D"), -1, roll="forward")).date()


def trading_days_behind(as_of: dt.date, now: dt.datetime, close_hour: int = CLOSE_HOUR) -> int:
    """Weekdays in ``(as_of, last closed session]``: 0 when the features include the latest close."""
    closed = last_closed_session(now, close_hour)
    return max(0, int(np.busday_count(np.datetime64(as_of, "D") + 1, np.datetime64(closed, "D") + 1)))


def is_stale(as_of: dt.date, now: dt.datetime, close_hour: int = CLOSE_HOUR) -> bool:
    return trading_days_behind(as_of, now, close_hour) > STALE_AFTER_TRADING_DAYS
