"""The drift job end to end without Ray: references recorded on real MLflow runs (sqlite under the test's
home), the stream's live features/posts/scores as the current window, `run_drift` and `finpulse drift`
on an unshifted and a shifted window, the report files, latest.json and the MLflow run that holds them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from typer.testing import CliRunner

from tests.support.serving import make_tiny_forecaster, make_tiny_sentiment_model

TICKERS = ["AAA", "BBB", "CCC", "DDD", "EEE"]
WINDOW_DAYS = 40


def iid_features(days: int = 300, seed: int = 0) -> pd.DataFrame:
    """DAILY_FEATURES-shaped rows whose feature values are i.i.d. over days and tickers (no trend, so the
    last days are the same distribution as the earlier ones: an honest 'no drift' window)."""
    from finpulse.data.schemas import PRICE_FEATURES

    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2021-01-04", periods=days).date
    rows = []
    for t in TICKERS:
        f = {c: rng.normal(0, 1, days) for c in PRICE_FEATURES}
        f.update(sent_count=rng.poisson(3, days), sent_mean=rng.uniform(-1, 1, days), sent_pos_share=rng.random(days),
                 sent_neg_share=rng.random(days), sent_weighted=rng.normal(0, 1, days), has_posts=True,
                 close=100 + rng.random(days), volume=rng.integers(1_000_000, 2_000_000, days),
                 target_ret_1d=rng.normal(0, 0.01, days), target_close=100.0, sentiment_source="test")
        rows.append(pd.DataFrame({"ticker": t, "date": dates, **f}))
    return pd.concat(rows, ignore_index=True)


def _register(folder: Path, name: str, experiment: str) -> str:
    from finpulse import tracking

    with tracking.start_run(experiment, run_name=f"{name}-train") as run:
        tracking.log_model_dir(folder, registered_model_name=name, alias=tracking.CHAMPION)
        return run.run_id


def _posts(features: pd.DataFrame, seed: int, **style) -> pd.DataFrame:
    from finpulse.data.synthetic import PostStyle, generate_posts

    return generate_posts(features[["ticker", "date", "close", "volume"]], posts_per_day=3.0, seed=seed,
                          duplicate_rate=0.0, style=PostStyle(**style))


def _write_live(paths, features: pd.DataFrame, posts: pd.DataFrame, clf) -> None:
    """What the stream processor stores: per-ticker feature rows, posts CSV, POST_SCORES parquet."""
    from finpulse import storage
    from finpulse.data.schemas import POST_SCORES
    from finpulse.data.synthetic import to_posts_csv
    from finpulse.sentiment.score import score_frame

    for folder in (paths.live_features, paths.live_posts, paths.live_scores):
        storage.delete_dir(folder)
    for t, g in features.groupby("ticker"):
        storage.write_table(storage.join(paths.live_features, f"{t}.parquet"), pa.Table.from_pandas(g, preserve_index=False))
    storage.write_bytes(storage.join(paths.live_posts, "b1.csv"), to_posts_csv(posts))
    scores = score_frame(clf, posts)
    storage.write_table(storage.join(paths.live_scores, "b1.parquet"),
                        pa.Table.from_pandas(scores[POST_SCORES.names], schema=POST_SCORES, preserve_index=False))


def test_drift_job_records_references_and_alarms_only_on_the_shifted_window(finpulse_home: Path) -> None:
    from finpulse import storage, tracking
    from finpulse.cli import app
    from finpulse.data.schemas import PRICE_FEATURES
    from finpulse.monitoring import job
    from finpulse.monitoring.drift import DriftConfig
    from finpulse.names import FORECAST_EXPERIMENT, FORECAST_MODEL, SENTIMENT_EXPERIMENT, SENTIMENT_MODEL, model_spec
    from finpulse.paths import data_paths
    from finpulse.sentiment.model import load_classifier
    from finpulse.sentiment.score import score_frame

    feats = iid_features()
    cut = sorted(set(feats["date"]))[-WINDOW_DAYS]
    train = feats[feats["date"] < cut]
    fc_run = _register(make_tiny_forecaster(finpulse_home / "fc", train), FORECAST_MODEL, FORECAST_EXPERIMENT)
    st_run = _register(make_tiny_sentiment_model(finpulse_home / "st"), SENTIMENT_MODEL, SENTIMENT_EXPERIMENT)
    fc_spec, st_spec = model_spec(FORECAST_MODEL), model_spec(SENTIMENT_MODEL)
    config = DriftConfig(permutations=300, embedding_sample=150, seed=1)
    clf = load_classifier(st_spec)
    ref_posts = _posts(train, seed=5)
    ref_posts = ref_posts.assign(**{c: v.to_numpy() for c, v in
                                    clf.predict_proba(ref_posts["text"].tolist()).T.__iter__().__class__.__mro__[:0]} or {})
    ref_scores = score_frame(clf, ref_posts)
    job.record_reference(fc_run, job.forecaster_snapshot(train, fc_spec, config=config))
    job.record_reference(st_run, job.sentiment_snapshot(ref_posts, ref_scores, st_spec, config=config))
    loaded = job.load_reference(fc_spec)
    assert set(loaded.features) >= set(PRICE_FEATURES) and loaded.predictions is not None
    assert job.load_reference(st_spec).embeddings.shape == (150, 32)

    paths = data_paths()
    window = feats[feats["date"] >= cut]
    _write_live(paths, feats, _posts(window, seed=6), clf)
    calm = job.run_drift(paths, model_specs={"forecaster": fc_spec, "sentiment": st_spec}, window_days=WINDOW_DAYS,
                         config=config)
    assert calm.meta["since"] == str(cut) and calm.meta["current_posts"] > 100
    assert {e.signal for e in calm.entries} == {"features", "sentiment", "embeddings", "predictions"}
    assert calm.alarm is False, calm.reasons

    shifted = feats.copy()
    in_window = shifted["date"] >= cut
    for col in ("ret_1d", "vol_20", "rsi_14"):
        shifted.loc[in_window, col] += 1.0
    _write_live(paths, shifted, _posts(window, seed=6, vocabulary_shift=0.6, mood_shift=1.0), clf)
    result = CliRunner().invoke(app, ["drift", "--window-days", str(WINDOW_DAYS), "--fail-on-alarm"])
    assert result.exit_code == 3, result.output
    assert "alarm: True" in result.output and "features/ret_1d" in result.output

    latest = storage.read_json(job.latest_uri(paths))
    assert set(latest) == {"created_at", "alarm", "reference_model", "report", "gauges"} and latest["alarm"] is True
    assert FORECAST_MODEL in latest["reference_model"] and SENTIMENT_MODEL in latest["reference_model"]
    gauges = {(g["signal"], g["feature"]): g for g in latest["gauges"]}
    assert len(gauges) == len(latest["gauges"])  # one gauge per {signal, feature}: labels never collide
    assert gauges[("features", "ret_1d")]["test"] in ("psi", "ks") and gauges[("embeddings", "pooled")]["test"] == "mmd"
    report = json.loads(storage.read_bytes(latest["report"]))
    assert report["alarm"] is True and any(e["alarm"] for e in report["entries"] if e["feature"] == "ret_1d")
    html_uri = latest["report"].replace("report.json", "report.html")
    assert "data:image/png;base64," in storage.read_bytes(html_uri).decode()
    assert len(storage.list_files(job.drift_root(paths), "report.json")) == 2

    run_id = report["meta"]["mlflow_run_id"]
    assert tracking.run_metrics(run_id)["drift_alarm"] == 1.0
    stored = tracking.download_artifacts(run_id, "drift")
    assert sorted(p.name for p in stored.iterdir()) == ["report.html", "report.json"]
    assert json.loads((stored / "report.json").read_text())["alarm"] is True
