"""Alpha Vantage prices as a polling source: ``TIME_SERIES_DAILY`` bars and ``GLOBAL_QUOTE`` quotes.

Bars come back in the batch reader's raw price layout (the reply is parsed by
:func:`finpulse.data.sources.read_alpha_vantage_json`, so a partial day is marked ``note=intraday``
exactly as in the batch ETL and :func:`~finpulse.data.sources.normalize_prices` rejects it). The
reader can only see a partial day when "Last Refreshed" carries a time; a live client also knows
*when* it asked, so a bar dated today (US/Eastern) fetched before the 16:00 close is marked too.

Limits (free tier): 5 calls a minute and 25 a day, enforced locally with two token buckets.
Alpha Vantage answers rate limiting with HTTP 200 and a JSON ``"Note"`` or ``"Information"``
instead of data: that is retried with backoff and counted, never parsed as a price file. A daily
quota message is not retried (it cannot clear before midnight), a premium-only feature is an
:class:`~finpulse.ingest.http.InvalidRequest`, and ``"Error Message"`` (bad symbol, bad key) too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import requests

from finpulse.data.sources import read_alpha_vantage_json
from finpulse.ingest.http import (
    AuthError,
    HttpSource,
    InvalidRequest,
    RateLimited,
    Retry,
    RetryPolicy,
    SourceError,
    SourceOptions,
    SourceStats,
    TokenBucket,
    default_check,
)

DEFAULT_URL = "https://www.alphavantage.co/query"
API_KEY_ENV = "ALPHAVANTAGE_API_KEY"  # pragma: allowlist secret - the variable's name, not a key
SOURCE = "alphavantage"
MARKET_TZ = "America/New_York"
CLOSE = "16:00:00"
# A rate-limit reply clears within a minute: waits of ~15, 30, 60 s cover the window.
DEFAULT_POLICY = RetryPolicy(attempts=4, base_s=15.0, max_s=60.0)
_RATE_LIMIT_TEXT = re.compile(r"rate limit|call frequency|requests per|calls per|sparingly", re.I)
_DAILY_TEXT = re.compile(r"per day", re.I)
_MINUTE_TEXT = re.compile(r"per minute|per second|sparingly", re.I)
_PREMIUM_TEXT = re.compile(r"premium (feature|endpoint)", re.I)


@dataclass(frozen=True)
class Quote:
    """A ``GLOBAL_QUOTE`` reply: an intraday quote, never a close (do not store it as a bar)."""

    ticker: str
    price: float
    open: float
    high: float
    low: float
    volume: int
    previous_close: float
    change: float
    change_percent: float
    latest_trading_day: str
    fetched_at: float


def _default_options() -> SourceOptions:
    return SourceOptions(policy=DEFAULT_POLICY)


@dataclass
class AlphaVantageClient:
    """Daily bars and quotes for a list of tickers within the free tier's limits."""

    api_key: str
    base_url: str = DEFAULT_URL
    calls_per_minute: float = 5
    calls_per_day: float = 25
    options: SourceOptions = field(default_factory=_default_options)

    def __post_init__(self) -> None:
        if not self.api_key:
            raise AuthError(f"Alpha Vantage needs an API key (set {API_KEY_ENV})")
        timing = self.options.timing
        buckets = [TokenBucket(self.calls_per_minute / 60.0, self.calls_per_minute, timing, "alphavantage per-minute"),
                   TokenBucket(self.calls_per_day / 86400.0, self.calls_per_day, timing, "alphavantage per-day")]
        self.http = HttpSource(SOURCE, self.options, buckets)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> AlphaVantageClient:
        """The key from ``ALPHAVANTAGE_API_KEY``; a clear error when it is not set."""
        key = (os.environ if env is None else env).get(API_KEY_ENV, "").strip()
        if not key:
            raise AuthError(f"{API_KEY_ENV} is not set: get a free key at "
                            "https://www.alphavantage.co/support/#api-key and export it")
        return cls(key, **kwargs)

    @property
    def stats(self) -> SourceStats:
        return self.http.stats

    def _fetch(self, params: dict[str, str], expected: str) -> tuple[bytes, dict[str, Any]]:
        query = {**params, "apikey": self.api_key}

        def check(resp: requests.Response) -> tuple[bytes, dict[str, Any]]:
            return resp.content, classify_reply(resp, expected, self.options.timing.clock())

        return self.http.get(self.base_url, query, {"Accept": "application/json"}, check)

    def daily(self, ticker: str, outputsize: str = "compact") -> pd.DataFrame:
        """``TIME_SERIES_DAILY`` as raw price rows (``compact``: last 100 days; ``full``: history)."""
        if outputsize not in ("compact", "full"):
            raise ValueError(f"outputsize must be 'compact' or 'full', not {outputsize!r}")
        symbol = ticker.strip().upper()
        body, _ = self._fetch({"function": "TIME_SERIES_DAILY", "symbol": symbol, "outputsize": outputsize},
                              "Time Series (Daily)")
        frame = read_alpha_vantage_json(body, symbol, f"{SOURCE}:TIME_SERIES_DAILY")
        return mark_unclosed_day(frame, self.options.timing.clock())

    def quote(self, ticker: str) -> Quote:
        """``GLOBAL_QUOTE``: the latest intraday price; an unknown symbol is an InvalidRequest."""
        symbol = ticker.strip().upper()
        _, doc = self._fetch({"function": "GLOBAL_QUOTE", "symbol": symbol}, "Global Quote")
        return parse_quote(symbol, doc["Global Quote"], self.options.timing.clock())

    def poll(self, tickers: Iterable[str], outputsize: str = "compact",
             sink: Callable[[pd.DataFrame], None] | None = None) -> Iterator[tuple[str, pd.DataFrame | SourceError]]:
        """Fetch each ticker's bars; yields ``(ticker, frame)`` or ``(ticker, error)`` so one
        failing ticker (bad symbol, rate limit, outage) never stops the others; an
        :class:`AuthError` (bad key) does. A frame is handed to ``sink`` (when given) before it is
        yielded."""
        for ticker in tickers:
            try:
                frame = self.daily(ticker, outputsize)
            except AuthError:
                raise  # a bad key fails every ticker: stop rather than burn the quota
            except SourceError as exc:
                yield ticker, exc
                continue
            except ValueError as exc:  # a reply that is JSON but not a price series
                self.http.stats.errors += 1
                yield ticker, InvalidRequest(f"{ticker}: {exc}")
                continue
            if sink is not None:
                sink(frame)
            yield ticker, frame


