"""Where each stage reads and writes, derived once from the settings' (absolute) data root.

Every stage, the demo, the CLI and jobs name their folders through :class:`DataPaths`, so the
layout of a data root is written down in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from finpulse import storage
from finpulse.config import Settings, get_settings


@dataclass(frozen=True)
class DataPaths:
    """Where each stage reads and writes under one data root (local folder or s3:// prefix)."""

    root: str

    @property
    def raw_prices(self) -> str:
        return storage.join(self.root, "raw", "prices")

    @property
    def raw_posts(self) -> str:
        return storage.join(self.root, "raw", "posts")

    @property
    def curated(self) -> str:
        return storage.join(self.root, "curated")

    @property
    def scores(self) -> str:
        return storage.join(self.root, "scores")


def data_paths(settings: Settings | None = None) -> DataPaths:
    """The paths under the settings' data root (already absolute: see ``Settings``)."""
    return DataPaths((settings or get_settings()).data_root)
