"""Custom serving metrics (``ray.serve.metrics``), exported beside Serve's built-in ones.

Label sets stay small on purpose: route (a fixed list), model version, status code, stage, label, and
``slot`` (stable|canary|none), so the canary soak can compare the two slots even when their versions match.
Outside a Ray worker the recorders become no-ops, so the pure API can be tested without Ray.
"""

from __future__ import annotations

import logging
import math
from collections import Counter as _Tally
from collections.abc import Iterable

log = logging.getLogger(__name__)

LATENCY_MS_BOUNDARIES = [1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000]
BATCH_SIZE_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
# Ray histograms take positive boundaries only, so returns are recorded as the gross price ratio
# exp(r) = predicted close / close: 1.0 is "no change", 1.01 is +1%.
GROSS_RETURN_BOUNDARIES = [0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 1.0, 1.005, 1.01, 1.02, 1.03, 1.05, 1.1]


class ServingMetrics:
    """Requests by route/version/status, latency, batch sizes, predicted returns and sentiment classes."""

    def __init__(self) -> None:
        try:
            from ray.serve.metrics import Counter, Gauge, Histogram

            self._requests = Counter("finpulse_requests", "HTTP requests by route, model version, status and slot",
                                     tag_keys=("route", "model_version", "status", "slot"))
            self._latency = Histogram("finpulse_request_latency_ms", "Gateway latency per request",
                                      boundaries=LATENCY_MS_BOUNDARIES, tag_keys=("route", "slot"))
            self._batch = Histogram("finpulse_batch_size", "Items per batch at each hop and model pass",
                                    boundaries=BATCH_SIZE_BOUNDARIES, tag_keys=("stage",))
            self._returns = Histogram("finpulse_predicted_gross_return",
                                      "Predicted next-day price ratio exp(r) (1.0 = unchanged)",
                                      boundaries=GROSS_RETURN_BOUNDARIES, tag_keys=("model_version", "slot"))
            self._classes = Counter("finpulse_sentiment_predictions", "Predicted sentiment classes",
                                    tag_keys=("label", "model_version"))
            self._age_days = Gauge("finpulse_feature_age_trading_days",
                                   "Trading days between the newest closed session and a ticker's features",
                                   tag_keys=("ticker",))
            self._age_s = Gauge("finpulse_feature_age_seconds", "Seconds since a ticker's features were updated",
                                tag_keys=("ticker",))
            self._model_age = Gauge("finpulse_model_age_seconds", "Seconds since the served model version was "
                                    "created (registry creation time, else its checkpoint)", tag_keys=("model", "slot"))
            self._drift = Gauge("finpulse_drift_score", "The drift job's latest score per signal and feature",
                                tag_keys=("signal", "feature"))
            self._drift_alarm = Gauge("finpulse_drift_alarm", "1 when the drift job's latest report raised the alarm")
            self.enabled = True
        except Exception as exc:  # outside Ray (pure tests) this is expected; inside a replica it is a bug
            log.warning("serving metrics disabled: %s", exc)
            self.enabled = False

    def request(self, route: str, version: str, status: int, seconds: float, slot: str = "none") -> None:
        if self.enabled:
            self._requests.inc(1, tags={"route": route, "model_version": version, "status": str(status), "slot": slot})
            self._latency.observe(seconds * 1000.0, tags={"route": route, "slot": slot})

    def batch(self, stage: str, size: int) -> None:
        if self.enabled:
            self._batch.observe(float(size), tags={"stage": stage})

    def predicted_returns(self, version: str, values: Iterable[float], slot: str = "none") -> None:
        if self.enabled:
            for v in values:
                self._returns.observe(math.exp(float(v)), tags={"model_version": version, "slot": slot})

    def sentiment_classes(self, version: str, labels: Iterable[str]) -> None:
        if self.enabled:
            for label, n in _Tally(labels).items():
                self._classes.inc(n, tags={"label": label, "model_version": version})

    def feature_age(self, ticker: str, trading_days: int, seconds: float) -> None:
        if self.enabled:
            self._age_days.set(float(trading_days), tags={"ticker": ticker})
            self._age_s.set(float(seconds), tags={"ticker": ticker})

    def model_age(self, model: str, slot: str, seconds: float) -> None:
        if self.enabled:
            self._model_age.set(float(seconds), tags={"model": model, "slot": slot})

    def drift(self, scores: Iterable[tuple[str, str, float]], alarm: bool) -> None:
        """The drift job's latest gauges (``(signal, feature, score)``) and its alarm as 0/1."""
        if self.enabled:
            for signal, feature, score in scores:
                self._drift.set(float(score), tags={"signal": signal, "feature": feature})
            self._drift_alarm.set(1.0 if alarm else 0.0)


LAG_MS_BOUNDARIES = [10, 25, 50, 100, 200, 350, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000]


class LiveMetrics:
    """The stream processor's counters per message kind and outcome, and the publish-to-visible lag."""

    def __init__(self) -> None:
        from ray.util.metrics import Counter, Histogram

        self._messages = Counter("finpulse_live_messages", "Live feed messages by kind and outcome",
                                 tag_keys=("kind", "outcome"))
        self._lag = Histogram("finpulse_live_lag_ms", "Publish to features visible, per post",
                              boundaries=LAG_MS_BOUNDARIES)

    def messages(self, kind: str, outcome: str, n: int) -> None:
        if n:
            self._messages.inc(n, tags={"kind": kind, "outcome": outcome})

    def lags(self, values_ms: Iterable[float]) -> None:
        for v in values_ms:
            self._lag.observe(float(v))
