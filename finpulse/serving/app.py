"""The Serve application builder: ``import_path: finpulse.serving.app:build_app``.

``args`` give the defaults of each slot (model specs, features URI); a Serve config's per-deployment
``user_config`` wins over them, and that is what canary operations edit (``canary.py``).
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from finpulse.names import FORECAST_MODEL, SENTIMENT_MODEL, model_spec
from finpulse.serving.schemas import ForecasterConfig, GatewayConfig, SentimentModelConfig

APP_NAME = "finpulse"
GATEWAY = "Gateway"
SENTIMENT, SENTIMENT_CANARY = "SentimentModel", "SentimentModelCanary"
FORECASTER, FORECASTER_CANARY = "Forecaster", "ForecasterCanary"
# which deployment serves (model, slot)
DEPLOYMENT_NAMES = {("sentiment", "stable"): SENTIMENT, ("sentiment", "canary"): SENTIMENT_CANARY,
                    ("forecast", "stable"): FORECASTER, ("forecast", "canary"): FORECASTER_CANARY}


class AppArgs(BaseModel):
    """Arguments of :func:`build_app` (``args:`` in a Serve config)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    sentiment_model: str | None = model_spec(SENTIMENT_MODEL)
    sentiment_canary: str | None = None
    forecast_model: str | None = model_spec(FORECAST_MODEL)
    forecast_canary: str | None = None
    features_uri: str | None = Field(None, description="Default: <data root>/curated (the ETL output).")
    live_features_uri: str | None = Field(None, description="The stream processor's features, followed without a "
                                                            "restart. Default: <data root>/live/features.")
    nats_url: str | None = Field(None, description="The live feed's broker for POST /v1/posts. Default: the "
                                                   "settings' nats_url.")
    sentiment_loader_kwargs: dict = Field(default_factory=dict)
    sentiment_device: str = Field("cpu", description="'cuda' where SentimentModel replicas get a GPU.")
    weights: dict[str, float] = Field(default_factory=lambda: {"sentiment": 0.0, "forecast": 0.0})


def _abs(spec: str | None) -> str | None:
    """Relative local paths are made absolute here: replicas may run in another working directory."""
    if spec and not spec.startswith(("s3://", "models:/", "runs:/")) and os.path.exists(spec):
        return os.path.abspath(spec)
    return spec


def _abs_uri(uri: str | None) -> str | None:
    return uri if uri is None or "://" in uri else os.path.abspath(uri)


def default_user_configs(args: AppArgs) -> dict[str, dict[str, Any]]:
    """The user_config of every deployment implied by ``args``."""
    from finpulse.config import get_settings
    from finpulse.paths import data_paths

    paths = data_paths()
    features = _abs_uri(args.features_uri or paths.curated)
    live = _abs_uri(args.live_features_uri or paths.live_features)
    s_kw = dict(args.sentiment_loader_kwargs)
    return {
        SENTIMENT: SentimentModelConfig(model=_abs(args.sentiment_model), loader_kwargs=s_kw,
                                        device=args.sentiment_device).model_dump(),
        SENTIMENT_CANARY: SentimentModelConfig(model=_abs(args.sentiment_canary), loader_kwargs=s_kw,
                                               device=args.sentiment_device).model_dump(),
        FORECASTER: ForecasterConfig(model=_abs(args.forecast_model), features_uri=features,
                                     live_features_uri=live).model_dump(),
        FORECASTER_CANARY: ForecasterConfig(model=_abs(args.forecast_canary), features_uri=features,
                                            live_features_uri=live).model_dump(),
        GATEWAY: GatewayConfig(weights=args.weights, nats_url=args.nats_url or get_settings().nats_url).model_dump(),
    }


def build_app(args: dict[str, Any] | None = None) -> Application:
    """The FinPulse serving graph, ready for ``serve run``/``serve deploy``/``serve.run``."""
    from finpulse.serving.deployments import Forecaster, Gateway, SentimentModel

    parsed = AppArgs(**(args or {}))
    uc = default_user_configs(parsed)
    return Gateway.options(user_config=uc[GATEWAY]).bind(
        SentimentModel.options(name=SENTIMENT, user_config=uc[SENTIMENT]).bind(),
        SentimentModel.options(name=SENTIMENT_CANARY, user_config=uc[SENTIMENT_CANARY],
                               ray_actor_options={"num_cpus": 0.1}).bind(),
        Forecaster.options(name=FORECASTER, user_config=uc[FORECASTER]).bind(),
        Forecaster.options(name=FORECASTER_CANARY, user_config=uc[FORECASTER_CANARY],
                           ray_actor_options={"num_cpus": 0.1}).bind(),
    )
