"""The real dashboard server (``launch.start``, as ``finpulse dashboard`` and the demo start it) in headless
Chromium: every page loads, renders its title and content, and shows no Streamlit exception or error.

A screenshot per page is kept under ``$FINPULSE_TEST_ARTIFACTS/dashboard/`` (default: the test's
tmp_path); ``FINPULSE_README_SCREENSHOT=docs/dashboard.png`` also writes the first page's there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from finpulse.config import get_settings
from finpulse.dashboard import launch
from finpulse.dashboard.app import PAGES, URL_PATHS
from tests.support.dashboard_env import use_home
from tests.support.headless_chromium import chromium

pytestmark = pytest.mark.integration

# pages of this part that must show charts and metrics on the test data (the others may show empty states)
WITH_CHARTS = {"posts", "signal", "quality"}


@pytest.fixture()
def server(dashboard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    use_home(monkeypatch, dashboard_home)
    from conftest import free_port

    proc, url = launch.start(free_port(), log_file=tmp_path / "streamlit.log")
    try:
        yield url
    finally:
        launch.stop(proc)
        get_settings.cache_clear()
    assert proc.poll() is not None


def test_every_page_renders_in_chromium_without_errors(server: str, tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.fail("chromium not on PATH: Debian package `chromium` (.ci/run installs it)")
    shots = Path(os.environ.get("FINPULSE_TEST_ARTIFACTS", tmp_path)) / "dashboard"
    shots.mkdir(parents=True, exist_ok=True)
    with chromium(width=1400, height=1800) as tab:
        for (_module, title, name, _icon), path in zip(PAGES, URL_PATHS, strict=True):
            state = tab.load(f"{server}/{path}")
            (shots / f"{name}.png").write_bytes(tab.screenshot())
            assert state["exceptions"] == 0 and state["errors"] == 0, (name, state["text"])
            assert state["titles"] == [title], (name, state["titles"])
            assert not state["not_found"], name
            if name in WITH_CHARTS:
                assert state["charts"] >= 2 and state["metrics"] >= 3 and state["downloads"] >= 2, (name, state)
    assert sorted(p.stem for p in shots.glob("*.png")) == sorted(name for _, _, name, _ in PAGES)
    readme_shot = os.environ.get("FINPULSE_README_SCREENSHOT")
    if readme_shot:
        Path(readme_shot).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shots / f"{PAGES[0][2]}.png", readme_shot)


def test_cli_serves_until_ctrl_c(dashboard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``finpulse dashboard`` prints its URL, answers health checks, and Ctrl-C stops it cleanly."""
    import signal
    import subprocess
    import sys
    import urllib.request

    from conftest import REPO, free_port

    use_home(monkeypatch, dashboard_home)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "finpulse.cli", "dashboard", "--port", str(port), "--log-file",
                             str(tmp_path / "streamlit.log")], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line, line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
    get_settings.cache_clear()
