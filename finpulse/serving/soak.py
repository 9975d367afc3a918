"""The canary soak: compare the canary slot with stable on live traffic, then promote or roll back.

:func:`compare` is pure (unit-tested without Ray): error rate, p99 latency and the distribution of
predicted returns of the two slots against a :class:`SoakPolicy`. The numbers come from the
Gateway's per-slot metrics (``finpulse_requests{slot}``, ``finpulse_request_latency_ms{slot}``,
``finpulse_predicted_gross_return{slot}``), so stable and canary are told apart even when they serve
the same version. A source (``soak_sources``: Prometheus, or Ray's metrics endpoints scraped
directly when no Prometheus is configured) gives cumulative samples; the soak takes deltas since
its start. :func:`soak` polls during the window, rolls back as soon as a verdict says so, and
promotes (registry alias included, see ``canary.promote``) only at the end of a clean window.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from finpulse.serving.router import ROUTE_MODEL
from finpulse.serving.slots import CANARY, STABLE

REQUESTS = "ray_finpulse_requests_total"
LATENCY_BUCKET = "ray_finpulse_request_latency_ms_bucket"
RETURNS_BUCKET = "ray_finpulse_predicted_gross_return_bucket"
SOAK_METRICS = (REQUESTS, LATENCY_BUCKET, RETURNS_BUCKET)

SeriesKey = tuple[str, frozenset[tuple[str, str]]]  # (sample name, labels)


@dataclass(frozen=True)
class SlotStats:
    """One slot's traffic over the soak window."""

    requests: float = 0.0
    errors: float = 0.0  # 5xx answers: the service failed (4xx are the client's)
    p99_ms: float | None = None
    returns: tuple[float, ...] = ()  # predictions per gross-return bucket (not cumulative)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def predictions(self) -> float:
        return float(sum(self.returns))


@dataclass(frozen=True)
class SoakPolicy:
    """When a canary is worse than stable. Defaults suit a canary at 10-50% of real traffic."""

    min_requests: int = 50  # per slot, before any verdict but "inconclusive"
    max_error_rate_increase: float = 0.02  # canary minus stable 5xx share
    max_p99_ratio: float = 1.5  # canary p99 / stable p99 ...
    p99_floor_ms: float = 50.0  # ... with stable's p99 taken as at least this (tiny p99s are noise)
    max_prediction_psi: float | None = 0.25  # PSI of predicted-return buckets; None: not judged
    min_predictions: int = 50
    on_inconclusive: Literal["rollback", "promote"] = "rollback"  # too little traffic at the window's end
    # Seconds to wait before the window's starting snapshot: Ray exports replica metrics every 10 s and
    # Prometheus scrapes on its own clock, so counts of earlier traffic (a canary just rolled back) are
    # still arriving for a while; counted in this window they would be blamed on this canary.
    settle_s: float = 15.0


@dataclass(frozen=True)
class SoakVerdict:
    """``promote`` / ``rollback`` / ``inconclusive`` with the reasons; ``applied`` says what soak() did."""

    action: Literal["promote", "rollback", "inconclusive"]
    reasons: tuple[str, ...]
    stable: SlotStats = field(default_factory=SlotStats)
    canary: SlotStats = field(default_factory=SlotStats)
    early: bool = False
    applied: str | None = None  # "promoted" | "rolled_back" | None
    elapsed_s: float = 0.0
    event: dict | None = None  # what canary.promote/rollback recorded (MLflow run id, previous champion)

    def to_dict(self) -> dict:
        out = asdict(self)
        for slot in ("stable", "canary"):
            out[slot]["error_rate"] = getattr(self, slot).error_rate
        return out


def psi(expected: Iterable[float], actual: Iterable[float], eps: float = 1e-4) -> float:
    """Population stability index between two bucket-count vectors (shares smoothed by ``eps``)."""
    e, a = list(expected), list(actual)
    te, ta = sum(e) or 1.0, sum(a) or 1.0
    out = 0.0
    for x, y in zip(e, a, strict=True):
        p, q = max(x / te, eps), max(y / ta, eps)
        out += (q - p) * math.log(q / p)
    return out


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile`` on cumulative counts by upper bound (``inf`` included)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        count = buckets[b]
        if count >= rank:
            if math.isinf(b):
                return prev_bound
            if count == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = b, count
    return prev_bound


def compare(stable: SlotStats, canary: SlotStats, policy: SoakPolicy) -> SoakVerdict:
    """The verdict on the canary from both slots' traffic over the same window (pure)."""
    if min(stable.requests, canary.requests) < policy.min_requests:
        return SoakVerdict("inconclusive", (f"too little traffic: canary {canary.requests:.0f}, stable "
                                            f"{stable.requests:.0f} requests (need {policy.min_requests} each)",),
                           stable, canary)
    bad, good = [], []
    diff = canary.error_rate - stable.error_rate
    line = f"5xx rate canary {canary.error_rate:.1%} vs stable {stable.error_rate:.1%}"
    (bad if diff > policy.max_error_rate_increase else good).append(
        f"{line} ({diff * 100:+.1f} points, limit +{policy.max_error_rate_increase * 100:.1f})")
    if canary.p99_ms is not None and stable.p99_ms is not None:
        ratio = canary.p99_ms / max(stable.p99_ms, policy.p99_floor_ms)
        (bad if ratio > policy.max_p99_ratio else good).append(
            f"p99 canary {canary.p99_ms:.0f} ms vs stable {stable.p99_ms:.0f} ms (x{ratio:.2f}, limit "
            f"x{policy.max_p99_ratio:g})")
    if (policy.max_prediction_psi is not None and len(stable.returns) == len(canary.returns)
            and min(stable.predictions, canary.predictions) >= policy.min_predictions):
        score = psi(stable.returns, canary.returns)
        (bad if score > policy.max_prediction_psi else good).append(
            f"predicted-return PSI {score:.3f} (limit {policy.max_prediction_psi:g})")
    if bad:
        return SoakVerdict("rollback", tuple(bad), stable, canary)
    return SoakVerdict("promote", tuple(good), stable, canary)


