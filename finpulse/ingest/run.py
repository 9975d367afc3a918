"""The polling sources' loops: fetch, publish to the live feed, export each source's counters.

A bar is published once, when the source first shows it as a close (repeats of the compact series'
100 days are not re-sent; partial intraday bars are marked by the reader and refused downstream with
their reason). Quotes go out as they come: the processor uses the latest as the open day's provisional
close. Each round's failures (rate limits, outages) are counted and backed off by the client, never fatal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from finpulse.ingest.broker import SyncFeed
from finpulse.ingest.http import AuthError, SourceError, SourceStats


@dataclass
class RoundResult:
    """What one polling round sent and what failed (per ticker, with the error)."""

    bars: int = 0
    quotes: int = 0
    posts: int = 0
    duplicates: int = 0
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class PricePoller:
    """Alpha Vantage -> the feed: new closing bars per ticker and, during the session, quotes."""

    client: Any  # AlphaVantageClient
    feed: SyncFeed
    last_bar: dict[str, str] = field(default_factory=dict)  # newest date already published per ticker

    def round(self, tickers: Iterable[str], *, outputsize: str = "compact", quotes: bool = True) -> RoundResult:
        out = RoundResult()
        for ticker, got in self.client.poll(list(tickers), outputsize):
            if isinstance(got, SourceError):
                out.errors[ticker] = f"{type(got).__name__}: {got}"
                continue
            closes = got[got["note"].isna() & (got["date"] > self.last_bar.get(ticker, ""))]
            sent = self.feed.publish_frame("bar", closes)
            out.bars, out.duplicates = out.bars + sent.published, out.duplicates + sent.duplicate
            if len(closes):
                self.last_bar[ticker] = str(closes["date"].max())
            if quotes:
                self._quote(ticker, out)
        return out

    def _quote(self, ticker: str, out: RoundResult) -> None:
        try:
            q = self.client.quote(ticker)
        except AuthError:
            raise
        except SourceError as exc:
            out.errors[f"{ticker}:quote"] = f"{type(exc).__name__}: {exc}"
            return
        self.feed.publish("quote", {"ticker": q.ticker, "price": str(q.price), "time": str(q.fetched_at),
                                    "source": "alphavantage:global_quote"})
        out.quotes += 1


@dataclass
class PostPoller:
    """X recent search -> the feed (the client persists since_id only after a page was published)."""

    client: Any  # XRecentSearch
    feed: SyncFeed

    def round(self, tickers: Iterable[str]) -> RoundResult:
        out = RoundResult()

        def sink(frame: pd.DataFrame) -> None:
            sent = self.feed.publish_frame("post", frame)
            out.posts, out.duplicates = out.posts + sent.published, out.duplicates + sent.duplicate

        for ticker, got in self.client.poll(list(tickers), sink):
            if isinstance(got, SourceError):
                out.errors[ticker] = f"{type(got).__name__}: {got}"
        return out


_GAUGE: list[Any] = []  # one gauge per process, however many sources it polls


class SourceMetrics:
    """Each source's counters as Prometheus gauges on this process's /metrics (``--metrics-port``)."""

    def __init__(self, source: str, port: int | None):
        from prometheus_client import Gauge, start_http_server

        if not _GAUGE:
            _GAUGE.append(Gauge("finpulse_source", "Live source counters (requests, retries, rate_limited, errors, "
                                                   "throttled_s, last_success_ts, published)", ["source", "counter"]))
        self.source, self.gauge = source, _GAUGE[0]
        if port:
            start_http_server(port, addr="127.0.0.1")

    def update(self, stats: SourceStats, published: int) -> None:
        for key, value in {**stats.as_dict(), "published": published}.items():
            if value is not None:
                self.gauge.labels(self.source, key).set(float(value))


def loop(one_round: Callable[[], RoundResult], every_s: float, on_round: Callable[[RoundResult], None],
         once: bool = False) -> None:
    """Run rounds every ``every_s`` seconds until Ctrl-C (or once)."""
    while True:
        started = time.monotonic()
        on_round(one_round())
        if once:
            return
        time.sleep(max(0.0, every_s - (time.monotonic() - started)))
