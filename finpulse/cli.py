"""`finpulse ...`: a thin typer CLI over the library; each command parses options and calls one function."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Literal

import typer

from finpulse.sentiment import DatasetKind, Precision

app = typer.Typer(help="FinPulse: social-media sentiment in next-day price forecasts, on Ray.", no_args_is_help=True)


def run_job(command: str) -> None:
    """``jobs/<name>.py``: run one CLI command with this process's arguments (a job is the CLI, nothing else)."""
    app([command, *sys.argv[1:]], prog_name=os.path.basename(sys.argv[0]))


def _print_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


# ---- data (foundation) ----------------------------------------------------------------------------

Uri = Annotated[str | None, typer.Option(help="Folder or s3:// URI.")]


@app.command()
def etl(
    prices: Annotated[str | None, typer.Option(help="Price files (Yahoo CSV, Alpha Vantage CSV/JSON); "
                                                    "default <data_root>/raw/prices.")] = None,
    posts: Annotated[str | None, typer.Option(help="Post files (posts CSV, StockNet JSONL, Kaggle pair); default "
                                                   "<data_root>/raw/posts when it exists, else prices only.")] = None,
    out: Annotated[str | None, typer.Option(help="Output URI; default <data_root>/curated.")] = None,
    scores: Annotated[str | None, typer.Option(help="Model scores (POST_SCORES Parquet) to use instead of VADER.")] = None,
    embedded: Annotated[bool, typer.Option(help="Stage the shipped prices and synthetic posts first.")] = False,
    posts_per_day: Annotated[float, typer.Option(help="Synthetic posts per ticker and day (--embedded).")] = 6.0,
    signal_strength: Annotated[float, typer.Option(help="Planted next-day signal in synthetic posts "
                                                        "(--embedded).")] = 0.0,
    dedupe_window_s: Annotated[int, typer.Option(help="Same author and text within this many seconds is a "
                                                      "duplicate.")] = 60,
    close_hour: Annotated[int, typer.Option(help="Market close hour, New York time: later posts count for the "
                                                 "next trading day.")] = 16,
    task_cpus: Annotated[float, typer.Option(help="CPUs each ETL task reserves.")] = 1.0,
    keep_staging: Annotated[bool, typer.Option(help="Keep the version's _staging folder.")] = False,
) -> None:
    """Run the Ray Data ETL: validate, dedupe, align, score with VADER, build daily features."""
    from finpulse import storage
    from finpulse.data.embedded import stage_embedded
    from finpulse.data.etl import EtlConfig, run_etl
    from finpulse.paths import data_paths
    from finpulse.runtime import connect

    paths = data_paths()
    if embedded:
        stage_embedded(paths, posts_per_day=posts_per_day, signal_strength=signal_strength)
    posts = posts or (paths.raw_posts if storage.exists(paths.raw_posts) else None)
    connect()
    cfg = EtlConfig(close_hour=close_hour, dedupe_window_s=dedupe_window_s, task_cpus=task_cpus,
                    keep_staging=keep_staging)
    result = run_etl(prices or paths.raw_prices, posts, out or paths.curated, scores_uri=scores, config=cfg)
    _print_json({"version": result.version, "out": result.out_uri, "counts": result.manifest["counts"]})


@app.command()
def manifest(out: Annotated[str | None, typer.Option(help="ETL output URI; default <data_root>/curated.")] = None
             ) -> None:
    """Print the manifest of the latest complete ETL version."""
    from finpulse.data.catalog import load_manifest
    from finpulse.paths import data_paths

    _print_json(load_manifest(out or data_paths().curated))

# ---- the whole chain ------------------------------------------------------------------------------

