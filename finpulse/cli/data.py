"""Data commands: the ETL, its manifest, and the main job's chain."""

from __future__ import annotations

from typing import Annotated

import typer

from finpulse.cli._app import app, print_json

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
    print_json({"version": result.version, "out": result.out_uri, "counts": result.manifest["counts"]})


@app.command()
def manifest(out: Annotated[str | None, typer.Option(help="ETL output URI; default <data_root>/curated.")] = None
             ) -> None:
    """Print the manifest of the latest complete ETL version."""
    from finpulse.data.catalog import load_manifest
    from finpulse.paths import data_paths

    print_json(load_manifest(out or data_paths().curated))
