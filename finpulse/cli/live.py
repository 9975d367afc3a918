"""Live path commands: a local broker, the stream processor, replays, and the two polling sources."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Annotated
from urllib.parse import urlparse

import typer

from finpulse.cli._app import app, print_json

Tickers = Annotated[str | None, typer.Option(help="Comma-separated tickers; default: the settings' tickers.")]


def _tickers(value: str | None) -> list[str]:
    from finpulse.config import get_settings

    return [t.strip().upper() for t in (value or get_settings().tickers).split(",") if t.strip()]


@app.command("broker")
def broker_cmd(
    store: Annotated[str | None, typer.Option(help="JetStream storage folder; default <home>/nats.")] = None,
    monitor_port: Annotated[int, typer.Option(help="HTTP monitoring port (/healthz, /varz).")] = 8222,
) -> None:
    """Run a NATS JetStream server at the settings' nats_url (127.0.0.1) until Ctrl-C."""
    from pathlib import Path

    from finpulse.config import get_settings
    from finpulse.ingest.broker import start_server

    s = get_settings()
    port = urlparse(s.nats_url).port or 4222
    folder = Path(store or Path(s.home) / "nats")
    proc = start_server(folder, port, monitor_port, log_file=Path(s.home) / "logs" / "nats.log")
    typer.echo(f"NATS JetStream on {s.nats_url} (storage {folder}); Ctrl-C stops it")
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


stream_app = typer.Typer(help="The stream processor: broker -> validated, scored posts -> fresh features.",
                         no_args_is_help=True)
app.add_typer(stream_app, name="stream")


@stream_app.command("run")
def stream_run(
    model: Annotated[str | None, typer.Option(help="Sentiment model; default the registry champion.")] = None,
    batch_size: Annotated[int, typer.Option(help="Messages per micro-batch at most.")] = 500,
    cpus: Annotated[float, typer.Option(help="CPUs the processor actor reserves.")] = 1.0,
    every_s: Annotated[float, typer.Option(help="Print its counters this often.")] = 10.0,
) -> None:
    """Run the processor (a Ray actor Ray restarts if it dies) until Ctrl-C, printing its counters."""
    import ray

    from finpulse.config import get_settings
    from finpulse.ingest.processor import ProcessorConfig
    from finpulse.ingest.service import start_processor, stop_processor, wait_running
    from finpulse.runtime import connect, sigint_restored

    s = get_settings()
    connect()
    config = ProcessorConfig(nats_url=s.nats_url, batch_size=batch_size,
                             **({"sentiment_model": model} if model else {}))
    actor = start_processor(config, s.data_root, num_cpus=cpus)
    try:
        with sigint_restored():
            wait_running(actor)
            while True:
                stats = ray.get(actor.stats.remote())
                stats.pop("recent_lags_ms", None)
                print_json(stats)
                time.sleep(every_s)
    except KeyboardInterrupt:
        typer.echo("stopping the stream processor")
    finally:
        stop_processor(actor)


@app.command("replay")
def replay_cmd(
    days_per_s: Annotated[float, typer.Option(help="Trading days per second of wall clock (0: as fast as "
                                                   "the broker takes them).")] = 1.0,
    days: Annotated[int, typer.Option(help="Embedded corpus: the shipped prices' last DAYS trading days.")] = 10,
    stocknet: Annotated[str | None, typer.Option(help="Replay StockNet instead: the stocknet_full folder.")] = None,
    tickers: Tickers = None,
    start: Annotated[str, typer.Option(help="StockNet: first replayed day.")] = "2016-01-04",
    end: Annotated[str, typer.Option(help="StockNet: last replayed day.")] = "2016-03-31",
) -> None:
    """Stream a corpus through the live path in time order: each day's posts, then its closing bars."""
    from finpulse.config import get_settings
    from finpulse.ingest import corpora
    from finpulse.ingest.broker import Feed
    from finpulse.ingest.replay import replay, replay_days

    corpus = (corpora.stocknet(stocknet, _tickers(tickers), start=start, end=end) if stocknet
              else corpora.embedded(days))
    plan = replay_days(corpus.bars, corpus.posts)

    async def go() -> dict:
        feed = await Feed.connect(get_settings().nats_url)
        try:
            if stocknet:  # the bars before the replay, so a processor with no batch history can align posts
                await feed.publish_frame("bar", corpus.history)
            result = await replay(feed, plan, days_per_s, on_day=lambda d, k: typer.echo(
                f"{d['day']}: {len(d['posts'])} posts, {len(d['bars'])} bars"))
        finally:
            await feed.close()
        return {"days": result.days, "posts": vars(result.posts), "bars": vars(result.bars),
                "seconds": round(result.seconds, 2)}

    print_json(asyncio.run(go()))


