"""Reliability benchmark (make bench-reliability): the service under overload, a killed replica, a soak and
a fuzzer, JSON in benchmarks/results/reliability.json.

What is measured: `serve_configs/local.yaml` as `finpulse serve` resolves it (its bounded queues and
backpressure settings included), over the FinPulse home's registry champions (built the demo's way when
missing, benchmarks/_serve_setup.py), on 2 cores. Every request body is picked at random from a
pregenerated list (tickers, as-of days that have features, real post texts), with the run's API key (its
own rate far above the load: overload is shed with 503s, never 429s).
- capacity: /v1/forecast at 32 connections (wrk), repeated; the median is "capacity".
- overload: 1,000 connections for 20 s (wrk, 10 s timeout), repeated: timeouts, 503 share, p99; then a lone
  request, and the seconds until a 1-s window at 32 connections is back at 90% of capacity with no errors.
- replica kill: Forecaster at 2 replicas, 32 connections for 30 s, one replica SIGKILLed at 8 s, repeated:
  share of answers that were not 200 and the seconds until Serve reports 2 running replicas again.
- soak (--soak-s, default 600): the request mix's capacity first (locust, benchmarks/locustfile.py, users
  sending back to back for 30 s), then locust at half of it for the soak, its HTML report kept; p99 per minute; resident memory of every Ray/Serve process at the start and end.
- fuzz: schemathesis over the running service's OpenAPI document: cases sent and 5xx other than 503.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _overload import kill_replica_under_load, overload, sigkill, wrk
from _serve_setup import ROOT, ensure_home, request_bodies
from serve_load import API_KEY, KEYS_ENV, _check_bodies, _deploy, deployment

sys.path.insert(0, str(ROOT))  # tests.support.fuzz: the same fuzz run as the serve tests

CONFIG = "serve_configs/local.yaml"
PORT = 18000
RESULTS = ROOT / "benchmarks" / "results"


def _config(serve_port: int, forecaster_replicas: int = 1) -> dict:
    """local.yaml as `finpulse serve` resolves it, Serve's proxy on ``serve_port`` behind the edge on PORT."""
    from finpulse.serving.launch import resolve_config

    cfg = resolve_config(ROOT / CONFIG, PORT)
    cfg["applications"][0]["runtime_env"]["env_vars"].update(KEYS_ENV)  # the bench's key (serve_load.py)
    cfg["http_options"].update(host="127.0.0.1", port=serve_port)
    for d in cfg["applications"][0]["deployments"]:
        if d["name"] == "Forecaster":
            d["num_replicas"] = forecaster_replicas
    cfg["applications"].append({"name": "ceiling", "route_prefix": "/ceiling",
                                "import_path": "tests.support.serving:ceiling_app"})
    return cfg


def _spread(values: list[float]) -> list[float]:
    return [min(values), max(values)]


def capacity(url: str, bodies: list[dict], repeats: int, duration: int) -> dict:
    runs = [wrk(url, bodies, 32, duration) for _ in range(repeats)]
    rps = [r["rps"] for r in runs]
    print(f"capacity /v1/forecast c=32: {rps} rps", flush=True)
    return {"runs": runs, "rps_median": statistics.median(rps), "rps_spread": _spread(rps)}


def overloads(url: str, bodies: list[dict], cap: float, repeats: int, duration: int, connections: int) -> dict:
    runs = []
    for i in range(repeats):
        r = overload(url, bodies, connections, duration, cap)
        runs.append(r)
        print(f"overload #{i + 1} c={connections}: timeouts={r['timeouts']} 503={r['503_share']:.1%} "
              f"p99={r['p99_ms']}ms statuses={r['load']['statuses']} lone={r['lone_request_after_ms']}ms "
              f"recovery={r['recovery_s']}s", flush=True)
    med = {k: statistics.median([r[k] if r[k] is not None else float("inf") for r in runs])
           for k in ("timeouts", "503_share", "p99_ms", "recovery_s", "lone_request_after_ms")}
    return {"runs": runs, **{f"{k}_median": v for k, v in med.items()},
            "p99_ms_spread": _spread([r["p99_ms"] for r in runs]),
            "timeouts_max": max(r["timeouts"] for r in runs),
            "no_retry_after_503": sum(r["load"]["no_retry_after_503"] for r in runs)}


def _forecaster_pids() -> list[int]:
    from ray.util.state import list_actors

    actors = list_actors(filters=[("class_name", "=", "ServeReplica:finpulse:Forecaster"), ("state", "=", "ALIVE")])
    return [a.pid for a in actors]


def _forecaster_running(n: int, killed: int | None = None) -> bool:
    """Serve reports ``n`` running Forecaster replicas and ``n`` live actors, none of them the killed one."""
    from ray import serve

    d = serve.status().applications["finpulse"].deployments["Forecaster"]
    pids = _forecaster_pids()
    return d.replica_states.get("RUNNING", 0) >= n and len(pids) >= n and killed not in pids


