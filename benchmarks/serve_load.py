"""Serving load benchmark (make bench-serve): wrk against a local Serve, JSON in benchmarks/results/serve.json.

Cells: a trivial one-deployment endpoint (the ceiling), /v1/forecast, /v1/sentiment with 1 and 16
texts, /v1/signal, each at 8/32/64 connections; then sentiment with batching off (batch size 1 at
every hop). wrk (C, one thread) generates the load on loopback. Models: the registry champions when
they resolve, else the MiniLM encoder with an untrained head and an untrained LSTM of the default
size (same compute as trained ones; the answers are meaningless).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
LUA = """
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors":%d,"non2xx":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""
TEXT = "Shares of the company rallied after earnings beat estimates and guidance was raised"


def wrk(url: str, body: dict, connections: int, duration: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA.format(body=json.dumps(body)))
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", f.name, url],
                         capture_output=True, text=True, timeout=duration + 60)
    os.unlink(f.name)
    line = next(line for line in out.stdout.splitlines() if line.startswith("WRKJSON "))
    r = json.loads(line[len("WRKJSON "):])
    secs = r["duration_us"] / 1e6
    return {"rps": round(r["requests"] / secs, 1), "p50_ms": round(r["p50_us"] / 1000, 1),
            "p99_ms": round(r["p99_us"] / 1000, 1), "errors": r["errors"], "non2xx": r["non2xx"]}


