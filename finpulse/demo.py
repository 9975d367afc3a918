"""`make demo`: the main job on the embedded defaults, end to end on a local Ray.

Stages: ETL of the shipped prices and synthetic posts -> sentiment fine-tune on the shipped labelled
tweets (TFNS) through the sentiment gate, batch scoring, features rebuilt with model scores ->
forecaster training, walk-forward evaluation, registration and promotion -> the Serve application -> a live replay with a planted drift -> the drift
job and one turn of the retraining loop on the running app (canary, soak, promote or roll back) ->
serving until Ctrl-C.

The stages are :mod:`finpulse.pipeline`'s (``finpulse pipeline bootstrap`` runs the same chain); this
module only presents them (banners, progress bars, tables) and then serves.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator

from finpulse import pipeline, tracking
from finpulse.config import get_settings
from finpulse.paths import data_paths
from finpulse.runtime import stderr_to_log

DASHBOARD_PORT = 8501  # Streamlit's usual port; a taken one is replaced by a free one (0: no dashboard)

DEMO_COLUMNS = ["mae", "mape", "rmse", "mae_ratio_vs_persistence", "directional_accuracy", "mcc", "coverage",
                "dm_pvalue", "strategy_sharpe", "buy_hold_sharpe"]


def banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 90 - len(text)), flush=True)


class ConsolePresenter(pipeline.PipelineObserver):
    """Prints the pipeline's stages as the demo always has: banners, bars, summaries (stdout)."""

    def __init__(self, options: pipeline.PipelineOptions) -> None:
        self.options = options

    def started(self, stage: str, detail: dict) -> None:
        if stage == "prepare_data":
            banner("1. ETL: shipped real prices + synthetic posts (labelled synthetic) -> daily features")
            print(f"synthetic posts carry a planted next-day signal of strength {self.options.signal_strength}: any "
                  "forecasting gain over persistence below is that planted signal, not a market result")
        elif stage == "train_sentiment":
            banner("2. Sentiment: fine-tune MiniLM on labelled tweets (TFNS, Ray Train), gate, score posts (Ray Data)")
        elif stage == "train_forecaster":
            banner("3. Forecaster: train (Ray Train), walk-forward evaluation vs baselines, register, promote")
            print(f"forecaster: training with Ray Train ({detail['workers']} workers) on {detail['tickers']} "
                  f"tickers, {detail['first_day']}..{detail['last_day']}")

    def finished(self, stage: str, result: object) -> None:
        show = getattr(self, f"_show_{stage}", None)
        if show is not None:
            show(result)

    def etl_progress(self) -> contextlib.AbstractContextManager:
        from finpulse.data.etl import ETL_STAGES
        from finpulse.progress import stage_bar

        @contextlib.contextmanager
        def bar() -> Iterator:
            tqdm_bar, done = stage_bar("ETL (Ray Data)", list(ETL_STAGES))
            try:
                yield done
            finally:
                tqdm_bar.close()

        return bar()

    def scoring_progress(self, total: int, written: Callable[[], int]) -> contextlib.AbstractContextManager:
        from finpulse.progress import polled_bar

        return polled_bar("scoring (Ray Data)", total, written)

    def _show_prepare_data(self, r: pipeline.PreparedData) -> None:
        print(f"staged {r.price_bars} price bars and {r.posts} synthetic posts under {r.root}/raw")

    def _show_etl(self, r: pipeline.CuratedData) -> None:
        m = r.manifest
        print(r.per_ticker.to_string(float_format=lambda v: f"{v:.3f}"))
        c = m["counts"]["posts"]
        print(f"\nposts: {c['rows_in']} in = {c['rows_out']} out + {c['deduped']} deduped + {c['quarantined']} "
              f"quarantined | prices: {m['counts']['prices']['rows_out']} bars | sentiment source: "
              f"{m['sentiment_source']} | synthetic posts: {m['synthetic_inputs']}")
        print(f"output: {r.out_uri}/v={r.version} (manifest.json, LATEST)")

    _show_etl_with_scores = _show_etl

    def _show_train_sentiment(self, r: pipeline.SentimentModel) -> None:
        nan = float("nan")
        print(f"fine-tuned on {r.examples} labelled tweets (Twitter Financial News Sentiment, shipped): held-out "
              f"TFNS accuracy {r.metrics.get('test_accuracy', nan):.3f}, macro-F1 {r.metrics.get('test_macro_f1', nan):.3f}")
        verdict = "champion" if r.champion else "challenger only (the gate said no)"
        print(f"sentiment gate: {r.model} -> {verdict}")
        for reason in r.reasons:
            print(f"  - {reason}")

    def _show_score(self, r: pipeline.ScoredPosts) -> None:
        print(f"scored {r.rows} posts -> {r.scores_uri}")

    def _show_train_forecaster(self, r: pipeline.TrainedForecaster) -> None:
        print(f"forecaster: registered {r.model or r.model_dir} as challenger")

    def _show_evaluate(self, r: pipeline.Evaluation) -> None:
        from finpulse.forecast.report import format_table

        print(f"forecaster: walk-forward, {r.refits} refits, {r.folds[0][0]}..{r.folds[-1][1]}")
        print(format_table(r.table, DEMO_COLUMNS))

    def _show_reference(self, r: dict) -> None:
        print(f"drift references recorded: {r['forecaster']} ({r['feature_rows']} training feature rows and its "
              f"predictions), {r['sentiment']} ({r['posts']} posts: class mix, scores, encoder embeddings)")

    def _show_promote(self, r: pipeline.Promotion) -> None:
        print(f"forecaster: {'PROMOTED to champion' if r.promoted else 'NOT promoted'}: " + "; ".join(r.reasons))


