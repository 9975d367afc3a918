"""Model commands: sentiment fine-tuning, scoring and evaluation; forecaster training, walk-forward evaluation and
promotion. Sweeps over either model: :mod:`finpulse.cli.sweeps`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Annotated

import typer

from finpulse.cli._app import app, print_json
from finpulse.names import CHALLENGER, FORECAST_MODEL, SENTIMENT_MODEL, model_spec
from finpulse.sentiment import DatasetKind, Precision

# ---- sentiment -----------------------------------------------------------------------------------

GpuWait = Annotated[float, typer.Option(help="With GPUs: seconds to let an autoscaler add a GPU node "
                                             "(KubeRay GPU group at zero); 0 fails at once without one.")]


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """A model that is not here, or GPUs the cluster lacks: one clear line and exit code 2, no traceback."""
    from finpulse.runtime import GpuUnavailable
    from finpulse.sentiment import HubModelNotLocal

    try:
        yield
    except (HubModelNotLocal, GpuUnavailable) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None



@app.command("train-sentiment")
def train_sentiment_cmd(
    model: Annotated[str, typer.Option(help="Base model: minilm (shipped encoder), a folder or a hub id.")] = "minilm",
    dataset: Annotated[DatasetKind, typer.Option(help="Labelled data to train on (tfns ships in the package; "
                                                      "phrasebank needs --data).")] = "tfns",
    data: Annotated[str | None, typer.Option(help="Data folder (e.g. ../shared/data) or file; absolute "
                                                  "under `ray job submit`.")] = None,
    agreement: Annotated[str, typer.Option(help="PhraseBank agreement file: 50, 66, 75, all.")] = "50",
    epochs: Annotated[int, typer.Option()] = 3,
    max_length: Annotated[int, typer.Option()] = 64,
    batch_size: Annotated[int, typer.Option()] = 32,
    learning_rate: Annotated[float, typer.Option()] = 5e-5,
    patience: Annotated[int, typer.Option(help="Epochs without a better validation macro-F1 before stopping.")] = 2,
    num_workers: Annotated[int, typer.Option(help="Ray Train workers.")] = 1,
    use_gpu: Annotated[bool, typer.Option(help="One GPU per worker (fails at once where the cluster has none).")] = False,
    gpu_wait: GpuWait = 0.0,
    max_train_examples: Annotated[int | None, typer.Option()] = None,
    seed: Annotated[int, typer.Option()] = 42,
    register: Annotated[bool, typer.Option(help="Register as finpulse-sentiment@challenger.")] = True,
    config: Annotated[str, typer.Option(help="Other SentimentTrainConfig fields as JSON.")] = "{}",
) -> None:
    """Fine-tune a sentiment classifier with Ray Train; log to MLflow; register the challenger."""
    from finpulse.runtime import connect
    from finpulse.sentiment.config import SentimentTrainConfig
    from finpulse.sentiment.datasets import DatasetSpec
    from finpulse.sentiment.train import train_sentiment

    cfg = SentimentTrainConfig(**{**json.loads(config), "model": model,
                                  "dataset": DatasetSpec(kind=dataset, path=data, agreement=agreement),
                                  "epochs": epochs, "max_length": max_length, "batch_size": batch_size,
                                  "learning_rate": learning_rate, "patience": patience, "num_workers": num_workers,
                                  "use_gpu": use_gpu, "max_train_examples": max_train_examples, "seed": seed,
                                  "register_model": register, "gpu_wait_s": gpu_wait})
    connect()
    with _user_errors():
        print_json({k: v for k, v in train_sentiment(cfg).items() if k != "history"})


@app.command("score")
def score_cmd(
    model: Annotated[str, typer.Option(help="Registry spec, folder or hub id.")] = model_spec(SENTIMENT_MODEL),
    posts: Annotated[str | None, typer.Option(help="Parquet URI with post_id, ticker, text; default: the ETL's "
                                                   "curated posts.")] = None,
    curated: Annotated[str | None, typer.Option(help="ETL output URI; default <data_root>/curated.")] = None,
    out: Annotated[str | None, typer.Option(help="Output URI; default <data_root>/scores/batch.")] = None,
    batch_size: Annotated[int, typer.Option(help="Rows per actor call.")] = 256,
    num_actors: Annotated[int, typer.Option()] = 1,
    cpus_per_actor: Annotated[float, typer.Option()] = 1.0,
    threads: Annotated[int | None, typer.Option(help="Torch threads per actor.")] = None,
    precision: Annotated[Precision, typer.Option(help="fp32, bf16 (CPUs with AVX512-BF16/AMX, or GPU), int8 (CPU), "
                                                "or auto (bf16 where native).")] = "fp32",
    gpus: Annotated[float, typer.Option(help="GPUs per actor (fails at once where the cluster has none).")] = 0.0,
    gpu_wait: GpuWait = 0.0,
) -> None:
    """Score posts with a sentiment model on a Ray Data actor pool (POST_SCORES Parquet)."""
    from finpulse.paths import data_paths
    from finpulse.runtime import connect
    from finpulse.sentiment.score import ScoreOptions, curated_posts, score_posts

    paths = data_paths()
    src = posts or curated_posts(curated or paths.curated)
    connect()
    options = ScoreOptions(batch_size=batch_size, num_actors=num_actors, num_cpus_per_actor=cpus_per_actor,
                           threads=threads, precision=precision, gpus=gpus, gpu_wait_s=gpu_wait)
    with _user_errors():
        print_json(score_posts(src, model, out or paths.batch_scores, options))


@app.command("eval-sentiment")
def eval_sentiment_cmd(
    data: Annotated[str, typer.Option(help="Folder holding financial_phrasebank/ and "
                                           "twitter_financial_news_sentiment/.")],
    model: Annotated[str, typer.Option(help="Registry spec, folder or hub id.")] = model_spec(SENTIMENT_MODEL, CHALLENGER),
    seed: Annotated[int, typer.Option(help="Seed of the held-out set (the split seed training used: 42).")] = 42,
) -> None:
    """Accuracy, macro-F1, per-class F1, confusion matrices on PhraseBank and TFNS, next to VADER."""
    from finpulse.sentiment.evaluate import evaluate_sentiment, format_table

    with _user_errors():
        out = evaluate_sentiment(model, data, seed=seed)
    typer.echo(format_table(out["results"]))
    print_json(out["summary"])


# ---- forecast ------------------------------------------------------------------------------------

Features = Annotated[str | None, typer.Option(help="ETL output URI; default <data_root>/curated.")]
Embedded = Annotated[bool, typer.Option(help="Shipped prices + synthetic posts instead of the ETL output.")]
Start = Annotated[str | None, typer.Option(help="First day of features to use (YYYY-MM-DD).")]
End = Annotated[str | None, typer.Option(help="Day after the last day of features to use (YYYY-MM-DD).")]


def _forecast_features(features: str | None, embedded: bool, tickers: list[str] | None = None,
                       start: str | None = None, end: str | None = None):
    from finpulse.forecast.inputs import load_features

    return load_features(features, embedded=embedded, tickers=tickers, start=start, end=end)


@app.command("train-forecaster")
def train_forecaster_cmd(
    features: Features = None,
    embedded: Embedded = False,
    start: Start = None,
    end: End = None,
    config: Annotated[str, typer.Option(help="ForecastConfig fields as JSON.")] = "{}",
    num_workers: Annotated[int, typer.Option(help="Ray Train CPU workers.")] = 2,
    no_ray: Annotated[bool, typer.Option(help="Train in this process (same steps, no Ray Train).")] = False,
) -> None:
    """Train the LSTM forecaster with Ray Train and register finpulse-forecaster@challenger."""
    from finpulse.forecast.config import ForecastConfig
    from finpulse.forecast.holdout import default_test_start
    from finpulse.forecast.train import TrainOptions, train_forecaster
    from finpulse.runtime import connect

    cfg = ForecastConfig(**{**json.loads(config), "num_workers": num_workers})
    df = _forecast_features(features, embedded, cfg.tickers, start, end)
    if cfg.val_end is None:  # keep evaluate's default test window unseen, so these weights can be judged
        cfg = cfg.model_copy(update={"val_end": default_test_start(df)})
        typer.echo(f"holding out {cfg.val_end} onwards for `finpulse evaluate` (set val_end in --config to change)",
                   err=True)
    if not no_ray:
        connect()
    r = train_forecaster(df, cfg, TrainOptions(use_ray=not no_ray))
    print_json({"model": r.ref.label if r.ref else str(r.model_dir), "run_id": r.run_id, **r.metrics})


@app.command("evaluate")
def evaluate_cmd(
    model: Annotated[str, typer.Option(help="Registry spec or local model folder.")] = model_spec(FORECAST_MODEL, CHALLENGER),
    features: Features = None,
    embedded: Embedded = False,
    k: Annotated[int, typer.Option(help="Walk-forward refits.")] = 4,
    test_start: Annotated[str | None, typer.Option(help="First forecast day (default: the last 20% of days).")] = None,
    wf: Annotated[str, typer.Option(help="Other WalkForwardConfig fields as JSON (test_end, cost_bps, ...).")] = "{}",
    out: Annotated[str | None, typer.Option(help="Also write report.md, the table and plots here.")] = None,
) -> None:
    """Walk-forward evaluation against persistence, drift, ridge and the price-only LSTM."""
    from finpulse.forecast.evaluate import evaluate_model
    from finpulse.forecast.report import format_table
    from finpulse.forecast.walk_forward import WalkForwardConfig

    wf_cfg = WalkForwardConfig(**{**json.loads(wf), "k": k, "test_start": test_start})
    result = evaluate_model(_forecast_features(features, embedded), model, wf=wf_cfg, out_dir=out)
    typer.echo(format_table(result.table))


@app.command("promote")
def promote_cmd(
    name: Annotated[str, typer.Option(help="Registered model.")] = FORECAST_MODEL,
    margin: Annotated[float, typer.Option(help="Relative walk-forward MAE improvement required over the "
                                               "champion.")] = 0.0,
    persistence_tolerance: Annotated[float, typer.Option(help="Relative slack allowed above persistence's "
                                                              "MAE.")] = 0.0,
    dry_run: Annotated[bool, typer.Option(help="Decide and record, but move no alias.")] = False,
) -> None:
    """Promote challenger -> champion when the walk-forward evidence says so; reasons go to MLflow."""
    from dataclasses import asdict

    from finpulse.forecast.promote import PromotionPolicy, promote

    d = promote(name, PromotionPolicy(margin=margin, persistence_tolerance=persistence_tolerance), dry_run=dry_run)
    print_json(asdict(d))
