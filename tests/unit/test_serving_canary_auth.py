"""Where the canary commands look for the Ray cluster's token, in Ray's own order, and the one-line
errors they give when the dashboard is missing or refuses them (a real HTTP server stands in for it)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from conftest import free_port

from finpulse.serving.canary import DashboardError, ServeConfigClient, cluster_token


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
