"""`finpulse ...`: a thin typer CLI over the library; each command parses options and calls one function."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="FinPulse: social-media sentiment in next-day price forecasts, on Ray.", no_args_is_help=True)


def _print_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


# ---- data (foundation) ----------------------------------------------------------------------------


@app.command()
def etl(
    prices: str = typer.Option(None, help="Folder/URI of price files; default <data_root>/raw/prices."),
    posts: str = typer.Option(None, help="Folder/URI of post files; default <data_root>/raw/posts."),
    out: str = typer.Option(None, help="Output URI; default <data_root>/curated."),
    scores: str = typer.Option(None, help="Model scores (Parquet) to use instead of VADER."),
    embedded: bool = typer.Option(False, help="Stage the shipped prices and synthetic posts first."),
    posts_per_day: float = typer.Option(6.0, help="Synthetic posts per ticker and day (with --embedded)."),
    signal_strength: float = typer.Option(0.0, help="Planted next-day signal in synthetic posts (with --embedded)."),
) -> None:
    """Run the Ray Data ETL: validate, dedupe, align, score with VADER, build daily features."""
    from finpulse.data.embedded import data_paths, stage_embedded
    from finpulse.data.etl import run_etl

    paths = data_paths()
    if embedded:
        stage_embedded(paths, posts_per_day=posts_per_day, signal_strength=signal_strength)
    result = run_etl(prices or paths.raw_prices, posts or paths.raw_posts, out or paths.curated, scores_uri=scores)
    _print_json({"version": result.version, "out": result.out_uri, "counts": result.manifest["counts"]})


@app.command()
def manifest(out: str = typer.Option(None, help="ETL output URI; default <data_root>/curated.")) -> None:
    """Print the manifest of the latest complete ETL version."""
    from finpulse.data.embedded import data_paths
    from finpulse.data.etl import load_manifest

    _print_json(load_manifest(out or data_paths().curated))

# ---- sentiment -----------------------------------------------------------------------------------


@app.command("train-sentiment")
def train_sentiment_cmd(
    model: str = typer.Option("minilm", help="Base model: minilm (shipped encoder), a folder or a hub id."),
    dataset: str = typer.Option("phrasebank", help="phrasebank | tfns | csv | vader_posts | vader_synthetic."),
    data: str = typer.Option(None, help="Data folder (e.g. ../shared/data) or file for the dataset."),
    agreement: str = typer.Option("50", help="PhraseBank agreement file: 50, 66, 75, all."),
    epochs: int = typer.Option(3),
    max_length: int = typer.Option(64),
    batch_size: int = typer.Option(32),
    learning_rate: float = typer.Option(5e-5),
    patience: int = typer.Option(2, help="Epochs without a better validation macro-F1 before stopping."),
    num_workers: int = typer.Option(1),
    use_gpu: bool = typer.Option(False),
    max_train_examples: int = typer.Option(None),
    seed: int = typer.Option(42),
    register: bool = typer.Option(True, help="Register as finpulse-sentiment@challenger."),
) -> None:
    """Fine-tune a sentiment classifier with Ray Train; log to MLflow; register the challenger."""
    from finpulse.sentiment.datasets import DatasetSpec
    from finpulse.sentiment.train import SentimentTrainConfig, train_sentiment

    cfg = SentimentTrainConfig(model=model, dataset=DatasetSpec(kind=dataset, path=data, agreement=agreement),
                               epochs=epochs, max_length=max_length, batch_size=batch_size,
                               learning_rate=learning_rate, patience=patience, num_workers=num_workers,
                               use_gpu=use_gpu, max_train_examples=max_train_examples, seed=seed,
                               register_model=register)
    _print_json({k: v for k, v in train_sentiment(cfg).items() if k != "history"})


@app.command("score")
def score_cmd(
    model: str = typer.Option("finpulse-sentiment@champion", help="Registry spec, folder or hub id."),
    posts: str = typer.Option(None, help="Parquet URI with post_id, ticker, text; default: curated posts."),
    curated: str = typer.Option(None, help="ETL output URI; default <data_root>/curated."),
    out: str = typer.Option(None, help="Output URI; default <data_root>/scores."),
    batch_size: int = typer.Option(256),
    num_actors: int = typer.Option(1),
    cpus_per_actor: float = typer.Option(1.0),
    threads: int = typer.Option(None, help="Torch threads per actor."),
    precision: str = typer.Option("fp32", help="fp32, bf16 (CPUs with AVX512-BF16/AMX, or GPU), int8 (CPU), or auto (bf16 where native)."),
    gpus: float = typer.Option(0.0, help="GPUs per actor."),
) -> None:
    """Score posts with a sentiment model on a Ray Data actor pool (POST_SCORES Parquet)."""
    from finpulse.data.embedded import data_paths
    from finpulse.sentiment.score import curated_posts, score_posts

    paths = data_paths()
    src = posts or curated_posts(curated or paths.curated)
    _print_json(score_posts(src, model, out or paths.scores, batch_size=batch_size, num_actors=num_actors,
                            num_cpus_per_actor=cpus_per_actor, threads=threads, precision=precision, gpus=gpus))


@app.command("eval-sentiment")
def eval_sentiment_cmd(
    model: str = typer.Option("finpulse-sentiment@challenger", help="Registry spec, folder or hub id."),
    data: str = typer.Option(..., help="Folder holding financial_phrasebank/ and twitter_financial_news_sentiment/."),
    seed: int = typer.Option(42, help="Seed of the held-out set (the split seed training used: 42)."),
) -> None:
    """Accuracy, macro-F1, per-class F1, confusion matrices on PhraseBank and TFNS, next to VADER."""
    from finpulse.sentiment.evaluate import evaluate_sentiment, format_table

    out = evaluate_sentiment(model, data, seed=seed)
    typer.echo(format_table(out["results"]))
    _print_json(out["summary"])

# ---- forecast ------------------------------------------------------------------------------------


def _forecast_features(features: str | None, embedded: bool, tickers: list[str] | None = None):
    from finpulse.forecast.inputs import load_features

    return load_features(features, embedded=embedded, tickers=tickers)


@app.command("train-forecaster")
def train_forecaster_cmd(
    features: str = typer.Option(None, help="ETL output URI; default <data_root>/curated."),
    embedded: bool = typer.Option(False, help="Shipped prices + synthetic posts instead of the ETL output."),
    config: str = typer.Option("{}", help="ForecastConfig fields as JSON."),
    num_workers: int = typer.Option(2, help="Ray Train CPU workers."),
    no_ray: bool = typer.Option(False, help="Train in this process (same steps, no Ray Train)."),
) -> None:
    """Train the LSTM forecaster with Ray Train and register finpulse-forecaster@challenger."""
    import json as _json

    from finpulse.forecast.config import ForecastConfig
    from finpulse.forecast.inputs import connect_ray
    from finpulse.forecast.train import train_forecaster

    cfg = ForecastConfig(**{**_json.loads(config), "num_workers": num_workers})
    df = _forecast_features(features, embedded, cfg.tickers)
    if not no_ray:
        connect_ray()
    r = train_forecaster(df, cfg, use_ray=not no_ray)
    _print_json({"model": r.ref.label if r.ref else str(r.model_dir), "run_id": r.run_id, **r.metrics})


@app.command("tune")
def tune_cmd(
    features: str = typer.Option(None, help="ETL output URI; default <data_root>/curated."),
    embedded: bool = typer.Option(False, help="Shipped prices + synthetic posts instead of the ETL output."),
    config: str = typer.Option("{}", help="Base ForecastConfig fields as JSON."),
    num_samples: int = typer.Option(8),
    max_concurrent: int = typer.Option(2),
    cpus_per_trial: float = typer.Option(1.0),
    scheduler: str = typer.Option("asha", help="asha or fifo"),
    tune_end: str = typer.Option(None, help="First day tuning never sees; evaluate from it on (default: the "
                                 "config's val_end, else the start of the last 20% of days)."),
) -> None:
    """Ray Tune (ASHA) search; each trial an MLflow child run; the best retrained as challenger."""
    import json as _json

    from finpulse.forecast.config import ForecastConfig
    from finpulse.forecast.inputs import connect_ray
    from finpulse.forecast.tune import tune_forecaster

    base = ForecastConfig(**_json.loads(config))
    df = _forecast_features(features, embedded, base.tickers)
    connect_ray()
    r = tune_forecaster(df, base, num_samples=num_samples, max_concurrent=max_concurrent,
                        cpus_per_trial=cpus_per_trial, scheduler=scheduler, tune_end=tune_end)
    typer.echo(r.trials.to_string())
    _print_json({"best_val_loss": r.best_val_loss, "best": _json.loads(r.best_config.model_dump_json()),
                 "registered": r.train_result.ref.label if r.train_result and r.train_result.ref else None})


@app.command("evaluate")
def evaluate_cmd(
    model: str = typer.Option("finpulse-forecaster@challenger", help="Registry spec or local model folder."),
    features: str = typer.Option(None, help="ETL output URI; default <data_root>/curated."),
    embedded: bool = typer.Option(False, help="Shipped prices + synthetic posts instead of the ETL output."),
    k: int = typer.Option(4, help="Walk-forward refits."),
    test_start: str = typer.Option(None, help="First forecast day (default: the last 20% of days)."),
    out: str = typer.Option(None, help="Also write report.md, the table and plots here."),
) -> None:
    """Walk-forward evaluation against persistence, drift, ridge and the price-only LSTM."""
    from finpulse.forecast.evaluate import WalkForwardConfig, evaluate_model, format_table

    wf = WalkForwardConfig(k=k, test_start=test_start)
    result = evaluate_model(_forecast_features(features, embedded), model, wf=wf, out_dir=out)
    typer.echo(format_table(result.table))


@app.command("promote")
def promote_cmd(
    name: str = typer.Option("finpulse-forecaster"),
    margin: float = typer.Option(0.0, help="Relative walk-forward MAE improvement required over the champion."),
    persistence_tolerance: float = typer.Option(0.0, help="Relative slack allowed above persistence's MAE."),
    dry_run: bool = typer.Option(False),
) -> None:
    """Promote challenger -> champion when the walk-forward evidence says so; reasons go to MLflow."""
    from dataclasses import asdict

    from finpulse.forecast.promote import PromotionPolicy, promote

    d = promote(name, PromotionPolicy(margin=margin, persistence_tolerance=persistence_tolerance), dry_run=dry_run)
    _print_json(asdict(d))


# ---- serving -------------------------------------------------------------------------------------

@app.command("serve")
def serve_cmd(
    config: str = typer.Option("serve_configs/local.yaml", help="Serve config YAML."),
    port: int = typer.Option(None, help="Override http_options.port."),
    blocking: bool = typer.Option(True, help="Stay up until Ctrl-C (like `serve run`)."),
) -> None:
    """Run the serving graph: `serve run` on the config with this machine's FinPulse settings."""
    import os
    import shutil
    import sys

    from finpulse.serving.launch import write_resolved

    resolved = write_resolved(config, port)
    serve_bin = shutil.which("serve") or os.path.join(os.path.dirname(sys.executable), "serve")
    args = [serve_bin, "run", str(resolved)] + ([] if blocking else ["--non-blocking"])
    typer.echo(f"serve run {resolved}")
    os.execv(serve_bin, args)


