"""How FinPulse connects to MLflow: the tracking URI from settings, bounded HTTP retries, and a dead
server reported as one :class:`~finpulse.outages.ServiceUnreachable` that names it.

MLflow's own client retries a failed request 7 times with backoff 2 (measured here: 247 s before a
killed server's ``Connection refused`` came back). FinPulse sets MLflow's retry variables from settings
(``FINPULSE_MLFLOW_HTTP_*``: 3 retries, backoff 1 s: ~8 s), in the driver by :func:`configure` and in
Ray workers by the :class:`~finpulse.tracking.RunLogger` they are handed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from finpulse import outages
from finpulse.config import Settings, get_settings

TRACKING_SERVER = "MLflow tracking server"


def configure(settings: Settings | None = None) -> str:
    """Point this process at the tracking server in settings (retries bounded: :func:`http_limits`);
    make local folders it needs."""
    s = settings or get_settings()
    uri = s.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    os.environ.update(http_limits(s))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def http_limits(settings: Settings | None = None) -> dict[str, str]:
    """MLflow's HTTP retry and timeout variables from settings (MLflow reads them at every request)."""
    s = settings or get_settings()
    return {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(s.mlflow_http_max_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(s.mlflow_http_backoff_factor),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(s.mlflow_http_timeout_s)}


def server_url(uri: str) -> str | None:
    return uri if uri.startswith(("http://", "https://")) else None


def unreachable_as_error(uri: str, action: str) -> contextlib.AbstractContextManager[None]:
    """Failures while an HTTP tracking server does not answer become one ServiceUnreachable naming it."""
    return outages.reaching(TRACKING_SERVER, server_url(uri), action)


def reaching_client(uri: str) -> MlflowClient:
    """An MlflowClient whose calls fail with one ServiceUnreachable naming ``uri`` when the server is gone."""
    return outages.Reaching(MlflowClient(uri), TRACKING_SERVER, server_url(uri))  # type: ignore[return-value]
