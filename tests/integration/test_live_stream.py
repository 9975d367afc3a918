"""The live path on a real NATS JetStream server: store before acknowledging, poison to the dead-letter
stream, a processor that dies mid-batch or a broker restart lose nothing and duplicate nothing."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finpulse import storage
from finpulse.data import sources
from finpulse.data.reference import build_pandas, prices_to_raw
from finpulse.data.synthetic import generate_posts
from finpulse.data.vader import label_from_compound, vader_compound
from finpulse.ingest import broker, store
from finpulse.ingest.processor import Processor, ProcessorConfig, run_once
from finpulse.paths import DataPaths
from finpulse.resources import load_prices
from tests.conftest import free_port

TICKERS = ["AAPL", "MSFT"]


def vader_scorer(posts: pd.DataFrame) -> pd.DataFrame:
    """A real scorer (VADER) in the POST_SCORES layout: fast, so these tests measure the stream, not a model."""
    c = vader_compound(posts["text"])
    return pd.DataFrame({"post_id": posts["post_id"], "ticker": posts["ticker"], "p_negative": 0.0, "p_neutral": 0.0,
                         "p_positive": 0.0, "label": label_from_compound(c), "score": c, "scorer": "vader"})


class Server:
    """One nats-server with JetStream on loopback; restartable on the same store."""

    def __init__(self, store_dir: Path):
        self.store_dir, self.port, self.monitor = store_dir, free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = broker.start_server(self.store_dir, self.port, self.monitor, log_file=self.store_dir / "log")

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture()
def nats(tmp_path: Path):
    server = Server(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def corpus() -> tuple[pd.DataFrame, pd.DataFrame]:
    p = load_prices()
    p = p[p["ticker"].isin(TICKERS) & (p["date"] >= pd.Timestamp("2019-01-01").date())
          & (p["date"] <= pd.Timestamp("2019-04-30").date())]
    posts = generate_posts(p, posts_per_day=3, duplicate_rate=0.0, seed=5)
    raw = sources.raw_frame(posts.assign(created_at=posts["created_at"].astype(str)), sources.RAW_POST_COLUMNS)
    return p, raw.sort_values("created_at", kind="mergesort").reset_index(drop=True)


def stored_posts(root: str) -> pd.DataFrame:
    files = storage.list_files(DataPaths(root).live_posts, ".csv")
    return pd.concat([sources.read_posts_csv(storage.read_bytes(f), f) for f in files], ignore_index=True)


async def drain(feed, sub, processor, config, idle_rounds: int = 3) -> dict:
    totals, idle = {"accepted": 0, "duplicates": 0, "rejected": 0, "dead": 0}, 0
    while idle < idle_rounds:
        out = await run_once(feed, sub, processor, config)
        if out is None:
            idle += 1
            continue
        idle = 0
        for k in totals:
            totals[k] += getattr(out, k)
    return totals


def new_processor(root: str, bars: pd.DataFrame) -> Processor:
    book = store.load_book(DataPaths(root), 60, 16)
    if book.bars.empty:
        book.bars = bars
    return Processor(DataPaths(root), book, vader_scorer, "vader")


def test_crash_mid_batch_and_broker_restart_lose_nothing_duplicate_nothing(nats: Server, corpus, tmp_path: Path):
    prices, posts = corpus
    bars = build_pandas(prices_to_raw(prices), None)["prices"]
    root = str(tmp_path / "data")
    config = ProcessorConfig(nats_url=nats.url, batch_size=100, fetch_timeout_s=0.3, ack_wait_s=1.5)
    bad = posts.iloc[:2].assign(post_id=["bad-1", "bad-2"], text=["", "fine"], created_at=["2019-02-01T15:00:00Z", "nope"])

    async def scenario() -> dict:
        feed = await broker.Feed.connect(nats.url)
        first = await feed.publish_frame("post", posts.iloc[:250])
        await feed.publish_frame("post", bad)
        await feed.js.publish("finpulse.feed.post.AAPL", b"{not json")  # a poison message
        sub = await feed.subscribe(config.durable, config.ack_wait_s)
        crashed = new_processor(root, bars)
        msgs = await sub.fetch(100, timeout=2)  # the processor stores a batch, then dies before acking it
        crashed.handle([broker.decode(m) for m in msgs], store.batch_name(msgs[-1].metadata.sequence.stream))
        await feed.close()
        nats.stop()  # and the broker restarts, on its own store
        nats.start()
        feed = await broker.Feed.connect(nats.url)
        again = await feed.publish_frame("post", posts.iloc[200:])  # overlapping re-publish: 50 broker duplicates
        sub = await feed.subscribe(config.durable, config.ack_wait_s)
        await asyncio.sleep(config.ack_wait_s + 0.5)  # the unacknowledged batch comes back
        totals = await drain(feed, sub, new_processor(root, bars), config)
        dead = await feed.js.stream_info(broker.DEAD_STREAM)
        await feed.close()
        return {"first": first, "again": again, "totals": totals, "dead_stream": dead.state.messages}

    got = asyncio.run(scenario())
    assert got["first"].published == 250 and got["again"].duplicate == 50
    assert got["totals"]["duplicates"] == 100  # the redelivered batch, already stored before the crash
    assert got["totals"]["rejected"] == 2 and got["totals"]["dead"] == 1 and got["dead_stream"] == 1
    kept = stored_posts(root)
    assert sorted(kept["post_id"]) == sorted(posts["post_id"])  # lost 0
    assert not kept["post_id"].duplicated().any()  # duplicated 0
    quarantine = storage.read_frame(DataPaths(root).live_quarantine)
    assert sorted(quarantine["reason"]) == ["empty text", "unparseable created_at"]


def test_live_history_gives_the_batch_etl_features(nats: Server, corpus, tmp_path: Path):
    """What the stream stored, read back by the batch reference, yields the features the stream served."""
    prices, posts = corpus
    root = str(tmp_path / "data")
    closes = prices_to_raw(prices)
    config = ProcessorConfig(nats_url=nats.url, batch_size=200, fetch_timeout_s=0.3)

    async def scenario() -> None:
        feed = await broker.Feed.connect(nats.url)
        await feed.publish_frame("bar", closes[closes["date"] < "2019-03-01"])
        await feed.publish_frame("post", posts)
        await feed.publish_frame("bar", closes[closes["date"] >= "2019-03-01"])
        sub = await feed.subscribe(config.durable)
        empty = pd.DataFrame(columns=bars_columns())
        await drain(feed, sub, new_processor(root, empty), config)
        await feed.close()

    asyncio.run(scenario())
    paths = DataPaths(root)
    history_prices = pd.concat([sources.read_price_file(f, storage.read_bytes(f))
                                for f in storage.list_files(paths.live_prices, ".csv")], ignore_index=True)
    scores = storage.read_frame(paths.live_scores)
    batch = build_pandas(history_prices, stored_posts(root), scores=scores)
    for ticker in TICKERS:
        live_rows = store.read_live_features(paths, ticker)
        assert not live_rows["provisional"].any()
        expected = batch["daily_features"].query("ticker == @ticker").iloc[-len(live_rows):].reset_index(drop=True)
        pd.testing.assert_frame_equal(live_rows.drop(columns="provisional")[expected.columns].drop(
            columns="sentiment_source"), expected.drop(columns="sentiment_source"), check_dtype=False)
        assert np.isfinite(live_rows["sent_mean"]).all()


def bars_columns() -> list[str]:
    from finpulse.data.schemas import PRICES

    return PRICES.names


def test_replay_publishes_in_time_order_at_the_chosen_speed(nats: Server, corpus) -> None:
    from finpulse.ingest.replay import replay, replay_days

    prices, posts = corpus
    closes = prices_to_raw(prices[prices["date"] >= pd.Timestamp("2019-04-22").date()])
    days = replay_days(closes, posts[posts["created_at"] >= "2019-04-19T20:00:00"])
    assert len(days) == 7

    async def scenario():
        feed = await broker.Feed.connect(nats.url)
        first = await replay(feed, days, days_per_s=10.0)
        again = await replay(feed, days, days_per_s=0)  # at max speed; the broker drops every repeat
        sub = await feed.js.pull_subscribe(broker.FEED_SUBJECTS, durable="check", stream=broker.FEED_STREAM)
        msgs = await sub.fetch(10_000, timeout=2)
        await feed.close()
        return first, again, [broker.decode(m) for m in msgs]

    first, again, seen = asyncio.run(scenario())
    assert 0.6 <= first.seconds <= 2.0  # 7 days at 10 days/s
    assert first.posts.published == sum(len(d["posts"]) for d in days) > 0 and first.bars.published == 14
    assert again.posts.published == again.bars.published == 0 and again.posts.duplicate == first.posts.published
    # every post reaches the broker before its trading day's closing bar, and posts arrive in time order
    bar_pos = {(r["ticker"], r["date"]): i for i, (k, r) in enumerate(seen) if k == "bar"}
    calendar = np.array(sorted({np.datetime64(d) for _, d in bar_pos}))
    post_rows = pd.DataFrame([r for k, r in seen if k == "post"])
    from finpulse.data.calendar import align_to_trading_day

    aligned = align_to_trading_day(sources.parse_created_at(post_rows["created_at"]), calendar)
    post_pos = [i for i, (k, _) in enumerate(seen) if k == "post"]
    for pos, ticker, day in zip(post_pos, post_rows["ticker"], aligned, strict=True):
        assert pos < bar_pos[(ticker, str(pd.Timestamp(day).date()))]
    assert post_rows["created_at"].map(pd.Timestamp).is_monotonic_increasing


def test_post_v1_posts_publishes_good_rows_and_keeps_bad_ones_with_reasons(nats: Server, corpus) -> None:
    from fastapi.testclient import TestClient

    from finpulse.serving.api import create_api
    from finpulse.serving.router import LocalBackend
    from finpulse.serving.schemas import GatewayConfig
    from tests.support.access import AUTH, keyring

    _, posts = corpus
    good = posts.iloc[:3].to_dict(orient="records")
    bad = {**good[0], "post_id": "x1", "text": "   "}
    with TestClient(create_api(LocalBackend({}, {}, GatewayConfig(nats_url=nats.url)), keys=keyring()),
                    headers=AUTH) as client:
        first = client.post("/v1/posts", json={"posts": [*good, bad]})
        again = client.post("/v1/posts", json={"posts": good[:2]})
        too_many = client.post("/v1/posts", json={"posts": good * 400})
        not_posts = client.post("/v1/posts", json={"posts": "nope"})
    assert first.status_code == 202, first.text
    assert first.json() == {"accepted": 3, "duplicate": 0, "rejected": 1,
                            "rejections": [{"index": 3, "post_id": "x1", "reason": "empty text"}]}
    assert again.status_code == 202 and again.json()["duplicate"] == 2 and again.json()["accepted"] == 0
    assert too_many.status_code == 422 and not_posts.status_code == 422

    async def on_the_broker():
        feed = await broker.Feed.connect(nats.url)
        feed_msgs = await (await feed.subscribe("check")).fetch(100, timeout=2)
        dead = await feed.js.pull_subscribe(broker.DEAD_SUBJECTS, durable="dead", stream=broker.DEAD_STREAM)
        dead_msgs = await dead.fetch(10, timeout=2)
        await feed.close()
        return [broker.decode(m)[1]["post_id"] for m in feed_msgs], dead_msgs

    published, dead = asyncio.run(on_the_broker())
    assert published == [p["post_id"] for p in good]
    assert len(dead) == 1 and dead[0].headers["FinPulse-Error"] == "empty text"

    with TestClient(create_api(LocalBackend({}, {}, GatewayConfig()), keys=keyring()), headers=AUTH) as client:
        off = client.post("/v1/posts", json={"posts": good[:1]})
    assert off.status_code == 503 and "not configured" in off.json()["detail"]


def test_processor_actor_killed_mid_stream_loses_nothing_duplicates_nothing(ray_head, nats: Server, corpus,
                                                                            tmp_path: Path) -> None:
    """The deployed shape: the processor as a Ray actor scoring with a (tiny, real) transformer; Ray
    restarts it after a kill, the broker redelivers what it had not acknowledged."""
    import time

    import ray

    from finpulse.ingest.service import start_processor, stop_processor, wait_running
    from tests.support.serving import make_tiny_sentiment_model

    prices, posts = corpus
    root = str(tmp_path / "data")
    model = make_tiny_sentiment_model(tmp_path / "sent")
    config = ProcessorConfig(nats_url=nats.url, sentiment_model=str(model), batch_size=40, ack_wait_s=2.0)
    actor = start_processor(config, root, num_cpus=0.25)
    try:
        wait_running(actor)

        async def publish(frame: pd.DataFrame, kind: str = "post") -> None:
            feed = await broker.Feed.connect(nats.url)
            await feed.publish_frame(kind, frame)
            await feed.close()

        asyncio.run(publish(prices_to_raw(prices), "bar"))
        asyncio.run(publish(posts))
        deadline = time.monotonic() + 60
        while ray.get(actor.stats.remote())["accepted"] < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        before_kill = ray.get(actor.stats.remote())["accepted"]
        ray.kill(actor, no_restart=False)  # mid-stream
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            stored = stored_posts(root) if storage.list_files(DataPaths(root).live_posts) else pd.DataFrame()
            if len(stored) >= len(posts):
                break
            time.sleep(0.5)
        assert ray.get(actor.stats.remote())["started_at"] > 0  # the restarted incarnation answers
    finally:
        stop_processor(actor)
    assert 40 <= before_kill < len(posts)
    assert sorted(stored["post_id"]) == sorted(posts["post_id"])  # lost 0
    assert not stored["post_id"].duplicated().any()  # duplicated 0
    scores = storage.read_frame(DataPaths(root).live_scores)
    # scores are written before their posts: a batch killed between the two leaves scores that the restart
    # writes again (the ETL keeps one per key), never a stored post without its score
    keyed = scores.drop_duplicates(["post_id", "ticker"])
    assert set(zip(keyed["post_id"], keyed["ticker"], strict=True)) == set(zip(stored["post_id"], stored["ticker"],
                                                                            strict=True))
    assert scores["scorer"].str.startswith("tiny-sentiment").all()


def test_ingest_prices_publishes_closes_and_quotes_never_the_partial_day(nats: Server, shared_data, monkeypatch):
    """`finpulse ingest prices --once` against a local server answering in Alpha Vantage's formats."""
    import json

    from typer.testing import CliRunner

    from finpulse.cli import app
    from finpulse.config import get_settings
    from tests.ingest_fakes import ScriptedServer
    from tests.unit.test_ingest_alphavantage import KEY, FakeAlphaVantage

    fake = FakeAlphaVantage()
    fake.bodies["AAPL"] = (shared_data / "alpha_vantage_fixture" / "TIME_SERIES_DAILY_AAPL.json").read_bytes()
    server = ScriptedServer(fake)
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", KEY)
    monkeypatch.setenv("FINPULSE_NATS_URL", nats.url)
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(app, ["ingest", "prices", "--tickers", "AAPL,IBM,NOPE", "--once",
                                       "--base-url", f"{server.url}/query"])
    finally:
        server.close()
        get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["bars"] == 99 + 3 and report["quotes"] == 2  # AAPL's 2019-01-22 bar is intraday: not sent
    assert list(report["errors"]) == ["NOPE"] and report["stats"]["errors"] >= 1  # a bad symbol: reported, not fatal
    from prometheus_client import REGISTRY

    exported = {c: REGISTRY.get_sample_value("finpulse_source", {"source": "alphavantage", "counter": c})
                for c in ("errors", "requests", "published")}
    assert exported == {"errors": report["stats"]["errors"], "requests": report["stats"]["requests"],
                        "published": 99 + 3 + 2}  # what Prometheus scrapes from --metrics-port

    async def bars_on_the_feed():
        feed = await broker.Feed.connect(nats.url)
        msgs = await (await feed.subscribe("check")).fetch(500, timeout=2)
        await feed.close()
        return [broker.decode(m) for m in msgs]

    seen = asyncio.run(bars_on_the_feed())
    days = {r["date"] for k, r in seen if k == "bar" and r["ticker"] == "AAPL"}
    assert len(days) == 99 and "2019-01-22" not in days and max(days) == "2019-01-18"
    assert sorted(r["ticker"] for k, r in seen if k == "quote") == ["AAPL", "IBM"]