def _forecasts(base: str, tickers: list[str]) -> dict[str, dict]:
    import requests

    from finpulse.serving.api_keys import client_headers

    headers = client_headers()
    return {t: requests.post(f"{base}/v1/forecast", json={"ticker": t}, headers=headers, timeout=60).json()
            for t in tickers}


def run_live_stage(base: str, options: pipeline.PipelineOptions) -> None:
    """Broker + stream processor + a replay of the days the batch history left out (with a planted shift in
    its posts' wording and mood, for the drift job); show the forecasts move."""
    import time

    from finpulse.data.synthetic import PostStyle
    from finpulse.ingest import corpora, local
    from finpulse.resources import load_prices

    replay_days = options.replay_days
    banner(f"5. Live: NATS JetStream, the stream processor (Ray actor), a replay of the last {replay_days} days")
    s = get_settings()
    url, started = local.ensure_broker(s)
    print(f"broker: {url} ({'started here, storage ' + s.home + '/nats' if started else 'already running'})")
    actor = local.start_stream(s, pipeline.SENTIMENT_CHAMPION)
    tickers = sorted(load_prices()["ticker"].unique())
    before = _forecasts(base, tickers)
    style = PostStyle(vocabulary_shift=options.replay_vocabulary_shift, mood_shift=options.replay_mood_shift)
    print(f"planted drift in the replayed posts: {style.vocabulary_shift:.0%} in another vocabulary, moods shifted "
          f"by +{style.mood_shift}")
    corpus = corpora.embedded(replay_days, posts_per_day=options.posts_per_day, style=style)
    run = local.replay_and_wait(s, actor, corpus, days_per_s=2.0)
    print(f"replayed {run.days} trading days in {run.seconds:.1f} s: {run.published_posts} posts and "
          f"{run.published_bars} bars published; processor: {run.accepted} accepted, {run.duplicates} duplicate, "
          f"{run.rejected} rejected (kept with reasons under live/quarantine); publish-to-features lag "
          f"p50 {run.lag_p50_ms:.0f} ms, p99 {run.lag_p99_ms:.0f} ms")
    time.sleep(1.5)  # the Forecaster checks the live features every 0.5 s
    after = _forecasts(base, tickers)
    print("served forecasts, before -> after the replay (no restart, no config edit):")
    for t in tickers:
        b, a = before[t], after[t]
        print(f"  {t}: as_of {b.get('as_of')} -> {a.get('as_of')}{' (provisional)' if a.get('provisional') else ''}"
              f", predicted close {b.get('predicted_close')} -> {a.get('predicted_close')}")
    print("live history for the next ETL: raw/posts/live, raw/prices/live, scores/live (finpulse etl --scores "
          "<data_root>/scores picks them up)")


