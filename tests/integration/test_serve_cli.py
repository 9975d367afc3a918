"""`finpulse serve` as a user runs it: a fresh process with a clean environment starts its own Ray (token
authentication on, as Ray 2.60 does by default) and makes the home's first API key, the canary commands
work from other clean processes without being told the token or the key, and Ctrl-C stops serving and
every Ray process within 30 s."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml
from conftest import REPO, VENV_BIN, free_port

from tests.support.serving import build_test_models, serve_config

pytestmark = pytest.mark.integration


def _clean_env(home: Path, user_home: Path, **extra: str) -> dict[str, str]:
    """Only what a user's shell would have: PATH, HOME, the FinPulse home (and this checkout on PYTHONPATH)."""
    return {"PATH": f"{VENV_BIN}{os.pathsep}/usr/bin:/bin", "HOME": str(user_home), "FINPULSE_HOME": str(home),
            "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **extra}


def _processes_with(marker: str) -> list[int]:
    """Pids whose environment holds ``marker`` (everything `finpulse serve` started inherits its env)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if marker.encode() in (d / "environ").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def _finpulse(env: dict, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "finpulse"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=env["HOME"])


def _wait_healthy(proc: subprocess.Popen, url: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"finpulse serve exited with {proc.returncode}"
        try:
            if requests.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url}/healthz not 200 within {timeout}s")


def _one_line_error(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_serve_canary_with_token_auth_and_ctrl_c(tmp_path):
    models = build_test_models(tmp_path / "models")
    port, dash = free_port(), free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump(serve_config(models, port, keys=None)))  # the home's keys, as a user has
    home, user_home = tmp_path / "home", tmp_path / "user"
    user_home.mkdir()
    env = _clean_env(home, user_home)
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([str(VENV_BIN / "finpulse"), "serve", "--config", str(config),
                             "--dashboard-port", str(dash)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            cwd=user_home)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, url)
        # Ray started with token auth on: the dashboard refuses a caller without the token
        assert requests.get(f"http://127.0.0.1:{dash}/api/serve/applications/", timeout=10).status_code == 401
        assert (user_home / ".ray" / "auth_token").exists()
        # the first serve of a home made its key (0600) and said where, once
        key_file = home / "secrets" / "api_key"
        assert os.stat(key_file).st_mode & 0o777 == 0o600
        assert (tmp_path / "serve.log").read_text().count(f"written to {key_file}: send it with every call") == 1
        assert requests.get(f"{url}/v1/models", timeout=10).status_code == 401
        key = {"X-API-Key": key_file.read_text().strip()}
        assert requests.get(f"{url}/v1/models", headers=key, timeout=10).status_code == 200

        r = _finpulse(env, "canary", "status")  # finds the dashboard and the token on its own
        assert r.returncode == 0, r.stdout + r.stderr
        st = json.loads(r.stdout)
        assert st["forecast"]["stable"]["version"] == "fc-a" and st["forecast"]["canary"]["weight"] == 0.0

        r = _finpulse(env, "canary", "set", "--version", models["fc_b"], "--weight", "0.5")
        assert r.returncode == 0, r.stdout + r.stderr
        st = json.loads(r.stdout)["forecast"]["canary"]
        assert st["version"] == "fc-b" and st["weight"] == 0.5 and st["ready"]
        r = _finpulse(env, "canary", "rollback")
        assert r.returncode == 0 and json.loads(r.stdout)["forecast"]["canary"]["weight"] == 0.0, r.stderr

        # where the token cannot be found or is wrong: one line naming the fix, exit 1
        other = tmp_path / "other"
        other.mkdir()
        _one_line_error(_finpulse(_clean_env(tmp_path / "h2", other), "canary", "status", "--address",
                                  f"http://127.0.0.1:{dash}"), "RAY_AUTH_TOKEN")
        _one_line_error(_finpulse(_clean_env(home, user_home, RAY_AUTH_TOKEN="wrong"), "canary", "status"),
                        "rejected", "RAY_AUTH_TOKEN")
        _one_line_error(_finpulse(_clean_env(tmp_path / "h3", other), "canary", "status", "--address",
                                  f"http://127.0.0.1:{free_port()}"), "finpulse serve")
        wrong_key = _clean_env(home, user_home, FINPULSE_API_KEY="fp_wrong")  # pragma: allowlist secret - wrong on purpose
        _one_line_error(_finpulse(wrong_key, "canary", "status"),
                        "refused the API key (401: invalid API key)", "FINPULSE_API_KEY")

        assert _processes_with(f"FINPULSE_HOME={home}\0")  # the marker finds the Ray processes it started
        t0 = time.time()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        leftover = _processes_with(f"FINPULSE_HOME={home}\0")
        while leftover and time.time() - t0 < 30:
            time.sleep(0.5)
            leftover = _processes_with(f"FINPULSE_HOME={home}\0")
        assert proc.returncode == 0 and leftover == [], (proc.returncode, leftover)
        assert time.time() - t0 < 30
        assert not (home / "serve" / "state.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _processes_with(f"FINPULSE_HOME={home}\0"):
            os.kill(pid, signal.SIGKILL)
        log.close()
        print((tmp_path / "serve.log").read_text()[-4000:])
