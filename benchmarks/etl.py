"""ETL benchmark: the Ray Data ETL against a single-process pandas run of the same transformations.

1M synthetic posts (written to CSV files first, not timed) plus the five shipped tickers' prices.
Both sides run the same pure functions (finpulse.data.curate / features) and write the same
outputs. The Ray ETL runs twice over the 1M input: the first (cold) run pays worker start-up and
imports, the second (warm) is the headline `ratio`; both are reported. Then the Ray ETL runs over
5M posts to show that memory does not grow with the input.

Memory: peak RSS of the driver plus every Ray process, sampled every 0.2 s during a run; the `net`
figures subtract the RSS of Ray's processes (head, raylet, idle workers) measured while idle just
before that run, so 1M and 5M compare the memory the run itself adds (the driver counted on both
sides). pandas runs in a fresh process; its peak is the kernel's maximum RSS of that process.

    python benchmarks/etl.py [--posts 1000000] [--big-posts 5000000] [--rows-per-file 50000]

Prints a table and writes benchmarks/results/etl.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import TreeMemorySampler, print_table, write_result

from finpulse import storage
from finpulse.data import etl, reference, sources, synthetic
from finpulse.data.schemas import DAILY_FEATURES, SCORED_POSTS, to_table
from finpulse.resources import load_prices


def stage(root: Path, n_posts: int, rows_per_file: int, seed: int = 0) -> tuple[str, str]:
    """Write prices as Yahoo CSVs and ``n_posts`` synthetic posts as CSV files of ``rows_per_file``,
    generated in chunks so that staging 5M posts needs no more memory than 1M."""
    prices = load_prices()
    reference.write_prices_csv(prices, str(root / "prices"))
    ticker_days = len(prices)
    chunk = 1_000_000
    written, file_no = 0, 0
    for c in range((n_posts + chunk - 1) // chunk):
        want = min(chunk, n_posts - written)
        # the generator's daily counts average below posts_per_day (quiet days): oversample, then cut
        posts = synthetic.generate_posts(prices, posts_per_day=1.4 * want / ticker_days, seed=seed + c,
                                         duplicate_rate=0.01)
        posts = posts.iloc[:want]
        for i in range(0, len(posts), rows_per_file):
            blob = synthetic.to_posts_csv(posts.iloc[i:i + rows_per_file], corrupt_rate=0.001, seed=file_no)
            (root / "posts").mkdir(parents=True, exist_ok=True)
            (root / "posts" / f"posts-{file_no:05d}.csv").write_bytes(blob)
            file_no += 1
        written += len(posts)
    return str(root / "prices"), str(root / "posts")


def pandas_etl(prices_dir: str, posts_dir: str, out: Path) -> dict:
    """The same transformations in one process: read everything, transform, write per ticker."""
    raw_prices = pd.concat([sources.read_price_file(f, storage.read_bytes(f)) for f in storage.list_files(prices_dir)],
                           ignore_index=True)
    raw_posts = pd.concat([sources.read_posts_csv(storage.read_bytes(f), f) for f in storage.list_files(posts_dir)],
                          ignore_index=True)
    res = reference.build_pandas(raw_prices, raw_posts)
    for name, frame, schema in (("scored_posts", res["scored_posts"], SCORED_POSTS),
                                ("daily_features", res["daily_features"], DAILY_FEATURES)):
        for ticker, g in frame.groupby("ticker"):
            storage.write_table(str(out / name / f"ticker={ticker}" / "part-0.parquet"), to_table(g, schema))
    return {k: vars(v) for k, v in res["counts"].items()}


def ray_processes_rss() -> int:
    """Summed RSS of this driver's descendants (the Ray head, raylet and idle workers) right now."""
    total = 0
    for child in psutil.Process().children(recursive=True):
        try:
            total += child.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def measured_ray_run(prices: str, posts: str, out: str) -> tuple[object, float, TreeMemorySampler, int]:
    """One Ray ETL with the process tree's memory sampled; also Ray's idle processes just before."""
    time.sleep(2.0)  # let the previous run's tasks finish returning memory
    idle = ray_processes_rss()
    with TreeMemorySampler(interval=0.2) as mem:
        t = time.time()
        res = etl.run_etl(prices, posts, out)
        seconds = time.time() - t
    return res, seconds, mem, idle