@contextlib.contextmanager
def client_traffic(base: str, tickers: list[str], rate_per_s: float = 10.0) -> Iterator[dict[str, int]]:
    """Simulated clients while the loop soaks a canary: varied /v1/forecast and /v1/signal calls in a thread."""
    import random
    import threading

    import requests

    from finpulse.serving.api_keys import client_headers

    counts: dict[str, int] = {}
    stop = threading.Event()
    headers = client_headers()

    def run() -> None:
        rng = random.Random(7)  # noqa: S311 - demo traffic, reproducible on purpose
        while not stop.is_set():
            ticker = rng.choice(tickers)
            route, body = (("/v1/forecast", {"ticker": ticker}) if rng.random() < 0.8 else
                           ("/v1/signal", {"ticker": ticker, "texts": [f"${ticker} {rng.choice(['beats', 'misses'])}"
                                                                        " estimates"]}))
            try:
                status = requests.post(f"{base}{route}", json=body, headers=headers, timeout=30).status_code
            except requests.RequestException:
                status = 0
            counts[str(status)] = counts.get(str(status), 0) + 1
            stop.wait(1.0 / rate_per_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield counts
    finally:
        stop.set()
        thread.join(35)


def run_loop_stage(base: str, dashboard_url: str, options: pipeline.PipelineOptions) -> None:
    """Drift job on the replayed days (a shift was planted in them), then one turn of the loop on this app."""
    from finpulse.loop.lock import RunLock, loop_lock_path
    from finpulse.loop.turn import LoopOptions, describe_step, run_turn
    from finpulse.monitoring.job import run_drift
    from finpulse.resources import load_prices
    from finpulse.serving.canary import ServeConfigClient

    banner("6. The loop: drift job -> retrain -> evaluate -> gate -> canary -> soak -> promote or roll back")
    s, paths = get_settings(), data_paths(get_settings())
    report = run_drift(paths, window_days=options.replay_days)
    print(f"drift job: the last {options.replay_days} trading days (live) against the champions' references: "
          f"{'ALARM' if report.alarm else 'no alarm'}")
    for reason in report.reasons[:6]:
        print(f"  - {reason}")
    if not report.alarm:
        print("no drift alarm: the loop waits for its schedule (`finpulse pipeline run --every 1d --on-drift`)")
        return
    loop = LoopOptions.from_pipeline(options, soak_s=options.soak_s, soak_poll_s=5.0)
    print(f"retraining turn (trigger: drift); canary weight {loop.canary_weight:.0%}, soak {loop.soak_s:.0f} s "
          "under simulated client traffic")
    tickers = sorted(load_prices()["ticker"].unique())
    with RunLock(loop_lock_path(s.home)), client_traffic(base, tickers) as traffic:
        outcome = run_turn(paths, loop, trigger="drift", reason="; ".join(report.reasons[:3]),
                           serving=ServeConfigClient(dashboard_url),
                           on_step=lambda r: print("\n".join(describe_step(r)), flush=True))
    print(f"turn {outcome.turn_id}: {outcome.outcome.upper()} (client calls by status: {dict(traffic)})")
    for reason in outcome.reasons:
        print(f"  - {reason}")


def run_serving_stage(dashboard_url: str, options: pipeline.PipelineOptions | None = None,
                      dashboard_port: int = DASHBOARD_PORT) -> None:
    """Deploy serve_configs/local.yaml, show the example calls, stay up until Ctrl-C (or SIGTERM)."""
    import json
    from pathlib import Path

    from finpulse.serving.launch import deploy_and_wait, example_calls
    from finpulse.serving.run import serve_until_interrupted

    config = Path(__file__).resolve().parents[1] / "serve_configs" / "local.yaml"
    args = {}
    if tracking.get_version(tracking.FORECAST_MODEL, tracking.CHAMPION) is None:
        args["forecast_model"] = tracking.model_spec(tracking.FORECAST_MODEL, tracking.CHALLENGER)
        print("no forecaster champion (the gate refused the challenger): serving the challenger so the API "
              "answers; its forecasts are NOT better than persistence", flush=True)
    print(f"deploying {config.name} (Gateway, SentimentModel, Forecaster and their canary slots) ...", flush=True)
    base = deploy_and_wait(config, dashboard_url, args=args)
    print(f"FinPulse API: {base}   (OpenAPI: {base}/docs, Ray dashboard: {dashboard_url})")
    for call in example_calls(base):
        print(f"\n$ {call['curl']}\n[{call['status']}] {json.dumps(call['answer'])[:600]}")
    from finpulse.dashboard import launch

    board = launch.start_beside(dashboard_port)
    try:
        if options is not None and options.replay_days:
            run_live_stage(base, options)
            run_loop_stage(base, dashboard_url, options)
        print()
        serve_until_interrupted(dashboard_url, base)  # SIGTERM (`kill`) stops it the way Ctrl-C does
    finally:
        if board is not None:
            launch.stop(board)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = pipeline.PipelineOptions()
    ap.add_argument("--posts-per-day", type=float, default=d.posts_per_day)
    ap.add_argument("--signal-strength", type=float, default=d.signal_strength,
                    help="planted next-day signal in the synthetic posts (0 = none)")
    ap.add_argument("--sentiment-examples", type=int, default=d.sentiment_examples,
                    help="labelled tweets (shipped TFNS) to fine-tune on")
    ap.add_argument("--sentiment-epochs", type=int, default=d.sentiment_epochs)
    ap.add_argument("--forecast-epochs", type=int, default=d.forecast_epochs)
    ap.add_argument("--quick", action="store_true",
                    help="the same stages on less: fewer posts, examples and epochs (CI's end-to-end run)")
    ap.add_argument("--no-serve", action="store_true", help="stop after training instead of serving")
    ap.add_argument("--dashboard-port", type=int, default=DASHBOARD_PORT, help="the Streamlit dashboard's port (0: none)")
    return ap.parse_args(argv)


def options_from(args: argparse.Namespace) -> pipeline.PipelineOptions:
    """The command line as pipeline options (``--quick`` shrinks them)."""
    options = pipeline.PipelineOptions(posts_per_day=args.posts_per_day, signal_strength=args.signal_strength,
                                       sentiment_examples=args.sentiment_examples,
                                       sentiment_epochs=args.sentiment_epochs, forecast_epochs=args.forecast_epochs)
    return options.quick() if args.quick else options


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
        run_stages(args, connect(s, include_dashboard=True, num_cpus=demo_cpus()))
    except KeyboardInterrupt:
        print("\nCtrl-C: stopping ...", flush=True)
        return 0
    except Exception as exc:
        logging.getLogger("finpulse.demo").exception("demo failed")
        print(f"\nerror: {type(exc).__name__}: {exc}\n(traceback in {log})", flush=True)
        return 1
    finally:
        stop()  # Serve, then the local Ray, each within a bounded time
        from finpulse.ingest.local import stop_local_broker

        stop_local_broker()
    return 0


def demo_cpus() -> int:
    """Logical CPUs of the demo's local Ray: twice the cores (at least 4). The demo serves, streams and
    retrains on one machine at once: Serve replicas (1.2 CPUs) and the stream processor (0.5) stay up
    while the loop's turn runs ETL tasks, scoring actors and two training workers of 1 CPU each. With
    only the cores declared, those would wait forever for CPUs the app holds; declared, the OS timeshares."""
    return max(4, 2 * (os.cpu_count() or 1))


def run_stages(args: argparse.Namespace, ctx: object) -> None:
    """The pipeline with this demo's console presenter, then (unless --no-serve) serving."""
    options = options_from(args)
    pipeline.run_pipeline(data_paths(get_settings()), options, ConsolePresenter(options))
    if args.no_serve:
        return
    banner("4. Serving: Ray Serve graph (Gateway -> SentimentModel, Forecaster)")
    dashboard = getattr(ctx, "dashboard_url", None)
    run_serving_stage(f"http://{dashboard}" if dashboard else "http://127.0.0.1:8265", options, args.dashboard_port)


if __name__ == "__main__":
    sys.exit(main())