pipeline_app = typer.Typer(help="The main job's stages as one chain.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("run")
def pipeline_run(
    quick: Annotated[bool, typer.Option(help="The same stages on less: fewer posts, examples, epochs.")] = False,
    options: Annotated[str, typer.Option(help="PipelineOptions fields as JSON (posts_per_day, signal_strength, "
                                              "sentiment_examples, ...).")] = "{}",
    quiet: Annotated[bool, typer.Option(help="Print only the JSON summary (no banners, bars, tables).")] = False,
) -> None:
    """What `make demo` runs before serving: embedded data, ETL, sentiment fine-tune and scoring, ETL with
    model scores, forecaster training, walk-forward evaluation, promotion. Ends with a JSON summary."""
    from finpulse import pipeline
    from finpulse.demo import ConsolePresenter
    from finpulse.paths import data_paths
    from finpulse.runtime import connect

    opts = pipeline.PipelineOptions(**json.loads(options))
    opts = opts.quick() if quick else opts
    connect()
    _print_json(pipeline.run_pipeline(data_paths(), opts, None if quiet else ConsolePresenter(opts)).summary())

# ---- sentiment -----------------------------------------------------------------------------------


@app.command("train-sentiment")
def train_sentiment_cmd(
    model: Annotated[str, typer.Option(help="Base model: minilm (shipped encoder), a folder or a hub id.")] = "minilm",
    dataset: Annotated[DatasetKind, typer.Option(help="Labelled data to train on.")] = "phrasebank",
    data: Annotated[str | None, typer.Option(help="Data folder (e.g. ../shared/data) or file; absolute "
                                                  "under `ray job submit`.")] = None,
    agreement: Annotated[str, typer.Option(help="PhraseBank agreement file: 50, 66, 75, all.")] = "50",
    epochs: Annotated[int, typer.Option()] = 3,
    max_length: Annotated[int, typer.Option()] = 64,
    batch_size: Annotated[int, typer.Option()] = 32,
    learning_rate: Annotated[float, typer.Option()] = 5e-5,
    patience: Annotated[int, typer.Option(help="Epochs without a better validation macro-F1 before stopping.")] = 2,
    num_workers: Annotated[int, typer.Option(help="Ray Train workers.")] = 1,
    use_gpu: Annotated[bool, typer.Option(help="One GPU per worker.")] = False,
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
                                  "register_model": register})
    connect()
    _print_json({k: v for k, v in train_sentiment(cfg).items() if k != "history"})


@app.command("score")
def score_cmd(
    model: Annotated[str, typer.Option(help="Registry spec, folder or hub id.")] = "finpulse-sentiment@champion",
    posts: Annotated[str | None, typer.Option(help="Parquet URI with post_id, ticker, text; default: the ETL's "
                                                   "curated posts.")] = None,
    curated: Annotated[str | None, typer.Option(help="ETL output URI; default <data_root>/curated.")] = None,
    out: Annotated[str | None, typer.Option(help="Output URI; default <data_root>/scores.")] = None,
    batch_size: Annotated[int, typer.Option(help="Rows per actor call.")] = 256,
    num_actors: Annotated[int, typer.Option()] = 1,
    cpus_per_actor: Annotated[float, typer.Option()] = 1.0,
    threads: Annotated[int | None, typer.Option(help="Torch threads per actor.")] = None,
    precision: Annotated[Precision, typer.Option(help="fp32, bf16 (CPUs with AVX512-BF16/AMX, or GPU), int8 (CPU), "
                                                "or auto (bf16 where native).")] = "fp32",
    gpus: Annotated[float, typer.Option(help="GPUs per actor.")] = 0.0,
) -> None:
    """Score posts with a sentiment model on a Ray Data actor pool (POST_SCORES Parquet)."""
    from finpulse.paths import data_paths
    from finpulse.runtime import connect
    from finpulse.sentiment.score import ScoreOptions, curated_posts, score_posts

    paths = data_paths()
    src = posts or curated_posts(curated or paths.curated)
    connect()
    options = ScoreOptions(batch_size=batch_size, num_actors=num_actors, num_cpus_per_actor=cpus_per_actor,
                           threads=threads, precision=precision, gpus=gpus)
    _print_json(score_posts(src, model, out or paths.scores, options))


@app.command("eval-sentiment")
def eval_sentiment_cmd(
    data: Annotated[str, typer.Option(help="Folder holding financial_phrasebank/ and "
                                           "twitter_financial_news_sentiment/.")],
    model: Annotated[str, typer.Option(help="Registry spec, folder or hub id.")] = "finpulse-sentiment@challenger",
    seed: Annotated[int, typer.Option(help="Seed of the held-out set (the split seed training used: 42).")] = 42,
) -> None:
    """Accuracy, macro-F1, per-class F1, confusion matrices on PhraseBank and TFNS, next to VADER."""
    from finpulse.sentiment.evaluate import evaluate_sentiment, format_table

    out = evaluate_sentiment(model, data, seed=seed)
    typer.echo(format_table(out["results"]))
    _print_json(out["summary"])

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
    _print_json({"model": r.ref.label if r.ref else str(r.model_dir), "run_id": r.run_id, **r.metrics})


