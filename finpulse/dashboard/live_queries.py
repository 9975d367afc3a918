"""What the Live and health page shows, read where the live path, the loop and serving leave it (no Streamlit).

- posts and lag: the stream processor's batches (:mod:`finpulse.ingest.store`: ``raw/posts/live/<UTC
  stamp>-<seq>.csv`` with their scores under ``scores/live/``);
- feature age: ``live/features/state.json`` measured with :mod:`finpulse.monitoring.freshness`;
- model age: the registry's creation time of each alias (what serving exports as a gauge);
- drift: ``monitoring/drift/latest.json`` through :func:`finpulse.serving.gauges.read_drift`;
- canary weights: the running app's ``/v1/models`` (the address ``finpulse serve`` records) shaped by
  :func:`finpulse.serving.canary.summary`, as ``finpulse canary status`` prints it;
- loop decisions: the turn records under :func:`finpulse.loop.records.turns_root`;
- RPS and p99 per route: PromQL on the Gateway's request metrics through
  :class:`finpulse.serving.soak_sources.PrometheusSource`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd

from finpulse import storage, tracking
from finpulse.data import sources
from finpulse.ingest import store
from finpulse.loop import records
from finpulse.monitoring import freshness
from finpulse.paths import DataPaths

STAMP_FORMAT = "%Y%m%dT%H%M%S"  # the UTC prefix of store.batch_name
POST_VIEW = ["created_at", "ticker", "source", "label", "score", "text", "author", "post_id"]


def batch_time(uri: str) -> pd.Timestamp | None:
    """When the processor wrote a live batch: the UTC stamp that starts its name (``store.batch_name``)."""
    try:
        return pd.Timestamp(dt.datetime.strptime(Path(uri).name[:15], STAMP_FORMAT), tz="UTC")
    except ValueError:
        return None


def live_batches(paths: DataPaths) -> list[str]:
    """The live post batches stored so far, oldest first."""
    return storage.list_files(paths.live_posts, ".csv")


def latest_posts(paths: DataPaths, n: int = 50, batches: int = 10) -> pd.DataFrame:
    """The newest ``n`` accepted live posts with their scores, newest first (read from the last ``batches``);
    ``created_at`` in naive UTC (Streamlit's tables warn on time zones and drop them anyway)."""
    frames = []
    for uri in live_batches(paths)[-batches:]:
        raw = sources.read_posts_csv(storage.read_bytes(uri), uri)
        valid, _ = sources.normalize_posts(raw)
        scores_uri = storage.join(paths.live_scores, Path(uri).name.removesuffix(".csv") + ".parquet")
        if storage.exists(scores_uri):
            valid = valid.merge(storage.read_frame(scores_uri), on=["post_id", "ticker"], how="left")
        frames.append(valid)
    if not frames:
        return pd.DataFrame(columns=POST_VIEW)
    posts = pd.concat(frames, ignore_index=True).sort_values("created_at", ascending=False).head(n)
    posts = posts.assign(created_at=posts["created_at"].dt.tz_convert("UTC").dt.tz_localize(None))
    return posts.reindex(columns=POST_VIEW).reset_index(drop=True)


def ingestion_lag(paths: DataPaths, now: dt.datetime) -> dict[str, Any] | None:
    """How far behind ``now`` the live path is: the last batch written and the newest post in it
    (seconds); None before the first batch."""
    found = live_batches(paths)
    if not found:
        return None
    last = batch_time(found[-1])
    newest = latest_posts(paths, n=1, batches=1)
    newest_at = pd.Timestamp(newest["created_at"].iloc[0]).tz_localize("UTC") if len(newest) else None
    now_ts = pd.Timestamp(now)
    return {"batches": len(found), "last_batch_at": last, "newest_post_at": newest_at,
            "batch_lag_s": (now_ts - last).total_seconds() if last is not None else None,
            "post_lag_s": (now_ts - newest_at).total_seconds() if newest_at is not None else None}


def feature_freshness(paths: DataPaths, now: dt.datetime) -> pd.DataFrame:
    """Per ticker: the live features' newest day, trading days behind the last close, stale or not, and
    seconds since the processor rewrote them."""
    rows = []
    for ticker, s in sorted(store.read_state(paths).items()):
        if not isinstance(s, dict) or "as_of" not in s:
            continue
        as_of = pd.Timestamp(s["as_of"]).date()
        rows.append({"ticker": ticker, "as_of": as_of, "provisional": bool(s.get("provisional")),
                     "trading_days_behind": freshness.trading_days_behind(as_of, now),
                     "stale": freshness.is_stale(as_of, now),
                     "updated_s_ago": now.timestamp() - float(s["updated_at"]) if s.get("updated_at") else None})
    return pd.DataFrame(rows, columns=["ticker", "as_of", "provisional", "trading_days_behind", "stale",
                                       "updated_s_ago"])


def model_ages(now: dt.datetime, max_age_days: float) -> pd.DataFrame:
    """Age of each model's champion and challenger from its registry creation time (stale beyond
    ``max_age_days``, the limit the serving alert uses)."""
    rows = []
    for name in (tracking.FORECAST_MODEL, tracking.SENTIMENT_MODEL):
        for alias in (tracking.CHAMPION, tracking.CHALLENGER):
            ref = tracking.get_version(name, alias)
            created = tracking.version_created_at(name, ref.version) if ref else None
            if created is None:
                continue
            age = (now.timestamp() - created) / 86400.0
            rows.append({"model": name, "alias": alias, "version": ref.label, "age_days": age,
                         "stale": age > max_age_days})
    return pd.DataFrame(rows, columns=["model", "alias", "version", "age_days", "stale"])


def drift_scores(paths: DataPaths) -> tuple[Any, pd.DataFrame]:
    """The drift job's latest reading (None before its first report) and its scores per signal and feature."""
    from finpulse.serving.gauges import read_drift

    reading = read_drift(paths.drift_latest)
    rows = [{"signal": s, "feature": f, "score": v} for s, f, v in (reading.scores if reading else ())]
    return reading, pd.DataFrame(rows, columns=["signal", "feature", "score"])


def drift_history(paths: DataPaths, n: int = 60) -> pd.DataFrame:
    """The last ``n`` drift reports' gauges over time (the same choice of test per feature as latest.json)."""
    from types import SimpleNamespace

    from finpulse import storage
    from finpulse.monitoring.report import gauges

    rows = []
    reports = sorted(u for u in storage.list_files(paths.drift_reports, "report.json"))[-n:]
    for uri in reports:
        doc = storage.read_json(uri)
        for g in gauges(SimpleNamespace(**e) for e in doc.get("entries", [])):
            when = pd.to_datetime(doc["created_at"], utc=True).tz_convert(None)
            rows.append({"created_at": when, "alarm": doc["alarm"], **g})
    return pd.DataFrame(rows, columns=["created_at", "alarm", "signal", "feature", "test", "score"])


def serving_url() -> str | None:
    """The API base URL a running ``finpulse serve`` of this home recorded; None when none runs."""
    from finpulse.serving.run import read_state

    return (read_state() or {}).get("url")


def canary_weights(url: str, timeout: float = 5.0, api_key: str | None = None) -> pd.DataFrame:
    """Per model and slot: version, traffic weight, ready, from the app's ``/v1/models`` (read with this
    machine's API key unless one is given)."""
    import requests

    from finpulse.serving import canary
    from finpulse.serving.api_keys import client_headers

    r = requests.get(f"{url.rstrip('/')}/v1/models", headers=client_headers(api_key), timeout=timeout)
    r.raise_for_status()
    return canary_frame(canary.summary(r.json()))


def canary_frame(summary: dict[str, dict[str, dict[str, Any]]]) -> pd.DataFrame:
    """``canary.summary`` as rows: model, slot, version, weight, ready, error."""
    rows = [{"model": model, "slot": slot, **info} for model, slots in summary.items() for slot, info in slots.items()]
    return pd.DataFrame(rows, columns=["model", "slot", "version", "weight", "ready", "error"])


def loop_turns(home: str | Path, n: int = 10) -> pd.DataFrame:
    """The newest ``n`` retraining turns: when, why, status, outcome and reasons."""
    rows = [{"turn_id": t["turn_id"], "started_at": pd.Timestamp(t["started_at"], unit="s"),  # naive UTC
             "trigger": t.get("trigger"), "status": t.get("status"), "outcome": t.get("outcome"),
             "attempts": len(t.get("attempts", [])), "reasons": "; ".join(t.get("reasons", []))}
            for t in records.list_turns(records.turns_root(home))[:n]]
    return pd.DataFrame(rows, columns=["turn_id", "started_at", "trigger", "status", "outcome", "attempts",
                                       "reasons"])


def turn_steps(home: str | Path, turn_id: str) -> pd.DataFrame:
    """A turn's steps in order: status, decision and reasons (what ``finpulse pipeline`` prints)."""
    rows = []
    for r in records.step_records(records.turns_root(home) / turn_id):
        outputs = r.get("outputs") or {}
        rows.append({"step": r.get("name"), "status": r.get("status"), "decision": outputs.get("decision"),
                     "reasons": "; ".join(map(str, outputs.get("reasons", []))), "error": r.get("error")})
    return pd.DataFrame(rows, columns=["step", "status", "decision", "reasons", "error"])


def route_traffic(prometheus_url: str, window: str = "5m", timeout: float = 5.0) -> pd.DataFrame:
    """Requests per second and p99 latency (ms) per route over ``window``, from the Gateway's metrics."""
    from finpulse.serving.soak import LATENCY_BUCKET, REQUESTS
    from finpulse.serving.soak_sources import PrometheusSource

    prom = PrometheusSource(prometheus_url, timeout=timeout)
    rps = prom.query(f"sum by (route) (rate({REQUESTS}[{window}]))")
    p99 = prom.query(f"histogram_quantile(0.99, sum by (route, le) (rate({LATENCY_BUCKET}[{window}])))")
    return traffic_frame(rps, p99)


def traffic_frame(rps: list[dict], p99: list[dict]) -> pd.DataFrame:
    """Two instant-query results (``[{"metric": {"route"}, "value": [t, "x"]}]``) as route, rps, p99_ms."""
    def by_route(result: list[dict]) -> dict[str, float]:
        return {r["metric"].get("route", ""): float(r["value"][1]) for r in result}

    a, b = by_route(rps), by_route(p99)
    rows = [{"route": route, "rps": a.get(route), "p99_ms": b.get(route)} for route in sorted(a.keys() | b.keys())]
    return pd.DataFrame(rows, columns=["route", "rps", "p99_ms"])
