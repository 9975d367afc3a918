"""Replay a historical corpus through the live path, in timestamp order, at a chosen speed.

Each trading day of the corpus lasts ``1 / days_per_s`` seconds of wall clock: its posts are spread
over the day in their own order, and the day's closing bar comes last (at the 16:00 New York close,
after every post that counts for that day). ``days_per_s=0`` publishes as fast as the broker takes it.
The same broker, processor and storage serve a replay and a live feed: nothing is replay-specific
past this module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from finpulse.data.calendar import CLOSE_HOUR, NEW_YORK, align_to_trading_day, trading_calendar
from finpulse.data.sources import RAW_POST_COLUMNS, parse_created_at, raw_frame
from finpulse.ingest.broker import Feed, PublishCounts


@dataclass
class ReplayResult:
    """What a replay published; duplicates are rows the broker already had (a replay run twice)."""

    days: int
    posts: PublishCounts
    bars: PublishCounts
    seconds: float

    @property
    def posts_per_s(self) -> float:
        return self.posts.published / self.seconds if self.seconds else float("nan")


def close_time(dates: pd.Series, close_hour: int = CLOSE_HOUR) -> pd.Series:
    """The UTC instant of each day's close (a bar exists from then on)."""
    local = pd.to_datetime(pd.Series(dates).astype(str)) + pd.Timedelta(hours=close_hour)
    return local.dt.tz_localize(NEW_YORK).dt.tz_convert("UTC")


def replay_days(bars_raw: pd.DataFrame, posts_raw: pd.DataFrame, close_hour: int = CLOSE_HOUR) -> list[dict]:
    """One entry per trading day: its posts (time order) then its bars. Posts outside the bars'
    calendar are left in the first day they could belong to (the processor rejects them with a reason)."""
    calendar = trading_calendar(bars_raw["date"])
    created = parse_created_at(posts_raw["created_at"])
    day = align_to_trading_day(created.fillna(pd.Timestamp("1970-01-01", tz="UTC")), calendar, close_hour=close_hour)
    posts = posts_raw.assign(_t=created, _day=day.to_numpy()).sort_values(["_t", "post_id"], kind="mergesort",
                                                                          na_position="first")
    first = calendar[0] if len(calendar) else np.datetime64("NaT")
    posts["_day"] = posts["_day"].fillna(first)
    bars = bars_raw.assign(_day=pd.to_datetime(bars_raw["date"]).to_numpy().astype("datetime64[D]"))
    out = []
    for d in calendar:
        out.append({"day": pd.Timestamp(d).date(),
                    "posts": raw_frame(posts[posts["_day"] == d], RAW_POST_COLUMNS),
                    "bars": bars[bars["_day"] == d].drop(columns="_day")})
    return out


async def replay(feed: Feed, days: list[dict], days_per_s: float = 1.0,
                 on_day: Callable[[dict, int], None] | None = None) -> ReplayResult:
    """Publish each day's posts then its bars, paced so day ``k`` ends at ``(k + 1) / days_per_s`` s."""
    t0 = time.perf_counter()
    posts, bars = PublishCounts(), PublishCounts()
    for k, day in enumerate(days):
        n = len(day["posts"])
        for i in range(0, n, 50):  # small slices, spread over the day
            got = await feed.publish_frame("post", day["posts"].iloc[i : i + 50])
            posts.published, posts.duplicate = posts.published + got.published, posts.duplicate + got.duplicate
            await _pace(t0, (k + min(i + 50, n) / n) / days_per_s if days_per_s else 0.0)
        got = await feed.publish_frame("bar", day["bars"])
        bars.published, bars.duplicate = bars.published + got.published, bars.duplicate + got.duplicate
        if on_day is not None:
            on_day(day, k)
        await _pace(t0, (k + 1) / days_per_s if days_per_s else 0.0)
    return ReplayResult(len(days), posts, bars, time.perf_counter() - t0)


async def _pace(t0: float, due_s: float) -> None:
    wait = due_s - (time.perf_counter() - t0)
    if wait > 0:
        await asyncio.sleep(wait)
