"""The stages of FinPulse's main job as functions with structured results.

The demo presents them, ``finpulse pipeline bootstrap`` runs them, and the retraining loop
(:mod:`finpulse.loop.turn`, ``finpulse pipeline run``) calls them one at a time: each stage takes what
it needs (paths, a frame, a few knobs), works on the Ray this process is connected to (entry points
call ``runtime.connect``), prints nothing, and returns what
it produced (paths, versions, model references, metrics). Watching is the caller's business: the
chain reports to a :class:`PipelineObserver`, whose default sees nothing.

Each stage calls its trainer, the scorer, the evaluation or the gate exactly once, so a change of
their signatures is mended in one place.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from finpulse import storage, tracking
from finpulse.data.catalog import features_per_ticker, load_dataset
from finpulse.paths import DataPaths

if TYPE_CHECKING:
    from finpulse.data.etl import EtlConfig
    from finpulse.forecast.config import ForecastConfig
    from finpulse.forecast.promote import PromotionPolicy
    from finpulse.sentiment.promote import SentimentGatePolicy

SENTIMENT_CHAMPION = tracking.model_spec(tracking.SENTIMENT_MODEL, tracking.CHAMPION)
FORECAST_CHALLENGER = tracking.model_spec(tracking.FORECAST_MODEL, tracking.CHALLENGER)


@dataclass(frozen=True)
class PipelineOptions:
    """The knobs of the whole chain (the demo's and ``finpulse pipeline bootstrap``'s options)."""

    posts_per_day: float = 6.0
    signal_strength: float = 0.5  # planted next-day signal in the synthetic posts (0 = none)
    sentiment_examples: int = 3000  # labelled tweets (shipped TFNS train) to fine-tune on
    sentiment_epochs: int = 2
    sentiment_eval_examples: int | None = None  # per held-out set for the sentiment gate; None = all
    forecast_epochs: int = 15
    walk_forward_refits: int = 2
    replay_days: int = 10  # the shipped prices' last trading days, left out of the batch history for the live replay
    replay_vocabulary_shift: float = 0.8  # share of replayed posts in a changed vocabulary (the demo's planted drift)
    replay_mood_shift: float = 0.8  # added to replayed posts' moods: a more positive class mix
    soak_s: float = 60.0  # the demo loop's canary soak

    def quick(self) -> PipelineOptions:
        """The same stages on less: fewer posts, examples, epochs and refits (CI's end-to-end run)."""
        return replace(self, posts_per_day=min(self.posts_per_day, 2.0),
                       sentiment_examples=min(self.sentiment_examples, 900),
                       sentiment_eval_examples=400, soak_s=min(self.soak_s, 30.0),
                       forecast_epochs=min(self.forecast_epochs, 3), walk_forward_refits=1)

    def sentiment_gate(self) -> SentimentGatePolicy:
        from finpulse.sentiment.promote import SentimentGatePolicy

        return SentimentGatePolicy(eval_examples=self.sentiment_eval_examples)


@dataclass(frozen=True)
class PreparedData:
    """Raw inputs staged from the embedded defaults: where they are and how many rows."""

    root: str
    raw_prices: str
    raw_posts: str
    price_bars: int
    posts: int


def prepare_data(paths: DataPaths, *, posts_per_day: float, signal_strength: float,
                 replay_days: int = 0) -> PreparedData:
    """Shipped real prices and synthetic posts (labelled synthetic) -> ``<data_root>/raw/``, all but the last
    ``replay_days`` trading days (the live replay's); a previous run's live state is cleared."""
    from finpulse.data.embedded import stage_embedded
    from finpulse.ingest.corpora import embedded_cutoff

    for folder in (paths.live_scores, paths.live_features, paths.live_quarantine):
        storage.delete_dir(folder)
    staged = stage_embedded(paths, posts_per_day=posts_per_day, signal_strength=signal_strength,
                            end=embedded_cutoff(replay_days) if replay_days else None)
    return PreparedData(paths.root, paths.raw_prices, paths.raw_posts, staged["prices"], staged["posts"])


@dataclass(frozen=True)
class CuratedData:
    """One published ETL version, its manifest and a per-ticker summary of its daily features."""

    out_uri: str
    version: str
    manifest: dict[str, Any]
    per_ticker: pd.DataFrame

    def features(self) -> pd.DataFrame:
        """This version's daily features (what the forecaster trains on)."""
        return load_dataset(self.out_uri, "daily_features", version_id=self.version)


def run_etl(paths: DataPaths, *, scores_uri: str | None = None, config: EtlConfig | None = None,
            on_stage: Callable[[str], None] | None = None) -> CuratedData:
    """Raw prices and posts (when staged) -> a new curated version; model scores replace VADER when
    ``scores_uri`` is given. ``on_stage`` hears each ETL stage end (a progress bar's hook)."""
    from finpulse.data import etl

    posts = paths.raw_posts if storage.exists(paths.raw_posts) else None
    result = etl.run_etl(paths.raw_prices, posts, paths.curated, scores_uri=scores_uri, config=config,
                         on_stage=on_stage)
    return CuratedData(result.out_uri, result.version, result.manifest,
                       features_per_ticker(result.out_uri, result.version))


def curated_posts(paths: DataPaths) -> pd.DataFrame:
    """The latest curated posts (post_id, ticker, text): what sentiment trains on and scores."""
    from finpulse.sentiment.score import curated_posts as load

    return load(paths.curated)


@dataclass(frozen=True)
class SentimentModel:
    """The fine-tuned sentiment challenger: its registry reference, what it learnt from, the gate's verdict."""

    model: str | None  # registry label (``finpulse-sentiment/3``), None when nothing was registered
    version: str | None
    examples: int
    metrics: dict[str, Any]
    champion: bool  # the gate crowned it: the champion alias points at it now
    reasons: list[str] = field(default_factory=list)


def train_sentiment(*, max_examples: int, epochs: int, gate: SentimentGatePolicy | None = None,
                    data_dir: str | None = None) -> SentimentModel:
    """Fine-tune the shipped encoder on the shipped labelled tweets (TFNS train, Ray Train), register it as
    challenger, and crown it only through the sentiment gate on held-out labelled data (never on VADER
    agreement): :func:`finpulse.sentiment.promote.gate`."""
    from finpulse.sentiment import promote
    from finpulse.sentiment.config import SentimentTrainConfig
    from finpulse.sentiment.datasets import DatasetSpec, balanced_subset, shipped_version
    from finpulse.sentiment.train import prepare_splits
    from finpulse.sentiment.train import train_sentiment as fit

    config = SentimentTrainConfig(dataset=DatasetSpec(kind="tfns"), epochs=epochs, max_length=64, batch_size=16,
                                  learning_rate=1e-4, run_name="tfns")
    summary = fit(config, splits=balanced_subset(prepare_splits(config), max_examples, config.seed))
    if summary.get("run_id"):
        tracking.annotate_run(summary["run_id"], tags={"labelled_data": shipped_version()})
    decision = promote.gate(gate, data_dir=data_dir)
    metrics = {k: v for k, v in summary.items() if k.startswith(("val_", "test_")) and isinstance(v, int | float)}
    metrics.update({f"test_{k}": v for k, v in summary.get("test", {}).items() if k in ("accuracy", "macro_f1")})
    return SentimentModel(summary.get("model"), summary.get("model_version"), max_examples, metrics,
                          bool(decision.promote), list(decision.reasons))


@dataclass(frozen=True)
class ScoredPosts:
    """Model scores for every curated post (POST_SCORES Parquet)."""

    scores_uri: str
    model: str
    rows: int
    summary: dict[str, Any] = field(default_factory=dict)


def score_posts(paths: DataPaths, *, posts: pd.DataFrame | None = None, model: str = SENTIMENT_CHAMPION,
                num_actors: int = 2) -> ScoredPosts:
    """Score the curated posts with ``model`` on a Ray Data actor pool into ``<data_root>/scores``."""
    from finpulse.sentiment import score
    from finpulse.sentiment.model import cpu_has_bf16

    posts = curated_posts(paths) if posts is None else posts
    options = score.ScoreOptions(num_actors=num_actors, num_cpus_per_actor=1, threads=1,
                                 precision="bf16" if cpu_has_bf16() else "int8")
    summary = score.score_posts(posts, model, paths.batch_scores, options)
    return ScoredPosts(paths.batch_scores, model, int(summary.get("rows", len(posts))), summary)


def demo_forecast_config(features: pd.DataFrame, max_epochs: int) -> tuple[ForecastConfig, dt.date]:
    """The demo's small LSTM, and the first day it never sees (the last 20% of days: evaluation's)."""
    from finpulse.forecast.config import ForecastConfig

    days = sorted(pd.to_datetime(features["date"]).dt.date.unique())
    test_start = days[int(len(days) * 0.8)]
    return ForecastConfig(hidden_size=16, lookback=10, max_epochs=max_epochs, patience=4, batch_size=64,
                          num_workers=2, val_end=test_start), test_start


@dataclass(frozen=True)
class TrainedForecaster:
    """The forecaster trained and registered as challenger, and the window it was kept from."""

    model: str | None  # registry label, None when not registered
    model_dir: str
    run_id: str | None
    metrics: dict[str, float]
    test_start: dt.date  # first day neither training nor validation saw


def train_forecaster(features: pd.DataFrame, *, max_epochs: int = 15, config: ForecastConfig | None = None
                     ) -> TrainedForecaster:
    """Train the LSTM with Ray Train and register it as challenger; ``config`` defaults to the demo's
    (:func:`demo_forecast_config`), whose ``val_end`` is the held-out test start."""
    from finpulse.forecast import train

    config = config or demo_forecast_config(features, max_epochs)[0]
    if config.val_end is None:
        raise ValueError("config.val_end must be set: the test window must stay unseen to judge the weights")
    trained = train.train_forecaster(features, config)
    return TrainedForecaster(trained.ref.label if trained.ref else None, str(trained.model_dir), trained.run_id,
                             dict(trained.metrics), config.val_end)


@dataclass(frozen=True)
class Evaluation:
    """Walk-forward evaluation of a model against the baselines (one row per model in ``table``)."""

    model: str
    refits: int
    table: pd.DataFrame
    folds: list[tuple[dt.date, dt.date]]
    leakage_alarm: bool


def evaluate_forecaster(features: pd.DataFrame, *, test_start: dt.date, refits: int = 2,
                        model: str = FORECAST_CHALLENGER) -> Evaluation:
    """Walk-forward from ``test_start`` with ``refits`` refits; logged to MLflow with the model's run."""
    from finpulse.forecast.evaluate import evaluate_model
    from finpulse.forecast.walk_forward import WalkForwardConfig

    result = evaluate_model(features, model, wf=WalkForwardConfig(k=refits, test_start=test_start))
    return Evaluation(model, refits, result.table, list(result.folds), bool(result.leakage_alarm))


@dataclass(frozen=True)
class Promotion:
    """The gate's decision on the forecaster challenger, with its reasons."""

    promoted: bool
    reasons: list[str]
    decision: dict[str, Any]


def promote_forecaster(policy: PromotionPolicy | None = None) -> Promotion:
    """Challenger -> champion when the walk-forward evidence says so (the alias moves only then)."""
    from finpulse.forecast.promote import promote

    decision = promote(tracking.FORECAST_MODEL, policy)
    return Promotion(bool(decision.promote), list(decision.reasons), asdict(decision))


class PipelineObserver:
    """What a caller sees of :func:`run_pipeline` (this default sees nothing; the stages never print).

    ``started``/``finished`` bracket each stage of :data:`STAGES`; the two long Ray Data stages can
    be wrapped in a progress display."""

    def started(self, stage: str, detail: dict[str, Any]) -> None:
        """``stage`` is about to run; ``detail`` says on what (empty for most stages)."""

    def finished(self, stage: str, result: Any) -> None:
        """``stage`` produced ``result`` (its result object)."""

    def etl_progress(self) -> AbstractContextManager[Callable[[str], None] | None]:
        """Around an ETL run; yields the ``on_stage`` callback to hand it (or None)."""
        return nullcontext(None)

    def scoring_progress(self, total: int, written: Callable[[], int]) -> AbstractContextManager[Any]:
        """Around scoring ``total`` posts; ``written()`` counts the rows written so far."""
        return nullcontext()


STAGES = ("prepare_data", "etl", "train_sentiment", "score", "etl_with_scores", "train_forecaster", "evaluate",
          "reference", "promote")


@dataclass(frozen=True)
class PipelineResult:
    """Everything the chain produced, stage by stage."""

    prepared: PreparedData
    curated_vader: CuratedData
    sentiment: SentimentModel
    scores: ScoredPosts
    curated: CuratedData
    forecaster: TrainedForecaster
    evaluation: Evaluation
    promotion: Promotion

    def summary(self) -> dict[str, Any]:
        """The result as plain JSON-able values (what ``finpulse pipeline bootstrap`` prints)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("curated_vader", "curated", "evaluation")}
        for name in ("curated_vader", "curated"):
            data = getattr(self, name)
            out[name] = {"out_uri": data.out_uri, "version": data.version, "counts": data.manifest.get("counts")}
        out["evaluation"] = {"model": self.evaluation.model, "refits": self.evaluation.refits,
                             "leakage_alarm": self.evaluation.leakage_alarm,
                             "table": self.evaluation.table.reset_index().to_dict("records")}
        return out


def run_pipeline(paths: DataPaths, options: PipelineOptions, observer: PipelineObserver | None = None
                 ) -> PipelineResult:
    """The whole chain on the embedded defaults: data, ETL (VADER), sentiment fine-tune and scoring,
    ETL with model scores, forecaster training, walk-forward evaluation, promotion."""
    from finpulse.monitoring.job import record_references

    see = observer or PipelineObserver()

    def stage(name: str, run: Callable[[], Any], detail: dict[str, Any] | None = None) -> Any:
        see.started(name, detail or {})
        result = run()
        see.finished(name, result)
        return result

    def etl(scores_uri: str | None) -> CuratedData:
        with see.etl_progress() as on_stage:
            return run_etl(paths, scores_uri=scores_uri, on_stage=on_stage)

    def score() -> ScoredPosts:
        with see.scoring_progress(len(posts), lambda: storage.parquet_rows(paths.batch_scores)):
            return score_posts(paths, posts=posts)

    o = options
    prepared = stage("prepare_data", lambda: prepare_data(paths, posts_per_day=o.posts_per_day,
                                                          signal_strength=o.signal_strength,
                                                          replay_days=o.replay_days))
    curated_vader = stage("etl", lambda: etl(None))
    posts = curated_posts(paths)
    sentiment = stage("train_sentiment", lambda: train_sentiment(max_examples=o.sentiment_examples,
                                                                 epochs=o.sentiment_epochs, gate=o.sentiment_gate()))
    scores = stage("score", score)
    curated = stage("etl_with_scores", lambda: etl(paths.scores))  # the batch scorer's and the stream's
    features = curated.features()
    config, test_start = demo_forecast_config(features, o.forecast_epochs)
    days = pd.to_datetime(features["date"]).dt.date
    forecaster = stage("train_forecaster", lambda: train_forecaster(features, config=config),
                       {"workers": config.num_workers, "tickers": features["ticker"].nunique(),
                        "first_day": days.min(), "last_day": days.max()})
    evaluation = stage("evaluate", lambda: evaluate_forecaster(features, test_start=test_start,
                                                               refits=o.walk_forward_refits))
    stage("reference", lambda: record_references(paths, features, forecaster=FORECAST_CHALLENGER,
                                                 sentiment=SENTIMENT_CHAMPION, before=test_start))
    promotion = stage("promote", promote_forecaster)
    return PipelineResult(prepared, curated_vader, sentiment, scores, curated, forecaster, evaluation, promotion)
