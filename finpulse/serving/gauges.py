"""Freshness gauges the model replicas export: each slot's model age and the drift job's latest scores.

Serving is the one place that knows which version each slot holds, so it exports the age of that
version (its registry creation time, else its checkpoint's); the drift job writes
``<data_root>/monitoring/drift/latest.json`` and serving re-exports it, so Prometheus needs no
second scrape target. Both refresh on the Forecaster's live-features timer (throttled here).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

REFRESH_S = 5.0
_REGISTRY_LABEL = re.compile(r"^(?P<name>[^/@:]+)/v(?P<version>\d+)$")


def drift_latest_uri(data_root: str | None = None) -> str:
    """Where the drift job writes its latest report (:attr:`DataPaths.drift_latest`)."""
    from finpulse.paths import DataPaths, data_paths

    return (DataPaths(data_root) if data_root else data_paths()).drift_latest


@dataclass(frozen=True)
class DriftReading:
    """The drift job's latest report as gauges: ``(signal, feature, score)`` rows and the alarm."""

    created_at: str
    alarm: bool
    reference_model: str
    scores: tuple[tuple[str, str, float], ...]


def parse_drift(report: dict) -> DriftReading:
    """``{"created_at", "alarm", "reference_model", "gauges": [{"signal", "feature", "score"}]}``."""
    scores = tuple((str(g["signal"]), str(g["feature"]), float(g["score"])) for g in report.get("gauges") or [])
    return DriftReading(str(report.get("created_at", "")), bool(report.get("alarm", False)),
                        str(report.get("reference_model", "")), scores)


def read_drift(uri: str) -> DriftReading | None:
    """The latest drift report, or None when the drift job has not written one (no gauges then)."""
    from finpulse import storage

    if not storage.exists(uri):
        return None
    return parse_drift(storage.read_json(uri))


def model_created_at(model: Any, version: str | None, spec: str | None) -> float | None:
    """When the served version was made: the registry's creation time for ``name/vN`` versions, else a
    ``created_at`` in the checkpoint's meta, else the model folder's modification time."""
    m = _REGISTRY_LABEL.match(version or "")
    if m:
        from finpulse import tracking

        return tracking.version_created_at(m["name"], m["version"])
    meta = getattr(model, "meta", None) or {}
    stamp = (meta.get("extra") or {}).get("created_at") or meta.get("created_at")
    if stamp:
        try:
            return dt.datetime.fromisoformat(str(stamp)).timestamp()
        except ValueError:
            pass
    if spec and os.path.exists(spec):
        return os.path.getmtime(spec)
    return None


class FreshnessGauges:
    """Exports one slot's model age (and, for the stable Forecaster, the drift gauges) at most every
    ``REFRESH_S``; the creation time is looked up once per loaded version."""

    def __init__(self, metrics: Any, model: str, slot: str, drift: bool):
        self.metrics, self.model, self.slot, self.drift = metrics, model, slot, drift
        self._created: tuple[str | None, float | None] = (None, None)
        self._last = 0.0

    def due(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) - self._last >= REFRESH_S

    def refresh(self, model_slot: Any, now: float | None = None) -> None:
        """Blocking (registry and storage reads): call it from a thread."""
        now = time.time() if now is None else now
        if not self.due(now):
            return
        self._last = now
        if model_slot.ready:
            if self._created[0] != model_slot.version:
                self._created = (model_slot.version,
                                 model_created_at(model_slot.model, model_slot.version, model_slot.spec))
            if self._created[1] is not None:
                self.metrics.model_age(self.model, self.slot, max(0.0, now - self._created[1]))
        if self.drift:
            reading = read_drift(drift_latest_uri())
            if reading is not None:
                self.metrics.drift(reading.scores, reading.alarm)
