"""Shared fixtures: one real Ray head per test session (started as users start it), temp homes.

Ray is started once with ``ray start --head`` on loopback; in-process tests connect to it with
``ray.init(address=...)`` and job tests submit to its dashboard, so a session pays Ray's start-up
once. Every test gets its own FinPulse home (data root + sqlite MLflow) through ``finpulse_home``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.time() + timeout
    last: Exception | None = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except Exception as exc:  # noqa: BLE001 - polling until the server is up
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer in {timeout}s: {last}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets beside the checkout; tests that need them skip with the reason."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA} (development data, not shipped)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real Ray head node on 127.0.0.1 (``ray start --head``), shared by the whole session.

    Yields ``{"address": gcs address, "dashboard": http url}``; the test process is connected.
    """
    import ray

    gcs_port, dash_port = free_port(), free_port()
    temp_dir = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [str(VENV_BIN / "ray"), "start", "--head", f"--port={gcs_port}", "--node-ip-address=127.0.0.1",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}", "--num-cpus=4",
           f"--temp-dir={temp_dir}", "--disable-usage-stats", "--include-dashboard=true"]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=180)
    address = f"127.0.0.1:{gcs_port}"
    dashboard = f"http://127.0.0.1:{dash_port}"
    try:
        wait_http(f"{dashboard}/api/version", timeout=120)
        ray.init(address=address, log_to_driver=False)
        yield {"address": address, "dashboard": dashboard}
    finally:
        ray.shutdown()
        subprocess.run([str(VENV_BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture()
def finpulse_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private FinPulse home: data root and sqlite MLflow under tmp_path."""
    from finpulse.config import get_settings

    home = tmp_path / "home"
    monkeypatch.setenv("FINPULSE_HOME", str(home))
    monkeypatch.setenv("FINPULSE_DATA_ROOT", str(home / "data"))
    monkeypatch.setenv("FINPULSE_MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")
    monkeypatch.setenv("FINPULSE_MLFLOW_ARTIFACT_LOCATION", str(home / "mlartifacts"))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()
