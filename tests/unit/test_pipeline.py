"""pipeline.py's cheap stages and results, without Ray: what each produces, the forecaster's held-out window, and what the console presenter prints."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finpulse import pipeline, storage
from finpulse.data import sources
from finpulse.demo import ConsolePresenter
from finpulse.paths import DataPaths


def test_quick_shrinks_every_costly_knob_and_keeps_the_signal() -> None:
    full = pipeline.PipelineOptions(posts_per_day=6.0, signal_strength=0.7, sentiment_examples=3000)
    quick = full.quick()
    assert (quick.posts_per_day, quick.sentiment_examples, quick.sentiment_epochs, quick.forecast_epochs,
            quick.walk_forward_refits, quick.sentiment_eval_examples) == (2.0, 900, 2, 3, 1, 400)
    assert quick.signal_strength == 0.7
    assert pipeline.PipelineOptions(posts_per_day=1.0).quick().posts_per_day == 1.0  # never grows


def test_prepare_data_stages_what_it_reports(tmp_path: Path) -> None:
    paths = DataPaths(str(tmp_path / "data"))
    prepared = pipeline.prepare_data(paths, posts_per_day=0.3, signal_strength=0.5)
    assert (prepared.root, prepared.raw_prices, prepared.raw_posts) == (paths.root, paths.raw_prices, paths.raw_posts)
    price_rows = sum(len(sources.read_price_file(f, storage.read_bytes(f))) for f in storage.list_files(paths.raw_prices))
    post_files = storage.list_files(paths.raw_posts)
    post_rows = sum(len(sources.read_posts_csv(storage.read_bytes(f), f)) for f in post_files)
    assert prepared.price_bars == price_rows > 1000
    assert prepared.posts == post_rows > 100 and len(post_files) == 4


def test_forecaster_config_holds_out_the_last_fifth_of_days() -> None:
    days = pd.bdate_range("2020-01-01", periods=100).date
    features = pd.DataFrame({"date": list(days) * 2, "ticker": ["A"] * 100 + ["B"] * 100})
    config, test_start = pipeline.demo_forecast_config(features, max_epochs=3)
    assert test_start == days[80] and config.val_end == test_start and config.max_epochs == 3


def test_written_rows_counts_parquet_rows_across_files(tmp_path: Path) -> None:
    assert storage.parquet_rows(str(tmp_path)) == 0
    for i, n in enumerate((3, 5)):
        pq.write_table(pa.table({"x": list(range(n))}), tmp_path / f"part-{i}.parquet")
    assert storage.parquet_rows(str(tmp_path)) == 8


def _result() -> pipeline.PipelineResult:
    per_ticker = pd.DataFrame({"days": [10]}, index=pd.Index(["AAPL"], name="ticker"))
    counts = {"posts": {"rows_in": 12, "rows_out": 9, "deduped": 2, "quarantined": 1},
              "prices": {"rows_in": 10, "rows_out": 10, "deduped": 0, "quarantined": 0}}
    manifest = {"counts": counts, "sentiment_source": "vader", "synthetic_inputs": True}
    curated = pipeline.CuratedData("/d/curated", "abc123", manifest, per_ticker)
    table = pd.DataFrame({"mae": [1.5, 1.4]}, index=pd.Index(["lstm", "persistence"], name="model"))
    return pipeline.PipelineResult(
        prepared=pipeline.PreparedData("/d", "/d/raw/prices", "/d/raw/posts", 10, 12),
        curated_vader=curated,
        sentiment=pipeline.SentimentModel("finpulse-sentiment/v3", "3", 900, {"test_accuracy": 0.8125,
                                                                             "test_macro_f1": 0.7}, True,
                                          ["not worse than VADER (no champion yet) on tfns_valid"]),
        scores=pipeline.ScoredPosts("/d/scores", pipeline.SENTIMENT_CHAMPION, 9),
        curated=pipeline.CuratedData("/d/curated", "def456", {**manifest, "sentiment_source": "m/3"}, per_ticker),
        forecaster=pipeline.TrainedForecaster("finpulse-forecaster/v1", "/m", "run1", {"val_loss": 0.5},
                                              dt.date(2020, 5, 1)),
        evaluation=pipeline.Evaluation(pipeline.FORECAST_CHALLENGER, 1, table,
                                       [(dt.date(2020, 5, 1), dt.date(2020, 6, 1))], False),
        promotion=pipeline.Promotion(False, ["worse than persistence", "no champion"], {"promote": False}),
    )


def test_summary_is_plain_json_with_what_each_stage_made() -> None:
    summary = json.loads(json.dumps(_result().summary(), default=str))
    assert summary["curated_vader"]["version"] == "abc123" and summary["curated"]["version"] == "def456"
    assert summary["sentiment"]["model"] == "finpulse-sentiment/v3" and summary["sentiment"]["champion"] is True
    assert summary["scores"]["model"] == "finpulse-sentiment@champion"
    assert summary["forecaster"]["test_start"] == "2020-05-01"
    assert summary["evaluation"]["table"] == [{"model": "lstm", "mae": 1.5}, {"model": "persistence", "mae": 1.4}]
    assert summary["promotion"]["promoted"] is False


def test_presenter_prints_what_the_demo_always_printed(capsys: pytest.CaptureFixture[str]) -> None:
    r = _result()
    show = ConsolePresenter(pipeline.PipelineOptions(signal_strength=0.5))
    show.started("prepare_data", {})
    show.finished("prepare_data", r.prepared)
    show.finished("etl", r.curated_vader)
    show.finished("train_sentiment", r.sentiment)
    show.finished("score", r.scores)
    show.started("train_forecaster", {"workers": 2, "tickers": 3, "first_day": "2018-01-02", "last_day": "2020-12-31"})
    show.finished("train_forecaster", r.forecaster)
    show.finished("evaluate", r.evaluation)
    show.finished("promote", r.promotion)
    out = capsys.readouterr().out
    for line in [
        "synthetic posts carry a planted next-day signal of strength 0.5: any forecasting gain over persistence "
        "below is that planted signal, not a market result",
        "staged 10 price bars and 12 synthetic posts under /d/raw",
        "posts: 12 in = 9 out + 2 deduped + 1 quarantined | prices: 10 bars | sentiment source: vader | "
        "synthetic posts: True",
        "output: /d/curated/v=abc123 (manifest.json, LATEST)",
        "fine-tuned on 900 labelled tweets (Twitter Financial News Sentiment, shipped): held-out TFNS accuracy "
        "0.812, macro-F1 0.700",
        "sentiment gate: finpulse-sentiment/v3 -> champion",
        "  - not worse than VADER (no champion yet) on tfns_valid",
        "scored 9 posts -> /d/scores",
        "forecaster: training with Ray Train (2 workers) on 3 tickers, 2018-01-02..2020-12-31",
        "forecaster: registered finpulse-forecaster/v1 as challenger",
        "forecaster: walk-forward, 1 refits, 2020-05-01..2020-06-01",
        "| model | mae |", "| lstm | 1.5 |",
        "forecaster: NOT promoted: worse than persistence; no champion",
    ]:
        assert line in out.splitlines(), line
    assert "=== 1. ETL: shipped real prices + synthetic posts" in out and "=== 3. Forecaster" in out
