"""The registered models' and experiments' names: spelled once, importable without MLflow (the CLI's
option defaults and the stream processor's config use them; :mod:`finpulse.tracking` re-exports them)."""

from __future__ import annotations

FORECAST_MODEL = "finpulse-forecaster"
SENTIMENT_MODEL = "finpulse-sentiment"
FORECAST_EXPERIMENT = "finpulse-forecast"
SENTIMENT_EXPERIMENT = "finpulse-sentiment"
PIPELINE_EXPERIMENT = "finpulse-pipeline"  # one parent run per retraining turn, a child per step
CHALLENGER = "challenger"
CHAMPION = "champion"


def model_spec(name: str, alias: str = CHAMPION) -> str:
    """``name@alias``: how serving, scoring and the CLI name a registered model."""
    return f"{name}@{alias}"
DRIFT_EXPERIMENT = "finpulse-drift"
