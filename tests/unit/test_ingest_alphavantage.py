"""Alpha Vantage client against a real local HTTP server that answers in Alpha Vantage's formats.

Real reply bodies come from ``../shared/data/alpha_vantage_fixture`` (read in place, not copied);
other tickers get synthetic bodies in the same layout. Time is a fake clock, so backoffs and token
bucket waits are measured, not waited for.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from ingest_fakes import DROP, FakeClock, Reply, ScriptedServer, Seen

from finpulse.data.sources import RAW_PRICE_COLUMNS, normalize_prices
from finpulse.ingest.alphavantage import API_KEY_ENV, AlphaVantageClient
from finpulse.ingest.http import (
    AuthError,
    BudgetExhausted,
    InvalidRequest,
    RateLimited,
    SourceOptions,
    TokenBucket,
)

KEY = "test-key"
MINUTE_NOTE = ("Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and "
               "500 calls per day. Please visit https://www.alphavantage.co/premium/ if you would like to target "
               "a higher API call frequency.")
BURST_INFO = ("Thank you for using Alpha Vantage! Please consider spreading out your free API requests more "
              "sparingly (1 request per second). You may subscribe to any of the premium plans at "
              "https://www.alphavantage.co/premium/ to lift the free key rate limit (25 requests per day).")
DAILY_INFO = ("Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. Please "
              "subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly remove "
              "all daily rate limits.")
PREMIUM_INFO = ("Thank you for using Alpha Vantage! The outputsize=full parameter value is a premium feature for "
                "the TIME_SERIES_DAILY endpoint. You may subscribe to any of the premium plans at "
                "https://www.alphavantage.co/premium/ to instantly unlock all premium features")
BAD_CALL = ("Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/documentation/) "
            "for TIME_SERIES_DAILY.")
BAD_KEY = ("the parameter apikey is invalid or missing. Please claim your free API key on "
           "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds.")


def daily_body(symbol: str, last_refreshed: str, days: list[str]) -> dict:
    """A TIME_SERIES_DAILY reply in Alpha Vantage's layout (newest first, values as strings)."""
    series = {d: {"1. open": f"{100 + i}.0000", "2. high": f"{101 + i}.5000", "3. low": f"{99 + i}.2500",
                  "4. close": f"{100 + i}.7500", "5. volume": str(1_000_000 + i)}
              for i, d in enumerate(sorted(days, reverse=True))}
    return {"Meta Data": {"1. Information": "Daily Prices (open, high, low, close) and Volumes", "2. Symbol": symbol,
                          "3. Last Refreshed": last_refreshed, "4. Output Size": "Compact",
                          "5. Time Zone": "US/Eastern"},
            "Time Series (Daily)": series}


def quote_body(symbol: str) -> dict:
    return {"Global Quote": {"01. symbol": symbol, "02. open": "168.1000", "03. high": "170.2000",
                             "04. low": "167.9000", "05. price": "169.3000", "06. volume": "4123456",
                             "07. latest trading day": "2024-05-17", "08. previous close": "168.0000",
                             "09. change": "1.3000", "10. change percent": "0.7738%"}}


