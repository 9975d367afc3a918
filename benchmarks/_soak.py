"""The soak for `make bench-reliability`: locust (headless, benchmarks/locustfile.py) at a fixed request
rate for minutes, its HTML report and CSVs kept in benchmarks/results/soak/, and the resident memory of
every Ray and Serve process sampled through the run.

Memory growth per process is measured from the first sample after the warm-up minute to the last one
(the first minute loads models and fills caches). p99 per minute is the median of locust's rolling p99.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

USERS = 20
WARMUP_S = 60
SAMPLE_S = 15
RAY_DAEMONS = ("raylet", "gcs_server")


def _processes() -> dict[int, str]:
    """pid -> name of each Serve actor (controller, proxy, replicas) and the Ray daemons."""
    from ray.util.state import list_actors

    out = {a.pid: a.class_name for a in list_actors(filters=[("state", "=", "ALIVE")])
           if a.pid and ("Serve" in a.class_name or "Proxy" in a.class_name)}
    for p in psutil.process_iter(["pid", "name"]):
        if p.info["name"] in RAY_DAEMONS:
            out[p.info["pid"]] = p.info["name"]
    return out


def _sample(procs: dict[int, str]) -> dict[str, float]:
    rss = {}
    for pid, name in procs.items():
        try:
            rss[f"{name}[{pid}]"] = psutil.Process(pid).memory_info().rss / 2**20
        except psutil.Error:
            rss[f"{name}[{pid}]"] = float("nan")  # gone: shows up as NaN growth
    return rss


class MemorySampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.procs, self.samples, self.stop = _processes(), [], threading.Event()
        self.t0 = time.perf_counter()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((round(time.perf_counter() - self.t0, 1), _sample(self.procs)))
            self.stop.wait(SAMPLE_S)

    def growth(self) -> dict[str, float]:
        base = next(s for t, s in self.samples if t >= WARMUP_S) if self.samples[-1][0] >= WARMUP_S else self.samples[0][1]
        last = self.samples[-1][1]
        return {k: round((last[k] - base[k]) / base[k], 4) for k in base}


def _minute_p99(history_csv: Path) -> list[float]:
    rows = [r for r in csv.DictReader(history_csv.open()) if r["Name"] == "Aggregated" and r["99%"] not in ("N/A", "")]
    if not rows:
        return []
    t0 = int(rows[0]["Timestamp"])
    per: dict[int, list[float]] = {}
    for r in rows:
        per.setdefault((int(r["Timestamp"]) - t0) // 60, []).append(float(r["99%"]))
    return [statistics.median(v) for _, v in sorted(per.items())]


def _totals(stats_csv: Path) -> dict:
    agg = next(r for r in csv.DictReader(stats_csv.open()) if r["Name"] == "Aggregated")
    return {"requests": int(agg["Request Count"]), "failures": int(agg["Failure Count"]),
            "rps": round(float(agg["Requests/s"]), 1), "p50_ms": float(agg["50%"]), "p99_ms": float(agg["99%"])}


def soak(base: str, bodies: dict, rate: float, seconds: int, out_dir: Path, api_key: str | None = None) -> dict:
    """locust at ``rate`` requests/s for ``seconds`` against ``base``; figures for reliability.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bodies.json").write_text(json.dumps(bodies))
    env = {**os.environ, "FINPULSE_LOCUST_BODIES": str(out_dir / "bodies.json"),
           "FINPULSE_LOCUST_USER_RPS": str(rate / USERS), **({"FINPULSE_API_KEY": api_key} if api_key else {})}
    sampler = MemorySampler()
    sampler.start()
    print(f"soak: {rate:.0f} requests/s for {seconds} s (locust, {USERS} users)", flush=True)
    cmd = [sys.executable, "-m", "locust", "-f", str(Path(__file__).parent / "locustfile.py"), "--headless",
           "-u", str(USERS), "-r", str(USERS), "-t", f"{seconds}s", "--host", base, "--html", str(out_dir / "soak.html"),
           "--csv", str(out_dir / "soak"), "--csv-full-history", "--only-summary", "--loglevel", "WARNING"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 300)  # noqa: S603 - fixed argv
    (out_dir / "locust.log").write_text(proc.stdout + proc.stderr)
    sampler.stop.set()
    sampler.join()
    totals = _totals(out_dir / "soak_stats.csv")
    p99 = _minute_p99(out_dir / "soak_stats_history.csv")
    growth = sampler.growth()
    worst = max(growth, key=lambda k: growth[k] if growth[k] == growth[k] else float("inf"))
    return {"soak_s": seconds, "soak_rate_target": round(rate, 1), "soak_rps": totals["rps"],
            "soak_requests": totals["requests"], "soak_errors": totals["failures"], "soak_p99_ms": totals["p99_ms"],
            "soak_p99_ms_per_minute": p99,
            "soak_p99_last_over_first": round(p99[-1] / p99[1], 2) if len(p99) > 2 else None,
            "soak_rss_growth": growth[worst], "soak_rss_growth_worst": worst, "rss_growth": growth,
            "rss_samples_mb": [(t, {k: round(v, 1) for k, v in s.items()}) for t, s in sampler.samples],
            "report": str(out_dir / "soak.html")}
