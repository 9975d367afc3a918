"""Feature age in trading days: weekends do not make features stale, a missed close does."""

from __future__ import annotations

import datetime as dt

import pytest

from finpulse.monitoring.freshness import is_stale, last_closed_session, trading_days_behind

UTC = dt.UTC


def at(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s).replace(tzinfo=UTC)


@pytest.mark.parametrize(("now", "closed"), [
    ("2019-06-26T21:30:00", "2019-06-26"),  # Wednesday after the 16:00 New York close (20:00 UTC in summer)
    ("2019-06-26T19:30:00", "2019-06-25"),  # Wednesday before the close
    ("2019-06-29T12:00:00", "2019-06-28"),  # Saturday: Friday's close
    ("2019-07-01T13:00:00", "2019-06-28"),  # Monday morning: still Friday's
    ("2019-01-02T21:30:00", "2019-01-02"),  # winter: the close is 21:00 UTC
    ("2019-01-02T20:30:00", "2019-01-01"),
])
def test_last_closed_session(now: str, closed: str) -> None:
    assert last_closed_session(at(now)) == dt.date.fromisoformat(closed)


def test_a_weekend_is_not_staleness_but_a_missed_close_is() -> None:
    friday = dt.date(2019, 6, 28)
    assert trading_days_behind(friday, at("2019-07-01T15:00:00")) == 0  # Monday, market open
    assert trading_days_behind(friday, at("2019-07-01T21:00:00")) == 1  # Monday's close not in yet
    assert not is_stale(friday, at("2019-07-01T21:00:00"))
    assert is_stale(friday, at("2019-07-02T21:00:00"))  # two closes missed
    assert trading_days_behind(dt.date(2019, 7, 2), at("2019-07-01T21:00:00")) == 0  # a provisional open day
