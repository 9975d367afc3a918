"""The drift job (thin shell): load models and windows, build snapshots, call :func:`drift.detect`, write.

- :func:`forecaster_snapshot` / :func:`sentiment_snapshot` summarise data the way a model sees it
  (its feature columns and its predictions; its class mix, scores and encoder embeddings);
- :func:`record_reference` logs a snapshot to a model's training run as ``drift_reference/``;
  :func:`load_reference` reads it back through the registry (``finpulse-forecaster@champion``);
- :func:`run_drift` compares the last ``window_days`` trading days (the latest curated version plus
  the stream's live rows) against the models' references and writes the report (JSON + HTML) under
  ``<data_root>/monitoring/drift/<UTC stamp>/``, ``latest.json`` beside it, and an MLflow run.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from finpulse import storage
from finpulse.monitoring import report as report_io
from finpulse.monitoring.drift import DriftConfig, DriftReport, detect
from finpulse.monitoring.reference import Snapshot, build_snapshot, load, save
from finpulse.monitoring.streaming import adwin_entry
from finpulse.monitoring.window import Window, current_window, window_posts
from finpulse.names import DRIFT_EXPERIMENT, FORECAST_MODEL, SENTIMENT_MODEL, model_spec
from finpulse.paths import DataPaths

log = logging.getLogger(__name__)

REFERENCE_ARTIFACT = "drift_reference"


def drift_root(paths: DataPaths) -> str:
    return paths.drift_reports


def latest_uri(paths: DataPaths) -> str:
    """``<data_root>/monitoring/drift/latest.json``: what the gauges exporter reads."""
    return paths.drift_latest


# ---- snapshots of what a model sees ---------------------------------------------------------------

def forecast_predictions(model: Any, features: pd.DataFrame, since: dt.date | None = None) -> pd.DataFrame:
    """The served model's forecasts (``ticker``, ``date``, ``pred``: log return) for every as-of day in
    ``features`` that ends a full window, as serving answers them (``predict_history``)."""
    parts = []
    for ticker, g in features.groupby("ticker", sort=True):
        try:
            h = model.predict_history(g)
        except ValueError:  # too few complete rows for one window
            continue
        parts.append(h.assign(ticker=ticker))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["date", "pred", "ticker"])
    if since is not None and len(out):
        out = out[pd.to_datetime(out["date"]).dt.date >= since]
    return out.reset_index(drop=True)


def forecaster_snapshot(features: pd.DataFrame, model_spec: str, *, since: dt.date | None = None,
                        config: DriftConfig | None = None) -> Snapshot:
    """The forecaster's feature columns over rows dated ``>= since`` and its predictions for those days
    (earlier rows only feed the lookback windows)."""
    from finpulse.forecast.model import load_forecaster

    config = config or DriftConfig()
    model = load_forecaster(model_spec)
    preds = forecast_predictions(model, features, since)
    rows = features if since is None else features[pd.to_datetime(features["date"]).dt.date >= since]
    return build_snapshot(rows, model.feature_columns, None, None, preds["pred"].to_numpy(dtype=float),
                          sample_size=config.sample_size, seed=config.seed,
                          meta={"forecaster": model.version, "feature_rows": len(rows)})


def embed_sample(texts: pd.Series, model_spec: str, size: int, seed: int) -> np.ndarray:
    """Encoder embeddings of at most ``size`` texts drawn (seeded) from ``texts``."""
    from finpulse.sentiment.model import load_classifier

    texts = texts.reset_index(drop=True)
    if len(texts) > size:
        texts = texts.iloc[np.sort(np.random.default_rng(seed).choice(len(texts), size, replace=False))]
    if texts.empty:
        return np.zeros((0, 0), dtype=np.float32)
    return load_classifier(model_spec, batch_size=64).embed(texts.tolist())


def sentiment_snapshot(posts: pd.DataFrame, scores: pd.DataFrame, model_spec: str, *,
                       config: DriftConfig | None = None) -> Snapshot:
    """Class mix and a score sample from ``scores`` (``label``, ``score``, in time order), and the model
    encoder's embeddings of a fixed-size sample of the posts' ``text``."""
    config = config or DriftConfig()
    emb = embed_sample(posts["text"], model_spec, config.embedding_sample, config.seed) if len(posts) else None
    return build_snapshot(None, None, scores[["label", "score"]], emb if emb is not None and emb.size else None,
                          None, sample_size=config.sample_size, seed=config.seed,
                          meta={"sentiment_encoder": model_spec, "posts": len(posts)})


# ---- references in MLflow ----------------------------------------------------------------------------

def record_reference(run_id: str, snapshot: Snapshot) -> None:
    """Log ``snapshot`` as the ``drift_reference/`` artifact folder of a model's training run."""
    from finpulse import tracking

    with tempfile.TemporaryDirectory() as tmp:
        tracking.log_artifacts(run_id, save(snapshot, tmp), REFERENCE_ARTIFACT)


