"""Trading-day alignment: the 16:00 New York close, weekends, holidays, DST, calendar edges."""

from __future__ import annotations

import pandas as pd

from finpulse.data.calendar import align_to_trading_day, trading_calendar

# Thu 2020-07-02, (Fri 07-03 holiday), Mon 07-06, Tue 07-07; also across the March DST change
CAL = trading_calendar(pd.Series(["2020-03-06", "2020-03-09", "2020-07-02", "2020-07-06", "2020-07-07"]))


def align(ts: str) -> str:
    out = align_to_trading_day(pd.Series([pd.Timestamp(ts)]), CAL).iloc[0]
    return "NaT" if pd.isna(out) else str(pd.Timestamp(out).date())


def test_before_and_after_close_in_summer_time() -> None:
    assert align("2020-07-02T19:59:59Z") == "2020-07-02"  # 15:59:59 EDT
    assert align("2020-07-02T20:00:00Z") == "2020-07-06"  # 16:00 EDT: after the close, holiday Friday skipped


def test_weekend_and_holiday_roll_forward() -> None:
    assert align("2020-07-03T15:00:00Z") == "2020-07-06"  # Independence Day (observed)
    assert align("2020-07-05T12:00:00Z") == "2020-07-06"  # Sunday


def test_dst_change_uses_new_york_time() -> None:
    assert align("2020-03-06T20:59:00Z") == "2020-03-06"  # 15:59 EST (UTC-5): before the close
    assert align("2020-03-06T21:00:00Z") == "2020-03-09"  # 16:00 EST: after it
    assert align("2020-03-09T20:30:00Z") == "NaT"  # 16:30 EDT: after the close, next day not in calendar
    assert align("2020-03-09T19:59:00Z") == "2020-03-09"  # 15:59 EDT (UTC-4, after the switch on 03-08)


def test_outside_calendar_is_nat() -> None:
    assert align("2020-07-07T21:00:00Z") == "NaT"  # after the last trading day: the next one is unknown
    assert align("2019-01-01T12:00:00Z") == "NaT"  # long before the first day
    assert align("2020-03-20T12:00:00Z") == "NaT"  # a gap of months in the price data
