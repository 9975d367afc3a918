"""Start and stop the dashboard's Streamlit server (``finpulse dashboard``, the demo, the browser test).

``start(port)`` runs ``streamlit run finpulse/dashboard/server/main.py`` headless in its own process group,
its logs in a file, and returns once ``/_stcore/health`` answers; ``stop(process)`` ends that group.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

APP = Path(__file__).resolve().parent / "server" / "main.py"  # runs app.main(); see server/main.py for why
PACKAGE_ROOT = APP.parents[3]  # the folder holding `finpulse/`: the app imports this checkout's package


def command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The ``streamlit run`` command line (this Python's streamlit, no telemetry, no browser)."""
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
            "--server.port", str(port), "--server.address", host, "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--global.developmentMode", "false"]


def start(port: int = 8501, host: str = "127.0.0.1", log_file: str | Path | None = None,
          timeout: float = 60.0, warm: bool = True) -> tuple[subprocess.Popen, str]:
    """Start the server and wait until it is healthy; returns ``(process, url)``. With ``warm``, every
    page is rendered once first (:func:`warm_up`), so a person's first view finds its data cached.

    Logs go to ``log_file`` (default: ``<FinPulse home>/logs/dashboard.log``). The child inherits this
    process's environment, so ``FINPULSE_*`` settings choose the data it shows."""
    if log_file is None:
        from finpulse.config import get_settings

        log_file = Path(get_settings().home) / "logs" / "dashboard.log"
    log_path = Path(log_file)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH"))
                                                       if p)}
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(command(port, host), stdout=out, stderr=subprocess.STDOUT, env=env,  # noqa: S603 - argv from command(), no shell
                                start_new_session=True)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"  # noqa: S104 - maps bind-all to loopback for our own client
    try:
        _wait_healthy(proc, f"{url}/_stcore/health", timeout, log_path)
    except BaseException:
        stop(proc)
        raise
    if warm:
        try:
            warm_up(url, timeout=timeout)
        except Exception as exc:  # a cold first view is slower, not broken: serve anyway
            log.warning("dashboard warm-up failed (%s); pages render on first view", exc)
    return proc, url


def _wait_healthy(proc: subprocess.Popen, health: str, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dashboard exited with code {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(health, timeout=2) as r:  # noqa: S310 - an http:// URL built in start()
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"dashboard not healthy at {health} within {timeout}s; see {log_path}")


def warm_up(url: str, timeout: float = 60.0) -> dict[str, float]:
    """Render every page once in a headless session (Streamlit's own websocket protocol), so imports,
    parquet reads and aggregates are cached in the server before anyone looks. Returns seconds per page."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.sync.client import connect

    from finpulse.dashboard import URL_PATHS

    seconds = {}
    for path in URL_PATHS:
        t = time.monotonic()
        with connect(url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit"], max_size=None,
                     open_timeout=timeout) as ws:
            msg = BackMsg()
            msg.rerun_script.query_string = ""
            msg.rerun_script.page_name = path
            ws.send(msg.SerializeToString())
            while True:
                fwd = ForwardMsg()
                fwd.ParseFromString(ws.recv(timeout=timeout))
                if fwd.WhichOneof("type") == "script_finished":
                    break
        seconds[path or "/"] = round(time.monotonic() - t, 3)
    return seconds


def stop(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """End the server (SIGTERM to its process group, SIGKILL if it lingers)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass


def start_beside(port: int) -> subprocess.Popen | None:
    """The Streamlit dashboard beside the API (its process, or None: the API serves without it)."""
    if port <= 0:
        return None
    import socket

    with socket.socket() as probe:  # a port already taken (another dashboard): take a free one instead
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            port = 0
    if port == 0:
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
    try:
        proc, url = start(port)
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"dashboard did not start ({exc}); the API serves without it", flush=True)
        return None
    print(f"FinPulse dashboard: {url}   (posts, signal, models, live health, data quality)", flush=True)
    return proc