def replica_kills(client, serve_port: int, url: str, bodies: list[dict], repeats: int) -> dict:
    _deploy(client, _config(serve_port, forecaster_replicas=2))
    while not _forecaster_running(2):
        time.sleep(1)
    wrk(url, bodies, 32, 3)  # warm-up
    runs = []
    for i in range(repeats):
        victim = _forecaster_pids()[0]
        r = kill_replica_under_load(url, bodies, lambda v=victim: sigkill(v), lambda v=victim: _forecaster_running(2, v))
        runs.append(r)
        print(f"replica kill #{i + 1}: error share {r['error_share']:.3%} ({r['errors']}/{r['requests']}), "
              f"replicas back in {r['recovery_s']} s", flush=True)
        time.sleep(3)
    return {"runs": runs, "error_share_median": statistics.median(r["error_share"] for r in runs),
            "error_share_max": max(r["error_share"] for r in runs),
            "recovery_s_median": statistics.median(r["recovery_s"] or float("inf") for r in runs)}


def summarize(res: dict) -> dict:
    o, k = res["overload"], res["replica_kill"]
    s = {"capacity_rps": res["capacity"]["rps_median"],
         "overload_c1000_timeouts": o["timeouts_max"], "overload_c1000_503_share": o["503_share_median"],
         "overload_c1000_p99_ms": o["p99_ms_median"], "overload_c1000_p99_ms_spread": o["p99_ms_spread"],
         "overload_lone_request_after_ms": o["lone_request_after_ms_median"], "recovery_s": o["recovery_s_median"],
         "replica_kill_error_share": k["error_share_max"], "replica_kill_recovery_s": k["recovery_s_median"]}
    for name in ("soak", "fuzz"):
        s.update({key: v for key, v in res.get(name, {}).items() if not isinstance(v, dict | list)})
    goals = {"overload_c1000_timeouts": ("==", 0), "overload_c1000_p99_ms": ("<=", 1000), "recovery_s": ("<=", 10),
             "replica_kill_error_share": ("<=", 0.01), "soak_rss_growth": ("<=", 0.10), "soak_errors": ("==", 0),
             "fuzz_5xx": ("==", 0)}
    s["goals"] = {f"{k} {op} {v}": (s[k] == v if op == "==" else s[k] <= v) for k, (op, v) in goals.items() if k in s}
    return s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=int, default=20, help="seconds of each overload run")
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--soak-s", type=int, default=600, help="0: no soak")
    ap.add_argument("--fuzz-examples", type=int, default=100, help="schemathesis cases per operation; 0: no fuzz")
    ap.add_argument("--only", nargs="*", default=None,
                    help="run only these parts (overload kill soak fuzz); the file keeps the others' last figures")
    ap.add_argument("--out", default=str(RESULTS / "reliability.json"))
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    home = ensure_home()
    bodies = request_bodies()
    parts = set(a.only or ["overload", "kill", "soak", "fuzz"])

    import ray

    from finpulse.serving.canary import ServeConfigClient
    from finpulse.serving.launch import edge_config, resolve_config, start_edge, stop_edges

    ctx = ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False)
    try:
        from ray import serve

        client = ServeConfigClient(f"http://{ctx.dashboard_url}")
        cfg = resolve_config(ROOT / CONFIG, PORT)
        base = start_edge(ROOT / CONFIG, cfg)  # HAProxy on PORT, as `finpulse serve` runs it
        if base is None:
            sys.exit(f"{CONFIG} has no edge: this benchmark measures the deployed configuration")
        serve_port = cfg["http_options"]["port"]
        cfg = _config(serve_port)
        serve.start(http_options=cfg["http_options"])
        _deploy(client, cfg)
        url = f"{base}/v1/forecast"
        _check_bodies(base, bodies)
        res: dict = json.loads(Path(a.out).read_text()) if a.only and Path(a.out).exists() else {}
        res |= {"deployment": deployment(base, home, cfg), "cpus": os.cpu_count(),
                     "edge": edge_config(ROOT / CONFIG).model_dump(), "serve_config_gateway": next(d for d in cfg["applications"][0]["deployments"]
                                                  if d["name"] == "Gateway")}
        wrk(url, bodies["forecast"], 32, 3)  # warm-up
        res["capacity"] = capacity(url, bodies["forecast"], a.repeats, 10)
        cap = res["capacity"]["rps_median"]
        if "overload" in parts:
            res["overload"] = overloads(url, bodies["forecast"], cap, a.repeats, a.duration, a.connections)
        if "soak" in parts and a.soak_s:
            from _soak import mix_capacity, soak

            mix = mix_capacity(base, bodies, RESULTS / "soak", api_key=API_KEY)
            print(f"capacity of the request mix (locust, 32 users, no wait): {mix['rps']} requests/s", flush=True)
            res["soak"] = {"mix_capacity_rps": mix["rps"],
                           **soak(base, bodies, mix["rps"] / 2, a.soak_s, RESULTS / "soak", api_key=API_KEY)}
        if "fuzz" in parts and a.fuzz_examples:
            from tests.support.fuzz import fuzz

            res["fuzz"] = fuzz(base, a.fuzz_examples, RESULTS / "fuzz", api_key=API_KEY)
        if "kill" in parts:
            res["replica_kill"] = replica_kills(client, serve_port, url, bodies["forecast"], a.repeats)
        if "overload" in res and "replica_kill" in res:
            res.update(summarize(res))
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2, default=str) + "\n")
        print(json.dumps({k: v for k, v in res.items() if not isinstance(v, dict) or k == "goals"}, indent=2))
    finally:
        from ray import serve

        stop_edges()
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