# ---- from cumulative samples to per-slot stats over a window (pure) ---------------------------------


def series(samples: Iterable[tuple[str, dict[str, str], float]]) -> dict[SeriesKey, float]:
    """Samples keyed by (name, labels): the unit a window's deltas are taken on."""
    return {(name, frozenset(labels.items())): float(value) for name, labels, value in samples}


def _slot_of(labels: dict[str, str], name: str, model: str) -> str | None:
    slot = labels.get("slot")
    if slot not in (STABLE, CANARY):
        return None
    if name == RETURNS_BUCKET:
        return slot if model == "forecast" else None
    return slot if ROUTE_MODEL.get(labels.get("route", "")) == model else None


def _le(labels: dict[str, str]) -> float:
    return float(labels.get("le", "inf").replace("+Inf", "inf"))


def window_stats(before: dict[SeriesKey, float], after: dict[SeriesKey, float], model: str) -> dict[str, SlotStats]:
    """Per slot, what happened between two snapshots. A series absent before counts from zero; a
    counter that went down (a replaced replica) counts from zero again, as Prometheus' increase() does."""
    req: dict[str, float] = defaultdict(float)
    err: dict[str, float] = defaultdict(float)
    lat: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    ret: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for (name, frozen), value in after.items():
        labels = dict(frozen)
        slot = _slot_of(labels, name, model)
        if slot is None:
            continue
        start = before.get((name, frozen), 0.0)
        delta = value - start if value >= start else value
        if name == REQUESTS:
            req[slot] += delta
            err[slot] += delta if labels.get("status", "").startswith("5") else 0.0
        elif name == LATENCY_BUCKET:
            lat[slot][_le(labels)] += delta
        elif name == RETURNS_BUCKET:
            ret[slot][_le(labels)] += delta
    out = {}
    for slot in (STABLE, CANARY):
        cumulative = [c for _, c in sorted(ret[slot].items())]
        counts = tuple(c - p for c, p in zip(cumulative, [0.0, *cumulative], strict=False))
        out[slot] = SlotStats(req[slot], err[slot], quantile(0.99, lat[slot]), counts)
    return out


# ---- the soak loop ---------------------------------------------------------------------------------


class MetricsSource(Protocol):
    """Current cumulative values of the soak's metrics: ``(sample name, labels, value)``."""

    def samples(self) -> list[tuple[str, dict[str, str], float]]: ...


def _decide(verdict: SoakVerdict, policy: SoakPolicy, at_end: bool) -> str | None:
    if verdict.action == "rollback":
        return "rollback"
    if not at_end:
        return None
    if verdict.action == "promote":
        return "promote"
    return policy.on_inconclusive


def soak(client: Any, model: str, source: MetricsSource, policy: SoakPolicy | None = None, *, window_s: float,
         poll_s: float = 5.0, on_tick: Callable[[SoakVerdict], None] | None = None,
         promotion: dict[str, Any] | None = None) -> SoakVerdict:
    """Watch the running canary of ``model`` for ``window_s`` (after ``policy.settle_s``); roll back at the
    first poll whose verdict is ``rollback`` (early), else promote at the end (``policy.on_inconclusive`` when traffic was too
    thin). ``promotion``: keyword arguments for ``canary.promote``/``rollback`` (``registry``, ``actor``,
    ``parent_run_id``). Returns the deciding verdict with ``applied`` set."""
    from finpulse.serving import canary

    policy = policy or SoakPolicy()
    kwargs = dict(promotion or {})
    time.sleep(policy.settle_s)
    start, t0 = series(source.samples()), time.monotonic()
    while True:
        time.sleep(max(0.0, min(poll_s, window_s - (time.monotonic() - t0))))
        elapsed = time.monotonic() - t0
        stats = window_stats(start, series(source.samples()), model)
        verdict = compare(stats[STABLE], stats[CANARY], policy)
        verdict = SoakVerdict(**{**verdict.__dict__, "elapsed_s": round(elapsed, 1)})
        if on_tick is not None:
            on_tick(verdict)
        decision = _decide(verdict, policy, at_end=elapsed >= window_s)
        if decision is None:
            continue
        reasons = verdict.reasons if verdict.action != "inconclusive" else (
            *verdict.reasons, f"on_inconclusive={policy.on_inconclusive}")
        if decision == "rollback":
            out = canary.rollback(client, model, actor=kwargs.get("actor"), reason="; ".join(reasons),
                                  parent_run_id=kwargs.get("parent_run_id"))
            return SoakVerdict(**{**verdict.__dict__, "reasons": reasons, "applied": "rolled_back",
                                  "early": elapsed < window_s, "event": out.get("rollback")})
        out = canary.promote(client, model, reason="; ".join(reasons), **kwargs)
        return SoakVerdict(**{**verdict.__dict__, "reasons": reasons, "applied": "promoted",
                              "event": out.get("promotion")})