@app.command("tune")
def tune_cmd(
    features: Features = None,
    embedded: Embedded = False,
    config: Annotated[str, typer.Option(help="Base ForecastConfig fields as JSON.")] = "{}",
    num_samples: Annotated[int, typer.Option()] = 8,
    max_concurrent: Annotated[int, typer.Option()] = 2,
    cpus_per_trial: Annotated[float, typer.Option()] = 1.0,
    scheduler: Annotated[Literal["asha", "fifo"], typer.Option(help="ASHA stops bad trials early; FIFO runs all.")] = "asha",
    tune_end: Annotated[str | None, typer.Option(help="First day tuning never sees; evaluate from it on (default: "
                                                     "the config's val_end, else the start of the last 20% of "
                                                     "days).")] = None,
) -> None:
    """Ray Tune (ASHA) search; each trial an MLflow child run; the best retrained as challenger."""
    from finpulse.forecast.config import ForecastConfig
    from finpulse.forecast.tune import TuneOptions, tune_forecaster
    from finpulse.runtime import connect

    base = ForecastConfig(**json.loads(config))
    df = _forecast_features(features, embedded, base.tickers)
    connect()
    r = tune_forecaster(df, base, TuneOptions(num_samples=num_samples, max_concurrent=max_concurrent,
                                              cpus_per_trial=cpus_per_trial, scheduler=scheduler, tune_end=tune_end))
    typer.echo(r.trials.to_string())
    _print_json({"best_val_loss": r.best_val_loss, "best": json.loads(r.best_config.model_dump_json()),
                 "registered": r.train_result.ref.label if r.train_result and r.train_result.ref else None})


@app.command("evaluate")
def evaluate_cmd(
    model: Annotated[str, typer.Option(help="Registry spec or local model folder.")] = "finpulse-forecaster@challenger",
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
    name: Annotated[str, typer.Option(help="Registered model.")] = "finpulse-forecaster",
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
    _print_json(asdict(d))


# ---- serving -------------------------------------------------------------------------------------

@app.command("serve")
def serve_cmd(
    config: Annotated[str, typer.Option(help="Serve config YAML.")] = "serve_configs/local.yaml",
    port: Annotated[int | None, typer.Option(help="Override http_options.port.")] = None,
    dashboard_port: Annotated[int, typer.Option(help="Ray dashboard port of the local Ray this starts.")] = 8265,
    address: Annotated[str | None, typer.Option(help="Serve on this Ray cluster instead (default: "
                                                     "$FINPULSE_RAY_ADDRESS, else a fresh local Ray).")] = None,
) -> None:
    """Serve the app until Ctrl-C: starts a local Ray, deploys CONFIG with this machine's FinPulse settings,
    and on Ctrl-C (or SIGTERM) stops Serve and Ray."""
    from finpulse.serving.run import serve_forever

    serve_forever(config, port=port, dashboard_port=dashboard_port, address=address)


canary_app = typer.Typer(help="Canary traffic for a running app: set, promote, rollback, status.",
                         no_args_is_help=True)
app.add_typer(canary_app, name="canary")
ModelKind = Annotated[Literal["sentiment", "forecast"], typer.Option("--model", "-m", help="Which model's slots.")]
Dashboard = Annotated[str | None, typer.Option("--address", help="Ray dashboard URL; default: the one `finpulse "
                                                                 "serve` recorded in this home, else "
                                                                 "$RAY_DASHBOARD_ADDRESS or :8265.")]


def _canary(address: str | None, op: str, *args: object) -> None:
    """Run canary operation ``op`` and print its summary; failures print one line and exit 1."""
    import requests

    from finpulse.serving import canary
    from finpulse.serving.run import read_state

    state = read_state() or {}
    client = canary.ServeConfigClient(address or os.environ.get("RAY_DASHBOARD_ADDRESS") or state.get("dashboard")
                                      or canary.DEFAULT_DASHBOARD, token_path=state.get("token_path"))
    try:
        out = client.models() if op == "status" else getattr(canary, op)(client, *args)
    except (canary.DashboardError, LookupError, RuntimeError, TimeoutError, ValueError) as exc:
        typer.echo(f"finpulse canary {op.removesuffix('_canary')}: {exc}", err=True)
        raise typer.Exit(1) from None
    except requests.RequestException as exc:
        typer.echo(f"finpulse canary {op.removesuffix('_canary')}: the app did not answer "
                   f"({type(exc).__name__}): is `finpulse serve` running?", err=True)
        raise typer.Exit(1) from None
    _print_json(canary.summary(out))


@canary_app.command("set")
def canary_set(version: Annotated[str, typer.Option("--version", help="Model spec: name@alias, name/N or a folder.")],
               weight: Annotated[float, typer.Option("--weight", min=0.0, max=1.0)],
               model: ModelKind = "forecast", address: Dashboard = None) -> None:
    """Load VERSION into the canary slot, then send it WEIGHT of the traffic (no replica restarts)."""
    _canary(address, "set_canary", model, version, weight)


@canary_app.command("promote")
def canary_promote(model: ModelKind = "forecast", address: Dashboard = None) -> None:
    """Make the canary's version stable and empty the canary slot."""
    _canary(address, "promote", model)


@canary_app.command("rollback")
def canary_rollback(model: ModelKind = "forecast", address: Dashboard = None) -> None:
    """Send all traffic back to stable and unload the canary."""
    _canary(address, "rollback", model)


@canary_app.command("status")
def canary_status(address: Dashboard = None) -> None:
    """Versions, weights and readiness of the stable and canary slots."""
    _canary(address, "status")


if __name__ == "__main__":
    app()
