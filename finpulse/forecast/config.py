"""Every knob of the forecaster in one typed object, so a run's parameters are one dict in MLflow."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from finpulse.data.schemas import PRICE_FEATURES, SENTIMENT_FEATURES

FeatureSet = Literal["price", "price_sentiment"]


class ForecastConfig(BaseModel):
    """Model, training and split settings. Dates split by the *as-of* day of a sample (its features' day).

    ``train_end`` is the first day NOT used for fitting (validation starts there, for early stopping);
    ``val_end`` is the first day not used at all (the test or live period starts there). When they are
    None, the last ``val_fraction`` of the training days is used for validation.
    """

    lookback: int = Field(20, ge=2)
    hidden_size: int = Field(32, ge=1)
    num_layers: int = Field(1, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    embedding_dim: int = Field(4, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(128, ge=1)
    max_epochs: int = Field(30, ge=1)
    patience: int = Field(5, ge=1)
    feature_set: FeatureSet = "price_sentiment"
    quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)
    point_loss: Literal["mse", "huber", "l1"] = "huber"
    quantile_weight: float = Field(1.0, ge=0)
    interval_calibration: Literal["additive", "scaled", "vol", "none"] = "additive"  # CQR on the validation windows
    interval_track_rate: float = Field(0.1, ge=0)  # online per-ticker tracking of misses (0: static CQR only)
    seed: int = 42
    num_workers: int = Field(2, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    tickers: list[str] | None = None
    train_start: dt.date | None = None
    train_end: dt.date | None = None
    val_end: dt.date | None = None
    val_fraction: float = Field(0.15, gt=0, lt=1)

    def feature_columns(self) -> list[str]:
        return feature_columns(self.feature_set)

    @property
    def interval_level(self) -> float:
        return round(max(self.quantiles) - min(self.quantiles), 6)


def feature_columns(feature_set: FeatureSet) -> list[str]:
    """The model's input columns. Sentiment adds the daily aggregates and the ``has_posts`` flag."""
    if feature_set == "price":
        return list(PRICE_FEATURES)
    if feature_set == "price_sentiment":
        return [*PRICE_FEATURES, *SENTIMENT_FEATURES, "has_posts"]
    raise ValueError(f"unknown feature set {feature_set!r}")
