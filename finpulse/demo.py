"""`make demo`: the main job on the embedded defaults, end to end on a local Ray.

Stages: ETL of the shipped prices and synthetic posts -> sentiment fine-tune on VADER labels,
batch scoring, features rebuilt with model scores -> forecaster training, walk-forward evaluation,
registration and promotion -> the Serve application answering until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os

import pandas as pd

from finpulse.config import get_settings
from finpulse.data.embedded import DataPaths, data_paths, stage_embedded
from finpulse.data.etl import EtlResult, load_dataset, run_etl


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
    if scores_uri is None:
        stage_embedded(paths, posts_per_day=posts_per_day, signal_strength=signal_strength)
    result = run_etl(paths.raw_prices, paths.raw_posts, paths.curated, scores_uri=scores_uri)
    etl_summary(result)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts-per-day", type=float, default=6.0)
    ap.add_argument("--signal-strength", type=float, default=0.3,
                    help="planted next-day signal in the synthetic posts (0 = none)")
    ap.add_argument("--no-serve", action="store_true", help="stop after training instead of serving")
    args = ap.parse_args(argv)

    import ray

    s = get_settings()
    os.makedirs(s.home, exist_ok=True)
    ray.init(address=s.ray_address, log_to_driver=False, include_dashboard=s.ray_address is None or None)
    ray.data.DataContext.get_current().enable_progress_bars = False
    paths = data_paths(s)

    banner("1. ETL: shipped real prices + synthetic posts (labelled synthetic) -> daily features")
    run_etl_stage(paths, signal_strength=args.signal_strength, posts_per_day=args.posts_per_day)


if __name__ == "__main__":
    main()
