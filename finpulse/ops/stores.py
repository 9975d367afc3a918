"""The two S3 endpoints a backup moves data between, as boto3 clients: the live store (MinIO on the cluster,
``FINPULSE_S3_*``, the settings every job uses) and the backup target (``FINPULSE_BACKUP_*``, the
`finpulse-backup` Secret on the cluster), which must not share the live store's volume."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from finpulse.config import Settings, get_settings
from finpulse.outages import reaching
from finpulse.storage import s3_endpoint


class BackupSettings(BaseSettings):
    """Where backups go and how many database dumps are kept; read from ``FINPULSE_BACKUP_*``."""

    model_config = SettingsConfigDict(env_prefix="FINPULSE_BACKUP_", extra="ignore")

    s3_endpoint_url: str | None = Field(None, description="The backup target's S3 endpoint (Chameleon's object "
                                                          "store, a second MinIO); None = AWS.")
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"
    bucket: str = Field("finpulse-backup", description="The target bucket (created beforehand).")
    prefix: str = Field("finpulse", description="Folder in the bucket for this deployment's backups.")
    keep: int = Field(14, ge=1, description="Database dumps kept per database; older ones are deleted.")
    buckets: str = Field("finpulse,mlflow", description="Live buckets the object mirror copies (comma-separated).")
    max_attempts: int = Field(3, ge=1, description="Attempts per S3 request on either endpoint.")
    connect_timeout_s: float = Field(5.0, gt=0, description="S3 connect timeout per attempt.")

    def bucket_list(self) -> list[str]:
        return [b.strip() for b in self.buckets.split(",") if b.strip()]


@dataclass(frozen=True)
class Store:
    """One S3 endpoint: its client, its URL (for errors) and what it is called in messages."""

    client: Any
    endpoint: str
    service: str

    def reaching(self, action: str) -> Any:
        """Turn a failure while the endpoint is down into one :class:`ServiceUnreachable` line."""
        return reaching(self.service, self.endpoint, action)


def make_client(endpoint: str | None, key: str | None, secret: str | None, region: str, *,
                max_attempts: int, connect_timeout_s: float) -> Any:
    """A boto3 S3 client with path-style addressing (MinIO, SeaweedFS) and bounded retries."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": max_attempts, "mode": "standard"}, connect_timeout=connect_timeout_s,
                    read_timeout=60, s3={"addressing_style": "path"})
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                        region_name=region, config=config)


def live_store(settings: Settings | None = None, backup: BackupSettings | None = None) -> Store:
    """The deployment's own S3 (MinIO): the same ``FINPULSE_S3_*`` (or AWS_*) settings every job uses."""
    s, b = settings or get_settings(), backup or BackupSettings()
    endpoint = s3_endpoint(s)  # the endpoint every FinPulse S3 access uses (finpulse.storage)
    key = s.s3_access_key or os.environ.get("AWS_ACCESS_KEY_ID")
    secret = s.s3_secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY")
    client = make_client(endpoint, key, secret, s.s3_region, max_attempts=b.max_attempts,
                         connect_timeout_s=b.connect_timeout_s)
    return Store(client, endpoint, "S3 endpoint")


def backup_store(backup: BackupSettings | None = None) -> Store:
    """The backup target (``FINPULSE_BACKUP_S3_*``)."""
    b = backup or BackupSettings()
    client = make_client(b.s3_endpoint_url, b.s3_access_key, b.s3_secret_key, b.s3_region,
                         max_attempts=b.max_attempts, connect_timeout_s=b.connect_timeout_s)
    return Store(client, b.s3_endpoint_url or f"https://s3.{b.s3_region}.amazonaws.com", "backup S3 endpoint")
