"""Dashboard first render: seconds from a cold cache to a fully rendered page, per page, on the demo's
data scaled to ``--posts`` posts (default 1M; the issue's goal is <= 3 s a page).

The data is made as ``make demo`` makes it (shipped prices, synthetic posts, the Ray ETL) in its own
home (``--home``; reused when it already holds that many posts). Each page then runs ``--repeats``
times in Streamlit's headless ``AppTest`` after clearing every Streamlit cache (a cold first render:
parquet reads and aggregations included), and once more with warm caches (what a filter change costs).
Writes ``benchmarks/results/dashboard.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import time
from pathlib import Path

import pandas as pd
from _common import print_table, write_result

PAGES = ("posts", "signal", "models", "live", "quality")


def prepare(home: Path, posts: int) -> dict:
    """The demo's inputs at ``posts`` posts through the Ray ETL (skipped when ``home`` already has them)."""
    from finpulse import pipeline
    from finpulse.data import catalog
    from finpulse.paths import DataPaths

    paths = DataPaths(str(home / "data"))
    try:
        m = catalog.load_manifest(paths.curated)
        if m["counts"]["posts"]["rows_in"] >= 0.95 * posts:
            return {"reused": True, "etl_seconds": m.get("seconds"), "manifest": m}
    except FileNotFoundError:
        pass
    import ray

    from finpulse.data.embedded import stage_embedded

    t = time.time()
    stage_embedded(paths, posts_per_day=posts_per_day_for(posts), files=max(4, posts // 100_000),
                   signal_strength=pipeline.PipelineOptions().signal_strength)
    staged_s = time.time() - t
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    t = time.time()
    curated = pipeline.run_etl(paths)
    etl_s = time.time() - t
    ray.shutdown()
    return {"reused": False, "stage_seconds": round(staged_s, 1), "etl_seconds": round(etl_s, 1),
            "manifest": curated.manifest}


def posts_per_day_for(posts: int, start: dt.date = dt.date(2018, 1, 1), duplicate_rate: float = 0.01) -> float:
    """The generator's ``posts_per_day`` that gives ``posts`` posts from ``start`` (stage_embedded's): a
    day's expected count is posts_per_day * (0.6 + 0.4 * min(|z move|, 3)), plus the re-posts."""
    import numpy as np

    from finpulse.data.synthetic import daily_latent
    from finpulse.resources import load_prices

    days = daily_latent(load_prices(), signal_strength=0.0, reaction=0.0, noise=0.0, rng=np.random.default_rng(0))
    weight = (0.6 + 0.4 * np.minimum(days.loc[days["date"] >= pd.Timestamp(start), "abs_move"], 3.0)).sum()
    return posts / weight / (1 + duplicate_rate)


def render_once(module: str) -> float:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string(f"from finpulse.dashboard.pages import {module}\n{module}.render()", default_timeout=300)
    t = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - t
    if at.exception or at.error:
        raise RuntimeError(f"{module}: {[e.value for e in [*at.exception, *at.error]]}")
    return seconds


def clear_caches() -> None:
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


def browser_loads(screenshot: str | None) -> dict[str, dict[str, float]]:
    """On a freshly started server: seconds of each page's first render in the server (``launch.warm_up``,
    cold caches, as ``finpulse dashboard`` and the demo start it), then seconds until each page settles in
    headless Chromium (its first visit; the probe's settle window subtracted). Optionally saves the first page."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _common import free_port

    from finpulse.dashboard import launch
    from finpulse.dashboard.app import PAGES, URL_PATHS
    from tests.support.headless_chromium import chromium

    proc, url = launch.start(free_port(), log_file=Path(os.environ["FINPULSE_HOME"]) / "logs" / "dashboard.log",
                             warm=False)
    out: dict[str, float] = {}
    try:
        server = launch.warm_up(url)
        with chromium(width=1400, height=1000) as tab:
            for (_, _, name, _), path in zip(PAGES, URL_PATHS, strict=True):
                t = time.perf_counter()
                state = tab.load(f"{url}/{path}", settle=1.0)
                out[name] = round(time.perf_counter() - t - 1.0, 2)
                if state["exceptions"] or state["errors"]:
                    raise RuntimeError(f"{name}: {state['text'][:500]}")
                if screenshot and name == PAGES[0][2]:
                    Path(screenshot).write_bytes(tab.screenshot())
    finally:
        launch.stop(proc)
    return {"server_cold_render_s": server, "browser_first_load_after_warm_up_s": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--home", default=str(Path(__file__).resolve().parents[1] / ".finpulse" / "bench" / "dashboard"))
    ap.add_argument("--models-home", default=str(Path(__file__).resolve().parents[1] / ".finpulse"),
                    help="a FinPulse home where `make demo` ran: its MLflow registry fills the Models page")
    ap.add_argument("--browser", action="store_true", help="Also time each page's first load in headless Chromium.")
    ap.add_argument("--screenshot", default=None, help="With --browser: save the first page's screenshot here.")
    args = ap.parse_args()
    home = Path(args.home).resolve()
    os.environ.update({"FINPULSE_HOME": str(home), "FINPULSE_DATA_ROOT": str(home / "data"),
                       "RAY_USAGE_STATS_ENABLED": "0"})
    data = prepare(home, args.posts)
    models_db = Path(args.models_home).resolve() / "mlflow.db"
    if models_db.exists():  # the 1M-post home has no models: read the demo's registry and runs
        os.environ["FINPULSE_MLFLOW_TRACKING_URI"] = f"sqlite:///{models_db}"
    m = data.pop("manifest")
    render_once("models")  # imports (plotly, scipy, pyarrow) are not a page's render
    cold: dict[str, list[float]] = {}
    warm: dict[str, float] = {}
    for page in PAGES:
        cold[page] = []
        for _ in range(args.repeats):
            clear_caches()
            cold[page].append(render_once(page))
        warm[page] = render_once(page)
    result = {
        "posts": m["counts"]["posts"]["rows_out"], "posts_in": m["counts"]["posts"]["rows_in"],
        "tickers": len(m["tickers"]), "price_days": m["counts"]["prices"]["rows_out"], "etl_version": m["version"],
        "data": data, "repeats": args.repeats, "method": "streamlit AppTest, every st cache cleared before each run",
        "first_render_s": {p: {"median": round(statistics.median(v), 3), "min": round(min(v), 3),
                               "max": round(max(v), 3)} for p, v in cold.items()},
        "warm_render_s": {p: round(v, 3) for p, v in warm.items()},
        "goal_s": 3.0, "cpus": os.cpu_count(),
        "models_from": os.environ.get("FINPULSE_MLFLOW_TRACKING_URI", "the bench home (empty registry)"),
    }
    if args.browser:
        result.update(browser_loads(args.screenshot))
    result["meets_goal"] = all(v["median"] <= 3.0 for v in result["first_render_s"].values())
    write_result("dashboard", result)
    print_table([(f"{p} first (median)", v["median"]) for p, v in result["first_render_s"].items()]
                + [(f"{p} warm", v) for p, v in warm.items()], f"dashboard renders, {result['posts']:,} posts")


if __name__ == "__main__":
    main()
