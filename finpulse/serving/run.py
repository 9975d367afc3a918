"""``finpulse serve``: the app in this process on a Ray it starts, until Ctrl-C (or SIGTERM).

Why not ``serve run``: it joins whatever cluster a past ``ray start`` left recorded and its Ctrl-C
did not stop it within 30 s. Here Ray is started fresh (``address="local"``) unless an address is
configured, the config is deployed declaratively (canary operations need that), and a signal raises
KeyboardInterrupt in the main thread, which shuts Serve and Ray down within a bounded time.
The dashboard address and token location go to ``<home>/serve/state.json`` for ``finpulse canary``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

SHUTDOWN_BUDGET_S = 20.0


def state_path() -> Path:
    from finpulse.config import get_settings

    return Path(get_settings().home).absolute() / "serve" / "state.json"


def read_state() -> dict | None:
    """What a running ``finpulse serve`` of this home recorded, if its process is alive."""
    try:
        state = json.loads(state_path().read_text())
        os.kill(int(state["pid"]), 0)
        return state
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(dashboard: str, url: str) -> None:
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    p = state_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"pid": os.getpid(), "dashboard": dashboard, "url": url,
                             "auth_mode": os.environ.get("RAY_AUTH_MODE", "disabled"),
                             "token_path": token_path if os.environ.get("RAY_AUTH_MODE") == "token" else None}))


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _bounded(fn: Any, seconds: float) -> bool:
    """Run ``fn`` in a daemon thread; False if it did not finish in ``seconds`` (shutdown must not hang)."""
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    t.join(seconds)
    return not t.is_alive()


def shutdown(budget_s: float = SHUTDOWN_BUDGET_S) -> None:
    """Serve, then Ray (which stops the processes a local ``ray.init`` started), each bounded."""
    import ray
    from ray import serve

    from finpulse.serving.launch import stop_edges

    stop_edges()  # first: no new requests while Serve drains
    t0 = time.monotonic()
    if not _bounded(serve.shutdown, budget_s / 2):
        print("serve.shutdown did not finish in time; stopping Ray anyway", flush=True)
    if not _bounded(ray.shutdown, max(budget_s - (time.monotonic() - t0), 2.0)):
        from ray._private import worker

        node = getattr(worker, "_global_node", None)
        if node is not None:  # last resort: kill what this driver started
            node.kill_all_processes(check_alive=False, allow_graceful=False)


def serve_until_interrupted(dashboard: str, base: str) -> None:
    """Record where the app answers (for ``finpulse canary``), then block until SIGINT/SIGTERM
    (raised as KeyboardInterrupt in the main thread). The caller shuts down with :func:`shutdown`."""
    for s in (signal.SIGINT, signal.SIGTERM):  # Ray may have installed its own handlers by now
        signal.signal(s, _interrupt)
    _write_state(dashboard, base)
    print("Serving until Ctrl-C ...", flush=True)
    while True:
        time.sleep(3600)


def stop(budget_s: float = SHUTDOWN_BUDGET_S) -> None:
    """After Ctrl-C: ignore a second one while Serve and Ray shut down, forget the recorded state."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
    try:
        shutdown(budget_s)
    finally:
        if (read_state() or {}).get("pid") == os.getpid():
            state_path().unlink(missing_ok=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print("stopped", flush=True)


def serve_forever(config: str | Path, port: int | None = None, dashboard_port: int = 8265,
                  address: str | None = None) -> None:
    """Start Ray, deploy ``config``, print where it answers, block until SIGINT/SIGTERM, then shut down."""
    from finpulse.runtime import connect
    from finpulse.serving.launch import deploy_and_wait, prepare_keys, resolve_config

    prepare_keys(resolve_config(config, port))  # a bad keys file fails here, before Ray starts
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _interrupt)
    try:
        ctx = connect(address=address, include_dashboard=True, dashboard_host="127.0.0.1",
                      dashboard_port=dashboard_port)
        dashboard = f"http://{ctx.dashboard_url}" if ctx.dashboard_url else f"http://127.0.0.1:{dashboard_port}"
        base = deploy_and_wait(config, dashboard, port)
        print(f"FinPulse API: {base}   (OpenAPI: {base}/docs, Ray dashboard: {dashboard})", flush=True)
        serve_until_interrupted(dashboard, base)
    except KeyboardInterrupt:
        print("\nstopping: Serve, then Ray ...", flush=True)
    finally:
        stop()
