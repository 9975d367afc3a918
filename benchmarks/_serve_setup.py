"""What `make bench-serve` measures: the FinPulse home that `make demo` leaves (registry champions and
the ETL's curated features), built here the demo's way when the current home has no champions, and
request bodies that vary (tickers, as-of days that have features, post texts), served to wrk by a Lua
script that picks one body per request and sends the bench's API key (``bench_key``)."""

from __future__ import annotations

import functools
import json
import os
import random
from pathlib import Path

from finpulse.names import FORECAST_MODEL, SENTIMENT_MODEL, model_spec

ROOT = Path(__file__).resolve().parents[1]
BENCH_HOME = ROOT / "benchmarks" / ".tmp" / "serve_home"
CHAMPIONS = {"sentiment": model_spec(SENTIMENT_MODEL), "forecast": model_spec(FORECAST_MODEL)}
# `--quick`: the same code path and sizes as CI's fresh-clone demo (smaller sentiment runs fail the gate against VADER)
DEMO_ARGS = ["--no-serve", "--quick"]


def _use_home(home: Path) -> None:
    for k in ("FINPULSE_DATA_ROOT", "FINPULSE_MLFLOW_TRACKING_URI", "FINPULSE_MLFLOW_ARTIFACT_LOCATION"):
        os.environ.pop(k, None)
    os.environ["FINPULSE_HOME"] = str(home)
    os.environ["FINPULSE_MLFLOW_TRACKING_URI"] = f"sqlite:///{home}/mlflow.db"  # absolute, whatever the cwd
    os.environ["FINPULSE_MLFLOW_ARTIFACT_LOCATION"] = str(home / "mlartifacts")
    from finpulse.config import get_settings

    get_settings.cache_clear()


def _champions() -> dict[str, str] | None:
    """Registry version of each champion in the current home, or None if one is missing."""
    from finpulse import tracking

    try:
        return {m: str(tracking.resolve(spec).version) for m, spec in CHAMPIONS.items()}
    except Exception:
        return None


def ensure_home() -> dict:
    """Use the current FinPulse home if it has both champions and curated features; else the bench's own
    home under benchmarks/.tmp (``bench_home``), built with the demo (``finpulse.demo.main([... "--no-serve"])``)
    unless an earlier run left it complete. ``forced_champion``: the demo's gate refused the forecaster,
    and its challenger is served as champion."""
    from finpulse import storage
    from finpulse.config import get_settings

    s = get_settings()
    curated = storage.join(s.data_root, "curated")
    if _champions() and storage.exists(storage.join(curated, "LATEST")):
        return {"home": os.path.abspath(s.home), "bench_home": False, "forced_champion": False}
    _use_home(BENCH_HOME)
    curated = storage.join(get_settings().data_root, "curated")
    forced = False
    if not (_champions() and storage.exists(storage.join(curated, "LATEST"))):
        import ray

        from finpulse import demo, tracking

        BENCH_HOME.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("FINPULSE_RAY_ADDRESS", "local")  # a fresh Ray, never a stale recorded one
        get_settings.cache_clear()
        print(f"no champions in the FinPulse home: building them the demo's way in {BENCH_HOME}", flush=True)
        demo.main(DEMO_ARGS)
        ray.shutdown()
        os.environ.pop("FINPULSE_RAY_ADDRESS", None)
        get_settings.cache_clear()
        if tracking.get_version(FORECAST_MODEL, tracking.CHAMPION) is None:
            # the demo's gate refused its small-sized challenger: serve it anyway, and say so
            ref = tracking.get_version(FORECAST_MODEL, tracking.CHALLENGER)
            tracking.set_alias(FORECAST_MODEL, tracking.CHAMPION, ref.version)
            forced = True
    return {"home": str(BENCH_HOME.relative_to(ROOT)), "bench_home": True, "forced_champion": forced}


def request_bodies(seed: int = 0, n: int = 256, skip_rows: int = 80) -> dict[str, list[dict]]:
    """Bodies per cell from the curated data: (ticker, as-of day) pairs that have features and enough
    history before them, and real post texts."""
    from finpulse import storage
    from finpulse.config import get_settings
    from finpulse.data.catalog import load_dataset
    from finpulse.sentiment.score import curated_posts

    curated = storage.join(get_settings().data_root, "curated")
    feats = load_dataset(curated, "daily_features", columns=["ticker", "date"])
    days = [(t, str(d)[:10]) for t, g in feats.sort_values("date").groupby("ticker") for d in g["date"].iloc[skip_rows:]]
    texts = [t for t in curated_posts(curated)["text"].tolist() if t and t.strip()]
    rng = random.Random(seed)  # noqa: S311 - a seeded, reproducible sample of requests, not a secret
    pairs = rng.sample(days, min(n, len(days)))

    def pick(k: int) -> list[str]:
        return rng.sample(texts, k)

    return {
        "forecast": [{"ticker": t, "as_of": d} for t, d in pairs],
        "sentiment1": [{"texts": pick(1)} for _ in range(n)],
        "sentiment16": [{"texts": pick(16)} for _ in range(n)],
        "signal": [{"ticker": t, "as_of": d, "texts": pick(4)} for t, d in pairs],
    }


LUA_HEAD = """
wrk.method = method
if method == "POST" then wrk.headers["Content-Type"] = "application/json" end
if api_key ~= "" then wrk.headers["X-API-Key"] = api_key end
math.randomseed(os.time())
local n = #bodies
request = function()
  if n == 0 then return wrk.format() end
  return wrk.format(nil, nil, nil, bodies[math.random(n)])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors":%d,"non2xx":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@functools.cache
def bench_key() -> tuple[str, dict[str, str]]:
    """The key of this run (one per process) and the Gateway env that accepts it (a keys file under
    benchmarks/.tmp): read and write, with its own rate far above any load here, so the measured path
    checks the key and takes a token per request, as every user's does, without a 429 cutting it short."""
    from finpulse.serving.access import ENV_KEYS_FILE, KeyEntry, hash_key, keys_json, new_key
    from finpulse.serving.schemas import RateLimit

    key = new_key()
    entry = KeyEntry(name="bench", sha256=hash_key(key), scopes=["read", "write"],
                     rate_limit=RateLimit(rate_per_s=1e6, burst=1_000_000))
    path = ROOT / "benchmarks" / ".tmp" / "bench_api_keys.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(keys_json([entry]))
    return key, {ENV_KEYS_FILE: str(path)}


def lua_script(bodies: list[dict], api_key: str = "") -> str:
    """A wrk script whose every request is a body picked at random from ``bodies`` (a GET when empty),
    with ``api_key`` in the X-API-Key header."""
    items = []
    for b in bodies:
        s = json.dumps(b, ensure_ascii=True)
        if "]==]" in s:
            raise ValueError(f"a body holds the Lua long-string delimiter ]==]: {s[:80]}")
        items.append(f"[==[{s}]==]")
    method = "POST" if bodies else "GET"
    if api_key and not api_key.replace("_", "").replace("-", "").isalnum():
        raise ValueError("an API key must be URL-safe base64 to sit in a Lua string")
    return (f'method = "{method}"\napi_key = "{api_key}"\nbodies = {{\n' + ",\n".join(items) + "\n}\n"
            + LUA_HEAD)
