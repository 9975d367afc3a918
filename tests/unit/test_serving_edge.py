"""The edge (finpulse/serving/edge.py): a real HAProxy in front of a deliberately slow HTTP server.

Past ``max_connections`` in flight and ``max_queue`` waiting, callers get a 503 with Retry-After and a
JSON detail at once instead of waiting; when the load stops, a lone request is served at full speed;
with the backend down, a 503 that says when to retry. No Ray: the edge knows nothing of Serve.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from conftest import REPO, free_port

from finpulse.serving import edge
from finpulse.serving.edge import EdgeConfig

SLOW_S = 0.5


class _Slow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(SLOW_S if self.path == "/slow" else 0.0)
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def backend():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_render_bounds_the_backend_and_answers_503_with_retry_after(tmp_path):
    cfg = EdgeConfig(max_connections=7, max_queue=3, queue_timeout_ms=250, retry_after_s=2)
    text = edge.render(cfg, ("0.0.0.0", 8000), 8123, tmp_path)  # noqa: S104 - the public bind under test
    assert "server serve 127.0.0.1:8123 maxconn 7 maxqueue 3" in text
    assert "timeout queue 250ms" in text and "bind 0.0.0.0:8000" in text
    page = (tmp_path / "503.http").read_bytes().decode()
    head, body = page.split("\r\n\r\n")
    assert "Retry-After: 2" in head and f"Content-Length: {len(body)}" in head and body.startswith('{"detail":')


def test_overload_is_shed_at_once_and_a_lone_request_is_fast_after(backend):
    cfg = EdgeConfig(max_connections=2, max_queue=2, queue_timeout_ms=300, retry_after_s=1)
    running = edge.start(cfg, ("127.0.0.1", free_port()), backend.server_port)
    try:
        def call(_: int) -> tuple[int, float, str | None, dict]:
            t0 = time.perf_counter()
            r = requests.get(f"{running.url}/slow", timeout=30)
            return r.status_code, time.perf_counter() - t0, r.headers.get("Retry-After"), r.json()

        with ThreadPoolExecutor(40) as pool:
            results = list(pool.map(call, range(40)))
        statuses = [s for s, *_ in results]
        assert set(statuses) == {200, 503} and statuses.count(200) >= 2, statuses
        shed = [(t, ra, body) for s, t, ra, body in results if s == 503]
        assert all(ra == "1" and "overloaded" in body["detail"] for _, ra, body in shed)
        assert max(t for t, *_ in shed) < SLOW_S + 0.3 + 0.5  # shed at once or after the queue timeout, never later
        t0 = time.perf_counter()
        assert requests.get(f"{running.url}/fast", timeout=10).status_code == 200
        assert time.perf_counter() - t0 < 0.5
    finally:
        running.stop()
    assert running.proc.poll() is not None and not running.run_dir.exists()


def test_backend_down_is_a_503_with_retry_after():
    running = edge.start(EdgeConfig(), ("127.0.0.1", free_port()), free_port())  # nothing listens there
    try:
        r = requests.get(f"{running.url}/v1/models", timeout=30)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1" and "detail" in r.json()
    finally:
        running.stop()


def test_serve_never_refuses_what_the_local_edge_admits():
    """The edge is the bound; Serve's queues behind it hold everything it lets through (a tighter Serve
    bound turned bursts of a half-capacity soak into 503s)."""
    import yaml

    from finpulse.serving.launch import edge_config

    path = REPO / "serve_configs" / "local.yaml"
    ecfg = edge_config(path)
    gateway = next(d for d in yaml.safe_load(path.read_text())["applications"][0]["deployments"] if d["name"] == "Gateway")
    assert ecfg is not None and ecfg.max_connections + ecfg.max_queue <= gateway["max_queued_requests"]
    assert gateway["backpressure_config"] == {"status_code": 503, "retry_after_s": ecfg.retry_after_s}
