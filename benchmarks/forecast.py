"""Forecaster benchmark: real-data quality, the StockNet protocol, Ray Train overhead, ASHA vs FIFO.

`make bench-forecast` (or `python benchmarks/forecast.py [--quick] [--skip ...] [--only ...]`) prints a
table and writes benchmarks/results/forecast.json; ``--only train`` reruns one part and keeps the
other parts' keys from the existing file. Goals (from the issue) are printed beside the numbers;
numbers are reported whichever side of the goal they land.

- quality: the five shipped tickers (real prices 2010-2020; no real posts for them, so the price
  feature set), walk-forward over the last years, MAE ratio to persistence per ticker and overall,
  directional accuracy, DM p-value (one-sided, H1: model beats persistence);
- stocknet: the StockNet paper's protocol (Xu and Cohen, ACL 2018) on all its tweeted stocks
  (../shared/data/stocknet_full): target-day split, Adj Close movement, 5-day lag window; tweets scored
  by VADER and by the sentiment model (``--sentiment-model``; default: a MiniLM fine-tuned here, without
  Ray, on the shipped TFNS train split, the served default's recipe); accuracy with a Wilson 95% CI, MCC;
- train: Ray Train's whole epoch (train, validate, log, checkpoint, report) over the same epoch in
  one plain process (train_overhead_ratio), interleaved repeats, and Ray Train's start-up;
(Tune sweeps: benchmarks/tune.py, `make bench-tune`.)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results" / "forecast.json"


def real_features(tickers: list[str] | None = None) -> pd.DataFrame:
    from finpulse.forecast.inputs import daily_features
    from finpulse.resources import load_prices

    return daily_features(load_prices(tickers))


def bench_quality(args, out: dict) -> None:
    from finpulse.forecast.config import ForecastConfig
    from finpulse.forecast.report import format_table
    from finpulse.forecast.walk_forward import WalkForwardConfig, walk_forward

    df = real_features()
    cfg = ForecastConfig(feature_set="price", lookback=20, hidden_size=32, max_epochs=8 if args.quick else 20,
                         patience=4, batch_size=256, dropout=0.1, seed=0)
    wf = WalkForwardConfig(k=2 if args.quick else 4, test_start=dt.date(2019, 1, 1),
                           baselines=("persistence", "drift", "ridge"))
    t = time.perf_counter()
    r = walk_forward(df, cfg, wf)
    name = "lstm_price"
    pt = r.per_ticker[r.per_ticker["model"] == name].set_index("ticker")
    out["quality"] = {
        "period": f"{r.folds[0][0]}..{r.folds[-1][1]}", "refits": wf.k, "feature_set": "price",
        "mae_ratio_vs_persistence": r.metric(name, "mae_ratio_vs_persistence"),
        "mae_ratio_vs_persistence_per_ticker": pt["mae_ratio_vs_persistence"].round(4).to_dict(),
        "directional_accuracy": r.metric(name, "directional_accuracy"),
        "directional_accuracy_per_ticker": pt["directional_accuracy"].round(4).to_dict(),
        "dm_pvalue": r.metric(name, "dm_pvalue"),
        "coverage": r.metric(name, "coverage"),
        "interval_coverage": r.metric(name, "coverage"),  # nominal 90%: CQR + online tracking (goal 0.88-0.92)
        "leakage_alarm": r.leakage_alarm,  # directional accuracy > 60% on real data
        "ridge_mae_ratio_vs_persistence": r.metric("ridge", "mae_ratio_vs_persistence"),
        "drift_mae_ratio_vs_persistence": r.metric("drift", "mae_ratio_vs_persistence"),
        "strategy_sharpe": r.metric(name, "strategy_sharpe"), "buy_hold_sharpe": r.metric(name, "buy_hold_sharpe"),
        "seconds": time.perf_counter() - t,
    }
    print(format_table(r.table), flush=True)


def stocknet_inputs(root: Path = SHARED / "stocknet_full") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every StockNet stock's raw prices and its tweets up to 2015-12-31 (the test quarter's last day;
    the raw corpus adds 2016-Q1, which no sample reads), through the one reader in ``data.sources``."""
    from finpulse.data import sources

    prices, posts = sources.read_stocknet_dir(str(root))
    created = sources.parse_created_at(posts["created_at"])
    return prices, posts[(created < pd.Timestamp("2016-01-01", tz="UTC")).to_numpy()].reset_index(drop=True)


