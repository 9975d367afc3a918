"""The stream processor on Ray: one named async actor that Ray restarts when it dies.

On (re)start it rebuilds its book from storage and resumes the broker's durable consumer, so a
killed processor loses nothing (unacknowledged messages are redelivered) and duplicates nothing
(their posts are already in the book). Metrics go to Ray's metrics endpoint, which Prometheus scrapes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict
from typing import Any

from finpulse.ingest import store
from finpulse.ingest.broker import Feed
from finpulse.ingest.processor import BatchOutcome, Processor, ProcessorConfig, Scorer, run_once
from finpulse.monitoring.metrics import LiveMetrics
from finpulse.paths import DataPaths

log = logging.getLogger(__name__)
ACTOR_NAME = "finpulse-stream-processor"
FAILURE_BACKOFF_S = 1.0
NAMESPACE = "finpulse"


def model_scorer(spec: str, threads: int = 1) -> tuple[Scorer, str]:
    """Score with a sentiment model (registry spec, folder or hub id), in-process; returns (scorer, name)."""
    from finpulse.sentiment.model import load_classifier, resolve_model_dir
    from finpulse.sentiment.score import score_frame, scorer_name

    local, version = resolve_model_dir(spec)
    clf = load_classifier(local, version=version, threads=threads)
    name = scorer_name(version)
    return (lambda posts: score_frame(clf, posts, name)), name


def _record(metrics: LiveMetrics, o: BatchOutcome) -> None:
    for kind, outcome, n in (("post", "accepted", o.accepted), ("post", "duplicate", o.duplicates),
                             ("any", "rejected", o.rejected), ("bar", "accepted", o.bars),
                             ("quote", "accepted", o.quotes), ("any", "dead_letter", o.dead)):
        metrics.messages(kind, outcome, n)
    metrics.lags(o.lags_ms)


class ProcessorActor:
    """``run()`` loops until ``stop()``; ``stats()`` reports totals since this incarnation started."""

    def __init__(self, config: ProcessorConfig, data_root: str):
        self.config, self.paths = config, DataPaths(data_root)
        self.totals = asdict(BatchOutcome())
        self.started_at, self.batches, self.running = time.time(), 0, False
        self.failures, self.last_error = 0, None
        self._stop = asyncio.Event()

    async def run(self) -> dict:
        scorer, source = await asyncio.to_thread(model_scorer, self.config.sentiment_model,
                                                 self.config.scorer_threads)
        book = await asyncio.to_thread(store.load_book, self.paths, self.config.dedupe_window_s,
                                       self.config.close_hour)
        processor = Processor(self.paths, book, scorer, source)
        feed = await Feed.connect(self.config.nats_url, name=ACTOR_NAME)
        sub = await feed.subscribe(self.config.durable, self.config.ack_wait_s)
        metrics = LiveMetrics()
        self.running = True
        try:
            while not self._stop.is_set():
                try:
                    outcome = await run_once(feed, sub, processor, self.config)
                except Exception as exc:  # storage or model hiccup: the batch stays unacknowledged and comes back
                    log.exception("micro-batch failed; retrying after %.1f s", FAILURE_BACKOFF_S)
                    self.failures, self.last_error = self.failures + 1, f"{type(exc).__name__}: {exc}"[:500]
                    await asyncio.sleep(FAILURE_BACKOFF_S)
                    continue
                if outcome is not None:
                    self._add(outcome)
                    _record(metrics, outcome)
        finally:
            self.running = False
            await feed.close()
        return self.stats()

    def _add(self, o: BatchOutcome) -> None:
        self.batches += 1
        for key in ("posts", "accepted", "duplicates", "rejected", "bars", "quotes", "dead"):
            self.totals[key] += getattr(o, key)
        self.totals["lags_ms"] = (self.totals["lags_ms"] + o.lags_ms)[-5000:]

    def stats(self) -> dict:
        return {**{k: v for k, v in self.totals.items() if k not in ("lags_ms", "tickers", "deferred")},
                "batches": self.batches, "running": self.running, "started_at": self.started_at,
                "failures": self.failures, "last_error": self.last_error,
                "recent_lags_ms": list(self.totals["lags_ms"])}

    async def stop(self) -> None:
        self._stop.set()


def start_processor(config: ProcessorConfig, data_root: str, *, num_cpus: float = 0.5,
                    name: str = ACTOR_NAME) -> Any:
    """Start the named processor actor and its loop; returns the actor handle. Ray must be up.

    One processor per name (a second would compete for the same consumer): a live one is an error."""
    import ray

    try:
        ray.get_actor(name, namespace=NAMESPACE)
        raise RuntimeError(f"a stream processor named {name!r} is already running")
    except ValueError:
        pass  # none by that name: start it
    actor_cls = ray.remote(ProcessorActor).options(
        name=name, namespace=NAMESPACE, max_restarts=-1, max_task_retries=-1, num_cpus=num_cpus, max_concurrency=8)
    actor = actor_cls.remote(config, data_root)
    actor.run.remote()
    return actor


def wait_running(actor: Any, timeout_s: float = 120.0) -> dict:
    """Block until the actor's loop is consuming (model loaded, book rebuilt, consumer attached)."""
    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = ray.get(actor.stats.remote())
        if stats["running"]:
            return stats
        time.sleep(0.2)
    raise TimeoutError(f"stream processor not running after {timeout_s} s")


def stop_processor(actor: Any, name: str = ACTOR_NAME, timeout_s: float = 30.0) -> None:
    """Stop the loop, then the actor, and wait until Ray has let its name go (a new one may then start)."""
    import ray

    try:
        ray.get(actor.stop.remote(), timeout=timeout_s)
    finally:
        ray.kill(actor, no_restart=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return
        time.sleep(0.1)