def record_references(paths: DataPaths, features: pd.DataFrame, *, forecaster: str, sentiment: str,
                      before: dt.date) -> dict[str, Any]:
    """Both models' references for the data the forecaster learnt from (rows dated before ``before``):
    its features and predictions on the forecaster's run; those days' posts as the sentiment model scores
    and embeds them on the sentiment model's run (the drift job compares later windows with these)."""
    from finpulse import tracking

    train = features[pd.to_datetime(features["date"]).dt.date < before]
    f_ref, s_ref = tracking.resolve(forecaster), tracking.resolve(sentiment)
    record_reference(f_ref.run_id, forecaster_snapshot(train, forecaster))
    posts, _ = window_posts(paths, None)
    posts = posts[pd.to_datetime(posts["created_at"]).dt.date < before]
    if len(posts) and s_ref.run_id:
        record_reference(s_ref.run_id, sentiment_snapshot(posts, posts, sentiment))
    return {"forecaster": f_ref.label, "sentiment": s_ref.label, "feature_rows": len(train), "posts": len(posts)}


def load_reference(model_spec: str) -> Snapshot:
    """The reference recorded on the training run of the version behind ``model_spec``; LookupError when none."""
    from finpulse import tracking

    ref = tracking.resolve(model_spec)
    if not ref.run_id:
        raise LookupError(f"{model_spec}: not a registered version (no training run to read a reference from)")
    try:
        folder = tracking.download_artifacts(ref.run_id, REFERENCE_ARTIFACT)
    except FileNotFoundError as exc:
        raise LookupError(f"{ref.label} has no {REFERENCE_ARTIFACT}/ on run {ref.run_id}") from exc
    snap = load(folder)
    snap.meta.setdefault("model", ref.label)
    return snap


def forecaster_reference(spec: str, features: pd.DataFrame, config: DriftConfig) -> Snapshot:
    """The recorded reference, or (models trained before references were recorded) one rebuilt from the
    features the model was fit on: the days before its ``seen_before``."""
    try:
        return load_reference(spec)
    except LookupError as exc:
        from finpulse.forecast.model import load_forecaster

        seen = (load_forecaster(spec).meta.get("extra") or {}).get("seen_before")
        if not seen:
            raise
        log.warning("%s; rebuilding it from the features before %s", exc, seen)
        train = features[pd.to_datetime(features["date"]) < pd.Timestamp(seen)]
        snap = forecaster_snapshot(train, spec, config=config)
        snap.meta["source"] = f"rebuilt from features before {seen}"
        return snap


# ---- the job -----------------------------------------------------------------------------------------

@dataclass
class Compared:
    reference: Snapshot
    current: Snapshot
    models: list[str]
    skipped: list[str]


def compare_window(window: Window, model_specs: dict[str, str | None], config: DriftConfig) -> Compared:
    """Reference and current snapshots for each model named in ``model_specs`` (forecaster, sentiment)."""
    ref, cur, models, skipped = Snapshot(), Snapshot(), [], []
    spec = model_specs.get("forecaster")
    if spec and len(window.features):
        try:
            ref = ref.merge(forecaster_reference(spec, window.history, config))
            cur = cur.merge(forecaster_snapshot(window.history, spec, since=window.since, config=config))
            models.append(ref.meta.get("model") or ref.meta.get("forecaster") or spec)
        except LookupError as exc:
            skipped.append(f"forecaster: {exc}")
    spec = model_specs.get("sentiment")
    if spec and len(window.posts):
        try:
            sref = load_reference(spec)
            ref = ref.merge(sref)
            cur = cur.merge(sentiment_snapshot(window.posts, window.posts, spec, config=config))
            models.append(sref.meta.get("model", spec))
        except LookupError as exc:
            skipped.append(f"sentiment: {exc}")
    return Compared(ref, cur, models, skipped)


