"""A real PostgreSQL server (Debian `postgresql`: initdb and postgres on PATH) in a temporary folder, on a
free loopback port, with password authentication. PostgreSQL refuses to run as root, so as root the
server runs as the `postgres` user (runuser) in a folder it owns."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.servers import free_port

USER, PASSWORD = "finpulse", "pg-test-password"  # pragma: allowlist secret - throwaway local test server


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if not found:
        raise FileNotFoundError(f"{name} not found: install the Debian package `postgresql`")
    return str(found)


@contextlib.contextmanager
def postgres_server() -> Iterator[dict[str, str]]:
    """Start a server; yields libpq environment variables (PGHOST, PGPORT, PGUSER, PGPASSWORD) for it."""
    root = Path(tempfile.mkdtemp(prefix="finpulse-pg-"))
    port = free_port()
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        pwfile = root / "pw"
        pwfile.write_text(PASSWORD)
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run(_as_server_user([_binary("initdb"), "-D", str(root / "data"), "-U", USER, f"--pwfile={pwfile}",
                                        "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"]),
                       check=True, capture_output=True, timeout=120)
        log = open(root / "server.log", "wb")  # noqa: SIM115 - closed in finally
        proc = subprocess.Popen(_as_server_user([_binary("postgres"), "-D", str(root / "data"), "-p", str(port),
                                                 "-h", "127.0.0.1", "-k", str(root), "-c", "fsync=off"]),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        env = {"PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": USER, "PGPASSWORD": PASSWORD}
        try:
            _wait_ready(env, proc)
            yield env
        finally:
            os.killpg(proc.pid, signal.SIGINT)  # "fast" shutdown: clients' pooled connections are not waited for
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(env: dict[str, str], proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited with {proc.returncode} before it accepted connections")
        r = subprocess.run([_binary("pg_isready"), "-d", "postgres"], env={**os.environ, **env}, capture_output=True)
        if r.returncode == 0:
            return
        time.sleep(0.2)
    raise TimeoutError("postgres did not accept connections in time")


def psql(env: dict[str, str], database: str, sql: str) -> str:
    """Run SQL with psql; returns its unaligned, tuples-only output."""
    r = subprocess.run([_binary("psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At", "-d", database, "-c", sql],
                       env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"psql failed: {r.stderr.strip()}")
    return r.stdout.strip()
