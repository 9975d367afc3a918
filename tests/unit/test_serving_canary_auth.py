"""Where the canary commands look for the Ray cluster's token, in Ray's own order, and the one-line
errors they give when the dashboard is missing or refuses them (a real HTTP server stands in for it)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from conftest import free_port

from finpulse.config import get_settings
from finpulse.serving.canary import ApiKeyRefused, DashboardError, ServeConfigClient, cluster_token


@pytest.fixture()
def no_token_env(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    return tmp_path


def test_token_lookup_order(no_token_env, monkeypatch):
    tmp = no_token_env
    assert cluster_token() is None
    (tmp / "user" / ".ray").mkdir(parents=True)
    (tmp / "user" / ".ray" / "auth_token").write_text("home-token\n")
    assert cluster_token() == "home-token"
    (tmp / "recorded").write_text("recorded-token")
    assert cluster_token(str(tmp / "recorded")) == "recorded-token"
    (tmp / "env_path").write_text("path-token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp / "env_path"))
    assert cluster_token(str(tmp / "recorded")) == "path-token"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "env-token")
    assert cluster_token(str(tmp / "recorded")) == "env-token"
    assert ServeConfigClient("http://x", token_path=None).headers == {"Authorization": "Bearer env-token"}


class _Dashboard(BaseHTTPRequestHandler):
    """Answers like Ray's token middleware: 401 without a token, 403 with a wrong one."""

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization")
        self.send_response(401 if auth is None else 403 if auth != "Bearer right" else 200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


def test_dashboard_errors_are_one_line_with_the_fix(no_token_env, monkeypatch):
    with pytest.raises(DashboardError, match="finpulse serve"):
        ServeConfigClient(f"http://127.0.0.1:{free_port()}").details()
    server = HTTPServer(("127.0.0.1", 0), _Dashboard)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with pytest.raises(DashboardError, match=r"none was found.*RAY_AUTH_TOKEN") as e:
            ServeConfigClient(url).details()
        assert "\n" not in str(e.value)
        monkeypatch.setenv("RAY_AUTH_TOKEN", "wrong")
        with pytest.raises(DashboardError, match="rejected"):
            ServeConfigClient(url).details()
        monkeypatch.setenv("RAY_AUTH_TOKEN", "right")
        assert ServeConfigClient(url).details() == {}
    finally:
        server.shutdown()


class _App(BaseHTTPRequestHandler):
    """The dashboard's application list pointing at itself, and the Gateway's /v1/models behind a key."""

    def do_GET(self) -> None:
        if self.path.startswith("/api/serve/applications"):
            body = {"http_options": {"host": "127.0.0.1", "port": self.server.server_port},
                    "applications": {"finpulse": {"route_prefix": "/"}}}
            status = 200
        else:
            status = 200 if self.headers.get("X-API-Key") == "fp_right" else 401
            body = {"models": {}} if status == 200 else {"detail": "invalid API key"}
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args) -> None:
        pass


def test_a_refused_api_key_is_a_one_line_fix_and_does_not_turn_the_loop_canary_off(no_token_env, monkeypatch):
    from finpulse.loop.run import serving_client

    monkeypatch.delenv("FINPULSE_API_KEY", raising=False)
    monkeypatch.setenv("FINPULSE_HOME", str(no_token_env / "home"))
    get_settings.cache_clear()
    server = HTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        assert ServeConfigClient(url, api_key="fp_right").models() == {"models": {}}  # pragma: allowlist secret - a stand-in
        with pytest.raises(ApiKeyRefused, match=r"refused a missing API key \(401: invalid API key\).*FINPULSE_API_KEY"):
            ServeConfigClient(url).models()
        monkeypatch.setenv("FINPULSE_API_KEY", "fp_wrong")
        with pytest.raises(ApiKeyRefused, match="refused the API key") as e:
            serving_client(url)  # not "no app there": the loop must not quietly skip its canary
        assert "\n" not in str(e.value) and "fp_wrong" not in str(e.value)
        monkeypatch.setenv("FINPULSE_API_KEY", "fp_right")
        assert serving_client(url) is not None
        assert serving_client(f"http://127.0.0.1:{free_port()}") is None  # no app: the loop goes on without
    finally:
        server.shutdown()
        get_settings.cache_clear()
