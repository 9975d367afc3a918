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
        """Every model score the ETL may use: the batch scorer's and the stream's (read recursively)."""
        return storage.join(self.root, "scores")

    @property
    def batch_scores(self) -> str:
        """What ``finpulse score`` writes (replaced on every run)."""
        return storage.join(self.root, "scores", "batch")

    # ---- the live path: what the stream processor stores, in the batch readers' formats ----

    @property
    def live_posts(self) -> str:
        return storage.join(self.root, "raw", "posts", "live")

    @property
    def live_prices(self) -> str:
        return storage.join(self.root, "raw", "prices", "live")

    @property
    def live_scores(self) -> str:
        return storage.join(self.root, "scores", "live")

    @property
    def live_quarantine(self) -> str:
        return storage.join(self.root, "live", "quarantine")

    @property
    def live_features(self) -> str:
        """Per-ticker feature rows and ``state.json``: what the Forecaster follows."""
        return storage.join(self.root, "live", "features")

    @property
    def drift_reports(self) -> str:
        """The drift job's reports (``<stamp>/report.json|html``)."""
        return storage.join(self.root, "monitoring", "drift")

    @property
    def drift_latest(self) -> str:
        """The drift job's latest verdict and scores: what the serving gauges export."""
        return storage.join(self.drift_reports, "latest.json")


def data_paths(settings: Settings | None = None) -> DataPaths:
    """The paths under the settings' data root (already absolute: see ``Settings``)."""
    return DataPaths((settings or get_settings()).data_root)