def stocknet_model_scores(posts: pd.DataFrame, spec: str | None) -> tuple[pd.DataFrame, str, dict]:
    """The tweets scored by ``spec`` (a folder or registry spec), else by a MiniLM fine-tuned here on the
    shipped TFNS train split (the served default's recipe); scores cached under .finpulse/bench/stocknet."""
    from _stocknet_sentiment import model_scores, served_model

    from finpulse.data import sources

    cache = REPO / ".finpulse" / "bench" / "stocknet"
    info: dict = {}
    if spec is None:
        spec, info = served_model(cache)
    valid, _ = sources.normalize_posts(posts)
    scores, scorer = model_scores(valid, spec, cache)
    return scores, scorer, {"spec": spec, **info}


def bench_stocknet(args, out: dict) -> None:
    """The paper's protocol on all its tweeted stocks: tweets scored by VADER and by the sentiment model."""
    from finpulse.data import reference
    from finpulse.forecast.config import ForecastConfig
    from finpulse.forecast.report import format_table
    from finpulse.forecast.stocknet import STOCKNET_PAPER, StockNetConfig, protocol_features, stocknet_evaluate

    if not (SHARED / "stocknet_full").is_dir():
        out["stocknet"] = {"skipped": f"no StockNet data at {SHARED / 'stocknet_full'}"}
        return
    t = time.perf_counter()
    prices, posts = stocknet_inputs()
    vader = reference.build_pandas(prices, posts)
    scores, scorer, model_info = stocknet_model_scores(posts, args.sentiment_model)
    model = reference.build_pandas(prices, posts, scores=scores)
    features = {"model": protocol_features(model["prices"], model["daily_features"]),
                "vader": protocol_features(vader["prices"], vader["daily_features"])}
    cfg = ForecastConfig(hidden_size=32, max_epochs=10 if args.quick else 30, patience=5, batch_size=128,
                         dropout=0.2, seed=0)
    table = stocknet_evaluate(features, cfg, StockNetConfig())
    print(format_table(table, ["n", "accuracy", "ci_low", "ci_high", "mcc"]), flush=True)
    row = table.loc["lstm_price_tweets_model"]
    tweeted = sorted(set(model["scored_posts"]["ticker"]))
    out["stocknet"] = {
        "stocknet_test_accuracy": float(row["accuracy"]), "stocknet_test_mcc": float(row["mcc"]),
        "stocknet_test_n": int(row["n"]), "stocknet_tickers": len(tweeted),
        "stocknet_test_accuracy_ci95": [float(row["ci_low"]), float(row["ci_high"])],
        "stocknet_sentiment_source": f"model:{scorer}", "sentiment_model": model_info,
        "protocol": "target-day split 2014-01-01/2015-08-01/2015-10-01/2016-01-01; Adj Close movement, up > +0.55%, "
                    "down <= -0.5%, band dropped; 5-trading-day lag window d-5..d-1; a tweet counts for the first "
                    "trading day whose 16:00 New York close is after it (none after the as-of day's close)",
        "price_stocks": int(prices["ticker"].nunique()), "tweets": int(len(posts)),
        "tweets_kept": int(len(model["scored_posts"])),
        "table": {k: {c: (None if pd.isna(v) else float(v)) for c, v in r.items()} for k, r in table.iterrows()},
        "paper": STOCKNET_PAPER, "seconds": time.perf_counter() - t,
    }