def run_drift(paths: DataPaths, *, model_specs: dict[str, str | None] | None = None, window_days: int = 20,
              config: DriftConfig | None = None, log_to_mlflow: bool = True) -> DriftReport:
    """Compare the current window with the models' references; write JSON, HTML, ``latest.json`` and an
    MLflow run in ``finpulse-drift``. ``model_specs``: ``{"forecaster": spec, "sentiment": spec}``."""
    config = config or DriftConfig()
    specs = model_specs or {"forecaster": model_spec(FORECAST_MODEL), "sentiment": model_spec(SENTIMENT_MODEL)}
    window = current_window(paths, window_days)
    cmp = compare_window(window, specs, config)
    extra = [adwin_entry(window.posts["score"].to_numpy(dtype=float), config.adwin_delta)] if len(window.posts) else []
    rep = detect(cmp.reference, cmp.current, config, extra)
    rep.meta.update({"window_days": window_days, "since": str(window.since), "models": cmp.models,
                     "skipped": cmp.skipped, "scorer": window.scorer, "current_posts": len(window.posts),
                     "current_feature_rows": len(window.features)})
    write_report(paths, rep, cmp, log_to_mlflow)
    return rep


def write_report(paths: DataPaths, rep: DriftReport, cmp: Compared, log_to_mlflow: bool) -> dict[str, str]:
    """JSON + HTML under a UTC-stamped folder, then ``latest.json`` (last); with ``log_to_mlflow`` inside an
    MLflow run of ``finpulse-drift`` that gets the metrics and both files (its id is in the report)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    if not log_to_mlflow:
        return _write_files(paths, rep, cmp, stamp)
    from finpulse import tracking

    with tracking.start_run(DRIFT_EXPERIMENT, run_name=f"drift-{stamp}") as run:
        rep.meta["mlflow_run_id"] = run.run_id
        uris = _write_files(paths, rep, cmp, stamp)
        log_run(run, rep, uris)
    return uris


def _write_files(paths: DataPaths, rep: DriftReport, cmp: Compared, stamp: str) -> dict[str, str]:
    folder = storage.join(drift_root(paths), stamp)
    uris = {"json": storage.join(folder, "report.json"), "html": storage.join(folder, "report.html")}
    rep.meta.update(uris)
    uris["text"], uris["page"] = report_io.to_json(rep), report_io.to_html(rep, cmp.reference, cmp.current)
    storage.write_bytes(uris["json"], uris["text"].encode())
    storage.write_bytes(uris["html"], uris["page"].encode())
    storage.write_json(latest_uri(paths), report_io.latest(rep, "+".join(cmp.models) or "none", uris["json"]))
    return uris


def metric_name(signal: str, feature: str, test: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in f"{signal}.{feature}.{test}")


def log_run(run: Any, rep: DriftReport, files: dict[str, str]) -> None:
    """Metrics (alarm, each test's score and p-value), parameters, tags and both report files."""
    metrics: dict[str, Any] = {"drift_alarm": int(rep.alarm), "drift_tests": rep.meta.get("tests", 0),
                               "drift_alarms": sum(e.alarm for e in rep.entries)}
    for e in rep.entries:
        metrics[metric_name(e.signal, e.feature, e.test)] = e.score
        if e.p_value is not None:
            metrics[metric_name(e.signal, e.feature, e.test) + ".p"] = e.p_value
    run.log_params({"window_days": rep.meta.get("window_days"), "alpha": rep.alpha,
                    "models": rep.meta.get("models"), "since": rep.meta.get("since")})
    run.log_metrics(metrics)
    run.set_tags({"drift_alarm": rep.alarm, "reasons": "; ".join(rep.reasons)[:4000]})
    run.log_text(files["text"], "drift/report.json")
    run.log_text(files["page"], "drift/report.html")