def pandas_in_subprocess(prices: str, posts: str, out: Path) -> dict:
    """The pandas reference in a fresh process, so its peak RSS (kernel's ru_maxrss) is its own."""
    proc = subprocess.run([sys.executable, __file__, "--pandas-only", prices, posts, str(out)],  # noqa: S603 - this script, no shell
                          check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pandas_only(prices: str, posts: str, out: str) -> None:
    t = time.time()
    counts = pandas_etl(prices, posts, Path(out))
    seconds = time.time() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"counts": counts, "seconds": seconds, "peak_rss": peak}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=1_000_000)
    ap.add_argument("--big-posts", type=int, default=5_000_000)
    ap.add_argument("--rows-per-file", type=int, default=50_000)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--pandas-only", nargs=3, metavar=("PRICES", "POSTS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pandas_only:
        pandas_only(*args.pandas_only)
        return

    import ray

    load_before = os.getloadavg()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="finpulse-bench-etl-"))
    t = time.time()
    small = stage(work / "raw-1m", args.posts, args.rows_per_file)
    big = stage(work / "raw-5m", args.big_posts, args.rows_per_file, seed=100) if args.big_posts else None
    stage_s = time.time() - t

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    # cold: the first run on a fresh cluster pays worker start-up and imports (a fixed cost, reported
    # apart like Ray Train's start-up); the headline ratio is the warm rerun on the same input
    t = time.time()
    etl.run_etl(*small, str(work / "out-ray-1m-cold"))
    ray_cold_s = time.time() - t
    shutil.rmtree(work / "out-ray-1m-cold", ignore_errors=True)
    res, ray_s, mem_1m, idle_1m = measured_ray_run(*small, str(work / "out-ray-1m"))
    rows_in = res.manifest["counts"]["posts"]["rows_in"] + res.manifest["counts"]["prices"]["rows_in"]
    mem_5m = None
    if big:
        res_big, ray_big_s, mem_5m, idle_5m = measured_ray_run(*big, str(work / "out-ray-5m"))
    ray.shutdown()

    pandas_run = pandas_in_subprocess(*small, work / "out-pandas-1m")
    pandas_counts, pandas_s = pandas_run["counts"], pandas_run["seconds"]
    if pandas_counts["posts"]["rows_out"] != res.manifest["counts"]["posts"]["rows_out"]:
        raise RuntimeError("the pandas reference and the Ray ETL kept different posts")

    result = {
        "posts_1m": args.posts, "posts_5m": args.big_posts, "rows_in_1m": rows_in, "cpus": os.cpu_count(),
        "ray_seconds": round(ray_s, 2), "pandas_seconds": round(pandas_s, 2),
        "ray_rows_per_s": round(rows_in / ray_s), "pandas_rows_per_s": round(rows_in / pandas_s),
        "ratio": round(pandas_s / ray_s, 3),
        "ray_seconds_cold": round(ray_cold_s, 2), "ratio_cold": round(pandas_s / ray_cold_s, 3),
        "peak_rss_mb_1m": round(mem_1m.peak_rss / 2**20), "peak_pss_mb_1m": round(mem_1m.peak_pss / 2**20),
        "ray_idle_rss_mb_before_1m": round(idle_1m / 2**20),
        "peak_rss_mb_net_1m": round((mem_1m.peak_rss - idle_1m) / 2**20),
        "pandas_peak_rss_mb": round(pandas_run["peak_rss"] / 2**20),
        "counts_1m": res.manifest["counts"], "stage_seconds": round(stage_s, 1),
        "loadavg_before_after": [load_before, os.getloadavg()],  # a shared box: others' load, for context
    }
    if mem_5m is not None:
        rows_big = res_big.manifest["counts"]["posts"]["rows_in"] + res_big.manifest["counts"]["prices"]["rows_in"]
        result.update({
            "peak_rss_mb_5m": round(mem_5m.peak_rss / 2**20), "peak_pss_mb_5m": round(mem_5m.peak_pss / 2**20),
            "ray_idle_rss_mb_before_5m": round(idle_5m / 2**20),
            "peak_rss_mb_net_5m": round((mem_5m.peak_rss - idle_5m) / 2**20),
            "memory_ratio_net_5m_vs_1m": round((mem_5m.peak_rss - idle_5m) / (mem_1m.peak_rss - idle_1m), 3),
            "ray_seconds_5m": round(ray_big_s, 2), "ray_rows_per_s_5m": round(rows_big / ray_big_s),
            "memory_ratio_5m_vs_1m": round(mem_5m.peak_rss / mem_1m.peak_rss, 3),
            "memory_ratio_5m_vs_1m_pss": round(mem_5m.peak_pss / mem_1m.peak_pss, 3),
        })
    path = write_result("etl", result)
    print_table([(k, v) for k, v in result.items() if not isinstance(v, dict)], "ETL benchmark (goal: ratio >= 1.5; "
                "5M peak memory within 1.5x of 1M)")
    print(f"\nwritten {path}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
