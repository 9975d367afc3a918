"""Shared HTTP plumbing for the streaming sources: a token bucket, retries with backoff, counters.

Both upstream APIs punish eagerness (Alpha Vantage's free tier allows 5 calls a minute and 25 a
day; X answers 429 until a window resets), so every request goes through :class:`HttpSource`:
it first takes a token from each of its buckets, then sends, then lets a per-API ``check`` decide
whether the reply is data, a retryable failure (:class:`Retry`) or a final error
(:class:`SourceError`). Retries back off exponentially with jitter and honour ``Retry-After``.

Time is injected (:class:`Timing`) so tests run against a fake clock and never really wait.
The clock is wall-clock seconds (``time.time``) because X's reset header is a Unix timestamp.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import requests

T = TypeVar("T")


class SourceError(Exception):
    """A source failed in a way the caller should see (not retried any further)."""


class RateLimited(SourceError):
    """The upstream (or our own budget) kept refusing for rate limiting after the retry budget."""


class BudgetExhausted(RateLimited):
    """A local token bucket would have to wait longer than allowed (e.g. the daily quota is spent)."""


class SourceUnavailable(SourceError):
    """Connection errors or 5xx replies persisted after the retry budget."""


class InvalidRequest(SourceError):
    """The upstream rejected the request itself (bad symbol, bad parameter): retrying cannot help."""


class AuthError(SourceError):
    """Credentials missing, wrong, or not entitled to the endpoint."""


class Retry(Exception):
    """Raised by a response check: this attempt failed in a way worth trying again."""

    def __init__(self, reason: str, retry_after: float | None = None, rate_limited: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.retry_after, self.rate_limited = reason, retry_after, rate_limited


@dataclass
class Timing:
    """Where time comes from; tests pass a fake clock whose ``sleep`` advances it."""

    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


@dataclass
class SourceStats:
    """Counters one source keeps; the lead exports them as Prometheus metrics."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    errors: int = 0
    throttled_s: float = 0.0
    last_success_ts: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; the n-th retry waits ``base_s * 2**n`` (capped, +-jitter), or
    longer when the server says so, unless the server asks for more than ``max_retry_after_s``."""

    attempts: int = 5
    base_s: float = 1.0
    max_s: float = 60.0
    jitter: float = 0.25
    max_retry_after_s: float = 900.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        delay = min(self.max_s, self.base_s * (2 ** retry))
        return max(0.0, delay * (1.0 + self.jitter * rng.uniform(-1.0, 1.0)))


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved up; one token per request."""

    def __init__(self, rate_per_s: float, burst: float, timing: Timing | None = None, name: str = "") -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate_per_s > 0 and burst >= 1")
        self.rate, self.burst, self.name = rate_per_s, float(burst), name
        self.timing = timing or Timing()
        self.tokens = float(burst)
        self._last = self.timing.clock()

    def _refill(self) -> None:
        now = self.timing.clock()
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self._last) * self.rate)
        self._last = now

    def acquire(self, max_wait_s: float = math.inf) -> float:
        """Take one token, sleeping until there is one; returns the seconds slept. Raises
        :class:`BudgetExhausted` instead of sleeping longer than ``max_wait_s``."""
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        wait = (1.0 - self.tokens) / self.rate
        if wait > max_wait_s:
            raise BudgetExhausted(f"{self.name or 'token bucket'}: next request allowed in {wait:.0f} s "
                                  f"(limit {self.rate * 60:.3g}/min, burst {self.burst:.0f})")
        self.timing.sleep(wait)
        self._refill()
        self.tokens = max(0.0, self.tokens - 1.0)
        return wait


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from now: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def default_check(resp: requests.Response, now: float) -> None:
    """429 and 5xx are retryable (honouring ``Retry-After``); everything else passes through."""
    retry_after = parse_retry_after(resp.headers.get("Retry-After"), now)
    if resp.status_code == 429:
        raise Retry("HTTP 429 Too Many Requests", retry_after, rate_limited=True)
    if resp.status_code >= 500:
        raise Retry(f"HTTP {resp.status_code}", retry_after)


@dataclass
class SourceOptions:
    """How a client talks to its upstream; every field has a production default."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    timing: Timing = field(default_factory=Timing)
    timeout_s: float = 30.0
    max_bucket_wait_s: float = 120.0
    seed: int | None = None
    session: requests.Session | None = None


class HttpSource:
    """One upstream: a session, its buckets, its retry policy and its counters."""

    def __init__(self, name: str, options: SourceOptions, buckets: list[TokenBucket] | None = None) -> None:
        self.name, self.options = name, options
        self.policy, self.timing = options.policy, options.timing
        self.buckets = buckets or []
        self.stats = SourceStats()
        self.session = options.session or requests.Session()
        self._rng = random.Random(options.seed)  # noqa: S311 - retry jitter, seedable for tests

    def _take_tokens(self) -> None:
        for bucket in self.buckets:
            try:
                self.stats.throttled_s += bucket.acquire(self.options.max_bucket_wait_s)
            except BudgetExhausted:
                self.stats.rate_limited += 1
                raise

    def wait(self, seconds: float) -> None:
        """Sleep on behalf of the source (e.g. until X's window resets), counted as throttling."""
        if seconds > 0:
            self.stats.throttled_s += seconds
            self.timing.sleep(seconds)

    def get(self, url: str, params: dict[str, str], headers: dict[str, str],
            check: Callable[[requests.Response], T]) -> T:
        """GET with buckets and retries; ``check`` turns a reply into a value or raises."""
        last: Retry | None = None
        for attempt in range(self.policy.attempts):
            if last is not None:
                self.stats.retries += 1
                self.timing.sleep(self._delay(attempt - 1, last))
            self._take_tokens()
            self.stats.requests += 1
            try:
                resp = self.session.get(url, params=params, headers=headers, timeout=self.options.timeout_s)
                value = check(resp)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                last = Retry(f"connection error: {type(exc).__name__}")
            except Retry as exc:
                last = exc
            except RateLimited:
                self.stats.rate_limited += 1
                raise
            except SourceError:
                self.stats.errors += 1
                raise
            else:
                self.stats.last_success_ts = self.timing.clock()
                return value
            if last.rate_limited:
                self.stats.rate_limited += 1
            else:
                self.stats.errors += 1
            if last.retry_after is not None and last.retry_after > self.policy.max_retry_after_s:
                break
        assert last is not None  # noqa: S101 - type narrowing: the loop above ran at least once
        error = RateLimited if last.rate_limited else SourceUnavailable
        raise error(f"{self.name}: gave up after {self._give_up_reason(last)}: {last.reason}")

    def _delay(self, retry: int, last: Retry) -> float:
        return max(self.policy.backoff(retry, self._rng), last.retry_after or 0.0)

    def _give_up_reason(self, last: Retry) -> str:
        if last.retry_after is not None and last.retry_after > self.policy.max_retry_after_s:
            return f"server asked to wait {last.retry_after:.0f} s (> {self.policy.max_retry_after_s:.0f} s)"
        return f"{self.policy.attempts} attempts"
