"""The stream processor: micro-batches from the broker -> validated, deduplicated, scored posts and bars,
stored where the batch ETL reads them, and fresh per-ticker features for serving.

:class:`Processor` does one micro-batch without Ray; :func:`run_once` pulls, decodes and acknowledges
(only after the batch's effects are stored); :class:`ProcessorActor` is the thin Ray shell that loops
(an async actor restarted by Ray when it dies: the broker redelivers what it had not acknowledged).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from finpulse.data import sources
from finpulse.ingest import live, store
from finpulse.ingest.broker import Feed, decode
from finpulse.names import SENTIMENT_MODEL, model_spec
from finpulse.paths import DataPaths

Scorer = Callable[[pd.DataFrame], pd.DataFrame]  # POSTS rows -> POST_SCORES rows (same order)
DEFER_S = 2.0  # a post past the known bars is offered again this much later ...
MAX_DEFERRALS = 30  # ... this many times, then kept on the dead-letter stream with the reason


@dataclass
class ProcessorConfig:
    """Knobs of the stream processor (CLI: ``finpulse stream``)."""

    nats_url: str = "nats://127.0.0.1:4222"
    durable: str = "finpulse-processor"
    sentiment_model: str = model_spec(SENTIMENT_MODEL)
    scorer_threads: int = 1  # torch threads of the in-actor scorer (size the actor's num_cpus to match)
    batch_size: int = 500
    fetch_timeout_s: float = 0.25
    ack_wait_s: float = 30.0  # redelivery delay after a processor dies mid-batch
    dedupe_window_s: int = 60
    close_hour: int = 16


@dataclass
class BatchOutcome:
    """What one micro-batch did: counts per outcome, tickers refreshed, publish-to-visible lags."""

    posts: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    bars: int = 0
    quotes: int = 0
    dead: int = 0
    tickers: list[str] = field(default_factory=list)
    lags_ms: list[float] = field(default_factory=list)
    deferred: set[tuple[str, str]] = field(default_factory=set)  # (ticker, post_id) ahead of the bars: retry later


class Processor:
    """Applies micro-batches to a :class:`~finpulse.ingest.live.LiveBook` and stores every effect."""

    def __init__(self, paths: DataPaths, book: live.LiveBook, scorer: Scorer, sentiment_source: str):
        self.paths, self.book, self.scorer, self.source = paths, book, scorer, sentiment_source
        self.state = store.read_state(paths)

    def handle(self, items: list[tuple[str, dict]], name: str) -> BatchOutcome:
        """``items`` are ``(kind, row)`` in broker order; the batch's bars are taken before its posts."""
        out = BatchOutcome()
        by_kind: dict[str, list[dict]] = {"post": [], "bar": [], "quote": []}
        for kind, row in items:
            by_kind[kind].append(row)
        changed: set[str] = set()
        if by_kind["bar"]:  # bars first: a post's alignment is the same either way, and none waits needlessly
            changed |= self._bars(pd.DataFrame(by_kind["bar"]), name, out)
        if by_kind["post"]:
            changed |= self._posts(pd.DataFrame(by_kind["post"]), name, out)
        for row in by_kind["quote"]:
            changed |= set(live.set_quote(self.book, str(row["ticker"]), float(row["price"])))
            out.quotes += 1
        tickers = sorted(t for t in changed if t in set(self.book.bars["ticker"]))
        feats = live.features_for(self.book, tickers, self.source)
        self.state = store.write_features(self.paths, feats, self.state)
        out.tickers = tickers
        return out

    def _posts(self, rows: pd.DataFrame, name: str, out: BatchOutcome) -> set[str]:
        raw = sources.raw_frame(rows, sources.RAW_POST_COLUMNS)
        batch = live.accept_posts(self.book, raw)
        scored = batch.accepted
        if len(scored):
            scores = self.scorer(scored)
            scored = scored.merge(scores, on=["post_id", "ticker"], how="left", validate="one_to_one")
            store.write_posts(self.paths, name, batch.accepted, scores)
        store.write_quarantine(self.paths, name, batch.rejected, "posts")
        out.posts += len(rows)
        out.accepted += len(scored)
        out.duplicates += batch.duplicates
        out.deferred |= set(zip(batch.ahead["ticker"], batch.ahead["post_id"], strict=True)) if len(batch.ahead) else set()
        out.rejected += len(batch.rejected)
        return set(live.commit_posts(self.book, scored))

    def _bars(self, rows: pd.DataFrame, name: str, out: BatchOutcome) -> set[str]:
        raw = sources.raw_frame(rows, sources.RAW_PRICE_COLUMNS)
        valid, rejected = sources.normalize_prices(raw)
        store.write_bars(self.paths, name, valid)
        store.write_quarantine(self.paths, name, rejected, "prices")
        changed, _ = live.accept_bars(self.book, raw)
        out.bars += len(valid)
        out.rejected += len(rejected)
        return set(changed)


async def run_once(feed: Feed, sub: Any, processor: Processor, config: ProcessorConfig) -> BatchOutcome | None:
    """Pull one micro-batch, process it, store its effects, then acknowledge it; None when idle."""
    import nats.errors

    try:
        msgs = await sub.fetch(config.batch_size, timeout=config.fetch_timeout_s)
    except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either when nothing is waiting
        return None
    if not msgs:
        return None
    items, good, dead = [], [], 0
    for msg in msgs:
        try:
            items.append(decode(msg))
            good.append(msg)
        except (ValueError, UnicodeDecodeError) as exc:  # a poison message goes aside, the stream goes on
            await feed.dead_letter(msg, f"{type(exc).__name__}: {exc}")
            dead += 1
    name = store.batch_name(msgs[-1].metadata.sequence.stream)
    outcome = await asyncio.to_thread(processor.handle, items, name) if items else BatchOutcome()
    outcome.dead += dead
    now = time.time()
    for msg, (kind, row) in zip(good, items, strict=True):
        if kind == "post" and (str(row.get("ticker", "")).strip().upper(), str(row.get("post_id", "")).strip()) \
                in outcome.deferred:
            if msg.metadata.num_delivered < MAX_DEFERRALS:
                await msg.nak(delay=DEFER_S)  # its day's bars are still on their way: come back later
            else:
                await feed.dead_letter(msg, f"ahead of the price calendar after {MAX_DEFERRALS} deliveries")
                outcome.dead += 1
            continue
        if kind == "post":
            outcome.lags_ms.append(1000.0 * (now - msg.metadata.timestamp.timestamp()))
        await msg.ack()
    return outcome
