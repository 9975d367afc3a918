"""Typed settings: every knob a researcher turns, with defaults that run offline on a laptop.

Values come from keyword arguments, then ``FINPULSE_*`` environment variables, then the defaults
below, so a job on a KubeRay cluster is configured by its environment and a test by arguments.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where data, runs and services live. Defaults: a local `.finpulse/` folder and sqlite MLflow."""

    model_config = SettingsConfigDict(env_prefix="FINPULSE_", extra="ignore")

    home: str = Field("", description="Local working folder; default: see default_home(). Made absolute.")
    data_root: str = Field("", description="Local path or s3:// URI for datasets; default <home>/data.")
    mlflow_tracking_uri: str = Field("", description="MLflow tracking URI; default sqlite:///<home>/mlflow.db.")
    mlflow_artifact_location: str | None = Field(
        None, description="Artifact root for new experiments; default <home>/mlartifacts with sqlite MLflow."
    )
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint (SeaweedFS, MinIO); None = AWS.")
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"
    # ---- outages (issue 14): bounded retries, so a dead server is one clear error in seconds, not minutes ----
    s3_max_attempts: int = Field(3, ge=1, description="Attempts per S3 request (the S3 client's own retries); Ray "
                                 "Data's extra retry layer is off in the ETL, so this is the whole budget.")
    s3_connect_timeout_s: float = Field(2.0, gt=0, description="S3 connect timeout per attempt.")
    mlflow_http_max_retries: int = Field(3, ge=0, description="Retries per MLflow HTTP request (MLflow's own "
                                         "default, 7 with backoff 2, waits ~4 minutes on a dead server).")
    mlflow_http_backoff_factor: int = Field(1, ge=0, description="MLflow retry backoff: factor x (0, 2, 4, ...) s.")
    mlflow_http_timeout_s: int = Field(60, ge=1, description="MLflow HTTP connect/read timeout per attempt.")
    registration_grace_s: float = Field(600.0, ge=0, description="A model version a crashed registration left "
                                        "pending is removed by the next registration once older than this.")
    ray_address: str | None = Field(None, description="Ray cluster address; None starts a local Ray.")
    ray_storage_path: str = Field("", description="Where Ray Train and Tune keep results and checkpoints: a local "
                                  "path or s3://bucket/prefix (shared by every node of a cluster: a worker restarted "
                                  "on another node resumes from it); default <home>/ray_results.")
    nats_url: str = Field("nats://127.0.0.1:4222", description="The live feed's broker (NATS JetStream); "
                                                              "`finpulse broker` starts one here locally.")
    tickers: str = Field("AAPL,AMZN,GOOG,MSFT,TSLA", description="Tickers the live sources poll (comma-separated).")
    seed: int = 42
    # ---- serving: the canary soak and model freshness (issue 11) ----
    prometheus_url: str | None = Field(None, description="Prometheus that scrapes Ray (the canary soak reads it); "
                                                         "None: the soak scrapes Ray's metrics endpoints itself.")
    max_model_age_days: float = Field(7.0, gt=0, description="A champion older than this is stale. Must match "
                                      "finpulse:max_model_age_seconds in cluster/base/monitoring/rules/finpulse-alerts.yml.")

    @model_validator(mode="after")
    def _absolute_defaults_under_home(self) -> Settings:
        """Unset locations follow ``home``, so one variable moves a whole local installation.

        Every local location is made absolute here, once: Ray Train V2 runs workers in the run's
        storage folder and ``ray job submit --working-dir`` runs the driver in a temporary package
        folder, so a relative path would name a different (or vanishing) file there.
        """
        self.home = absolute_path(self.home or default_home())
        self.data_root = absolute_path(self.data_root or os.path.join(self.home, "data"))
        self.ray_storage_path = absolute_path(self.ray_storage_path or os.path.join(self.home, "ray_results"))
        self.mlflow_tracking_uri = absolute_sqlite(self.mlflow_tracking_uri or f"sqlite:///{self.home}/mlflow.db")
        if self.mlflow_artifact_location:
            self.mlflow_artifact_location = absolute_path(self.mlflow_artifact_location)
        elif self.mlflow_tracking_uri.startswith("sqlite:"):  # a tracking server keeps its own artifact root
            self.mlflow_artifact_location = os.path.join(self.home, "mlartifacts")
        return self


def default_home() -> str:
    """``<checkout>/.finpulse`` when this Python is the checkout's ``.venv`` (``make demo``, the CLI, and
    jobs on a cluster started from that venv), else ``~/.finpulse``: always absolute and persistent,
    never the working folder of a job."""
    checkout = Path(sys.prefix).resolve().parent
    project = checkout / "pyproject.toml"
    if project.is_file() and 'name = "finpulse"' in project.read_text(errors="replace"):
        return str(checkout / ".finpulse")
    return str(Path.home() / ".finpulse")


def absolute_path(location: str) -> str:
    """A local path made absolute (``~`` expanded); URIs such as ``s3://`` or ``file://`` unchanged."""
    if "://" in location:
        return location
    return os.path.abspath(os.path.expanduser(location))


def absolute_sqlite(uri: str) -> str:
    """``sqlite:///relative.db`` made absolute; other URIs (http, postgresql, absolute sqlite) unchanged."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + absolute_path(uri[len(prefix):])
    return uri


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as ``FINPULSE_*`` variables (resolved, absolute), for Ray workers, jobs and replicas.

    Credentials are left out: this lands in runtime_envs and Serve configs that the dashboard shows.
    Tasks that reach S3 get them through ``storage.worker_env``; replicas from their own environment.
    """
    values = settings.model_dump(exclude={"s3_access_key", "s3_secret_key"})
    return {f"FINPULSE_{k.upper()}": str(v) for k, v in values.items() if v is not None and v != ""}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
