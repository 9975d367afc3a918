"""One clear error when a server FinPulse depends on (the S3 endpoint, the MLflow tracking server) is gone.

A dead endpoint otherwise surfaces as whatever the deepest client says: a pyarrow ``OSError`` about
``curlCode: 7``, a ``RayTaskError`` wrapping it with a worker's traceback, or an ``MlflowException``
about ``Max retries exceeded``, and only after the clients' own retries (MLflow's default is 7 retries
with backoff: four minutes). FinPulse bounds those retries through settings (``FINPULSE_S3_*``,
``FINPULSE_MLFLOW_HTTP_*``) and turns a failure while the endpoint does not answer into
:class:`ServiceUnreachable`, one line that names the service, its endpoint and what was being done.
The endpoint is probed only after something failed, so the happy path costs nothing.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit


class ServiceUnreachable(ConnectionError):
    """A server did not answer: ``service`` (e.g. "S3 endpoint"), its ``endpoint`` URL and the ``action``."""

    def __init__(self, service: str, endpoint: str, action: str, cause: BaseException | None = None) -> None:
        self.service, self.endpoint, self.action = service, endpoint, action
        detail = f" ({root_cause(cause)})" if cause is not None else ""
        super().__init__(f"{service} {endpoint} unreachable while {action}{detail}")


def answers(url: str, timeout_s: float = 1.0) -> bool:
    """Whether something accepts a TCP connection at the URL's host and port (a killed server does not)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def gone(endpoint: str, pauses_s: tuple[float, ...] = (0.0, 0.5, 1.0)) -> bool:
    """Whether ``endpoint`` stopped answering, looked at more than once: a server being killed can fail a
    request (S3's INTERNAL_FAILURE) while its port still accepts connections for a moment."""
    for pause in pauses_s:
        time.sleep(pause)
        if not answers(endpoint):
            return True
    return False


def root_cause(exc: BaseException) -> str:
    """The innermost cause as one short line (a RayTaskError's own text is the worker's whole traceback)."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "cause", None) or exc.__cause__
        if not isinstance(inner, BaseException):
            break
        exc = inner
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""  # the message; libraries append hints below it (Ray Data does)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


@contextmanager
def reaching(service: str, endpoint: str | None, action: str | Callable[[], str]) -> Iterator[None]:
    """Raise :class:`ServiceUnreachable` instead of whatever the block raised, when ``endpoint`` no longer
    answers; any other failure passes unchanged. ``endpoint=None`` (a local path, sqlite) turns it off;
    ``action`` may be a callable, read only on failure (e.g. the stage a run had reached)."""
    try:
        yield
    except ServiceUnreachable as inner:  # from a nested block: say what this one was doing too
        if (inner.service, inner.endpoint) != (service, endpoint):
            raise
        what = action() if callable(action) else action
        raise ServiceUnreachable(service, endpoint, f"{what}: {inner.action}", inner.__cause__) from inner.__cause__
    except Exception as exc:
        if endpoint and gone(endpoint):
            what = action() if callable(action) else action
            raise ServiceUnreachable(service, endpoint, what, exc) from exc
        raise


class Reaching:
    """Any client (an ``MlflowClient``) whose every method call runs inside :func:`reaching`."""

    def __init__(self, target: Any, service: str, endpoint: str | None) -> None:
        self._target, self._service, self._endpoint = target, service, endpoint

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with reaching(self._service, self._endpoint, f"calling {name}"):
                return attr(*args, **kwargs)
        return call