def bench_train(args, out: dict) -> None:
    """Ray Train (1 worker x all cores) against the same epoch in one plain process, whole epochs by
    wall clock, interleaved repeats (see benchmarks/_train_overhead.py)."""
    from _train_overhead import train_overhead

    threads = os.cpu_count() or 1
    out["train"] = train_overhead(real_features(), quick=args.quick, reps=1 if args.quick else args.train_reps,
                                  epochs=3 if args.quick else args.train_epochs, threads=threads)
    print(json.dumps({k: v for k, v in out["train"].items() if k != "runs"}, indent=1), flush=True)


GOALS = [("quality", "mae_ratio_vs_persistence", "<=", 1.0), ("stocknet", "stocknet_test_accuracy", ">=", 0.5823),
         ("stocknet", "stocknet_tickers", ">=", 87),
         ("train", "train_overhead_ratio", "<=", 1.10)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer epochs and refits (a few minutes)")
    p.add_argument("--skip", nargs="*", default=[], choices=["quality", "stocknet", "train"])
    p.add_argument("--only", nargs="*", default=[], choices=["quality", "stocknet", "train"],
                   help="run only these parts; the other parts' keys are kept from the existing --out file")
    p.add_argument("--train-reps", type=int, default=3, help="Ray runs (plain runs: one more, interleaved)")
    p.add_argument("--train-epochs", type=int, default=4, help="epochs per training run (the first is not timed)")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--sentiment-model", help="registry spec/folder of the sentiment classifier for StockNet tweets")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    if args.only:
        args.skip = [k for k in ("quality", "stocknet", "train") if k not in args.only]
    os.environ.setdefault("FINPULSE_HOME", tempfile.mkdtemp(prefix="bench-forecast-"))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    out: dict = {"quick": args.quick, "cpus": os.cpu_count(), "started": dt.datetime.now().isoformat(timespec="seconds")}
    if args.only and Path(args.out).exists():  # keep the parts not rerun, say when each part ran
        kept = json.loads(Path(args.out).read_text())
        out = {**{k: v for k, v in kept.items() if k not in args.only and k != "goals"},
               **out, "parts_rerun": args.only}
    steps = {"quality": bench_quality, "stocknet": bench_stocknet, "train": bench_train}
    needs_ray = {"train"} - set(args.skip)
    if needs_ray:
        import ray

        ray.init(num_cpus=os.cpu_count(), log_to_driver=False)
    try:
        for name, fn in steps.items():
            if name in args.skip:
                continue
            print(f"== {name}", flush=True)
            t = time.perf_counter()
            fn(args, out)
            out.setdefault(name, {})["step_s"] = time.perf_counter() - t
            out[name]["started"] = out["started"]
    finally:
        if needs_ray:
            import ray

            ray.shutdown()
    flat = {k: v for section in out.values() if isinstance(section, dict) for k, v in section.items()}
    out["goals"] = {key: {"value": flat.get(key), "goal": f"{op} {bound}",
                          "met": None if flat.get(key) is None else bool(flat[key] <= bound if op == "<=" else
                                                                         flat[key] >= bound)}
                    for _, key, op, bound in GOALS}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    print("\n| metric | value | goal | met |\n|---|---|---|---|")
    for key in ["mae_ratio_vs_persistence", "directional_accuracy", "dm_pvalue", "stocknet_test_accuracy",
                "stocknet_test_mcc", "stocknet_test_n", "stocknet_tickers", "train_overhead_ratio", "train_overhead_spread", "train_startup_s"]:
        g = out["goals"].get(key, {})
        v = flat.get(key)
        print(f"| {key} | {v if not isinstance(v, float) else round(v, 4)} | {g.get('goal', '')} | {g.get('met', '')} |")
    print(f"stocknet_sentiment_source: {flat.get('stocknet_sentiment_source')}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