class FakeAlphaVantage:
    """Answers /query like Alpha Vantage: bodies per symbol, its error and empty-quote replies."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes | dict] = {"IBM": daily_body("IBM", "2024-05-17", ["2024-05-15", "2024-05-16",
                                                                                         "2024-05-17"])}

    def __call__(self, seen: Seen) -> Reply:
        p = seen.params
        if seen.path != "/query":
            return Reply(404, "<html>Not Found</html>", {"Content-Type": "text/html"})
        if p.get("apikey") != KEY:
            return Reply(200, {"Error Message": BAD_KEY})
        symbol = p.get("symbol", "")
        if p.get("function") == "GLOBAL_QUOTE":
            return Reply(200, quote_body(symbol) if symbol in self.bodies else {"Global Quote": {}})
        if p.get("function") == "TIME_SERIES_DAILY" and symbol in self.bodies:
            return Reply(200, self.bodies[symbol])
        return Reply(200, {"Error Message": BAD_CALL})


@pytest.fixture
def fake() -> FakeAlphaVantage:
    return FakeAlphaVantage()


@pytest.fixture
def server(fake: FakeAlphaVantage) -> Iterator[ScriptedServer]:
    srv = ScriptedServer(fake)
    yield srv
    srv.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def client(server: ScriptedServer, clock: FakeClock, **kwargs) -> AlphaVantageClient:
    options = SourceOptions(timing=clock.timing(), seed=7, timeout_s=5)
    if "policy" in kwargs:
        options.policy = kwargs.pop("policy")
    else:
        from finpulse.ingest.alphavantage import DEFAULT_POLICY
        options.policy = DEFAULT_POLICY
    if "max_bucket_wait_s" in kwargs:
        options.max_bucket_wait_s = kwargs.pop("max_bucket_wait_s")
    return AlphaVantageClient(KEY, f"{server.url}/query", options=options, **kwargs)


def use_fixture(fake: FakeAlphaVantage, shared_data: Path, symbol: str) -> None:
    path = shared_data / "alpha_vantage_fixture" / f"TIME_SERIES_DAILY_{symbol}.json"
    fake.bodies[symbol] = path.read_bytes()


def test_daily_reads_the_real_reply_and_the_partial_day_is_rejected(server, fake, clock, shared_data) -> None:
    use_fixture(fake, shared_data, "AAPL")
    frame = client(server, clock).daily("aapl", "compact")
    assert list(frame.columns) == RAW_PRICE_COLUMNS and len(frame) == 100
    seen = server.requests[0].params
    assert seen == {"function": "TIME_SERIES_DAILY", "symbol": "AAPL", "outputsize": "compact", "apikey": KEY}
    last = frame.iloc[-1]
    assert last["date"] == "2019-01-22" and last["note"].startswith("intraday")
    valid, rejected = normalize_prices(frame)
    assert len(valid) == 99 and pd.Timestamp("2019-01-22").date() not in set(valid["date"])
    assert rejected["reason"].tolist() == ["intraday bar: not a close"]


def test_rate_limit_notes_are_retried_with_backoff_and_counted(server, clock) -> None:
    server.queue += [Reply(200, {"Note": MINUTE_NOTE}), Reply(200, {"Information": BURST_INFO})]
    av = client(server, clock)
    frame = av.daily("IBM")
    assert len(frame) == 3 and len(server.requests) == 3
    assert (av.stats.rate_limited, av.stats.retries, av.stats.requests) == (2, 2, 3)
    assert av.stats.last_success_ts == clock.now
    backoffs = [s for s in clock.sleeps if s >= 1]
    assert len(backoffs) == 2 and 15 * 0.75 <= backoffs[0] <= 15 * 1.25 and 30 * 0.75 <= backoffs[1] <= 30 * 1.25


def test_persistent_rate_limit_raises_rate_limited_after_the_budget(server, fake, clock) -> None:
    fake.bodies["IBM"] = {"Information": BURST_INFO}
    av = client(server, clock)
    with pytest.raises(RateLimited, match="rate limit"):
        av.daily("IBM")
    assert len(server.requests) == 4 and av.stats.rate_limited == 4 and av.stats.last_success_ts is None


def test_daily_quota_is_not_retried_and_premium_is_not_a_rate_limit(server, fake, clock) -> None:
    fake.bodies["IBM"] = {"Information": DAILY_INFO}
    av = client(server, clock)
    with pytest.raises(RateLimited, match="daily quota"):
        av.daily("IBM")
    assert len(server.requests) == 1 and av.stats.rate_limited == 1
    fake.bodies["IBM"] = {"Information": PREMIUM_INFO}
    with pytest.raises(InvalidRequest, match="premium feature"):
        av.daily("IBM", "full")
    assert len(server.requests) == 2 and av.stats.retries == 0


def test_server_errors_and_dropped_connections_are_retried(server, clock) -> None:
    server.queue += [Reply(503, "<html>Service Unavailable</html>", {"Content-Type": "text/html"}), Reply(DROP),
                     Reply(429, "", {"Retry-After": "40"})]
    av = client(server, clock)
    assert len(av.daily("IBM")) == 3
    assert len(server.requests) == 4 and av.stats.retries == 3
    assert av.stats.errors == 2 and av.stats.rate_limited == 1
    assert clock.sleeps[-1] >= 40  # Retry-After honoured over the shorter backoff


def test_retry_after_as_a_date_is_honoured_and_an_excessive_one_gives_up(server, clock) -> None:
    when = email.utils.formatdate(clock.now + 90, usegmt=True)
    server.queue.append(Reply(503, "busy", {"Retry-After": when, "Content-Type": "text/plain"}))
    av = client(server, clock)
    assert len(av.daily("IBM")) == 3 and clock.sleeps[-1] == pytest.approx(90, abs=1)
    server.queue.append(Reply(429, "", {"Retry-After": "7200"}))
    with pytest.raises(RateLimited, match="asked to wait 7200 s"):
        av.daily("IBM")
    assert len(server.requests) == 3 and av.stats.rate_limited == 1


def test_bad_symbol_and_bad_key_are_clear_errors_without_retries(server, clock) -> None:
    av = client(server, clock)
    with pytest.raises(InvalidRequest, match="Invalid API call"):
        av.daily("NOPE")
    wrong = AlphaVantageClient("wrong-key", f"{server.url}/query", options=SourceOptions(timing=clock.timing()))
    with pytest.raises(AuthError, match="apikey is invalid"):
        wrong.daily("IBM")
    assert len(server.requests) == 2 and av.stats.retries == 0


def test_poll_keeps_going_past_a_failing_ticker(server, fake, clock, shared_data) -> None:
    use_fixture(fake, shared_data, "AAPL")
    use_fixture(fake, shared_data, "MSFT")
    sunk: list[pd.DataFrame] = []
    results = dict(client(server, clock).poll(["AAPL", "BAD", "MSFT"], sink=sunk.append))
    assert isinstance(results["BAD"], InvalidRequest)
    assert results["AAPL"]["ticker"].eq("AAPL").all() and results["MSFT"]["ticker"].eq("MSFT").all()
    assert [f["ticker"].iloc[0] for f in sunk] == ["AAPL", "MSFT"]


def test_token_bucket_spaces_calls_on_the_injected_clock(server, clock) -> None:
    av = client(server, clock)  # 5 a minute, burst 5
    start = clock.now
    sent_at = []
    for _ in range(7):
        av.daily("IBM")
        sent_at.append(clock.now - start)
    assert sent_at == pytest.approx([0, 0, 0, 0, 0, 12, 24])
    assert av.stats.throttled_s == pytest.approx(24)
    bucket = TokenBucket(rate_per_s=2, burst=3, timing=clock.timing())
    waits = [bucket.acquire() for _ in range(5)]
    assert waits == pytest.approx([0, 0, 0, 0.5, 0.5])


def test_daily_budget_refuses_instead_of_sleeping_for_hours(server, clock) -> None:
    av = client(server, clock, calls_per_day=2, max_bucket_wait_s=120)
    av.daily("IBM")
    av.daily("IBM")
    with pytest.raises(BudgetExhausted, match="per-day"):
        av.daily("IBM")
    assert len(server.requests) == 2 and av.stats.rate_limited == 1


def _at(eastern: str) -> FakeClock:
    return FakeClock(datetime.fromisoformat(eastern).replace(tzinfo=ZoneInfo("America/New_York")).timestamp())


def test_a_bar_for_today_fetched_before_the_close_is_intraday(server) -> None:
    # "Last Refreshed" without a time: the reader cannot tell; the client knows when it asked.
    during = client(server, _at("2024-05-17 11:00:00")).daily("IBM")
    assert during["note"].tolist()[:2] == [None, None] and during["note"].iloc[-1].startswith("intraday")
    assert normalize_prices(during)[1]["reason"].tolist() == ["intraday bar: not a close"]
    after = client(server, _at("2024-05-17 16:30:00")).daily("IBM")
    assert after["note"].isna().all() and len(normalize_prices(after)[0]) == 3


def test_quote_is_a_small_dataclass_and_an_unknown_symbol_is_an_error(server, clock) -> None:
    av = client(server, clock)
    q = av.quote("ibm")
    assert (q.ticker, q.price, q.volume, q.change_percent) == ("IBM", 169.3, 4123456, pytest.approx(0.7738))
    assert q.latest_trading_day == "2024-05-17" and q.fetched_at == clock.now
    assert server.requests[0].params["function"] == "GLOBAL_QUOTE"
    with pytest.raises(InvalidRequest, match="no quote"):
        av.quote("NOPE")


def test_from_env_needs_the_key(server) -> None:
    with pytest.raises(AuthError, match=API_KEY_ENV):
        AlphaVantageClient.from_env({})
    av = AlphaVantageClient.from_env({API_KEY_ENV: KEY}, base_url=f"{server.url}/query")
    assert av.api_key == KEY and av.calls_per_minute == 5 and av.calls_per_day == 25
