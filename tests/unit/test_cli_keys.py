"""`finpulse keys create|list|revoke`, a home's first key on its first serve, and where clients and the
Gateway replicas find their keys."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from finpulse import cli
from finpulse.config import get_settings
from finpulse.serving.access import KeyRing, hash_key
from finpulse.serving.api_keys import bootstrap_local_key, client_headers, client_key, server_env


@pytest.fixture()
def home(monkeypatch, tmp_path) -> Path:
    for var in ("FINPULSE_API_KEYS", "FINPULSE_API_KEYS_FILE", "FINPULSE_API_KEY", "FINPULSE_DATA_ROOT",
                "FINPULSE_MLFLOW_TRACKING_URI", "FINPULSE_MLFLOW_ARTIFACT_LOCATION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FINPULSE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def _keys(*args: str):
    return CliRunner().invoke(cli.app, ["keys", *args])


def test_create_prints_the_key_once_and_stores_its_hash(home):
    r = _keys("create", "--name", "alice", "--scopes", "read,write")
    assert r.exit_code == 0, r.output
    key = r.stdout.strip()
    assert key.startswith("fp_") and len(key) == 46 and "only time it is shown" in r.stderr
    path = home / "secrets" / "api_keys.json"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert key not in path.read_text() and hash_key(key) in path.read_text()
    assert KeyRing.from_env({"FINPULSE_API_KEYS_FILE": str(path)}).match(key).scopes == ["read", "write"]

    r = _keys("create", "--name", "feed", "--scopes", "write", "--rate-per-s", "5", "--burst", "20")
    assert r.exit_code == 0 and r.stdout.strip() != key
    r = _keys("list")
    assert r.exit_code == 0
    listed = json.loads(r.stdout)
    assert [(k["name"], k["scopes"]) for k in listed] == [("alice", ["read", "write"]), ("feed", ["write"])]
    assert listed[1]["rate_limit"] == {"rate_per_s": 5.0, "burst": 20}
    assert "sha256" not in r.stdout and hash_key(key) not in r.stdout and key not in r.stdout

    r = _keys("revoke", "alice")
    assert r.exit_code == 0 and [k["name"] for k in json.loads(_keys("list").stdout)] == ["feed"]


@pytest.mark.parametrize(("args", "words"), [
    (["create", "--name", "x", "--scopes", "admin"], "scopes.0: Input should be 'read' or 'write'"),
    (["create", "--name", "x", "--rate-per-s", "0", "--burst", "3"], "rate_per_s: Input should be greater than 0"),
    (["create", "--name", "x", "--rate-per-s", "3"], "give both --rate-per-s and --burst"),
    (["create", "--name", "bad name"], "name: String should match pattern"),
    (["revoke", "nobody"], "no key named 'nobody'"),
])
def test_mistakes_are_one_line_and_exit_1(home, args, words):
    r = _keys(*args)
    assert r.exit_code == 1 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.output
    assert "Traceback" not in r.output


def test_duplicate_name_is_refused_and_file_option_wins(home, tmp_path):
    other = tmp_path / "elsewhere.json"
    assert _keys("create", "--name", "a", "--file", str(other)).exit_code == 0
    r = _keys("create", "--name", "a", "--file", str(other))
    assert r.exit_code == 1 and "a key named 'a' exists" in r.stderr
    assert not (home / "secrets").exists()


def test_first_serve_creates_one_local_key_and_clients_use_it(home, monkeypatch):
    line = bootstrap_local_key("http://127.0.0.1:8000")
    plain = home / "secrets" / "api_key"
    key = plain.read_text().strip()
    assert line == (f"API key 'local' (read, write) written to {plain}: send it with every call, e.g. "
                    f'curl -H "X-API-Key: $(cat {plain})" http://127.0.0.1:8000/v1/models')
    assert os.stat(plain).st_mode & 0o777 == 0o600 and key not in line
    ring = KeyRing.from_env(server_env())
    assert server_env() == {"FINPULSE_API_KEYS_FILE": str(home / "secrets" / "api_keys.json")}
    assert ring.match(key).name == "local" and ring.match(key).scopes == ["read", "write"]
    assert client_key() == key and client_headers() == {"X-API-Key": key}
    assert bootstrap_local_key("http://x") is None  # the next serve leaves the keys alone
    monkeypatch.setenv("FINPULSE_API_KEY", "fp_from_env")
    assert client_key() == "fp_from_env"


def test_no_bootstrap_where_keys_are_configured(home, monkeypatch, tmp_path):
    (home / "secrets").mkdir(parents=True)
    (home / "secrets" / "api_keys.json").write_text('{"keys": []}')  # its owner emptied it: stays empty
    assert bootstrap_local_key("http://x") is None and client_key() is None and client_headers() == {}
    monkeypatch.setenv("FINPULSE_API_KEYS", '{"keys": []}')
    (home / "secrets" / "api_keys.json").unlink()
    assert bootstrap_local_key("http://x") is None
    assert server_env() == {}  # never into a runtime_env: Ray's runtime_env agent logs the values


def test_finpulse_serve_points_the_replicas_at_the_keys(home):
    from finpulse.serving.launch import resolve_config

    cfg = resolve_config(Path(__file__).resolve().parents[2] / "serve_configs" / "local.yaml", port=18123)
    env = cfg["applications"][0]["runtime_env"]["env_vars"]
    assert env["FINPULSE_API_KEYS_FILE"] == str(home / "secrets" / "api_keys.json")
    assert "FINPULSE_API_KEYS" not in env


def test_a_bad_keys_file_stops_finpulse_serve_before_ray_starts(home, tmp_path, monkeypatch):
    bad = tmp_path / "keys.json"
    bad.write_text('{"keys": [{"name": "a", "sha256": "0", "scopes": ["read"]}]}')
    monkeypatch.setenv("FINPULSE_API_KEYS_FILE", str(bad))
    r = CliRunner().invoke(cli.app, ["serve", "--config", str(Path(__file__).resolve().parents[2] / "serve_configs"
                                                                 / "local.yaml")])
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1, r.output
    assert f"finpulse serve: API keys: FINPULSE_API_KEYS_FILE={bad}: keys.0.sha256: String should match" in r.stderr