ingest_app = typer.Typer(help="Poll a live source and publish what it returns to the live feed.",
                         no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
Every = Annotated[float, typer.Option(help="Seconds between polling rounds.")]
Once = Annotated[bool, typer.Option(help="One round, then exit (cron-style).")]
MetricsPort = Annotated[int | None, typer.Option(help="Serve this source's counters for Prometheus here.")]


def _run_rounds(name: str, poller_round, stats, every_s: float, once: bool, metrics_port: int | None) -> None:
    from finpulse.ingest.run import SourceMetrics, loop

    metrics, published = SourceMetrics(name, metrics_port), [0]

    def report(r) -> None:
        published[0] += r.bars + r.quotes + r.posts
        metrics.update(stats, published[0])
        print_json({"source": name, **vars(r), "stats": stats.as_dict()})

    try:
        loop(poller_round, every_s, report, once=once)
    except KeyboardInterrupt:
        typer.echo(f"{name}: stopped")


@ingest_app.command("prices")
def ingest_prices(tickers: Tickers = None, every_s: Every = 300.0, once: Once = False,
                  full: Annotated[bool, typer.Option(help="outputsize=full (backfill; a premium feature).")] = False,
                  quotes: Annotated[bool, typer.Option(help="Also publish GLOBAL_QUOTE intraday quotes.")] = True,
                  base_url: Annotated[str | None, typer.Option(help="API base URL (tests, proxies).")] = None,
                  metrics_port: MetricsPort = None) -> None:
    """Alpha Vantage (ALPHAVANTAGE_API_KEY): new daily closes and intraday quotes -> the live feed."""
    from finpulse.config import get_settings
    from finpulse.ingest.alphavantage import AlphaVantageClient
    from finpulse.ingest.broker import SyncFeed
    from finpulse.ingest.run import PricePoller

    client = AlphaVantageClient.from_env(**({"base_url": base_url} if base_url else {}))
    feed = SyncFeed(get_settings().nats_url)
    poller, names = PricePoller(client, feed), _tickers(tickers)
    try:
        _run_rounds("alphavantage", lambda: poller.round(names, outputsize="full" if full else "compact",
                                                         quotes=quotes), client.stats, every_s, once, metrics_port)
    finally:
        feed.close()


@ingest_app.command("x")
def ingest_x(tickers: Tickers = None, every_s: Every = 60.0, once: Once = False,
             state: Annotated[str | None, typer.Option(help="since_id state file; default <home>/x_since.json.")] = None,
             base_url: Annotated[str | None, typer.Option(help="API URL (tests, proxies).")] = None,
             metrics_port: MetricsPort = None) -> None:
    """X API v2 recent search (X_BEARER_TOKEN; Basic tier or higher): cashtag posts -> the live feed."""
    from pathlib import Path

    from finpulse.config import get_settings
    from finpulse.ingest.broker import SyncFeed
    from finpulse.ingest.run import PostPoller
    from finpulse.ingest.x_api import XRecentSearch

    s = get_settings()
    client = XRecentSearch.from_env(Path(state or Path(s.home) / "x_since.json"),
                                    **({"base_url": base_url} if base_url else {}))
    feed = SyncFeed(s.nats_url)
    poller, names = PostPoller(client, feed), _tickers(tickers)
    try:
        _run_rounds("x", lambda: poller.round(names), client.stats, every_s, once, metrics_port)
    finally:
        feed.close()
