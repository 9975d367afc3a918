"""Typed settings: every knob a researcher turns, with defaults that run offline on a laptop.

Values come from keyword arguments, then ``FINPULSE_*`` environment variables, then the defaults
below, so a job on a KubeRay cluster is configured by its environment and a test by arguments.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where data, runs and services live. Defaults: a local `.finpulse/` folder and sqlite MLflow."""

    model_config = SettingsConfigDict(env_prefix="FINPULSE_", extra="ignore")

    home: str = Field(".finpulse", description="Local working folder for the embedded defaults.")
    data_root: str = Field("", description="Local path or s3:// URI for datasets; default <home>/data.")
    mlflow_tracking_uri: str = Field("", description="MLflow tracking URI; default sqlite:///<home>/mlflow.db.")
    mlflow_artifact_location: str | None = Field(
        None, description="Artifact root for new experiments; None lets MLflow pick (./mlruns)."
    )
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint (SeaweedFS, MinIO); None = AWS.")
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"
    ray_address: str | None = Field(None, description="Ray cluster address; None starts a local Ray.")
    seed: int = 42

    @model_validator(mode="after")
    def _defaults_under_home(self) -> Settings:
        """Unset locations follow ``home``, so one variable moves a whole local installation."""
        if not self.data_root:
            self.data_root = f"{self.home}/data"
        if not self.mlflow_tracking_uri:
            self.mlflow_tracking_uri = f"sqlite:///{self.home}/mlflow.db"
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
