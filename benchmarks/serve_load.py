"""Serving load benchmark (make bench-serve): wrk against the deployment `make demo` runs, JSON in
benchmarks/results/serve.json.

What is measured: `serve_configs/local.yaml` as `finpulse serve` resolves it, over the FinPulse home's
registry champions (`finpulse-sentiment@champion`, `finpulse-forecaster@champion`) and the ETL's curated
features; without champions in the home, they are first built the demo's way (benchmarks/_serve_setup.py).
Every request body is picked at random from a pregenerated list (tickers, as-of days that have features,
real post texts). Beside it in the same Ray, the ceiling: one trivial deployment that reads the body and
answers a small JSON, loaded with the same forecast bodies. Headline: /v1/forecast vs the ceiling at 32
connections, repeated and interleaved (ceiling, forecast, ceiling, ...), median and spread. Then each
route (and GET /healthz) at 8/32/64 connections once, and sentiment with batching off. wrk (C, one thread) on loopback.
Every request carries an API key made for the run (its own rate far above the load): the Gateway checks
it and takes a token from its bucket per request, as for any user, and never answers 429.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve_setup import ROOT, bench_key, ensure_home, lua_script, request_bodies

CONFIG = "serve_configs/local.yaml"
PORT = 18000
API_KEY, KEYS_ENV = bench_key()  # every request carries it: the key check is part of what is measured
AUTH = {"X-API-Key": API_KEY}


def wrk(url: str, bodies: list[dict], connections: int, duration: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua_script(bodies, API_KEY))
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", f.name,  # noqa: S603, S607 - wrk from PATH (Debian), fixed argv, no shell
                              url], capture_output=True, text=True, timeout=duration + 60)
    finally:
        os.unlink(f.name)
    line = next(line for line in out.stdout.splitlines() if line.startswith("WRKJSON "))
    r = json.loads(line[len("WRKJSON "):])
    secs = r["duration_us"] / 1e6
    return {"rps": round(r["requests"] / secs, 1), "p50_ms": round(r["p50_us"] / 1000, 1),
            "p99_ms": round(r["p99_us"] / 1000, 1), "errors": r["errors"], "non2xx": r["non2xx"]}


def _show(name: str, c: int, r: dict) -> None:
    print(f"{name:22s} c={c:<3d} rps={r['rps']:8.1f} p50={r['p50_ms']:7.1f}ms p99={r['p99_ms']:7.1f}ms "
          f"errors={r['errors']} non2xx={r['non2xx']}", flush=True)


def _config(precision: str) -> dict:
    """local.yaml as `finpulse serve` resolves it, on the bench port, plus the ceiling application."""
    from finpulse.serving.launch import resolve_config

    cfg = resolve_config(ROOT / CONFIG, PORT)
    env = cfg["applications"][0]["runtime_env"]["env_vars"]
    env.update(KEYS_ENV)  # the bench's own key file, not the home's
    if precision != "auto":
        cfg["applications"][0]["args"]["sentiment_loader_kwargs"]["precision"] = precision
    cfg["applications"].append({"name": "ceiling", "route_prefix": "/ceiling",
                                "import_path": "tests.support.serving:ceiling_app"})
    return cfg


def _deploy(client, cfg: dict, timeout: float = 900) -> None:
    from ray import serve

    client.deploy(cfg)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{PORT}/healthz", timeout=5).status_code == 200:
                st = serve.status().applications
                if len(st) == 2 and all(x.status == "RUNNING" for x in st.values()):
                    return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise TimeoutError("app not running")


def _check_bodies(base: str, bodies: dict[str, list[dict]]) -> None:
    """Every forecast body answers 200 (as-of days with features), before any load is measured."""
    with requests.Session() as s:
        s.headers.update(AUTH)
        bad = [b for b in bodies["forecast"] if s.post(f"{base}/v1/forecast", json=b, timeout=30).status_code != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} forecast bodies do not answer 200, e.g. {bad[:3]}")


def _spread(values: list[float]) -> float:
    """(max - min) / median: how far apart the repeats were."""
    return round((max(values) - min(values)) / statistics.median(values), 3)


def headline(base: str, bodies: dict, repeats: int, duration: int) -> dict:
    """Ceiling and /v1/forecast at 32 connections, interleaved; per-pair ratios, median and spread."""
    runs: dict[str, list[dict]] = {"ceiling": [], "forecast": []}
    for i in range(repeats):
        for name, url in (("ceiling", f"{base}/ceiling"), ("forecast", f"{base}/v1/forecast")):
            r = wrk(url, bodies["forecast"], 32, duration)
            runs[name].append(r)
            _show(f"{name} #{i + 1}", 32, r)
    rps_ratio = [f["rps"] / c["rps"] for c, f in zip(runs["ceiling"], runs["forecast"], strict=True)]
    p99_ratio = [f["p99_ms"] / c["p99_ms"] for c, f in zip(runs["ceiling"], runs["forecast"], strict=True)]
    out: dict = {"runs_c32": runs}
    for name in runs:
        for k in ("rps", "p99_ms"):
            vals = [r[k] for r in runs[name]]
            out[f"{name}_{k.removesuffix('_ms')}_c32_median"] = round(statistics.median(vals), 1)
            out[f"{name}_{k.removesuffix('_ms')}_c32_spread"] = _spread(vals)
    out.update({"forecast_ratio_vs_ceiling": round(statistics.median(rps_ratio), 3),
                "forecast_ratio_spread": [round(min(rps_ratio), 3), round(max(rps_ratio), 3)],
                "forecast_p99_ratio_vs_ceiling": round(statistics.median(p99_ratio), 3),
                "forecast_p99_ratio_spread": [round(min(p99_ratio), 3), round(max(p99_ratio), 3)]})
    return out


def route_cells(base: str, bodies: dict, connections: list[int], duration: int) -> dict:
    """Each route once per connection count (the ceiling with the forecast bodies)."""
    cells = {"ceiling": (f"{base}/ceiling", bodies["forecast"]), "forecast": (f"{base}/v1/forecast", bodies["forecast"]),
             "sentiment1": (f"{base}/v1/sentiment", bodies["sentiment1"]),
             "sentiment16": (f"{base}/v1/sentiment", bodies["sentiment16"]),
             "signal": (f"{base}/v1/signal", bodies["signal"]), "healthz": (f"{base}/healthz", [])}
    out = {}
    for name, (url, b) in cells.items():
        wrk(url, b, 8, 2)  # warm-up
        for c in connections:
            out[f"{name}_c{c}"] = r = wrk(url, b, c, duration)
            _show(name, c, r)
    return out


def unbatched(client, cfg: dict, base: str, bodies: dict, duration: int) -> dict:
    """Sentiment with batch size 1 at the Gateway hop and in the model, same config otherwise."""
    from finpulse.serving.app import AppArgs, default_user_configs

    off = json.loads(json.dumps(cfg))
    app = off["applications"][0]
    uc = default_user_configs(AppArgs(**app["args"]))
    for d in app["deployments"]:
        if d["name"] in ("Gateway", "SentimentModel"):
            d["user_config"] = {**uc[d["name"]], "max_batch_size": 1}
    _deploy(client, off)
    time.sleep(3)
    wrk(f"{base}/v1/sentiment", bodies["sentiment1"], 8, 2)
    r = wrk(f"{base}/v1/sentiment", bodies["sentiment1"], 32, duration)
    _show("sentiment1 unbatched", 32, r)
    return r


def summarize(results: dict) -> dict:
    cl = results["cells"]
    h = results["headline"]
    s = {"ceiling_rps_c32": h["ceiling_rps_c32_median"], "forecast_rps_c32": h["forecast_rps_c32_median"],
         "forecast_p99_ms_c32": h["forecast_p99_c32_median"], "ceiling_p99_ms_c32": h["ceiling_p99_c32_median"],
         "forecast_ratio_vs_ceiling": h["forecast_ratio_vs_ceiling"],
         "forecast_ratio_spread": h["forecast_ratio_spread"],
         "forecast_p99_ratio_vs_ceiling": h["forecast_p99_ratio_vs_ceiling"],
         "forecast_p99_ratio_spread": h["forecast_p99_ratio_spread"],
         "signal_rps_c32": cl["signal_c32"]["rps"],
         "healthz_ratio_vs_ceiling_c8": round(cl["healthz_c8"]["rps"] / cl["ceiling_c8"]["rps"], 3), "sentiment_batched_texts_per_s": cl["sentiment1_c32"]["rps"],
         "sentiment16_texts_per_s": round(cl["sentiment16_c32"]["rps"] * 16, 1),
         "sentiment_unbatched_texts_per_s": cl["sentiment1_unbatched_c32"]["rps"]}
    s["batching_ratio"] = round(s["sentiment_batched_texts_per_s"] / max(s["sentiment_unbatched_texts_per_s"], 1e-9), 2)
    s["goals"] = {"forecast_ge_0.8x_ceiling": s["forecast_ratio_vs_ceiling"] >= 0.8,
                  "forecast_p99_le_1.5x_ceiling": s["forecast_p99_ratio_vs_ceiling"] <= 1.5,
                  "batching_ge_3x": s["batching_ratio"] >= 3}
    return s


def deployment(base: str, home: dict, cfg: dict) -> dict:
    """What was measured: the config file, the model versions the running app reports, the features."""
    m = requests.get(f"{base}/v1/models", headers=AUTH, timeout=30).json()["models"]
    args = cfg["applications"][0]["args"]
    fc = m["forecast"]["stable"]
    return {"config": CONFIG, **home,
            "sentiment": {"spec": args["sentiment_model"], "version": m["sentiment"]["stable"].get("version")},
            "forecast": {"spec": args["forecast_model"], "version": fc.get("version")},
            "features": {k: fc.get("features", {}).get(k) for k in ("rows", "tickers")}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved ceiling/forecast runs at 32 connections")
    ap.add_argument("--connections", type=int, nargs="+", default=[8, 32, 64])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve.json"))
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "int8"],
                    help="SentimentModel precision (local.yaml: auto = bf16 where the CPU has it)")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    home = ensure_home()
    bodies = request_bodies()

    import ray

    from finpulse.sentiment.model import resolve_precision
    from finpulse.serving.canary import ServeConfigClient

    ctx = ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False)
    try:
        client = ServeConfigClient(f"http://{ctx.dashboard_url}")
        from ray import serve

        serve.start(http_options={"host": "127.0.0.1", "port": PORT})
        cfg = _config(a.precision)
        _deploy(client, cfg)
        base = f"http://127.0.0.1:{PORT}"
        _check_bodies(base, bodies)
        results: dict = {"deployment": deployment(base, home, cfg), "duration_s": a.duration, "repeats": a.repeats,
                         "cpus": os.cpu_count(), "sentiment_precision": resolve_precision(a.precision),
                         "bodies": {k: len(v) for k, v in bodies.items()}}
        for b in ("ceiling", "forecast"):  # warm-up
            wrk(f"{base}/{'ceiling' if b == 'ceiling' else 'v1/forecast'}", bodies["forecast"], 32, 3)
        results["headline"] = headline(base, bodies, a.repeats, a.duration)
        results["cells"] = route_cells(base, bodies, a.connections, a.duration)
        results["cells"]["sentiment1_unbatched_c32"] = unbatched(client, cfg, base, bodies, a.duration)
        summary = summarize(results)
        results.update(summary)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(summary, indent=2))
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
