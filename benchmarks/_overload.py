"""Overload, recovery and replica-kill measurements for `make bench-reliability` (benchmarks/reliability.py).

All load comes from wrk (C, one thread) on loopback, each request a body picked at random from the
pregenerated list (benchmarks/_serve_setup.py); a Lua ``response`` hook counts answers per status and
503s without ``Retry-After``. wrk's ``errors.timeout`` are requests still unanswered after ``--timeout``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable

import requests
from _serve_setup import bench_key, lua_script

API_KEY = bench_key()[0]  # the Gateway of the benchmark's deployment accepts it (benchmarks/serve_load.py)

# Appended to the body script: per-status counts (thread:get copies each thread's table into done()).
STATUS_LUA = """
local threads = {}
setup = function(thread) table.insert(threads, thread) end
statuses = {}
no_retry_after = 0
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 503 and headers["Retry-After"] == nil and headers["retry-after"] == nil then
    no_retry_after = no_retry_after + 1
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  local parts = {}
  local missing = 0
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do table.insert(parts, string.format('"%d":%d', code, n)) end
    missing = missing + t:get("no_retry_after")
  end
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"timeout":%d,"non2xx":%d,"no_retry_after":%d,"statuses":{%s}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status, missing, table.concat(parts, ",")))
end
"""


def wrk(url: str, bodies: list[dict], connections: int, duration: float, timeout_s: float = 10.0) -> dict:
    """One wrk run: requests, rate, latency percentiles, socket errors and answers per status."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua_script(bodies, API_KEY) + STATUS_LUA)
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s", "--timeout", f"{int(timeout_s)}s",  # noqa: S603, S607 - fixed argv, wrk from PATH
                              "-s", f.name, url], capture_output=True, text=True, timeout=duration + 120)
    finally:
        os.unlink(f.name)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {out.stdout[-500:]} {out.stderr[-500:]}")
    r = json.loads(line[len("WRKJSON "):])
    secs = r["duration_us"] / 1e6
    answered = sum(r["statuses"].values())
    return {"requests": r["requests"], "answered": answered, "rps": round(r["requests"] / secs, 1),
            "p50_ms": round(r["p50_us"] / 1000, 1), "p99_ms": round(r["p99_us"] / 1000, 1),
            "max_ms": round(r["max_us"] / 1000, 1), "timeouts": r["timeout"],
            "socket_errors": r["connect"] + r["read"] + r["write"], "statuses": r["statuses"],
            "no_retry_after_503": r["no_retry_after"]}


def share(r: dict, status: str) -> float:
    total = r["answered"] + r["timeouts"] + r["socket_errors"]
    return round(r["statuses"].get(status, 0) / max(total, 1), 4)


def lone_request_ms(url: str, body: dict) -> float:
    t0 = time.perf_counter()
    requests.post(url, json=body, headers={"X-API-Key": API_KEY}, timeout=30)
    return round((time.perf_counter() - t0) * 1000, 1)


def overload(url: str, bodies: list[dict], connections: int, duration: float, capacity_rps: float,
             recover_within_s: float = 30.0) -> dict:
    """``connections`` at once for ``duration`` s, then: a lone request's latency, and the seconds from the
    end of the load until a 1-second window at 32 connections reaches 90% of ``capacity_rps``."""
    r = wrk(url, bodies, connections, duration)
    ended = time.perf_counter()
    lone = lone_request_ms(url, bodies[0])
    recovery, windows = None, []
    while time.perf_counter() - ended < recover_within_s:
        start = time.perf_counter() - ended
        w = wrk(url, bodies, 32, 1)
        windows.append({"start_s": round(start, 2), "rps": w["rps"], "non2xx": sum(
            n for s, n in w["statuses"].items() if s != "200")})
        if w["rps"] >= 0.9 * capacity_rps and windows[-1]["non2xx"] == 0:
            recovery = round(start, 2)
            break
    return {"load": r, "timeouts": r["timeouts"], "503_share": share(r, "503"), "p99_ms": r["p99_ms"],
            "lone_request_after_ms": lone, "recovery_s": recovery, "recovery_windows": windows}


def kill_replica_under_load(url: str, bodies: list[dict], kill: Callable[[], int], replicas_back: Callable[[], bool],
                            connections: int = 32, duration: float = 30.0, kill_at_s: float = 8.0) -> dict:
    """Load for ``duration`` s; at ``kill_at_s`` SIGKILL one replica (``kill`` returns its pid). Error share is
    every answer other than 200 (and every socket error or timeout) over all requests; recovery is the
    time from the kill until ``replicas_back()`` (Serve reports the full replica count running again)."""
    box: dict = {}

    def killer() -> None:
        time.sleep(kill_at_s)
        box["pid"] = kill()
        box["killed_at"] = time.perf_counter()
        while not replicas_back():
            time.sleep(0.2)
        box["back_s"] = round(time.perf_counter() - box["killed_at"], 2)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    r = wrk(url, bodies, connections, duration)
    t.join(timeout=120)
    total = r["answered"] + r["timeouts"] + r["socket_errors"]
    errors = total - r["statuses"].get("200", 0)
    return {"load": r, "killed_pid": box.get("pid"), "error_share": round(errors / max(total, 1), 5),
            "errors": errors, "requests": total, "recovery_s": box.get("back_s")}


def sigkill(pid: int) -> int:
    os.kill(pid, signal.SIGKILL)
    return pid