def test_posts_that_arrive_before_their_bars_wait_for_them(nats: Server, corpus, tmp_path: Path) -> None:
    """A redelivery reorders the feed: posts weeks past the known bars are offered again, not refused."""
    prices, posts = corpus
    closes = prices_to_raw(prices)
    root = str(tmp_path / "data")
    early = posts[posts["created_at"] >= "2019-04-01"]
    config = ProcessorConfig(nats_url=nats.url, batch_size=200, fetch_timeout_s=0.3)

    async def scenario() -> dict:
        feed = await broker.Feed.connect(nats.url)
        await feed.publish_frame("bar", closes[closes["date"] < "2019-03-01"])
        await feed.publish_frame("post", early)  # a month past the last bar
        sub = await feed.subscribe(config.durable)
        processor = new_processor(root, pd.DataFrame(columns=bars_columns()))
        first = await drain(feed, sub, processor, config)
        await feed.publish_frame("bar", closes[closes["date"] >= "2019-03-01"])
        second = await drain(feed, sub, processor, config, idle_rounds=15)  # deferred posts come back in 2 s
        await feed.close()
        return {"first": first, "second": second}

    got = asyncio.run(scenario())
    assert got["first"]["accepted"] == 0 and got["first"]["rejected"] == 0
    assert got["second"]["accepted"] == len(early) and got["second"]["rejected"] == 0
    assert sorted(stored_posts(root)["post_id"]) == sorted(early["post_id"])
