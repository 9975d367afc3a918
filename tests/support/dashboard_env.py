"""Point FinPulse's settings at a given home for one test (the dashboard's tests)."""

from __future__ import annotations

from pathlib import Path

import pytest


def use_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Point the settings (and anything started from this process) at ``home``."""
    from finpulse.config import get_settings

    monkeypatch.setenv("FINPULSE_HOME", str(home))
    monkeypatch.setenv("FINPULSE_DATA_ROOT", str(home / "data"))
    monkeypatch.setenv("FINPULSE_MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")
    monkeypatch.setenv("FINPULSE_MLFLOW_ARTIFACT_LOCATION", str(home / "mlartifacts"))
    get_settings.cache_clear()