def classify_reply(resp: requests.Response, expected: str, now: float) -> dict[str, Any]:
    """The JSON document when it holds ``expected``; otherwise raise what the reply means."""
    default_check(resp, now)
    if resp.status_code != 200:
        raise InvalidRequest(f"Alpha Vantage HTTP {resp.status_code}: {resp.text[:200]}")
    try:
        doc = resp.json()
    except ValueError as exc:  # an HTML maintenance page or a truncated body: transient
        raise Retry("Alpha Vantage reply is not JSON") from exc
    if not isinstance(doc, dict):
        raise InvalidRequest(f"Alpha Vantage reply is not a JSON object: {str(doc)[:100]}")
    if expected in doc:
        return doc
    if "Error Message" in doc:
        message = str(doc["Error Message"])
        error = AuthError if "apikey" in message.lower() else InvalidRequest
        raise error(f"Alpha Vantage rejected the request: {message}")
    info = str(doc.get("Note") or doc.get("Information") or "")
    if not info:
        raise InvalidRequest(f"Alpha Vantage reply has no {expected!r} (keys: {sorted(doc)[:5]})")
    if _PREMIUM_TEXT.search(info) and not _RATE_LIMIT_TEXT.search(info):
        raise InvalidRequest(f"Alpha Vantage premium feature: {info}")
    if _DAILY_TEXT.search(info) and not _MINUTE_TEXT.search(info):
        raise RateLimited(f"Alpha Vantage daily quota spent (retrying cannot help before midnight): {info}")
    raise Retry(f"Alpha Vantage rate limit: {info}", rate_limited=True)


def mark_unclosed_day(frame: pd.DataFrame, now: float) -> pd.DataFrame:
    """Mark a bar dated today (US/Eastern) as intraday when it was fetched before the close."""
    local = pd.Timestamp(now, unit="s", tz="UTC").tz_convert(MARKET_TZ)
    today, clock = local.strftime("%Y-%m-%d"), local.strftime("%H:%M:%S")
    if clock >= CLOSE or frame.empty:
        return frame
    todays = (frame["date"] == today) & frame["note"].isna()
    if todays.any():
        frame = frame.copy()
        frame.loc[todays, "note"] = f"intraday: fetched {local.strftime('%Y-%m-%d %H:%M:%S')} before the close"
    return frame


def _number(fields: Mapping[str, Any], key: str) -> float:
    value = str(fields.get(key, "")).strip().rstrip("%")
    try:
        return float(value)
    except ValueError as exc:
        raise InvalidRequest(f"GLOBAL_QUOTE field {key!r} is not a number: {value!r}") from exc


def parse_quote(symbol: str, fields: Mapping[str, Any], now: float) -> Quote:
    """The ``"Global Quote"`` object; empty (Alpha Vantage's answer to an unknown symbol) is an error."""
    if not fields:
        raise InvalidRequest(f"Alpha Vantage has no quote for {symbol!r} (unknown symbol?)")
    return Quote(ticker=str(fields.get("01. symbol") or symbol).upper(), price=_number(fields, "05. price"),
                 open=_number(fields, "02. open"), high=_number(fields, "03. high"), low=_number(fields, "04. low"),
                 volume=int(_number(fields, "06. volume")), previous_close=_number(fields, "08. previous close"),
                 change=_number(fields, "09. change"), change_percent=_number(fields, "10. change percent"),
                 latest_trading_day=str(fields.get("07. latest trading day", "")), fetched_at=now)
