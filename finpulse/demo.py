"""`make demo`: the main job on the embedded defaults, end to end on a local Ray.

Stages: ETL of the shipped prices and synthetic posts -> sentiment fine-tune on VADER labels,
batch scoring, features rebuilt with model scores -> forecaster training, walk-forward evaluation,
registration and promotion -> the Serve application answering until Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

import pandas as pd

from finpulse.config import get_settings
from finpulse.data.catalog import load_dataset
from finpulse.data.embedded import DataPaths, data_paths, stage_embedded
from finpulse.data.etl import EtlResult, run_etl
from finpulse.runtime import stderr_to_log


def banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 90 - len(text)), flush=True)


def etl_summary(result: EtlResult) -> pd.DataFrame:
    """Rows per ticker: price days, posts kept, days with posts, mean sentiment."""
    m = result.manifest
    feats = load_dataset(result.out_uri, "daily_features")
    per = feats.groupby("ticker").agg(days=("date", "size"), first=("date", "min"), last=("date", "max"),
                                      days_with_posts=("has_posts", "sum"), posts=("sent_count", "sum"),
                                      mean_sentiment=("sent_mean", "mean"))
    print(per.to_string(float_format=lambda v: f"{v:.3f}"))
    c = m["counts"]["posts"]
    print(f"\nposts: {c['rows_in']} in = {c['rows_out']} out + {c['deduped']} deduped + {c['quarantined']} quarantined"
          f" | prices: {m['counts']['prices']['rows_out']} bars | sentiment source: {m['sentiment_source']}"
          f" | synthetic posts: {m['synthetic_inputs']}")
    print(f"output: {result.out_uri}/v={result.version} (manifest.json, LATEST)")
    return per


def run_etl_stage(paths: DataPaths, *, signal_strength: float, posts_per_day: float,
                  scores_uri: str | None = None) -> EtlResult:
    from finpulse.data.etl import ETL_STAGES
    from finpulse.progress import stage_bar

    if scores_uri is None:
        staged = stage_embedded(paths, posts_per_day=posts_per_day, signal_strength=signal_strength)
        print(f"staged {staged['prices']} price bars and {staged['posts']} synthetic posts under {paths.root}/raw")
    bar, done = stage_bar("ETL (Ray Data)", list(ETL_STAGES))
    try:
        result = run_etl(paths.raw_prices, paths.raw_posts, paths.curated, scores_uri=scores_uri, on_stage=done)
    finally:
        bar.close()
    etl_summary(result)
    return result


def run_sentiment_stage(paths: DataPaths, *, max_examples: int, epochs: int, signal_strength: float,
                        posts_per_day: float) -> EtlResult:
    """Fine-tune the shipped encoder on VADER-labelled synthetic posts, score every post with the
    Ray Data scorer, and rebuild the daily features with model scores instead of VADER."""
    from finpulse import tracking
    from finpulse.progress import polled_bar
    from finpulse.sentiment.model import cpu_has_bf16
    from finpulse.sentiment.score import ScoreOptions, curated_posts, score_posts
    from finpulse.sentiment.train import train_on_vader_posts

    posts = curated_posts(paths.curated)
    trained = train_on_vader_posts(posts["text"], max_examples=max_examples, epochs=epochs)
    ref = tracking.get_version("finpulse-sentiment", tracking.CHALLENGER)
    print(f"fine-tuned on {max_examples} VADER-labelled synthetic posts: validation accuracy "
          f"{trained.get('val_accuracy', float('nan')):.3f}, macro-F1 {trained.get('val_macro_f1', float('nan')):.3f}"
          " (agreement with VADER's weak labels, not a benchmark: see `make bench-sentiment`)")
    if ref is not None:  # no gate for the demo's sentiment model: the weak-label fine-tune serves
        tracking.set_alias("finpulse-sentiment", tracking.CHAMPION, ref.version)
        print(f"registered {ref.label} as challenger and champion")
    with polled_bar("scoring (Ray Data)", len(posts), lambda: written_rows(paths.scores)):
        summary = score_posts(posts, "finpulse-sentiment@champion", paths.scores,
                              ScoreOptions(num_actors=2, precision="bf16" if cpu_has_bf16() else "int8",
                                           num_cpus_per_actor=1, threads=1))
    print(f"scored {summary.get('rows', len(posts))} posts -> {paths.scores}")
    return run_etl_stage(paths, signal_strength=signal_strength, posts_per_day=posts_per_day,
                         scores_uri=paths.scores)


def written_rows(uri: str) -> int:
    """Rows in the Parquet files under ``uri`` so far (footers only): the scoring bar's count."""
    import pyarrow.parquet as pq

    from finpulse import storage

    total = 0
    for f in storage.list_files(uri, ".parquet"):
        fs, path = storage.filesystem(f)
        with fs.open_input_file(path) as fh:
            total += pq.ParquetFile(fh).metadata.num_rows
    return total