def models(tmp: Path) -> dict:
    from finpulse.serving.testing import make_features, make_tiny_forecaster

    out = {}
    try:
        from finpulse import tracking

        tracking.resolve("finpulse-sentiment@champion")
        out["sentiment"] = "finpulse-sentiment@champion"
    except Exception:
        out["sentiment"] = "minilm"
    feats = make_features()
    feats.to_parquet(tmp / "features.parquet")
    out["features"] = str(tmp / "features.parquet")
    try:
        from finpulse import tracking

        tracking.resolve("finpulse-forecaster@champion")
        out["forecast"] = "finpulse-forecaster@champion"
    except Exception:
        out["forecast"] = str(make_tiny_forecaster(tmp / "fc", feats, "untrained-lstm-32", lookback=20, hidden_size=32))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, nargs="+", default=[8, 32, 64])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve.json"))
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "int8"],
                    help="SentimentModel precision, batched and unbatched alike (auto: bf16 where the CPU has it)")
    ap.add_argument("--throughput-optimized", action="store_true",
                    help="RAY_SERVE_THROUGHPUT_OPTIMIZED=1 for the whole local cluster (ceiling included)")
    a = ap.parse_args()
    if a.throughput_optimized:
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")

    import ray
    from ray import serve

    from finpulse.serving.canary import ServeConfigClient
    from finpulse.serving.testing import serve_config

    tmp = Path(tempfile.mkdtemp())
    m = models(tmp)
    ctx = ray.init(include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False)
    port = 18000
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    client = ServeConfigClient(f"http://{ctx.dashboard_url}")
    small = {"num_cpus": 0.25}
    deps = [{"name": n, "ray_actor_options": small} for n in ("Gateway", "SentimentModel", "Forecaster")]
    deps += [{"name": n, "ray_actor_options": {"num_cpus": 0.05}} for n in ("SentimentModelCanary", "ForecasterCanary")]
    cfg = serve_config({"sent_a": m["sentiment"], "fc_a": m["forecast"], "features": m["features"]}, port, deps)
    cfg["applications"][0]["route_prefix"] = "/"
    cfg["applications"][0]["args"]["sentiment_loader_kwargs"]["precision"] = a.precision
    cfg["applications"].append({"name": "ceiling", "route_prefix": "/ceiling",
                                "import_path": "finpulse.serving.testing:ceiling_app"})

    def deploy(c: dict) -> None:
        client.deploy(c)
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    st = serve.status().applications
                    if all(x.status == "RUNNING" for x in st.values()) and len(st) == 2:
                        return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise TimeoutError("app not running")

    deploy(cfg)
    base = f"http://127.0.0.1:{port}"
    cells = {
        "ceiling": (f"{base}/ceiling", {"x": 1}),
        "forecast": (f"{base}/v1/forecast", {"ticker": "AAPL"}),
        "sentiment1": (f"{base}/v1/sentiment", {"texts": [TEXT]}),
        "sentiment16": (f"{base}/v1/sentiment", {"texts": [TEXT] * 16}),
        "signal": (f"{base}/v1/signal", {"ticker": "AAPL", "texts": [TEXT] * 4}),
    }
    from finpulse.sentiment.model import resolve_precision

    results: dict = {"models": m, "duration_s": a.duration, "cpus": os.cpu_count(), "cells": {},
                     "sentiment_precision": resolve_precision(a.precision),
                     "throughput_optimized": a.throughput_optimized}
    for name, (url, body) in cells.items():
        wrk(url, body, 8, 2)  # warm-up
        for c in a.connections:
            r = wrk(url, body, c, a.duration)
            results["cells"][f"{name}_c{c}"] = r
            print(f"{name:12s} c={c:<3d} rps={r['rps']:8.1f} p50={r['p50_ms']:7.1f}ms p99={r['p99_ms']:7.1f}ms "
                  f"errors={r['errors']} non2xx={r['non2xx']}", flush=True)

    # batching off: batch size 1 at the Gateway hop and in the model
    off = json.loads(json.dumps(cfg))
    gw = next(d for d in off["applications"][0]["deployments"] if d["name"] == "Gateway")
    gw["user_config"] = {"max_batch_size": 1}
    sm = next(d for d in off["applications"][0]["deployments"] if d["name"] == "SentimentModel")
    sm["user_config"] = {"model": m["sentiment"], "loader_kwargs": {"threads": 1, "precision": a.precision},
                         "max_batch_size": 1}
    deploy(off)
    time.sleep(3)
    wrk(cells["sentiment1"][0], cells["sentiment1"][1], 8, 2)
    r = wrk(cells["sentiment1"][0], cells["sentiment1"][1], 32, a.duration)
    results["cells"]["sentiment1_unbatched_c32"] = r
    print(f"{'sentiment1 unbatched':12s} c=32  rps={r['rps']:8.1f} p50={r['p50_ms']:7.1f}ms p99={r['p99_ms']:7.1f}ms")

    cl = results["cells"]
    summary = {
        "ceiling_rps_c32": cl["ceiling_c32"]["rps"],
        "forecast_rps_c32": cl["forecast_c32"]["rps"],
        "forecast_p99_ms_c32": cl["forecast_c32"]["p99_ms"],
        "forecast_ratio_to_ceiling": round(cl["forecast_c32"]["rps"] / cl["ceiling_c32"]["rps"], 3),
        "signal_rps_c32": cl["signal_c32"]["rps"],
        "sentiment_batched_texts_per_s": cl["sentiment1_c32"]["rps"],
        "sentiment16_texts_per_s": round(cl["sentiment16_c32"]["rps"] * 16, 1),
        "sentiment_unbatched_texts_per_s": cl["sentiment1_unbatched_c32"]["rps"],
    }
    summary["batching_ratio"] = round(summary["sentiment_batched_texts_per_s"]
                                      / max(summary["sentiment_unbatched_texts_per_s"], 1e-9), 2)
    summary["goals"] = {"forecast_ge_0.6x_ceiling": summary["forecast_ratio_to_ceiling"] >= 0.6,
                        "forecast_ge_150rps": summary["forecast_rps_c32"] >= 150,
                        "forecast_p99_le_300ms": summary["forecast_p99_ms_c32"] <= 300,
                        "batching_ge_3x": summary["batching_ratio"] >= 3}
    results.update(summary)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(summary, indent=2))
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