canary_app = typer.Typer(help="Canary traffic for a running app: set, promote, rollback, status.",
                         no_args_is_help=True)
app.add_typer(canary_app, name="canary")
_MODEL_OPT = typer.Option("forecast", "--model", "-m", help="sentiment or forecast.")
_DASH_OPT = typer.Option(None, "--address", help="Ray dashboard URL; default $RAY_DASHBOARD_ADDRESS or :8265.")


def _canary_client(address: str | None):
    from finpulse.serving.canary import DEFAULT_DASHBOARD, ServeConfigClient

    return ServeConfigClient(address or DEFAULT_DASHBOARD)


@canary_app.command("set")
def canary_set(version: str = typer.Option(..., "--version", help="Model spec: name@alias, name/N or a folder."),
               weight: float = typer.Option(..., "--weight", min=0.0, max=1.0),
               model: str = _MODEL_OPT, address: str = _DASH_OPT) -> None:
    """Load VERSION into the canary slot, then send it WEIGHT of the traffic (no replica restarts)."""
    from finpulse.serving import canary

    client = _canary_client(address)
    _print_json(canary.summary(canary.set_canary(client, model, version, weight)))


@canary_app.command("promote")
def canary_promote(model: str = _MODEL_OPT, address: str = _DASH_OPT) -> None:
    """Make the canary's version stable and empty the canary slot."""
    from finpulse.serving import canary

    _print_json(canary.summary(canary.promote(_canary_client(address), model)))


@canary_app.command("rollback")
def canary_rollback(model: str = _MODEL_OPT, address: str = _DASH_OPT) -> None:
    """Send all traffic back to stable and unload the canary."""
    from finpulse.serving import canary

    _print_json(canary.summary(canary.rollback(_canary_client(address), model)))


@canary_app.command("status")
def canary_status(address: str = _DASH_OPT) -> None:
    """Versions, weights and readiness of the stable and canary slots."""
    from finpulse.serving import canary

    _print_json(canary.summary(_canary_client(address).models()))



if __name__ == "__main__":
    app()
