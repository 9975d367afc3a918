#!/usr/bin/env python3
"""End to end as a newcomer: clone the committed tree, empty environment, the demo to serving, Ctrl-C.

Run by `.ci/run` after `make test` (stdlib only, so any python3 runs it):

    python3 tests/e2e/demo_fresh_clone.py [--keep] [--timeout 2400]

Steps: `git clone` HEAD into a temp folder; `make install` there with only CI, PATH (and HOME) set;
start `make demo`'s command with `--quick` in its own process group; wait until it serves; call every
route once with the API key the demo made (and /v1/models without it: 401); check the live stage's replay moved the served forecasts' as_of and that the planted drift raised
the alarm and a retraining turn decided; send SIGINT to the group as a terminal's Ctrl-C does; require exit code 0 within 30 s and
no Ray process of the clone left behind. Exits non-zero with the demo's output on any failure. It
never inherits the test suite's variables (FINPULSE_*, RAY_*): that is what hid the relative-path bug.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROUTES = [("GET", "/healthz", None), ("GET", "/v1/models", None),
          ("POST", "/v1/sentiment", {"texts": ["Record quarter, shares jump", "Guidance cut"]}),
          ("POST", "/v1/forecast", {"ticker": "AAPL"}),
          ("POST", "/v1/signal", {"ticker": "MSFT", "texts": ["Cloud revenue beats estimates"]})]


def clean_env() -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CI": os.environ.get("CI", "true")}
    if "HOME" in os.environ:  # pip's cache; nothing of FinPulse's reads it with a checkout's venv
        env["HOME"] = os.environ["HOME"]
    return env


def call(base: str, method: str, path: str, body: dict | None, key: str | None = None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)  # noqa: S310 - the demo's http:// URL
    try:
        with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - the demo's http:// URL
            return r.status, r.read().decode()[:300]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()[:300]


def leftover_ray(clone: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()  # noqa: S607 - ps from PATH
    return [line for line in out if str(clone) in line
            and ("ray" in line or "raylet" in line or "gcs" in line or "nats-server" in line)]


def forecasts_moved(text: str) -> list[str]:
    """The live stage's before -> after lines whose as_of moved forward (the replayed days reached serving)."""
    moved = []
    for line in text.split("served forecasts, before -> after", 1)[-1].splitlines()[1:]:
        parts = line.strip().split()
        if len(parts) >= 5 and parts[1] == "as_of" and parts[3] == "->" and parts[4].rstrip(",") > parts[2]:
            moved.append(line.strip())
    return moved


def loop_turn(text: str) -> str | None:
    """The loop stage's verdict: the drift job's alarm on the planted shift, then a turn's outcome line."""
    import re

    if "drift job: the last" not in text or ": ALARM" not in text:
        return None
    found = re.search(r"^turn \S+: (PROMOTED|ROLLED_BACK|REJECTED) ", text, flags=re.M)
    return found.group(1) if found else None


def dashboard_pages(text: str) -> dict[str, int]:
    """Every dashboard page's HTTP status at the URL the demo printed (the browser test renders them)."""
    found = re.search(r"FinPulse dashboard: (http://\S+)", text)
    if not found:
        return {"(no dashboard line)": 0}
    pages = ["_stcore/health", "", "signal", "models", "live", "quality"]  # finpulse.dashboard.URL_PATHS
    return {f"/{p}": call(found.group(1), "GET", f"/{p}", None)[0] for p in pages}


def wait_for(proc: subprocess.Popen, log: Path, text: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"demo exited with {proc.returncode} before {text!r}")
        time.sleep(2)
    raise TimeoutError(f"no {text!r} within {timeout:.0f}s")


def run(clone: Path, timeout: float) -> None:
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(clone)], check=True)  # noqa: S607 - git from PATH
    env = clean_env()
    t0 = time.time()
    subprocess.run(["make", "install"], cwd=clone, env=env, check=True)  # noqa: S607 - make from PATH, as a newcomer runs it
    print(f"make install: {time.time() - t0:.0f}s", flush=True)
    log = clone / "demo.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(clone / ".venv/bin/python"), "-m", "finpulse.demo", "--quick"], cwd=clone,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(proc, log, "Serving until Ctrl-C", timeout)
        print(f"demo serving after {time.time() - t0:.0f}s", flush=True)
        failures = []
        key_file = clone / ".finpulse" / "secrets" / "api_key"  # the first serve of the home made it
        key = key_file.read_text().strip() if key_file.exists() else None
        if not key or f"written to {key_file}" not in log.read_text(errors="replace"):
            failures.append(f"no API key line for {key_file}")
        for method, path, body in ROUTES:
            status, answer = call("http://127.0.0.1:8000", method, path, body, key)
            print(f"{method} {path} -> {status} {answer[:120]}", flush=True)
            if status != 200:
                failures.append(f"{path}: {status}")
        if (status := call("http://127.0.0.1:8000", "GET", "/v1/models", None)[0]) != 401:
            failures.append(f"/v1/models without a key: {status}")
        board = dashboard_pages(log.read_text(errors="replace"))
        print(f"dashboard pages: {board}", flush=True)
        failures += [f"dashboard {page}: {status}" for page, status in board.items() if status != 200]
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole foreground group
        t_int = time.time()
        rc = proc.wait(timeout=30)
        print(f"Ctrl-C: exit {rc} after {time.time() - t_int:.1f}s", flush=True)
        time.sleep(3)
        left = leftover_ray(clone)
        moved = forecasts_moved(log.read_text(errors="replace"))
        print(f"live replay moved {len(moved)} tickers' served forecasts: {moved[:2]}", flush=True)
        turn = loop_turn(log.read_text(errors="replace"))
        print(f"drift alarm raised; the loop's turn ended: {turn}", flush=True)
        if rc != 0 or "stopped" not in log.read_text() or left or failures or not moved or not turn:
            raise RuntimeError(f"rc={rc} failures={failures} leftover={left} forecasts_moved={moved} turn={turn}")
    except BaseException:
        print(log.read_text(errors="replace")[-8000:], file=sys.stderr)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    print("fresh-clone demo: OK (served every route, the live replay moved the served forecasts, the drift alarm "
          "started a retraining turn that decided, stopped on Ctrl-C)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="keep the clone (and its .finpulse) for inspection")
    ap.add_argument("--timeout", type=float, default=2400, help="seconds until the demo must be serving")
    args = ap.parse_args()
    clone = Path(tempfile.mkdtemp(prefix="finpulse-e2e-")) / "finpulse"
    try:
        run(clone, args.timeout)
    finally:
        for line in leftover_ray(clone):  # only this clone's processes: other Ray users may share the machine
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
        if not args.keep:
            shutil.rmtree(clone.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
