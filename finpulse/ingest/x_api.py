"""X (Twitter) API v2 recent search as a polling source: cashtag posts per ticker, resumable.

``GET /2/tweets/search/recent`` returns posts of the last 7 days, newest first, ``max_results``
(10..100) a page, with ``meta.next_token`` for the next (older) page. Each ticker's query is
``($TSLA OR #TSLA) lang:en -is:retweet`` by default. Posts come out in the batch readers' raw post
layout (``RAW_POST_COLUMNS``; ``likes`` = ``like_count``, ``reposts`` = ``retweet_count``) so the
ETL's :func:`~finpulse.data.sources.normalize_posts` validates them and rejects malformed ones
with a reason.

**Neither missing nor repeating across restarts.** A small JSON state file keeps, per ticker,
``since_id`` (the newest id fully handed over) and, while a walk through older pages is under
way, ``pending`` = ``{newest_id, until_id}``. The state is written atomically *after* each page
went to the sink; a restart resumes an unfinished walk with ``since_id`` + ``until_id`` (the
oldest id already handed over) instead of an expired ``next_token``, then moves ``since_id`` up.

**Rate limits.** ``x-rate-limit-remaining`` / ``x-rate-limit-reset`` (Unix seconds) are read on
every reply: at 0 the next request sleeps until the reset; a 429 does the same through the retry
loop (X sends no ``Retry-After``). A token bucket (default 60 requests / 15 min, the app-only
limit of this endpoint on the Basic tier) keeps a steady poll under the window.

**Access tier.** Recent search needs paid access: the legacy Basic tier (60 requests / 15 min per
app) or higher, or pay-per-use credits (X's default for new developers since February 2026). The
Free tier is write-only and has no search endpoint: X answers 403 ``client-not-enrolled``, which
this client reports as an :class:`~finpulse.ingest.http.AuthError` saying so.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from finpulse.data.sources import RAW_POST_COLUMNS, raw_frame
from finpulse.ingest.http import (
    AuthError,
    HttpSource,
    InvalidRequest,
    Retry,
    RetryPolicy,
    SourceError,
    SourceOptions,
    SourceStats,
    TokenBucket,
)

DEFAULT_URL = "https://api.x.com/2/tweets/search/recent"
TOKEN_ENV = "X_BEARER_TOKEN"  # noqa: S105 - the name of the variable that holds the token, not a token
DEFAULT_QUERY = "(${ticker} OR #{ticker}) lang:en -is:retweet"
TWEET_FIELDS = "created_at,public_metrics,author_id,lang"
SOURCE = "x:recent_search"
RESET_MARGIN_S = 1.0  # sleep a little past the reset: our clock and X's are not the same clock
Sink = Callable[[pd.DataFrame], None]
log = logging.getLogger(__name__)


def _default_options() -> SourceOptions:
    # A window is 15 minutes: a 429's reset may be up to ~900 s away and is worth waiting for.
    return SourceOptions(policy=RetryPolicy(attempts=4, base_s=2.0, max_s=60.0, max_retry_after_s=960.0))


@dataclass
class XConfig:
    """Everything the client needs; ``state_path`` is the since_id file (one per deployment)."""

    bearer_token: str
    state_path: Path
    base_url: str = DEFAULT_URL
    query_template: str = DEFAULT_QUERY
    max_results: int = 100
    max_pages: int = 10
    requests_per_window: int = 60
    window_s: float = 900.0
    options: SourceOptions = field(default_factory=_default_options)

    def __post_init__(self) -> None:
        if not self.bearer_token:
            raise AuthError(f"X recent search needs a bearer token (set {TOKEN_ENV})")
        if not 10 <= self.max_results <= 100:
            raise ValueError(f"max_results must be 10..100 (X's limits), not {self.max_results}")
        if self.max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        self.state_path = Path(self.state_path)


class SinceState:
    """Per-ticker ``since_id`` (and an unfinished walk), in a JSON file replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tickers: dict[str, dict[str, Any]] = {}
        if path.exists():
            self.tickers = json.loads(path.read_text()).get("tickers", {})

    def get(self, ticker: str) -> dict[str, Any]:
        return dict(self.tickers.get(ticker, {"since_id": None, "pending": None}))

    def set(self, ticker: str, entry: dict[str, Any]) -> None:
        self.tickers[ticker] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump({"tickers": self.tickers}, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)  # readers see the old file or the new one, never half of one


def posts_frame(tweets: list[Any], ticker: str) -> pd.DataFrame:
    """Tweets of one page as raw post rows; missing fields stay missing (normalize_posts rejects)."""
    records = []
    for tweet in tweets:
        t = tweet if isinstance(tweet, dict) else {}
        metrics = t.get("public_metrics") if isinstance(t.get("public_metrics"), dict) else {}
        records.append({"post_id": t.get("id"), "ticker": ticker, "created_at": t.get("created_at"),
                        "text": t.get("text"), "author": t.get("author_id"), "likes": metrics.get("like_count"),
                        "reposts": metrics.get("retweet_count"), "source": SOURCE})
    return raw_frame(pd.DataFrame(records, columns=RAW_POST_COLUMNS), RAW_POST_COLUMNS)


def _header_float(resp: requests.Response, name: str) -> float | None:
    try:
        return float(resp.headers[name])
    except (KeyError, ValueError):
        return None


def _describe(body: Mapping[str, Any]) -> str:
    """X's error bodies: problem details (``title``/``detail``) and/or an ``errors`` list."""
    parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
    for err in body.get("errors") or []:
        if isinstance(err, dict):
            parts.append(str(err.get("message") or err.get("detail") or err))
    return "; ".join(dict.fromkeys(parts)) or "no error details"


