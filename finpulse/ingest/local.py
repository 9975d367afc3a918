"""The live path on one machine, as the demo runs it: a broker (reused if one answers at the settings'
``nats_url``, else started under ``<home>/nats``), the stream processor actor, and a replay of the
embedded corpus's last trading days. Functions return what they did; the demo prints it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from finpulse.config import Settings
from finpulse.ingest.broker import Feed, start_server
from finpulse.ingest.processor import ProcessorConfig

_started: list[subprocess.Popen] = []  # brokers this process started (stopped by stop_local_broker)


@dataclass(frozen=True)
class LiveRun:
    """What a replay through the running live path did, as the processor counted it."""

    days: int
    published_posts: int
    published_bars: int
    processed_posts: int
    accepted: int
    duplicates: int
    rejected: int
    lag_p50_ms: float
    lag_p99_ms: float
    seconds: float


async def _answers(url: str) -> bool:
    try:
        feed = await Feed.connect(url, connect_timeout_s=1.0)
    except Exception:
        return False
    await feed.close()
    return True


def ensure_broker(settings: Settings, *, fresh: bool = True) -> tuple[str, bool]:
    """``(url, started_here)``: reuse a broker that answers, else start one (``fresh`` empties its store)."""
    url = settings.nats_url
    if asyncio.run(_answers(url)):
        return url, False
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        raise ConnectionError(f"no broker answers at {url}, and it is not a local address to start one on")
    store = Path(settings.home) / "nats"
    if fresh:
        shutil.rmtree(store, ignore_errors=True)
    from finpulse.ingest.broker import free_port

    _started.append(start_server(store, parsed.port or 4222, free_port(),
                                 log_file=Path(settings.home) / "logs" / "nats.log"))
    return url, True


def stop_local_broker() -> None:
    while _started:
        proc = _started.pop()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def start_stream(settings: Settings, sentiment_model: str, *, num_cpus: float = 0.5) -> Any:
    """The processor actor on the connected Ray, consuming from the settings' broker; returns its handle."""
    from finpulse.ingest.service import start_processor, wait_running

    actor = start_processor(ProcessorConfig(nats_url=settings.nats_url, sentiment_model=sentiment_model),
                            settings.data_root, num_cpus=num_cpus)
    wait_running(actor, timeout_s=300)
    return actor


def replay_and_wait(settings: Settings, actor: Any, corpus: Any, days_per_s: float, timeout_s: float = 600) -> LiveRun:
    """Replay ``corpus`` at ``days_per_s``, then wait until the processor has handled every published message."""
    import ray

    from finpulse.ingest.replay import replay, replay_days

    before = ray.get(actor.stats.remote())

    async def go() -> Any:
        feed = await Feed.connect(settings.nats_url)
        try:
            return await replay(feed, replay_days(corpus.bars, corpus.posts), days_per_s)
        finally:
            await feed.close()

    t0 = time.perf_counter()
    result = asyncio.run(go())
    deadline = time.monotonic() + timeout_s
    while True:
        stats = ray.get(actor.stats.remote())
        done = (stats["posts"] - before["posts"] >= result.posts.published
                and stats["bars"] - before["bars"] >= result.bars.published)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    lags = np.asarray(stats["recent_lags_ms"] or [np.nan], dtype=float)
    return LiveRun(result.days, result.posts.published, result.bars.published, stats["posts"] - before["posts"],
                   stats["accepted"] - before["accepted"], stats["duplicates"] - before["duplicates"],
                   stats["rejected"] - before["rejected"], float(np.nanpercentile(lags, 50)),
                   float(np.nanpercentile(lags, 99)), time.perf_counter() - t0)