def run_serving_stage(dashboard_url: str) -> None:
    """Deploy serve_configs/local.yaml, show the example calls, stay up until Ctrl-C (or SIGTERM)."""
    import json
    from pathlib import Path

    from finpulse import tracking
    from finpulse.serving.launch import deploy_and_wait, example_calls
    from finpulse.serving.run import serve_until_interrupted

    config = Path(__file__).resolve().parents[1] / "serve_configs" / "local.yaml"
    args = {}
    if tracking.get_version("finpulse-forecaster", tracking.CHAMPION) is None:
        args["forecast_model"] = "finpulse-forecaster@challenger"
        print("no forecaster champion (the gate refused the challenger): serving the challenger so the API "
              "answers; its forecasts are NOT better than persistence", flush=True)
    print(f"deploying {config.name} (Gateway, SentimentModel, Forecaster and their canary slots) ...", flush=True)
    base = deploy_and_wait(config, dashboard_url, args=args)
    print(f"FinPulse API: {base}   (OpenAPI: {base}/docs, Ray dashboard: {dashboard_url})")
    for call in example_calls(base):
        print(f"\n$ {call['curl']}\n[{call['status']}] {json.dumps(call['answer'])[:600]}")
    print()
    serve_until_interrupted(dashboard_url, base)  # SIGTERM (`kill`) stops it the way Ctrl-C does


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts-per-day", type=float, default=6.0)
    ap.add_argument("--signal-strength", type=float, default=0.5,
                    help="planted next-day signal in the synthetic posts (0 = none)")
    ap.add_argument("--sentiment-examples", type=int, default=3000, help="VADER-labelled posts to fine-tune on")
    ap.add_argument("--sentiment-epochs", type=int, default=2)
    ap.add_argument("--forecast-epochs", type=int, default=15)
    ap.add_argument("--quick", action="store_true",
                    help="the same stages on less: fewer posts, examples and epochs (CI's end-to-end run)")
    ap.add_argument("--no-serve", action="store_true", help="stop after training instead of serving")
    args = ap.parse_args(argv)
    if args.quick:
        args.posts_per_day, args.sentiment_examples = min(args.posts_per_day, 2.0), min(args.sentiment_examples, 300)
        args.sentiment_epochs, args.forecast_epochs = 1, min(args.forecast_epochs, 3)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the stages; Ctrl-C at any point shuts Serve and Ray down and exits (0 once serving)."""
    from finpulse.runtime import connect
    from finpulse.serving.run import stop

    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started where SIGINT was ignored
    s = get_settings()
    os.makedirs(s.home, exist_ok=True)
    log = stderr_to_log(s)
    print(f"FinPulse home: {s.home}   library logs: {log}", flush=True)
    try:
        run_stages(args, connect(s, include_dashboard=True))
    except KeyboardInterrupt:
        print("\nCtrl-C: stopping ...", flush=True)
        return 0
    except Exception as exc:
        logging.getLogger("finpulse.demo").exception("demo failed")
        print(f"\nerror: {type(exc).__name__}: {exc}\n(traceback in {log})", flush=True)
        return 1
    finally:
        stop()  # Serve, then the local Ray, each within a bounded time
    return 0


def run_stages(args: argparse.Namespace, ctx: object) -> None:
    paths = data_paths(get_settings())
    banner("1. ETL: shipped real prices + synthetic posts (labelled synthetic) -> daily features")
    print(f"synthetic posts carry a planted next-day signal of strength {args.signal_strength}: any forecasting "
          "gain over persistence below is that planted signal, not a market result")
    run_etl_stage(paths, signal_strength=args.signal_strength, posts_per_day=args.posts_per_day)

    banner("2. Sentiment: fine-tune MiniLM on VADER weak labels (Ray Train), score posts (Ray Data)")
    result = run_sentiment_stage(paths, max_examples=args.sentiment_examples, epochs=args.sentiment_epochs,
                                 signal_strength=args.signal_strength, posts_per_day=args.posts_per_day)

    banner("3. Forecaster: train (Ray Train), walk-forward evaluation vs baselines, register, promote")
    from finpulse.forecast.demo import run_forecast_demo

    run_forecast_demo(load_dataset(result.out_uri, "daily_features"), max_epochs=args.forecast_epochs,
                      k=1 if args.quick else 2)
    if args.no_serve:
        return
    banner("4. Serving: Ray Serve graph (Gateway -> SentimentModel, Forecaster)")
    dashboard = getattr(ctx, "dashboard_url", None)
    run_serving_stage(f"http://{dashboard}" if dashboard else "http://127.0.0.1:8265")


if __name__ == "__main__":
    sys.exit(main())