class XRecentSearch:
    """Cashtag search per ticker, handing pages to a sink and persisting since_id after each."""

    def __init__(self, config: XConfig) -> None:
        self.config = config
        timing = config.options.timing
        bucket = TokenBucket(config.requests_per_window / config.window_s, config.requests_per_window, timing,
                             "x recent search")
        self.http = HttpSource(SOURCE, config.options, [bucket])
        self.state = SinceState(config.state_path)
        self._blocked_until = 0.0

    @classmethod
    def from_env(cls, state_path: Path, env: Mapping[str, str] | None = None, **kwargs: Any) -> XRecentSearch:
        """The bearer token from ``X_BEARER_TOKEN``; a clear error when it is not set."""
        token = (os.environ if env is None else env).get(TOKEN_ENV, "").strip()
        if not token:
            raise AuthError(f"{TOKEN_ENV} is not set: create an app at https://developer.x.com with recent-search "
                            "access (Basic tier or higher, or pay-per-use credits) and export its bearer token")
        return cls(XConfig(token, Path(state_path), **kwargs))

    @property
    def stats(self) -> SourceStats:
        return self.http.stats

    def query_for(self, ticker: str) -> str:
        return self.config.query_template.format(ticker=ticker)

    def _check(self, resp: requests.Response) -> dict[str, Any]:
        now = self.config.options.timing.clock()
        remaining, reset = _header_float(resp, "x-rate-limit-remaining"), _header_float(resp, "x-rate-limit-reset")
        if remaining is not None and remaining <= 0 and reset is not None:
            self._blocked_until = reset + RESET_MARGIN_S
        if resp.status_code == 429:
            wait = None if reset is None else max(0.0, reset - now) + RESET_MARGIN_S
            raise Retry("X API 429 Too Many Requests", wait, rate_limited=True)
        if resp.status_code >= 500:
            raise Retry(f"X API HTTP {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            body = {"detail": resp.text[:200]}
        body = body if isinstance(body, dict) else {"detail": str(body)[:200]}
        if resp.status_code == 401:
            raise AuthError(f"X API 401 ({_describe(body)}): the bearer token in {TOKEN_ENV} is missing, wrong "
                            "or revoked")
        if resp.status_code == 403:
            raise AuthError(f"X API 403 ({_describe(body)}; reason: {body.get('reason', '?')}): recent search "
                            "needs the Basic tier or higher (or pay-per-use credits); the Free tier cannot search")
        if resp.status_code >= 400 or ("data" not in body and body.get("errors")):
            raise InvalidRequest(f"X API {resp.status_code}: {_describe(body)}")
        return body

    def _page(self, ticker: str, since_id: str | None, until_id: str | None, next_token: str | None) -> dict:
        params = {"query": self.query_for(ticker), "max_results": str(self.config.max_results),
                  "tweet.fields": TWEET_FIELDS}
        for key, value in (("since_id", since_id), ("until_id", until_id), ("next_token", next_token)):
            if value:
                params[key] = value
        self.http.wait(self._blocked_until - self.config.options.timing.clock())
        headers = {"Authorization": f"Bearer {self.config.bearer_token}", "User-Agent": "finpulse-ingest"}
        return self.http.get(self.config.base_url, params, headers, self._check)

    def fetch(self, ticker: str, sink: Sink) -> int:
        """New posts for one ticker, page by page into ``sink``; returns how many were handed over.
        The state moves only after ``sink`` returned, so a failure in it (or a crash) repeats nothing
        that was handed over and misses nothing that was not.

        After a week of downtime the saved ids fall outside the 7-day window and X rejects them; the
        unreachable part is given up (logged) and the walk restarts from what X still holds."""
        ticker = ticker.strip().upper()
        try:
            return self._walk(ticker, sink)
        except InvalidRequest as exc:
            entry = self.state.get(ticker)
            if not ("since_id" in str(exc) or "until_id" in str(exc)) or not (entry["since_id"] or entry["pending"]):
                raise
            pending = entry["pending"]
            fallback = {"since_id": pending["newest_id"] if pending else None, "pending": None}
            log.warning("%s: X rejected the saved ids (%s); posts before %s are out of recent search's 7-day "
                        "reach and are skipped", ticker, exc, fallback["since_id"] or "the window")
            self.state.set(ticker, fallback)
            return self.fetch(ticker, sink)

    def _walk(self, ticker: str, sink: Sink) -> int:
        entry = self.state.get(ticker)
        since, pending = entry.get("since_id"), entry.get("pending")
        newest = pending["newest_id"] if pending else None
        until = pending["until_id"] if pending else None
        token, handed = None, 0
        for _ in range(self.config.max_pages):
            doc = self._page(ticker, since, until, token)
            meta, tweets = doc.get("meta") or {}, doc.get("data") or []
            newest = newest or meta.get("newest_id")
            token = meta.get("next_token")
            if tweets:
                sink(posts_frame(tweets, ticker))
                handed += len(tweets)
            if token and tweets and meta.get("oldest_id"):
                self.state.set(ticker, {"since_id": since, "pending": {"newest_id": newest,
                                                                       "until_id": meta["oldest_id"]}})
            elif not token:
                if newest or pending:
                    self.state.set(ticker, {"since_id": newest or since, "pending": None})
                break
        return handed

    def poll(self, tickers: Iterable[str], sink: Sink) -> Iterator[tuple[str, int | SourceError]]:
        """:meth:`fetch` each ticker; yields ``(ticker, posts handed over)`` or ``(ticker, error)``.
        One ticker's failure does not stop the others; an :class:`AuthError` stops the poll (no
        ticker can succeed without valid, entitled credentials)."""
        for ticker in tickers:
            try:
                yield ticker, self.fetch(ticker, sink)
            except AuthError:
                raise
            except SourceError as exc:
                yield ticker, exc
